//! HTTP proxies for the client: which proxy a connection goes through (the URL given to
//! [`ClientBuilder::proxy`](crate::ClientBuilder::proxy), or the one the environment names),
//! and the tunnel a proxy opens with `CONNECT` (RFC 9110 §9.3.6).
//!
//! The rules are pure functions of their inputs, tested without a socket or the process
//! environment ([`from_environment`] takes the variables as a function); [`tunnel`] is the
//! only I/O.

use std::fmt;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::IpNet;
use crate::error::{Error, Kind, Result};

/// The largest answer head (status line and headers) read from a proxy. An answer to
/// `CONNECT` is a few hundred bytes; the limit stops a proxy that sends headers without
/// end from growing the client's memory. Past it the connection fails.
pub(crate) const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Which proxy a client's connections go through.
#[derive(Clone, Debug, Default)]
pub(crate) enum ProxyChoice {
    /// The one the environment names for each connection, read as it opens (the default).
    #[default]
    Environment,
    /// None: every connection is direct.
    Direct,
    /// This one for every connection, or why its URL was refused.
    Url(Result<Proxy>),
}

impl ProxyChoice {
    /// From a URL given to `ClientBuilder::proxy`.
    pub(crate) fn url(url: &str) -> ProxyChoice {
        ProxyChoice::Url(Proxy::parse(url).map_err(|why| Error::invalid(format!("proxy URL: {why}"))))
    }

    /// The proxy for a connection to `host:port` (`secure`: `wss://`), or `None` for a
    /// direct one. The environment is read at each call, not cached.
    pub(crate) fn resolve(&self, secure: bool, host: &str, port: u16) -> Result<Option<Proxy>> {
        match self {
            ProxyChoice::Direct => Ok(None),
            ProxyChoice::Url(proxy) => proxy.clone().map(Some),
            ProxyChoice::Environment => {
                let var = |name: &str| std::env::var(name).ok();
                let Some((name, value)) = from_environment(&var, secure, host, port) else { return Ok(None) };
                Proxy::parse(&value).map(Some).map_err(|why| Error::invalid(format!("{name}: {why}")))
            }
        }
    }
}

/// An HTTP proxy: where it listens and the credentials it is sent. Its `Debug` hides
/// the credentials.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// As in a URL: an IPv6 address in brackets.
    host: String,
    port: u16,
    /// The value of `Proxy-Authorization`: `Basic` and `user:password` in base64.
    authorization: Option<String>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authorization", &self.authorization.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Proxy {
    /// From `http://[user:password@]host[:port]`, or `host:port` without a scheme (taken
    /// as `http://`, as curl and reqwest do). The port defaults to 80; the user and
    /// password are percent-decoded. `Err` says why the URL is refused, without the
    /// credentials.
    pub(crate) fn parse(text: &str) -> std::result::Result<Proxy, String> {
        let text = text.trim();
        let text = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
        let url = url::Url::parse(&text).map_err(|e| format!("not a URL: {e}"))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err("https:// proxies (TLS to the proxy) are not supported: give the proxy's \
                            http:// address (wss:// stays encrypted end to end through the tunnel)"
                    .into());
            }
            other => return Err(format!("unsupported scheme {other:?}: only http:// proxies are supported")),
        }
        let host = url.host_str().ok_or("no host")?.to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let mut credentials = percent_decode(url.username());
            credentials.push(b':');
            credentials.extend(percent_decode(url.password().unwrap_or_default()));
            format!("Basic {}", STANDARD.encode(credentials))
        });
        Ok(Proxy { host, port, authorization })
    }
}

/// The proxy the environment names for a connection to `host:port` (`secure`: `wss://`),
/// as `(variable, value)`; `var` reads a variable (the process environment in use, a
/// map in tests). The variables, as curl and reqwest read them:
///
/// - `http_proxy`, then `HTTP_PROXY`, for `ws://`; `https_proxy`, then `HTTPS_PROXY`,
///   for `wss://`; else `all_proxy`, then `ALL_PROXY`, for both. The lower-case name is
///   read first, as curl does. `HTTP_PROXY` is skipped when `REQUEST_METHOD` is set (a
///   CGI program, where a request's `Proxy:` header arrives as `HTTP_PROXY`: "httpoxy"),
///   as reqwest does; curl never reads the upper-case `HTTP_PROXY`. No header can set the
///   lower-case names, `HTTPS_PROXY` or `ALL_PROXY`.
/// - `no_proxy`, then `NO_PROXY`: hosts that go direct ([`no_proxy_matches`]).
/// - An empty variable counts as unset.
///
/// `localhost`, its subdomains and loopback addresses always go direct, as in Go's
/// `net/http`: a proxy would reach its own loopback, not ours.
pub(crate) fn from_environment(
    var: &dyn Fn(&str) -> Option<String>,
    secure: bool,
    host: &str,
    port: u16,
) -> Option<(&'static str, String)> {
    let read = |name: &'static str| var(name).filter(|value| !value.trim().is_empty()).map(|v| (name, v));
    if is_loopback(host) {
        return None;
    }
    if let Some((_, list)) = read("no_proxy").or_else(|| read("NO_PROXY"))
        && no_proxy_matches(&list, host, port)
    {
        return None;
    }
    let cgi = var("REQUEST_METHOD").is_some();
    let names: &[&'static str] = match (secure, cgi) {
        (true, _) => &["https_proxy", "HTTPS_PROXY"],
        (false, false) => &["http_proxy", "HTTP_PROXY"],
        (false, true) => &["http_proxy"],
    };
    names.iter().chain(&["all_proxy", "ALL_PROXY"]).find_map(|name| read(name))
}

/// Whether `NO_PROXY`'s `list` sends `host:port` direct. Entries are separated by commas
/// (or spaces), case-insensitive:
///
/// - `*`: every host;
/// - `example.com`: that host and its subdomains (`a.example.com`); `.example.com` and
///   `*.example.com` the same (curl and reqwest match the domain itself too);
/// - an IP address (`10.1.2.3`, `::1`, `[::1]`) or a network (`10.0.0.0/8`, `fd00::/8`):
///   a host given as an address in it (names are not resolved);
/// - any of these with `:PORT` (`example.com:8080`, `[::1]:8080`): only for that port.
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = normalize(host);
    let ip = host.parse::<IpAddr>().ok();
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| entry_matches(entry, &host, ip, port))
}

fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    if let Ok(net) = entry.parse::<IpNet>() {
        return ip.is_some_and(|ip| net.contains(ip));
    }
    let (name, entry_port) = split_port(entry);
    if entry_port.is_some_and(|p| p.parse::<u16>() != Ok(port)) {
        return false;
    }
    let name = name.strip_prefix('*').unwrap_or(name);
    let name = normalize(name.strip_prefix('.').unwrap_or(name));
    if let Ok(addr) = name.parse::<IpAddr>() {
        return ip.is_some_and(|ip| IpNet::from(addr).contains(ip));
    }
    !name.is_empty() && (host == name || host.strip_suffix(&name).is_some_and(|rest| rest.ends_with('.')))
}

/// `host:port` apart, `[v6]:port` too; without a port, the entry and `None`.
fn split_port(entry: &str) -> (&str, Option<&str>) {
    if let Some((addr, rest)) = entry.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        return match rest {
            "" => (addr, None),
            _ => rest.strip_prefix(':').map_or((entry, None), |port| (addr, Some(port))),
        };
    }
    match entry.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (entry, None),
    }
}

/// A host as compared: lower-case, without brackets or a trailing dot.
fn normalize(host: &str) -> String {
    host.trim_matches(['[', ']']).trim_end_matches('.').to_ascii_lowercase()
}

/// `localhost`, `*.localhost` (RFC 6761 §6.3) and loopback addresses (IPv4-mapped too).
fn is_loopback(host: &str) -> bool {
    let host = normalize(host);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

/// `%XX` escapes decoded; anything else (a lone `%` too) kept as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Opens a tunnel to `authority` (`host:port`) through `proxy`: connects, sends
/// `CONNECT`, and reads the answer up to its end and no further, so the stream returned
/// carries the target's bytes from the first. Any status but 2xx fails with it.
pub(crate) async fn tunnel(proxy: &Proxy, authority: &str) -> Result<TcpStream> {
    let about = |e: std::io::Error| Error::io_about(&e, format!("proxy {}:{}", proxy.host, proxy.port));
    let mut stream =
        TcpStream::connect((proxy.host.trim_matches(['[', ']']), proxy.port)).await.map_err(about)?;
    let _ = stream.set_nodelay(true);
    let request = connect_request(authority, proxy.authorization.as_deref());
    stream.write_all(&request).await.map_err(about)?;
    let head = read_head(&mut stream, authority).await?;
    check_response(&head, authority)?;
    Ok(stream)
}

/// The `CONNECT` request for `authority`, which is also its `Host` (RFC 9110 §9.3.6,
/// §7.2), with `Proxy-Authorization` when there are credentials.
fn connect_request(authority: &str, authorization: Option<&str>) -> Vec<u8> {
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Proxy-Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Reads the proxy's answer head, up to [`MAX_RESPONSE_HEAD`] bytes: what has arrived is
/// peeked at, and only the bytes up to the head's end are taken from the socket.
async fn read_head(stream: &mut TcpStream, authority: &str) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            let why = format!("proxy closed the connection without answering CONNECT {authority}");
            return Err(Error::new(Kind::Proxy(None, why)));
        }
        let end = head_end(&head, &buf[..n]);
        let start = head.len();
        head.resize(start + end.unwrap_or(n), 0);
        stream.read_exact(&mut head[start..]).await?;
        if head.len() > MAX_RESPONSE_HEAD {
            let why = format!("proxy's answer to CONNECT {authority} is over {MAX_RESPONSE_HEAD} bytes");
            return Err(Error::new(Kind::Proxy(None, why)));
        }
        if end.is_some() {
            return Ok(head);
        }
    }
}

/// How many bytes of `new` complete a head that starts with `head`: up to its empty
/// line, an LF followed by LF or CR LF (as the handshake reads heads); `None` if it does
/// not end within `new`.
fn head_end(head: &[u8], new: &[u8]) -> Option<usize> {
    let mut before = [head.len().checked_sub(2).map(|i| head[i]), head.last().copied()];
    for (i, &byte) in new.iter().enumerate() {
        if byte == b'\n' && matches!(before, [_, Some(b'\n')] | [Some(b'\n'), Some(b'\r')]) {
            return Some(i + 1);
        }
        before = [before[1], Some(byte)];
    }
    None
}

/// Whether the proxy's answer `head` opened the tunnel: a 2xx status (RFC 9110 §9.3.6).
/// Otherwise the error has the status and its reason phrase.
fn check_response(head: &[u8], authority: &str) -> Result<()> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let (version, code, reason) = (parts.next(), parts.next(), parts.next().unwrap_or_default());
    let status = code.filter(|c| c.len() == 3).and_then(|c| c.parse::<u16>().ok());
    let status = match (version, status) {
        (Some(version), Some(status)) if version.starts_with("HTTP/1.") && status >= 100 => status,
        _ => {
            let shown: String = printable(line, 60);
            let why = format!("proxy answered CONNECT {authority} with what is not HTTP: {shown:?}");
            return Err(Error::new(Kind::Proxy(None, why)));
        }
    };
    if (200..300).contains(&status) {
        return Ok(());
    }
    let why = format!("proxy refused CONNECT {authority}: {status} {}", printable(reason, 100));
    Err(Error::new(Kind::Proxy(Some(status), why.trim_end().to_owned())))
}

/// The first `max` characters of `text` that are not control characters.
fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    /// The proxy variable `vars` name for `host:port`, as `(variable, value)`.
    fn env(vars: &[(&str, &str)], secure: bool, host: &str, port: u16) -> Option<(&'static str, String)> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        from_environment(&|name: &str| vars.get(name).cloned(), secure, host, port)
    }

    fn proxy_name(vars: &[(&str, &str)], secure: bool) -> Option<&'static str> {
        env(vars, secure, "example.com", if secure { 443 } else { 80 }).map(|(name, _)| name)
    }

    #[test]
    fn http_proxy_is_for_ws_and_https_proxy_for_wss_all_proxy_for_both() {
        let vars = [("HTTP_PROXY", "h:1"), ("HTTPS_PROXY", "s:2"), ("ALL_PROXY", "a:3")];
        assert_eq!(env(&vars, false, "example.com", 80), Some(("HTTP_PROXY", "h:1".into())));
        assert_eq!(env(&vars, true, "example.com", 443), Some(("HTTPS_PROXY", "s:2".into())));
        assert_eq!(proxy_name(&[("HTTP_PROXY", "h:1")], true), None, "HTTP_PROXY is not for wss://");
        assert_eq!(proxy_name(&[("HTTPS_PROXY", "s:2")], false), None, "HTTPS_PROXY is not for ws://");
        assert_eq!(proxy_name(&[("ALL_PROXY", "a:3")], false), Some("ALL_PROXY"));
        assert_eq!(proxy_name(&[("ALL_PROXY", "a:3")], true), Some("ALL_PROXY"));
        assert_eq!(proxy_name(&[], false), None);
    }

    #[test]
    fn lower_case_names_come_first_and_empty_values_count_as_unset() {
        let both =
            [("http_proxy", "l:1"), ("HTTP_PROXY", "u:1"), ("https_proxy", "l:2"), ("HTTPS_PROXY", "u:2")];
        assert_eq!(proxy_name(&both, false), Some("http_proxy"));
        assert_eq!(proxy_name(&both, true), Some("https_proxy"));
        let all = [("all_proxy", "l:3"), ("ALL_PROXY", "u:3")];
        assert_eq!(proxy_name(&all, false), Some("all_proxy"));
        assert_eq!(proxy_name(&[("http_proxy", ""), ("HTTP_PROXY", "u:1")], false), Some("HTTP_PROXY"));
        assert_eq!(proxy_name(&[("https_proxy", " "), ("all_proxy", "a:3")], true), Some("all_proxy"));
    }

    #[test]
    fn the_scheme_specific_variable_wins_over_all_proxy() {
        let vars = [("all_proxy", "a:3"), ("HTTPS_PROXY", "s:2")];
        assert_eq!(proxy_name(&vars, true), Some("HTTPS_PROXY"));
        assert_eq!(proxy_name(&vars, false), Some("all_proxy"));
    }

    /// httpoxy: in a CGI program, a request's `Proxy:` header arrives as `HTTP_PROXY`.
    #[test]
    fn upper_case_http_proxy_is_ignored_under_cgi() {
        let cgi = [("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "evil:1")];
        assert_eq!(proxy_name(&cgi, false), None);
        let cgi = [("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "evil:1"), ("http_proxy", "ok:1")];
        assert_eq!(proxy_name(&cgi, false), Some("http_proxy"));
        let cgi = [("REQUEST_METHOD", "GET"), ("HTTPS_PROXY", "s:2")];
        assert_eq!(proxy_name(&cgi, true), Some("HTTPS_PROXY"));
    }

    #[test]
    fn no_proxy_sends_matching_hosts_direct() {
        let vars = |list: &'static str| [("ALL_PROXY", "p:1"), ("NO_PROXY", list)];
        let direct = |list, host: &str, port| env(&vars(list), false, host, port).is_none();
        assert!(direct("example.com", "example.com", 80));
        assert!(direct("example.com", "a.b.example.com", 80));
        assert!(!direct("example.com", "notexample.com", 80), "a suffix, not a domain");
        assert!(!direct("example.com", "example.org", 80));
        assert!(direct(".example.com", "a.example.com", 80));
        assert!(direct(".example.com", "example.com", 80), "as curl and reqwest");
        assert!(direct("*.example.com", "a.example.com", 80));
        assert!(direct("other.org, EXAMPLE.com.", "Example.COM", 80), "case and trailing dots");
        assert!(direct("*", "anything.example", 80));
        assert!(direct("a.org,*", "anything.example", 80));
        assert!(!direct("", "example.com", 80));
        assert!(direct("other.org example.com", "example.com", 80), "spaces separate too");
    }

    #[test]
    fn no_proxy_takes_ports_addresses_and_networks() {
        let direct = |list: &str, host: &str, port| no_proxy_matches(list, host, port);
        assert!(direct("example.com:8080", "example.com", 8080));
        assert!(!direct("example.com:8080", "example.com", 80));
        assert!(!direct("example.com:http", "example.com", 80), "a port that is not a number");
        assert!(direct("10.1.2.3", "10.1.2.3", 80));
        assert!(!direct("10.1.2.3", "10.1.2.4", 80));
        assert!(direct("10.1.2.3:8080", "10.1.2.3", 8080));
        assert!(!direct("10.1.2.3:8080", "10.1.2.3", 80));
        assert!(direct("10.0.0.0/8", "10.200.0.1", 443));
        assert!(!direct("10.0.0.0/8", "11.0.0.1", 443));
        assert!(direct("fd00::/8", "[fd12::1]", 443));
        assert!(direct("::2", "[::2]", 80));
        assert!(direct("[::2]", "[::2]", 80));
        assert!(direct("[::2]:8080", "[::2]", 8080));
        assert!(!direct("[::2]:8080", "[::2]", 80));
        assert!(!direct("10.0.0.0/8", "ten.example", 80), "names are not resolved");
        assert!(!direct("1.2.3.4", "a.1.2.3.4", 80));
    }

    #[test]
    fn loopback_always_goes_direct() {
        let vars = [("ALL_PROXY", "p:1")];
        for host in [
            "localhost",
            "LOCALHOST.",
            "a.localhost",
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "[::ffff:127.0.0.1]",
        ] {
            assert_eq!(env(&vars, false, host, 80), None, "{host}");
        }
        assert!(env(&vars, false, "localhost.example", 80).is_some());
        assert!(env(&vars, false, "10.0.0.1", 80).is_some());
    }

    #[test]
    fn a_proxy_url_with_credentials_is_percent_decoded_into_basic() {
        let proxy = Proxy::parse("http://ada%40home:p%3Ass%20w@proxy.example:3128/").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("proxy.example", 3128));
        let expected = format!("Basic {}", STANDARD.encode("ada@home:p:ss w"));
        assert_eq!(proxy.authorization, Some(expected));
        assert_eq!(
            Proxy::parse("http://ada@p").unwrap().authorization,
            Some(format!("Basic {}", STANDARD.encode("ada:")))
        );
        assert_eq!(Proxy::parse("http://p").unwrap().authorization, None);
        let debug = format!("{proxy:?}");
        assert!(
            !debug.contains(&STANDARD.encode("ada@home:p:ss w")) && debug.contains("<hidden>"),
            "{debug}"
        );
    }

    #[test]
    fn a_proxy_url_without_scheme_or_port_is_http_on_80() {
        let proxy = Proxy::parse("proxy.example:3128").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("proxy.example", 3128));
        assert_eq!(Proxy::parse("http://proxy.example").unwrap().port, 80);
        assert_eq!(Proxy::parse(" http://[::1]:8080 ").unwrap().host, "[::1]");
    }

    #[test]
    fn https_socks_and_broken_proxy_urls_are_refused_with_a_reason() {
        assert!(Proxy::parse("https://proxy.example").unwrap_err().contains("not supported"));
        assert!(Proxy::parse("socks5://proxy.example").unwrap_err().contains("\"socks5\""));
        assert!(Proxy::parse("http://").is_err());
        let why = Proxy::parse("http://ada:secret@[::1").unwrap_err();
        assert!(!why.contains("secret"), "{why}");
        let error = ProxyChoice::url("socks5://p:1").resolve(false, "example.com", 80).unwrap_err();
        assert!(error.is_invalid() && error.to_string().contains("proxy URL"), "{error}");
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b%zz%4"), b"a b%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é".as_bytes());
    }

    #[test]
    fn the_connect_request_names_the_target_twice() {
        let request = connect_request("example.com:443", Some("Basic YTpi"));
        assert_eq!(
            request,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic YTpi\r\n\r\n"
        );
        assert_eq!(connect_request("[::1]:80", None), b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
    }

    #[test]
    fn the_head_ends_at_its_empty_line_across_reads() {
        assert_eq!(head_end(b"", b"HTTP/1.1 200 OK\r\n\r\nrest"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n", b"\r\nrest"), Some(2));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r", b"\nrest"), Some(1));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n", b"\n"), Some(1));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r", b"\nX: y\r\n"), None);
        assert_eq!(head_end(b"", b""), None);
    }

    #[test]
    fn only_a_2xx_opens_the_tunnel_and_a_refusal_keeps_status_and_reason() {
        assert!(check_response(b"HTTP/1.1 200 Connection established\r\n\r\n", "e:443").is_ok());
        assert!(check_response(b"HTTP/1.0 204\r\n\r\n", "e:443").is_ok());
        let error =
            check_response(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "e:443").unwrap_err();
        assert!(error.is_proxy() && !error.is_handshake());
        assert_eq!(error.status(), Some(407));
        assert_eq!(error.to_string(), "proxy refused CONNECT e:443: 407 Proxy Authentication Required");
        let error = check_response(b"HTTP/1.1 403\r\n\r\n", "e:443").unwrap_err();
        assert_eq!(error.to_string(), "proxy refused CONNECT e:443: 403");
        for garbage in
            [&b"SSH-2.0-OpenSSH\r\n\r\n"[..], b"HTTP/1.1 2000 OK\r\n\r\n", b"\r\n\r\n", b"HTTP/2 200\r\n\r\n"]
        {
            let error = check_response(garbage, "e:443").unwrap_err();
            assert!(error.is_proxy() && error.status().is_none(), "{error}");
        }
    }

    /// What the target sends right after the proxy's answer, in the same segment,
    /// is the start of the tunnel's stream, not lost with the answer's head.
    #[tokio::test]
    async fn bytes_after_the_answer_stay_in_the_tunnel() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let _ = stream.read(&mut request).await.unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\nVia: test\r\n\r\nfirst bytes").await.unwrap();
            let _ = stream.read(&mut request).await;
        });
        let proxy = Proxy::parse(&format!("http://{addr}")).unwrap();
        let mut stream = tunnel(&proxy, "example.com:80").await.unwrap();
        let mut first = [0u8; 11];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"first bytes");
    }

    #[tokio::test]
    async fn an_endless_answer_head_is_cut_at_the_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            while stream.write_all(b"X-Padding: yes\r\n").await.is_ok() {}
        });
        let proxy = Proxy::parse(&format!("http://{addr}")).unwrap();
        let error = tunnel(&proxy, "example.com:80").await.unwrap_err();
        assert!(error.is_proxy() && error.to_string().contains("over 16384 bytes"), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_proxy_is_an_io_error_that_names_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let proxy = Proxy::parse(&format!("http://{addr}")).unwrap();
        let error = tunnel(&proxy, "example.com:80").await.unwrap_err();
        assert!(error.is_io() && error.to_string().contains(&format!("proxy {addr}")), "{error}");
    }
}
