import NIOCore

/// Size and time limits of the client HTTP API.
public struct ClientHTTPLimits: Sendable, Hashable {
    /// The default `max_value_bytes`: 1 MiB.
    public static let defaultMaxValueBytes = 1 << 20
    /// The most UTF-8 bytes a key may have (SPEC: 4 KiB).
    public static let defaultMaxKeyBytes = 4 << 10
    /// Rows in a `/scan` page when the request names no `limit`, and the most a `limit` may ask for.
    public static let defaultScanRows = 1000
    public static let maxScanRows = 10_000
    /// Key and value bytes in one `/scan` page, past its first row (a page always holds at least one row).
    public static let maxScanBytes = 4 << 20

    /// Keys longer than this many UTF-8 bytes are answered `413 too_large`.
    public var maxKeyBytes: Int
    /// Values longer than this many UTF-8 bytes are answered `413 too_large` (`max_value_bytes`).
    public var maxValueBytes: Int
    /// Request bodies longer than this are answered `413 too_large` as soon as `Content-Length` (or the streamed
    /// size of a chunked body) shows it, and the connection is closed without reading the body into memory.
    public var maxBodyBytes: Int
    /// How long the backend may take: its `ClientRequestContext.deadline` is the end of the request plus this,
    /// and a request still unanswered then gets `504 timeout`.
    public var requestTimeout: TimeAmount
    /// A connection that starts no request for this long after its last response (or since it opened) is closed
    /// (`nil`: never).
    public var idleTimeout: TimeAmount?
    /// A request's head must be complete this long after its first byte arrived, or the connection is closed
    /// (`nil`: no limit). Counted from the first byte: a trickle of bytes does not extend it.
    public var headerTimeout: TimeAmount?
    /// A request's body must be complete this long after its head, or the connection is closed (`nil`: no limit).
    public var bodyTimeout: TimeAmount?
    /// After an early `413`, how long the rest of an oversized upload is read and dropped, so that the client
    /// sees the response before the connection is reset.
    public var rejectLinger: TimeAmount

    /// - Parameters:
    ///   - maxBodyBytes: defaults to `maxValueBytes + maxKeyBytes + 64 KiB` (room for the JSON around them).
    public init(
        maxKeyBytes: Int = ClientHTTPLimits.defaultMaxKeyBytes,
        maxValueBytes: Int = ClientHTTPLimits.defaultMaxValueBytes,
        maxBodyBytes: Int? = nil,
        requestTimeout: TimeAmount = .seconds(5),
        idleTimeout: TimeAmount? = .seconds(120),
        headerTimeout: TimeAmount? = .seconds(10),
        bodyTimeout: TimeAmount? = .seconds(30),
        rejectLinger: TimeAmount = .seconds(1)
    ) {
        self.maxKeyBytes = maxKeyBytes
        self.maxValueBytes = maxValueBytes
        self.maxBodyBytes = maxBodyBytes ?? (maxValueBytes + maxKeyBytes + (64 << 10))
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.rejectLinger = rejectLinger
    }
}
