//! What a server knows about the request that opened a connection.

use std::net::{IpAddr, SocketAddr};

/// The HTTP upgrade request of a connection, with the peer's address: headers, path,
/// query parameters and cookies, as `ws` hands them to its `connection` event.
#[derive(Clone, Debug)]
pub struct Request {
    inner: zapsocket_proto::handshake::Request,
    peer_addr: SocketAddr,
    /// What few requests have, boxed: every connection keeps its request.
    extra: Option<Box<Extra>>,
}

/// The rarer facts of a request.
#[derive(Clone, Debug, Default)]
struct Extra {
    /// The client's address, when trusted proxies forwarded one other than the peer's.
    client_ip: Option<IpAddr>,
    peer_certificates: Option<crate::server::PeerCertificates>,
    http2: bool,
}

impl Request {
    /// The request from `peer_addr`; with `trusted_proxies`, the client's address is
    /// read from the forwarding headers when `peer_addr` is one of them.
    pub(crate) fn new(
        inner: zapsocket_proto::handshake::Request,
        peer_addr: SocketAddr,
        trusted_proxies: &[crate::IpNet],
    ) -> Self {
        let header =
            |name: &'static str| inner.header_all(name).filter_map(|v| std::str::from_utf8(v).ok()).collect();
        let client_ip = crate::forwarded::client_ip(peer_addr.ip(), trusted_proxies, header);
        let request = Request { inner, peer_addr, extra: None };
        if client_ip == peer_addr.ip() {
            return request;
        }
        request.with(|extra| extra.client_ip = Some(client_ip))
    }

    fn with(mut self, f: impl FnOnce(&mut Extra)) -> Self {
        f(self.extra.get_or_insert_with(Box::default));
        self
    }

    /// Marks a request that came over HTTP/2 (an extended CONNECT, RFC 8441).
    #[cfg(any(feature = "hyper", feature = "http2"))]
    pub(crate) fn with_http2(self) -> Self {
        self.with(|extra| extra.http2 = true)
    }

    /// Whether the request came over HTTP/2: a WebSocket opened by an extended CONNECT
    /// on a stream of an HTTP/2 connection (RFC 8441), as browsers do when they already
    /// have one to the site. Its [`method`](Self::method) then reads `GET`, and its
    /// headers are those of the CONNECT, with `Upgrade`, `Connection` and a placeholder
    /// `Sec-WebSocket-Key` that HTTP/2 has no use for.
    pub fn is_http2(&self) -> bool {
        self.extra.as_ref().is_some_and(|extra| extra.http2)
    }

    pub(crate) fn with_peer_certificates(self, certs: Option<crate::server::PeerCertificates>) -> Self {
        match certs {
            Some(certs) => self.with(|extra| extra.peer_certificates = Some(certs)),
            None => self,
        }
    }

    /// The certificates the client presented over TLS (mutual TLS: an
    /// [`Identity::from_config`](crate::Identity::from_config) whose configuration asks
    /// for them), leaf first, already verified by that configuration; `None` without TLS
    /// or without a client certificate.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.extra.as_ref()?.peer_certificates.as_deref()
    }

    /// The peer's socket address: the TCP connection's other end (a proxy, when there
    /// is one).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The client's IP address: the peer's, or, when the peer is a trusted proxy
    /// ([`ServerBuilder::trusted_proxy`](crate::ServerBuilder::trusted_proxy)), the
    /// address the proxies forwarded (`Forwarded: for=`, else `X-Forwarded-For`), read
    /// from the nearest hop back to the first address that is not a trusted proxy.
    /// Without trusted proxies the headers are ignored: anyone can write them. The
    /// per-IP limits of the server count this address.
    pub fn ip(&self) -> IpAddr {
        self.extra.as_ref().and_then(|extra| extra.client_ip).unwrap_or(self.peer_addr.ip())
    }

    /// The method (always `GET` for an upgrade).
    pub fn method(&self) -> &str {
        self.inner.method()
    }

    /// The path, without the query (`/chat`).
    pub fn path(&self) -> &str {
        self.inner.path()
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.inner.query()
    }

    /// The decoded query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let query = self.query().unwrap_or_default();
        url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query()?;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// The first value of header `name` (case-insensitive), if valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.header(name)
    }

    /// Every header as (name, value), in the order sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.inner.headers()
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }

    /// The subprotocols the client offered, in its order.
    pub fn subprotocols(&self) -> Vec<&str> {
        self.inner.subprotocols()
    }

    /// Every cookie of the `Cookie` headers, as (name, value), quotes removed.
    pub fn cookies(&self) -> Vec<(&str, &str)> {
        self.inner
            .header_all("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect()
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The request as the protocol layer parsed it.
    pub fn as_proto(&self) -> &zapsocket_proto::handshake::Request {
        &self.inner
    }
}
