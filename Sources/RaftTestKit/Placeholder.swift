// RaftTestKit
