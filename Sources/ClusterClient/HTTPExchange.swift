import Foundation
@_exported import HTTPClient

/// dctl's requests through the shared blocking client (`HTTPClient`), with the process's security settings: a
/// bearer token on every request and TLS (`tlsExchange`) when a CA is configured. Run on its own thread per
/// request, so requests to several nodes run at once and never occupy Swift's cooperative pool.

/// ``HTTPResponse`` under a name no other module uses (the module name `ClusterClient` is shadowed by the type of
/// that name, so `ClusterClient.HTTPResponse` cannot be written).
public typealias ClientHTTPResponse = HTTPResponse

// MARK: - Exchange

/// Sends one request and waits for the response, on a dedicated thread, within `timeout`.
///
/// `security` defaults to the process-wide settings (`ClientSecurity.current`); tests pass their own.
public func httpExchange(
    method: String, endpoint: Endpoint, path: String, body: Data? = nil, headers: [(String, String)] = [],
    timeout: Duration, security: ClientSecurity = .current
) async throws(TransportError) -> HTTPResponse {
    let result: Result<HTTPResponse, TransportError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            let deadline = ContinuousClock.now + timeout
            continuation.resume(
                returning: Result { () throws(TransportError) -> HTTPResponse in
                    try blockingExchange(
                        method: method, endpoint: endpoint, path: path, body: body, headers: headers,
                        deadline: deadline, timeout: timeout, security: security)
                })
        }
        thread.stackSize = 512 * 1024
        thread.start()
    }
    return try result.get()
}

/// The blocking exchange `httpExchange` runs on its thread; callers with a thread of their own (dtop's pollers) use
/// it directly.
public func blockingExchange(
    method: String, endpoint: Endpoint, path: String, body: Data?, headers: [(String, String)] = [],
    deadline: ContinuousClock.Instant, timeout: Duration, security: ClientSecurity = .current
) throws(TransportError) -> HTTPResponse {
    var fields = [("User-Agent", "dctl"), ("Accept", "application/json")]
    if let token = security.token { fields.append(("Authorization", "Bearer \(token)")) }
    fields += headers
    let bytes = requestBytes(method: method, endpoint: endpoint, path: path, headers: fields, body: body)
    if let material = security.tls {
        return try tlsExchange(request: bytes, endpoint: endpoint, material: material, deadline: deadline, timeout: timeout)
    }
    if endpoint.secure {
        throw TransportError(
            kind: .connectFailed, requestSent: false,
            reason: "https://\(endpoint) needs the cluster CA: pass --cacert (or DCTL_CACERT, or a secure --config-dir)")
    }
    return try plainExchange(request: bytes, endpoint: endpoint, deadline: deadline, timeout: timeout)
}
