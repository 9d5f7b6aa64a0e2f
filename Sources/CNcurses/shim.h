// dtop's view of ncursesw. Swift cannot import function-like or computed macros, so the attributes, the
// line-drawing characters and the globals dtop needs are wrapped in static inline functions here.
#ifndef DTOP_CNCURSES_SHIM_H
#define DTOP_CNCURSES_SHIM_H

#define NCURSES_WIDECHAR 1
#include <locale.h>
#include <langinfo.h>
#include <ncursesw/curses.h>

static inline int dtop_a_normal(void) { return (int)A_NORMAL; }
static inline int dtop_a_bold(void) { return (int)A_BOLD; }
static inline int dtop_a_dim(void) { return (int)A_DIM; }
static inline int dtop_a_reverse(void) { return (int)A_REVERSE; }
static inline int dtop_a_underline(void) { return (int)A_UNDERLINE; }
static inline int dtop_color_pair(short pair) { return (int)COLOR_PAIR(pair); }

static inline chtype dtop_acs_hline(void) { return ACS_HLINE; }
static inline chtype dtop_acs_vline(void) { return ACS_VLINE; }

static inline WINDOW *dtop_stdscr(void) { return stdscr; }
static inline int dtop_lines(void) { return LINES; }
static inline int dtop_cols(void) { return COLS; }
static inline int dtop_key_resize(void) { return KEY_RESIZE; }
static inline int dtop_err(void) { return ERR; }
static inline int dtop_key_up(void) { return KEY_UP; }
static inline int dtop_key_down(void) { return KEY_DOWN; }
static inline int dtop_key_enter(void) { return KEY_ENTER; }
static inline int dtop_key_npage(void) { return KEY_NPAGE; }
static inline int dtop_key_ppage(void) { return KEY_PPAGE; }
static inline int dtop_key_mouse(void) { return KEY_MOUSE; }

/// Clicks and the wheel (xterm reports the wheel as buttons 4 and 5).
static inline void dtop_enable_mouse(void) {
    mousemask(BUTTON1_CLICKED | BUTTON1_PRESSED | BUTTON4_PRESSED | BUTTON5_PRESSED, 0);
    mouseinterval(0);
}

/// The last mouse event: 1 click or press of button 1, 4 wheel up, 5 wheel down, 0 other or none; the cell in y, x.
static inline int dtop_mouse_event(int *y, int *x) {
    MEVENT event;
    if (getmouse(&event) != OK) return 0;
    *y = event.y;
    *x = event.x;
    if (event.bstate & (BUTTON1_CLICKED | BUTTON1_PRESSED)) return 1;
    if (event.bstate & BUTTON4_PRESSED) return 4;
#ifdef BUTTON5_PRESSED
    if (event.bstate & BUTTON5_PRESSED) return 5;
#endif
    return 0;
}

/// True when the current locale encodes text as UTF-8 (call after setlocale).
static inline int dtop_locale_is_utf8(void) {
    const char *codeset = nl_langinfo(CODESET);
    return codeset != 0 && (codeset[0] == 'U' || codeset[0] == 'u') && (codeset[1] == 'T' || codeset[1] == 't')
        && (codeset[2] == 'F' || codeset[2] == 'f');
}

#endif
