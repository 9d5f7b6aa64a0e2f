import ClusterAPI
import ClusterClient
import DashboardCore
import Foundation

/// `GET /status` through the tools' one client (`blockingExchange`: plaintext, or TLS and a token once
/// `SecureFetch.configure` set `ClientSecurity.current`), bounded by one deadline for the whole exchange.
/// Blocking; called on poller threads, never on the curses thread.
enum StatusFetcher {
    static func fetch(_ endpoint: Endpoint, timeoutMs: Int) -> PollOutcome {
        let timeout = Duration.milliseconds(timeoutMs)
        let response: HTTPResponse
        do {
            response = try blockingExchange(
                method: "GET", endpoint: endpoint, path: "/status", body: nil, deadline: ContinuousClock.now + timeout,
                timeout: timeout)
        } catch {
            return .failure(error.kind == .timedOut ? "timed out" : error.reason)
        }
        guard response.status == 200 else { return .failure("HTTP \(response.status)") }
        guard let status = try? WireJSON.decode(NodeStatus.self, from: response.body) else {
            return .failure("bad /status JSON")
        }
        return .status(status)
    }
}
