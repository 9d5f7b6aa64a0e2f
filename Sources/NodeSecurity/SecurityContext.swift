import ClusterAPI
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// A node's secure mode: its TLS material and tokens, reloaded without a restart when the files change (checked
/// every few seconds and on SIGHUP). A reload that fails keeps the material in use and says why; new connections
/// use the new material, open ones keep theirs.
public final class SecurityContext: Sendable {
    public struct Settings: Sendable, Hashable {
        public var files: TLSFiles
        public var tokensFile: String?
        public var requireClientCertificate: Bool
        public var nodeID: UInt64

        public init(files: TLSFiles, tokensFile: String?, requireClientCertificate: Bool, nodeID: UInt64) {
            self.files = files
            self.tokensFile = tokensFile
            self.requireClientCertificate = requireClientCertificate
            self.nodeID = nodeID
        }
    }

    private struct Loaded: Sendable {
        var material: TLSMaterial
        var tokens: TokenStore
        var stamps: [String: Date]
    }

    public let settings: Settings
    private let state: NIOLockedValueBox<Loaded>
    /// Where refusals and reloads are reported (a log line each).
    public let report: @Sendable (String) -> Void

    /// Loads everything or throws the first problem (the node refuses to start).
    public init(settings: Settings, report: @escaping @Sendable (String) -> Void) throws {
        self.settings = settings
        self.report = report
        state = NIOLockedValueBox(try Self.load(settings))
    }

    private static func load(_ settings: Settings) throws -> Loaded {
        let stamps = Self.stamps(settings)
        let material = try TLSMaterial(
            files: settings.files, requireClientCertificate: settings.requireClientCertificate,
            expectedNode: settings.nodeID)
        let tokens = try settings.tokensFile.map { try TokenStore.load(path: $0) } ?? TokenStore()
        return Loaded(material: material, tokens: tokens, stamps: stamps)
    }

    private static func stamps(_ settings: Settings) -> [String: Date] {
        var stamps: [String: Date] = [:]
        for path in settings.files.paths + [settings.tokensFile].compactMap({ $0 }) {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            stamps[path] = attributes?[.modificationDate] as? Date ?? .distantPast
        }
        return stamps
    }

    public var material: TLSMaterial { state.withLockedValue { $0.material } }
    public var tokens: TokenStore { state.withLockedValue { $0.tokens } }

    /// Reloads when a file changed (or always, with `force`). Returns what happened, for the log; `nil` when
    /// nothing changed.
    @discardableResult
    public func reload(force: Bool = false) -> String? {
        let stamps = Self.stamps(settings)
        guard force || stamps != state.withLockedValue({ $0.stamps }) else { return nil }
        do {
            let loaded = try Self.load(settings)
            state.withLockedValue { $0 = loaded }
            let until = loaded.material.own.map { CertificateChecker.format($0.notValidAfter) } ?? "-"
            let message =
                "TLS material reloaded: certificate serial \(loaded.material.summary.certificateSerial ?? "-") valid until \(until), \(loaded.tokens.entries.count) tokens"
            report(message)
            return message
        } catch {
            // Remember the stamps, so a broken file is reported once, not every few seconds.
            state.withLockedValue { $0.stamps = stamps }
            let message = "TLS material not reloaded, the previous one stays in use: \(error)"
            report(message)
            return message
        }
    }

    /// Checks the files every `interval` on `loop` until the loop shuts down.
    public func watch(on loop: any EventLoop, every interval: TimeAmount) {
        loop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            self.reload()
        }
    }

    // MARK: Handlers

    public func makeServerHandler() throws -> NIOSSLServerHandler {
        try material.makeServerHandler(refused: report)
    }

    public func makeClientHandler(expectingNode: UInt64) throws -> NIOSSLClientHandler {
        try material.makeClientHandler(expectingNode: expectingNode, refused: report)
    }

    // MARK: Authentication

    /// The caller of one client request: a bearer token if the request carries one (a wrong token is refused even
    /// if a certificate was presented), else the connection's client certificate.
    public func authenticate(authorization: String?, certificate: CertificateIdentity?) -> Result<Caller, APIError> {
        if let authorization {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                return .failure(APIError(code: .unauthenticated, message: "Authorization must be \"Bearer TOKEN\""))
            }
            guard let caller = tokens.caller(forToken: parts[1].drop(while: { $0 == " " })) else {
                return .failure(APIError(code: .unauthenticated, message: "unknown bearer token"))
            }
            return .success(caller)
        }
        switch certificate {
        case .client(let caller):
            return .success(caller)
        case .node(let id):
            return .failure(
                APIError(
                    code: .unauthenticated,
                    message: "a node certificate (node \(id)) is not a client identity; use a client certificate or a token"))
        case nil:
            return .failure(
                APIError(
                    code: .unauthenticated,
                    message: "credentials required: a client certificate of the cluster CA or Authorization: Bearer TOKEN"))
        }
    }
}
