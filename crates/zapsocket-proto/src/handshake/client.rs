//! The client side: build the request, validate the server's answer (RFC 6455 §4.1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use rand::RngCore;

use crate::deflate::{DeflateConfig, DeflateParams};

use super::{HandshakeError, HandshakeLimits, HeadBuffer, accept_key, has_token};

/// A client's opening handshake in progress.
///
/// ```
/// use zapsocket_proto::handshake::ClientHandshake;
///
/// let hs = ClientHandshake::new("example.com", "/chat", &[], &["chat.v1".into()]);
/// let request = String::from_utf8(hs.request().to_vec()).unwrap();
/// assert!(request.starts_with("GET /chat HTTP/1.1\r\n"));
/// ```
#[derive(Debug)]
pub struct ClientHandshake {
    request: Vec<u8>,
    accept: String,
    protocols: Vec<String>,
    deflate: Option<DeflateConfig>,
    head: HeadBuffer,
    limits: HandshakeLimits,
    leftover: Vec<u8>,
    /// The response was returned; later bytes belong to the WebSocket stream.
    done: bool,
}

/// The server's successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters the server agreed to, if it accepted the offer
    /// (pass them to [`Connection::set_deflate`](crate::Connection::set_deflate)).
    pub deflate: Option<DeflateParams>,
    /// Every response header, in order.
    pub headers: Vec<(String, Bytes)>,
}

impl Response {
    /// The first value of header `name` (case-insensitive), if valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

impl ClientHandshake {
    /// Builds the request for `host` (with port when not the default) and `target`
    /// (path and query), with extra `headers` and offered `protocols`.
    pub fn new(host: &str, target: &str, headers: &[(String, String)], protocols: &[String]) -> Self {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let key = STANDARD.encode(nonce);
        let mut req = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if !protocols.is_empty() {
            req.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", protocols.join(", ")));
        }
        for (name, value) in headers {
            if is_header_safe(name) && is_header_safe(value) {
                req.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        req.push_str("\r\n");
        ClientHandshake {
            request: req.into_bytes(),
            accept: accept_key(key.as_bytes()),
            protocols: protocols.to_vec(),
            deflate: None,
            head: HeadBuffer::default(),
            limits: HandshakeLimits::default(),
            leftover: Vec::new(),
            done: false,
        }
    }

    /// Offers permessage-deflate with `config` ([`DeflateConfig::offer`]); the server's
    /// answer is then checked ([`DeflateConfig::check_response`]) and returned in
    /// [`Response::deflate`]. Without it, a 101 with any extension is refused.
    ///
    /// ```
    /// use zapsocket_proto::deflate::DeflateConfig;
    /// use zapsocket_proto::handshake::ClientHandshake;
    ///
    /// let hs = ClientHandshake::new("example.com", "/", &[], &[]).deflate(DeflateConfig::default());
    /// let request = String::from_utf8(hs.request().to_vec()).unwrap();
    /// assert!(request.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
    /// ```
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        // The request ends with the blank line: put the header before it.
        self.request.truncate(self.request.len() - 2);
        self.request
            .extend_from_slice(format!("Sec-WebSocket-Extensions: {}\r\n\r\n", config.offer()).as_bytes());
        self.deflate = Some(config);
        self
    }

    /// The request bytes to write.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Feeds the server's bytes; returns the validated response once complete.
    ///
    /// A non-101 status is an error carrying that status. Bytes fed after the response
    /// was returned are added to the leftover.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, HandshakeError> {
        if self.done {
            self.leftover.extend_from_slice(data);
            return Ok(None);
        }
        let Some(len) = self.head.feed(data, self.limits.max_head_size)? else { return Ok(None) };
        let response = match self.validate(&self.head.buf[..len]) {
            Ok(response) => response,
            Err(e) => {
                // A refusal's body may follow (`take_leftover` has what came with the head).
                self.leftover = self.head.buf.split_off(len);
                self.done = true;
                return Err(e);
            }
        };
        self.leftover = self.head.buf.split_off(len);
        self.head = HeadBuffer::default();
        self.done = true;
        Ok(Some(response))
    }

    /// Bytes received after the head: the start of the WebSocket stream, or after a
    /// refusal (a status other than 101) the start of its body.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.leftover)
    }

    fn validate(&self, head: &[u8]) -> Result<Response, HandshakeError> {
        let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HandshakeError::new(400, "incomplete response")),
            Err(e) => return Err(HandshakeError::new(400, format!("malformed response: {e}"))),
        }
        let status = res.code.unwrap_or(0);
        if status != 101 {
            let header = |name: &str| {
                let value = res.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))?.value;
                std::str::from_utf8(value).ok().map(str::trim)
            };
            let mut error = HandshakeError::new(status, format!("server answered {status} instead of 101"));
            error.content_length = header("content-length").and_then(|v| v.parse().ok());
            error.location = header("location").filter(|_| (300..400).contains(&status)).map(str::to_owned);
            error.refusal = true;
            return Err(error);
        }
        let headers: Vec<(String, Bytes)> =
            res.headers.iter().map(|h| (h.name.to_owned(), Bytes::copy_from_slice(h.value))).collect();
        let response = Response { protocol: None, deflate: None, headers };
        let has = |name: &str, token: &str| {
            response.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && has_token(v, token))
        };
        if !has("upgrade", "websocket") {
            return Err(HandshakeError::new(101, "response lacks Upgrade: websocket"));
        }
        if !has("connection", "upgrade") {
            return Err(HandshakeError::new(101, "response lacks Connection: Upgrade"));
        }
        // RFC 6455 §11.3.3: exactly one Sec-WebSocket-Accept.
        let mut accepts = response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|(_, v)| v);
        match (accepts.next(), accepts.next()) {
            (Some(accept), None) if accept.trim_ascii() == self.accept.as_bytes() => {}
            (Some(_), Some(_)) => return Err(HandshakeError::new(101, "more than one Sec-WebSocket-Accept")),
            _ => return Err(HandshakeError::new(101, "wrong Sec-WebSocket-Accept")),
        }
        let extensions = || {
            response
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|(_, v)| &v[..])
        };
        let deflate = match &self.deflate {
            Some(config) => config.check_response(extensions()).map_err(HandshakeError::extension)?,
            None if extensions().next().is_some() => {
                return Err(HandshakeError::extension("server chose an extension that was not offered"));
            }
            None => None,
        };
        let protocol = response.header("sec-websocket-protocol").map(|p| p.trim().to_owned());
        if let Some(p) = &protocol
            && !self.protocols.iter().any(|o| o == p)
        {
            return Err(HandshakeError::new(101, format!("server chose subprotocol {p:?}, not offered")));
        }
        Ok(Response { protocol, deflate, ..response })
    }
}

/// No CR or LF: a header name or value that cannot split the head.
fn is_header_safe(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n')
}
