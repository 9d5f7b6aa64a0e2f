import PeerTransport

// The module and its main class share a name, and HTTPAPI has its own ForwardedResponse: unambiguous names here.
typealias PeerForwardedRequest = ForwardedRequest
typealias PeerForwardedResponse = ForwardedResponse
