import Testing

@Test func placeholderRaftStorageTests() { #expect(Bool(true)) }
