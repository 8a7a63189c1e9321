//! Plain HTTP answers: to requests that are not upgrades, and to refused handshakes.

/// A plain HTTP response: the answer to a request that is not a WebSocket upgrade, or the
/// refusal of one (see [`ServerBuilder::authorize`](crate::ServerBuilder::authorize)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// More headers, such as `WWW-Authenticate` on a 401 or `Retry-After` on a 503
    /// (`Content-Type`, `Content-Length` and `Connection` are written from the fields
    /// above). A pair whose name is not a token or whose value holds a control character
    /// is left out, so a header cannot be split.
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    /// A 200 response with an HTML body.
    pub fn html(body: impl Into<String>) -> Self {
        HttpResponse {
            status: 200,
            content_type: "text/html; charset=utf-8".into(),
            body: body.into().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// A response with a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: body.into().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// A 200 response with `body` of the given `Content-Type`.
    pub fn bytes(content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status: 200,
            content_type: content_type.into(),
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    ///
    /// ```
    /// let refusal = zapsocket::HttpResponse::text(401, "log in first")
    ///     .with_header("WWW-Authenticate", "Bearer realm=\"chat\"");
    /// assert_eq!(refusal.headers.len(), 1);
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The extra headers that are safe to write (see [`HttpResponse::headers`]).
    pub(crate) fn valid_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).filter(|(n, v)| token(n) && field_value(v))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let content_type = if field_value(&self.content_type) {
            self.content_type.as_str()
        } else {
            "application/octet-stream"
        };
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            zapsocket_proto::handshake::status_text(self.status),
            content_type,
            self.body.len()
        );
        for (name, value) in self.valid_headers() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2).
fn token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// Whether `value` can be a field value: no control characters but tab (so no CR or LF).
fn field_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || !b.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_headers_are_written_and_unsafe_ones_left_out() {
        let response = HttpResponse::text(401, "no")
            .with_header("WWW-Authenticate", "Basic realm=\"x\"")
            .with_header("X-Split", "a\r\nSet-Cookie: evil=1")
            .with_header("Bad Name", "v");
        let text = String::from_utf8(response.encode()).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("\r\nWWW-Authenticate: Basic realm=\"x\"\r\n"), "{text}");
        assert!(!text.contains("evil") && !text.contains("Bad Name"), "{text}");
        assert!(text.ends_with("\r\n\r\nno"), "{text}");
    }
}
