import Foundation
import Testing

/// The docs describe what exists: the architecture page lists every target of the manifest (and nothing else), and
/// every relative link of the README and docs/ resolves in a clone of the repository.
@Suite struct DocsAgreeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func read(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// Names of the manifest's non-test targets (`.target`, `.executableTarget`, `.systemLibrary`).
    static func manifestTargets() throws -> Set<String> {
        let manifest = try read("Package.swift")
        var names: Set<String> = []
        for kind in [".target(", ".executableTarget(", ".systemLibrary("] {
            var rest = Substring(manifest)
            while let range = rest.range(of: kind) {
                rest = rest[range.upperBound...]
                let window = rest.prefix(200)
                guard let name = window.range(of: "name: \"") else { continue }
                let after = window[name.upperBound...]
                if let end = after.firstIndex(of: "\"") { names.insert(String(after[..<end])) }
            }
        }
        return names
    }

    /// The directory names (`Name/`) at the start of the lines of architecture.md's source tree.
    static func documentedTargets() throws -> Set<String> {
        let page = try read("docs/architecture.md")
        guard let start = page.range(of: "```\nSources/\n"), let end = page[start.upperBound...].range(of: "```")
        else { return [] }
        var names: Set<String> = []
        for line in page[start.upperBound..<end.lowerBound].split(separator: "\n") {
            guard line.hasPrefix("  "), !line.hasPrefix("   "), let slash = line.firstIndex(of: "/") else { continue }
            let name = line[line.index(line.startIndex, offsetBy: 2)..<slash]
            if !name.contains(" ") { names.insert(String(name)) }
        }
        return names
    }

    @Test func theArchitecturePageListsEveryTargetAndNothingElse() throws {
        let targets = try Self.manifestTargets()
        let documented = try Self.documentedTargets()
        #expect(targets.count > 20, "the manifest parser found \(targets.sorted())")
        #expect(targets.subtracting(documented).isEmpty, "targets missing from docs/architecture.md: \(targets.subtracting(documented).sorted())")
        #expect(documented.subtracting(targets).isEmpty, "listed but not targets: \(documented.subtracting(targets).sorted())")
        let directories = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("Sources").path)
        #expect(Set(directories).subtracting(targets).isEmpty, "Sources/ directories that are not targets")
    }

    @Test func relativeLinksResolveInAClone() throws {
        var pages = ["README.md"]
        pages += try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("docs").path)
            .filter { $0.hasSuffix(".md") }.map { "docs/" + $0 }
        var broken: [String] = []
        for page in pages {
            let text = try Self.read(page)
            let base = (page as NSString).deletingLastPathComponent
            var rest = Substring(text)
            while let open = rest.range(of: "](") {
                rest = rest[open.upperBound...]
                guard let close = rest.firstIndex(of: ")") else { break }
                let target = String(rest[..<close]).split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
                if target.isEmpty || target.contains("://") || target.hasPrefix("mailto:") { continue }
                let path = base.isEmpty ? target : base + "/" + target
                if !FileManager.default.fileExists(atPath: Self.root.appendingPathComponent(path).path) {
                    broken.append("\(page): \(target)")
                }
            }
            // A clone has no ../shared: the contract the docs lean on must be in the repository.
            if text.contains("../shared/SPEC.md") { broken.append("\(page): refers to ../shared/SPEC.md") }
        }
        #expect(broken.isEmpty, "\(broken)")
    }
}
