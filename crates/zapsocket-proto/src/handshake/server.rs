//! The server side: parse and validate the client's request (RFC 6455 §4.2.1), answer.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

use super::{HandshakeError, HandshakeLimits, HeadBuffer, accept_key, has_token, split_list};

/// A parsed HTTP request head.
///
/// Kept for the connection's life (a server hands it to the user's handler), so it is
/// stored compactly: the head's bytes in one buffer, and where each part lies in it.
#[derive(Clone)]
pub struct Request {
    /// The head as received, without its final blank line.
    head: Bytes,
    method: Span,
    target: Span,
    /// (name, value) per header, in order.
    headers: Box<[(Span, Span)]>,
}

/// Where a part of the head lies in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, a slice of `head`.
    fn of(head: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).saturating_sub(head.as_ptr() as usize).min(head.len());
        let end = (start + part.len()).min(head.len());
        // The head is at most `HandshakeLimits::max_head_size`, far below 4 GiB.
        Span { start: start as u32, end: end as u32 }
    }
}

/// Equal when method, target and headers are (not the bytes between them: line endings
/// and spaces around values do not count).
impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        self.method() == other.method()
            && self.target() == other.target()
            && self.headers().eq(other.headers())
    }
}

impl Eq for Request {}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, String)> =
            self.headers().map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned())).collect();
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("target", &self.target())
            .field("headers", &headers)
            .finish()
    }
}

impl Request {
    fn bytes(&self, span: Span) -> &[u8] {
        self.head.get(span.start as usize..span.end as usize).unwrap_or_default()
    }

    /// Parts the parser found as text (method, target, header names) are ASCII.
    fn text(&self, span: Span) -> &str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    /// The method (`GET`).
    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// The request target, path and query (`/chat?room=1`).
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(p, _)| p)
    }

    /// The raw query string, without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// Every header as (name, value), in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|&(n, v)| (self.text(n), self.bytes(v)))
    }

    /// The first value of header `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of header `name` (case-insensitive), as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        self.headers
            .iter()
            .find(|&&(n, _)| self.bytes(n).eq_ignore_ascii_case(name))
            .map(|&(_, v)| self.bytes(v))
    }

    /// Every value of header `name`, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        // Names compared as bytes: no UTF-8 check per header and lookup.
        self.headers
            .iter()
            .filter(move |&&(n, _)| self.bytes(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, v)| self.bytes(v))
    }

    /// Whether the request asks for a WebSocket upgrade (`Upgrade: websocket`).
    pub fn is_upgrade(&self) -> bool {
        self.header_all("upgrade").any(|v| has_token(v, "websocket"))
    }

    /// The subprotocols the client offers, in its order of preference.
    pub fn subprotocols(&self) -> Vec<&str> {
        self.header_all("sec-websocket-protocol")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(split_list)
            .collect()
    }

    /// Checks the request is a valid WebSocket opening handshake (RFC 6455 §4.2.1) and
    /// returns the `Sec-WebSocket-Accept` value.
    pub fn validate_upgrade(&self) -> Result<String, HandshakeError> {
        if self.method() != "GET" {
            return Err(HandshakeError::new(405, "WebSocket handshakes use GET"));
        }
        if self.header_bytes("host").is_none() {
            return Err(HandshakeError::new(400, "missing Host header"));
        }
        if !self.is_upgrade() {
            return Err(HandshakeError::new(426, "expected Upgrade: websocket"));
        }
        if !self.header_all("connection").any(|v| has_token(v, "upgrade")) {
            return Err(HandshakeError::new(400, "expected Connection: Upgrade"));
        }
        // A GET upgrade has no body (RFC 6455 §4.1; RFC 9112 §6): bytes after the head
        // are frames, so a declared body would be read as frames (request smuggling
        // behind a proxy that forwards it).
        if self.header_bytes("transfer-encoding").is_some()
            || self.header_all("content-length").any(|v| v.trim_ascii() != b"0")
        {
            return Err(HandshakeError::new(400, "a WebSocket upgrade request has no body"));
        }
        let versions: Vec<&[u8]> = self.header_all("sec-websocket-version").collect();
        if versions.len() != 1 || versions[0].trim_ascii() != b"13" {
            return Err(HandshakeError::new(426, "unsupported Sec-WebSocket-Version (13 expected)"));
        }
        // RFC 6455 §11.3.1: the key MUST NOT appear more than once.
        let mut keys = self.header_all("sec-websocket-key");
        let key = keys.next().map(<[u8]>::trim_ascii);
        if keys.next().is_some() {
            return Err(HandshakeError::new(400, "more than one Sec-WebSocket-Key"));
        }
        match key.map(|k| STANDARD.decode(k)) {
            Some(Ok(decoded)) if decoded.len() == 16 => Ok(accept_key(key.unwrap_or_default())),
            Some(_) => Err(HandshakeError::new(400, "invalid Sec-WebSocket-Key")),
            None => Err(HandshakeError::new(400, "missing Sec-WebSocket-Key")),
        }
    }
}

/// Reads a client's request head incrementally.
///
/// Lines may end with CRLF or a bare LF (RFC 9112 §2.2). A `Sec-WebSocket-Key` sent twice
/// is refused (400) by [`Request::validate_upgrade`].
///
/// ```
/// use zapsocket_proto::handshake::RequestParser;
///
/// let mut parser = RequestParser::default();
/// assert!(parser.feed(b"GET /chat HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
/// let request = parser.feed(b"\r\n").unwrap().unwrap();
/// assert_eq!(request.path(), "/chat");
/// ```
#[derive(Debug, Default)]
pub struct RequestParser {
    head: HeadBuffer,
    limits: HandshakeLimits,
    leftover: Vec<u8>,
    /// The request was returned; later bytes belong to the WebSocket stream.
    done: bool,
}

impl RequestParser {
    /// A parser with these limits.
    pub fn new(limits: HandshakeLimits) -> Self {
        RequestParser { head: HeadBuffer::default(), limits, leftover: Vec::new(), done: false }
    }

    /// Feeds received bytes; returns the request once its head is complete.
    ///
    /// Errors carry the status to answer: 400 for a malformed head, 431 for one over the
    /// limits. Bytes fed after the request was returned are added to the leftover.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        if self.done {
            self.leftover.extend_from_slice(data);
            return Ok(None);
        }
        let Some(len) = self.head.feed(data, self.limits.max_head_size)? else { return Ok(None) };
        let request = parse_request(&self.head.buf[..len], self.limits.max_headers)?;
        self.leftover = self.head.buf.split_off(len);
        self.head = HeadBuffer::default();
        self.done = true;
        Ok(Some(request))
    }

    /// Bytes received after the head (the start of the WebSocket stream).
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }
}

fn parse_request(head: &[u8], max_headers: usize) -> Result<Request, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HandshakeError::new(400, "incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::new(431, "too many request headers"));
        }
        Err(e) => return Err(HandshakeError::new(400, format!("malformed request: {e}"))),
    }
    if req.version != Some(1) {
        return Err(HandshakeError::new(400, "HTTP/1.1 required"));
    }
    let method = Span::of(head, req.method.unwrap_or_default().as_bytes());
    let target = Span::of(head, req.path.unwrap_or_default().as_bytes());
    let headers =
        req.headers.iter().map(|h| (Span::of(head, h.name.as_bytes()), Span::of(head, h.value))).collect();
    // One buffer of the head's own size (the parser's may be larger, and goes).
    Ok(Request { head: Bytes::copy_from_slice(head), method, target, headers })
}

/// The server's `101 Switching Protocols` answer.
#[derive(Clone, Debug, Default)]
pub struct ServerResponse {
    /// The chosen subprotocol, if any.
    pub protocol: Option<String>,
    /// The negotiated `Sec-WebSocket-Extensions` value, if any.
    pub extensions: Option<String>,
    /// Extra headers to send.
    pub headers: Vec<(String, String)>,
}

impl ServerResponse {
    /// Encodes the 101 response for `accept` (from [`Request::validate_upgrade`]).
    pub fn encode(&self, accept: &str) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
        );
        if let Some(p) = &self.protocol {
            out.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        if let Some(e) = &self.extensions {
            out.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
        }
        for (name, value) in self.headers.iter().filter(|(n, v)| safe(n) && safe(v)) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// No CR or LF: a header name or value that cannot split the head.
fn safe(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n')
}
