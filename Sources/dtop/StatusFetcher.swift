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

extension StatusFetcher {
    /// `GET /events?follow=false&after=ID`; `nil` when the node has no such route (an older node) or fails: the
    /// pane then keeps what dtop infers from polls.
    static func fetchEvents(_ endpoint: Endpoint, after: UInt64, timeoutMs: Int) -> NodeEventsResponse? {
        let timeout = Duration.milliseconds(max(timeoutMs, 1))
        guard
            let response = try? blockingExchange(
                method: "GET", endpoint: endpoint, path: "/events?follow=false&after=\(after)", body: nil,
                deadline: ContinuousClock.now + timeout, timeout: timeout),
            response.status == 200
        else { return nil }
        return try? WireJSON.decode(NodeEventsResponse.self, from: response.body)
    }

    /// Sends a confirmed action (`POST path {"node_id":N}`) to `address` (a client API `host:port`); returns the line
    /// for the events pane.
    static func perform(_ plan: ActionPlan, timeoutMs: Int = 10_000) -> String {
        let what = "\(plan.action.rawValue) node \(plan.node)"
        guard let address = plan.address, let endpoint = try? Endpoint.parseList(address).first else {
            return "\(what): failed: no reachable node's client address is known"
        }
        let timeout = Duration.milliseconds(timeoutMs)
        do {
            let response = try blockingExchange(
                method: "POST", endpoint: endpoint, path: plan.action.path, body: Data(plan.body.utf8),
                headers: [("Content-Type", "application/json")], deadline: ContinuousClock.now + timeout,
                timeout: timeout)
            if response.status == 200 { return "\(what): done (via \(address))" }
            let message = (try? WireJSON.decode(APIErrorEnvelope.self, from: response.body))?.error.message
            return "\(what): refused, HTTP \(response.status): \(message ?? String(decoding: response.body.prefix(200), as: UTF8.self))"
        } catch {
            return "\(what): failed: \(error.reason)"
        }
    }
}
