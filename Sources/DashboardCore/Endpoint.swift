@_exported import HTTPClient

// dtop's endpoints are the tools' one `Endpoint` type (HTTPClient): `Endpoint(parsing:defaultHost:)` and
// `Endpoint.parseList` accept dtop's short forms (`8081`, `:8081`, a trailing path).

/// Splits `host:port` into its parts; `nil` if the port is missing.
func splitAddress(_ address: String) -> (host: String, port: Int)? {
    guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
        return nil
    }
    return (String(address[..<colon]), port)
}
