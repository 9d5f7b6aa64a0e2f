import ClusterAPI
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PeerTransport
import RaftCore

/// Asks the cluster to add this node as a learner (`POST /join`, tunnelled over the peer connection) until the change
/// commits. Runs on start for a node that is not a voter of its bootstrap configuration (its own `initial_cluster`
/// entry has role 4, or `initial_cluster_size` leaves it out) and has never received a configuration from a leader.
///
/// A follower it asks answers `503` with the leader's id; the next attempt goes there. Attempts repeat every
/// `interval` until one succeeds, the node receives a configuration anyway (a lost answer), or `stop()`.
// @unchecked Sendable: `let`s of thread-safe values, and `state`, a locked box.
final class Joiner: @unchecked Sendable {
    let selfID: NodeID
    let advertised: String
    let contacts: [NodeID]
    let transport: PeerTransport
    let raft: RaftServer
    let log: NodeLog
    let loop: EventLoop
    let interval: TimeAmount
    private let state = NIOLockedValueBox((stopped: false, next: 0, hint: NodeID?.none, attempts: 0))

    init(
        selfID: NodeID, advertised: String, contacts: [NodeID], transport: PeerTransport, raft: RaftServer,
        log: NodeLog, loop: EventLoop, interval: TimeAmount = .milliseconds(500)
    ) {
        self.selfID = selfID
        self.advertised = advertised
        self.contacts = contacts
        self.transport = transport
        self.raft = raft
        self.log = log
        self.loop = loop
        self.interval = interval
    }

    func start() {
        log.always("Joining the cluster node=\(selfID) address=\(advertised) via \(contacts.map(String.init).joined(separator: ","))")
        attempt()
    }

    func stop() {
        state.withLockedValue { $0.stopped = true }
    }

    private func attempt() {
        guard !state.withLockedValue({ $0.stopped }) else { return }
        raft.needsToJoin().whenComplete { result in
            guard case .success(true) = result else {
                if case .success(false) = result {
                    self.log.always("Joined: node=\(self.selfID) received the cluster's configuration")
                }
                return
            }
            self.send()
        }
    }

    private func send() {
        let target: NodeID? = state.withLockedValue { s in
            s.attempts += 1
            if let hint = s.hint, hint != selfID {
                s.hint = nil
                return hint
            }
            guard !contacts.isEmpty else { return nil }
            defer { s.next += 1 }
            return contacts[s.next % contacts.count]
        }
        guard let target else {
            log.error("cannot join: initial_cluster lists no other member to ask")
            return
        }
        let body = (try? WireJSON.encode(JoinRequest(nodeID: selfID, address: advertised))).map { Array($0) } ?? []
        let request = TunnelledRequest(
            method: "POST", uri: "/join",
            // Secure mode: the leader authorizes forwarded requests by the caller they name. A joining node speaks
            // for itself over a link authenticated by its node certificate, which the operator issued for this id.
            headers: [("Content-Type", "application/json"), (Caller.forwardedHeader, "admin:node.\(selfID)")],
            body: body)
        transport.forward(request, to: target, timeout: .seconds(10)).whenComplete { result in
            switch result {
            case .success(let response) where response.status == 200:
                let answer = try? WireJSON.decode(MembershipChangeResponse.self, from: Data(response.body))
                self.log.always(
                    "Joined the cluster as a learner node=\(self.selfID) index=\(answer?.index ?? 0) via node \(target)")
                return
            case .success(let response):
                let error = (try? WireJSON.decode(APIErrorEnvelope.self, from: Data(response.body)))?.error
                if let leader = error?.leaderID, leader != target {
                    self.state.withLockedValue { $0.hint = leader }
                }
                self.logRetry("node \(target) answered \(error.map { "\($0)" } ?? "status \(response.status)")")
            case .failure(let error):
                self.logRetry("node \(target) unreachable (\(error))")
            }
            self.loop.scheduleTask(in: self.interval) { self.attempt() }
        }
    }

    /// The first failures are expected while the cluster elects a leader: warn only every tenth.
    private func logRetry(_ why: String) {
        let attempts = state.withLockedValue { $0.attempts }
        if attempts % 10 == 1 { log.warn("join attempt \(attempts) failed: \(why); retrying") }
    }
}
