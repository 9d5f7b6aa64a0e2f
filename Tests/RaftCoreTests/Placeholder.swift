import Testing

@Test func placeholderRaftCoreTests() { #expect(Bool(true)) }
