import Testing

@Test func placeholderKVStoreTests() { #expect(Bool(true)) }
