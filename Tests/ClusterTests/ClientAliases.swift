import ClusterClient

/// The tools' HTTP response (ClusterTestSupport has a type of the same name).
typealias ClientHTTPResponse = HTTPResponse
