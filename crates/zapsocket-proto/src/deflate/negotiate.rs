//! Negotiation (RFC 7692 §5, §7.1): parse `Sec-WebSocket-Extensions`, accept an offer (server),
//! make an offer and check the answer (client).

use super::{DeflateConfig, DeflateParams, EXTENSION_NAME};
use crate::handshake::Request;

/// One element of an extension list: a name and its parameters (RFC 6455 §9.1).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Extension {
    pub(crate) name: String,
    pub(crate) params: Vec<(String, Option<String>)>,
}

/// Parses a `Sec-WebSocket-Extensions` value:
/// `extension *( "," extension )`, `extension = token *( ";" token [ "=" (token / quoted-string) ] )`.
/// Empty list elements are skipped (RFC 7230 §7). A quoted value is unquoted.
pub(crate) fn parse_extensions(value: &[u8]) -> Result<Vec<Extension>, &'static str> {
    let mut cursor = Cursor { bytes: value, pos: 0 };
    let mut list = Vec::new();
    loop {
        cursor.skip_space();
        if cursor.eat(b',') {
            continue;
        }
        if cursor.at_end() {
            return Ok(list);
        }
        list.push(cursor.extension()?);
        cursor.skip_space();
        if !cursor.at_end() && !cursor.eat(b',') {
            return Err("expected ',' between extensions");
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.pos += usize::from(hit);
        hit
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<String, &'static str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err("expected a token");
        }
        Ok(String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, &'static str> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out).map_err(|_| "quoted string is not UTF-8");
                }
                Some(b'\\') => {
                    let escaped = self.bytes.get(self.pos + 1).ok_or("unterminated quoted string")?;
                    out.push(*escaped);
                    self.pos += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn extension(&mut self) -> Result<Extension, &'static str> {
        let name = self.token()?;
        let mut params = Vec::new();
        loop {
            self.skip_space();
            if !self.eat(b';') {
                return Ok(Extension { name, params });
            }
            self.skip_space();
            let param = self.token()?;
            self.skip_space();
            let value = if self.eat(b'=') {
                self.skip_space();
                // RFC 6455 §9.1: a quoted value must still be a token once unquoted.
                let value = if self.eat(b'"') { self.quoted()? } else { self.token()? };
                if value.is_empty() || !value.bytes().all(is_tchar) {
                    return Err("parameter value is not a token");
                }
                Some(value)
            } else {
                None
            };
            params.push((param, value));
        }
    }
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A permessage-deflate offer or answer, its parameters checked for syntax (RFC 7692 §7).
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

impl Params {
    /// Checks the parameters: no unknown or repeated ones, window bits 8 to 15 written
    /// without leading zeros, flags without a value.
    fn parse(ext: &Extension) -> Result<Params, &'static str> {
        let mut p = Params::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in &ext.params {
            if seen.contains(&name.as_str()) {
                return Err("repeated parameter");
            }
            seen.push(name);
            match (name.as_str(), value.as_deref()) {
                ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => p.server_max_window_bits = Some(window_bits(v)?),
                ("client_max_window_bits", None) => p.client_max_window_bits = Some(None),
                ("client_max_window_bits", Some(v)) => p.client_max_window_bits = Some(Some(window_bits(v)?)),
                ("server_no_context_takeover" | "client_no_context_takeover", Some(_)) => {
                    return Err("context takeover parameters take no value");
                }
                ("server_max_window_bits", None) => return Err("server_max_window_bits needs a value"),
                _ => return Err("unknown parameter"),
            }
        }
        Ok(p)
    }
}

/// `8` to `15`, as written by RFC 7692 §7.1.2 (`%x38-39 / "1" %x30-35`).
fn window_bits(value: &str) -> Result<u8, &'static str> {
    match value {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => value.parse().map_err(|_| "bad window bits"),
        _ => Err("window bits must be 8 to 15"),
    }
}

fn is_deflate(ext: &Extension) -> bool {
    ext.name.eq_ignore_ascii_case(EXTENSION_NAME)
}

impl DeflateConfig {
    /// Server: the answer to a request's offers, or `None` to decline (the 101 then has no
    /// `Sec-WebSocket-Extensions`). Offers are tried in the order sent, across every
    /// `Sec-WebSocket-Extensions` header; the first acceptable one wins. An offer with an
    /// unknown, repeated or invalid parameter is declined (RFC 7692 §5); a malformed header
    /// line is skipped. `context_takeover_allowed` false forces `server_no_context_takeover`
    /// (see [`DeflateConfig::max_context_takeover_connections`]).
    ///
    /// When the client limits the server's window to 8 bits, which zlib cannot compress
    /// with, the offer is still accepted: the server then sends every message uncompressed
    /// and inflates what the client sends.
    pub fn accept(&self, request: &Request, context_takeover_allowed: bool) -> Option<DeflateParams> {
        self.accept_values(request.header_all("sec-websocket-extensions"), context_takeover_allowed)
    }

    pub(crate) fn accept_values<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
        context_takeover_allowed: bool,
    ) -> Option<DeflateParams> {
        values.into_iter().filter_map(|v| parse_extensions(v).ok()).flatten().filter(is_deflate).find_map(
            |ext| Params::parse(&ext).ok().map(|offer| self.answer(&offer, context_takeover_allowed)),
        )
    }

    /// The answer to one valid offer.
    fn answer(&self, offer: &Params, context_takeover_allowed: bool) -> DeflateParams {
        let server_bits = offer.server_max_window_bits.unwrap_or(15).min(self.server_max_window_bits);
        let client_bits = match offer.client_max_window_bits {
            // The offer allows a limit: ask for ours if it is lower than the client's own.
            Some(offered) => Some(offered.unwrap_or(15).min(self.client_max_window_bits)).filter(|&b| b < 15),
            // Without the parameter in the offer, the answer must not have it (§7.1.2.2).
            None => None,
        };
        DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover
                || self.server_no_context_takeover
                || !context_takeover_allowed,
            client_no_context_takeover: offer.client_no_context_takeover || self.client_no_context_takeover,
            server_max_window_bits: (offer.server_max_window_bits.is_some() || server_bits < 15)
                .then_some(server_bits),
            client_max_window_bits: client_bits,
        }
    }

    /// Client: the offer to send as `Sec-WebSocket-Extensions`. It always has
    /// `client_max_window_bits`, so that the server may lower the client's window.
    ///
    /// ```
    /// use zapsocket_proto::deflate::DeflateConfig;
    ///
    /// assert_eq!(DeflateConfig::default().offer(), "permessage-deflate; client_max_window_bits");
    /// ```
    pub fn offer(&self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            out.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        out.push_str("; client_max_window_bits");
        if self.client_max_window_bits < 15 {
            out.push_str(&format!("={}", self.client_max_window_bits));
        }
        out
    }

    /// Client: checks the server's answer to [`DeflateConfig::offer`] (every
    /// `Sec-WebSocket-Extensions` value of the 101). `Ok(None)`: the server declined.
    /// `Err`: the answer is invalid and the client must fail the connection (RFC 7692 §5):
    /// another extension, permessage-deflate twice, a parameter that is unknown, repeated,
    /// malformed, not allowed in an answer, or looser than what was asked.
    pub fn check_response<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<DeflateParams>, String> {
        let mut agreed = None;
        for value in values {
            for ext in
                parse_extensions(value).map_err(|e| format!("malformed Sec-WebSocket-Extensions: {e}"))?
            {
                if !is_deflate(&ext) {
                    return Err(format!("server answered extension {:?}, which was not offered", ext.name));
                }
                if agreed.is_some() {
                    return Err("server answered permessage-deflate twice".into());
                }
                let answer =
                    Params::parse(&ext).map_err(|e| format!("invalid permessage-deflate answer: {e}"))?;
                agreed = Some(self.check_answer(&answer)?);
            }
        }
        Ok(agreed)
    }

    fn check_answer(&self, answer: &Params) -> Result<DeflateParams, String> {
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err("server did not accept server_no_context_takeover".into());
        }
        let asked_server = (self.server_max_window_bits < 15).then_some(self.server_max_window_bits);
        if let Some(asked) = asked_server {
            match answer.server_max_window_bits {
                Some(bits) if bits <= asked => {}
                _ => return Err(format!("server_max_window_bits above the {asked} asked for")),
            }
        }
        let client_bits = match answer.client_max_window_bits {
            Some(None) => return Err("client_max_window_bits without a value in an answer".into()),
            Some(Some(bits)) if bits > self.client_max_window_bits => {
                return Err(format!(
                    "client_max_window_bits above the {} offered",
                    self.client_max_window_bits
                ));
            }
            Some(Some(bits)) => Some(bits),
            None => (self.client_max_window_bits < 15).then_some(self.client_max_window_bits),
        };
        Ok(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            // Offered: the client keeps its word even if the answer leaves it out.
            client_no_context_takeover: answer.client_no_context_takeover || self.client_no_context_takeover,
            server_max_window_bits: answer.server_max_window_bits,
            client_max_window_bits: client_bits,
        })
    }
}
