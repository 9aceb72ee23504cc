import NIOHTTP1

extension HTTPRequestHead {
    /// A GET with the headers every request to the daemon carries.
    ///
    /// The daemon accepts any `Host`; a Unix socket has no host name, so we
    /// send `localhost` like the reference client does.
    static func daemonRequest(path: String) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "localhost")
        headers.add(name: "User-Agent", value: "swift-pst")
        return HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
    }
}
