//! The opening handshake (RFC 6455 §4), both sides, parsed incrementally.
//!
//! Bytes are fed as they arrive; the end of the head (`\r\n\r\n`) is searched only in the
//! new bytes, and the head is parsed once, with `httparse`, when it is complete. The head
//! is bounded in bytes and in header count. Bytes that arrive after the head (a peer may
//! send frames at once) are kept for the [`Connection`](crate::Connection).

mod client;
mod server;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::CloseCode;

pub use client::{ClientHandshake, Response};
pub use server::{Request, RequestParser, ServerResponse};

/// The GUID appended to the key (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

/// Limits on a handshake head. Both stop a peer from making us buffer or parse an
/// unbounded request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// The largest head (request line or status line plus headers) in bytes. Default:
    /// 16 KiB, as Node's HTTP server. Past it: 431.
    pub max_head_size: usize,
    /// The most header lines. Default: 64. Past it: 431.
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits { max_head_size: 16 * 1024, max_headers: 64 }
    }
}

impl HandshakeLimits {
    /// Sets [`HandshakeLimits::max_head_size`].
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.max_head_size = bytes;
        self
    }

    /// Sets [`HandshakeLimits::max_headers`].
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count;
        self
    }
}

/// Why a handshake failed, with the HTTP status a server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeError {
    status: u16,
    reason: String,
    close_code: Option<CloseCode>,
    pub(crate) content_length: Option<usize>,
    pub(crate) refusal: bool,
    pub(crate) location: Option<String>,
}

impl HandshakeError {
    pub(crate) fn new(status: u16, reason: impl Into<String>) -> Self {
        HandshakeError {
            status,
            reason: reason.into(),
            close_code: None,
            content_length: None,
            refusal: false,
            location: None,
        }
    }

    /// A client's failure over the server's extension answer (RFC 7692 §5): the
    /// connection is already open on the server's side, so it is failed with close 1010.
    pub(crate) fn extension(reason: impl Into<String>) -> Self {
        HandshakeError {
            status: 101,
            reason: reason.into(),
            close_code: Some(CloseCode::MANDATORY_EXTENSION),
            content_length: None,
            refusal: false,
            location: None,
        }
    }

    /// For a client that got a 101 with an unacceptable `Sec-WebSocket-Extensions`: the
    /// close code to send before dropping the connection (1010), since the server already
    /// considers it open. `None` for every other failure.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.close_code
    }

    /// The HTTP status for this failure: 400 malformed, 405 not GET, 426 wrong version or
    /// not an upgrade, 431 head too large; for a client, the server's status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// For a client: whether the server answered with a status other than 101 (its
    /// [`status`](Self::status)), rather than with an invalid response.
    pub fn is_refusal(&self) -> bool {
        self.refusal
    }

    /// For a client refused by the server: the `Content-Length` of its answer, if it gave
    /// one (the body itself follows the head: `ClientHandshake::take_leftover`).
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    /// For a client refused with a redirect (a 3xx status): the answer's `Location`
    /// header as sent (absolute or relative, RFC 9110 §10.2.2), if it had one.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// What was wrong, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The HTTP response a server sends for this failure (`Connection: close`, the
    /// reason as a plain-text body; 426 adds `Sec-WebSocket-Version: 13`, 405 `Allow`).
    pub fn to_response(&self) -> Vec<u8> {
        let extra: &[(&str, &str)] = match self.status {
            426 => &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")],
            405 => &[("Allow", "GET")],
            _ => &[],
        };
        error_response(self.status, extra, &self.reason)
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handshake failed ({}): {}", self.status, self.reason)
    }
}

impl std::error::Error for HandshakeError {}

/// An HTTP/1.1 response with a plain-text body that closes the connection.
pub fn error_response(status: u16, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", status_text(status));
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}

/// The reason phrase of common statuses.
pub fn status_text(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Accumulates a head until its empty line, scanning only new bytes.
///
/// Lines end with CRLF or, as RFC 9112 §2.2 allows a recipient to accept (and `httparse`
/// does), a bare LF: a head typed into `nc` ends at `\n\n` rather than waiting for a
/// timeout.
#[derive(Debug, Default)]
struct HeadBuffer {
    buf: Vec<u8>,
    /// Where the search for the end resumes.
    scanned: usize,
}

impl HeadBuffer {
    /// Appends `data`; returns the head length once the end is found.
    ///
    /// Once the head was refused as too large, nothing more is buffered.
    fn feed(&mut self, data: &[u8], max: usize) -> Result<Option<usize>, HandshakeError> {
        if self.buf.len() > max {
            return Err(HandshakeError::new(431, "request head too large"));
        }
        self.buf.extend_from_slice(data);
        let from = self.scanned.saturating_sub(2);
        match head_end(&self.buf[from..]).map(|end| from + end) {
            Some(end) if end <= max => Ok(Some(end)),
            Some(_) => Err(HandshakeError::new(431, "request head too large")),
            None if self.buf.len() > max => {
                self.buf.truncate(max + 1);
                Err(HandshakeError::new(431, "request head too large"))
            }
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }
}

/// The length of the head in `bytes`: up to and including its empty line, an LF followed
/// by LF or CR LF (`\r\n\r\n`, `\n\n`, `\n\r\n`).
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().find_map(|(i, &b)| match (b, bytes.get(i + 1), bytes.get(i + 2)) {
        (b'\n', Some(b'\n'), _) => Some(i + 2),
        (b'\n', Some(b'\r'), Some(b'\n')) => Some(i + 3),
        _ => None,
    })
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The comma-separated items of a header value, trimmed.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
