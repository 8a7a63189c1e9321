//! Following a server's redirect of the upgrade request
//! ([`ClientBuilder::follow_redirects`](crate::ClientBuilder::follow_redirects), off by
//! default as in Node's `ws`): which answers are followed, where the next request goes,
//! and which headers it keeps.

use url::Url;
use zapsocket_proto::handshake::HandshakeError;

/// Where a server's refusal redirects to, if it is a redirect that is followed: 301,
/// 302, 303, 307 or 308 (RFC 9110 §15.4: those that name one other URL; not 300
/// Multiple Choices, 304 Not Modified or the unused 305 and 306) with a `Location`.
pub(crate) fn location(refusal: &HandshakeError) -> Option<&str> {
    let followed = matches!(refusal.status(), 301 | 302 | 303 | 307 | 308);
    refusal.location().filter(|_| followed && refusal.is_refusal())
}

/// Where a redirect from `current` to `location` goes: `location` resolved against
/// `current` when relative (RFC 9110 §10.2.2), `http` as `ws` and `https` as `wss`,
/// without a fragment. `Err` says why it cannot be followed.
pub(crate) fn next_url(current: &Url, location: &str) -> Result<Url, String> {
    let shown: String = location.chars().filter(|c| !c.is_control()).take(200).collect();
    let mut next =
        current.join(location).map_err(|e| format!("cannot follow the redirect to {shown:?}: {e}"))?;
    let scheme = match next.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(format!(
                "cannot follow the redirect to {shown:?}: {other}: is not ws, wss, http or https"
            ));
        }
    };
    next.set_scheme(scheme).map_err(|()| format!("cannot follow the redirect to {shown:?}"))?;
    next.set_fragment(None);
    Ok(next)
}

/// Whether `a` and `b` (both `ws` or `wss`) have the same origin: scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The request headers not sent to another origin: they carry the user's credentials
/// for the first one (as curl, `ws` and browsers do).
pub(crate) fn is_credential(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use zapsocket_proto::handshake::ClientHandshake;

    use super::*;

    fn next(current: &str, location: &str) -> Result<String, String> {
        next_url(&Url::parse(current).unwrap(), location).map(String::from)
    }

    #[test]
    fn http_becomes_ws_and_https_wss() {
        assert_eq!(next("ws://a/x", "http://b/y").unwrap(), "ws://b/y");
        assert_eq!(next("ws://a/x", "https://b:8443/y?q=1").unwrap(), "wss://b:8443/y?q=1");
        assert_eq!(next("wss://a/x", "ws://b:80/").unwrap(), "ws://b/");
        assert_eq!(next("ws://a/x", "https://b:443/").unwrap(), "wss://b/");
        assert_eq!(next("ws://a/x", "http://b:443/").unwrap(), "ws://b:443/");
    }

    #[test]
    fn a_relative_location_is_resolved_against_the_request() {
        assert_eq!(next("ws://a:8080/chat/room?x=1", "/other").unwrap(), "ws://a:8080/other");
        assert_eq!(next("ws://a:8080/chat/room", "lobby?y=2").unwrap(), "ws://a:8080/chat/lobby?y=2");
        assert_eq!(next("wss://a/chat", "//b:9000/z").unwrap(), "wss://b:9000/z");
        assert_eq!(next("ws://a/chat", "/z#top").unwrap(), "ws://a/z");
    }

    #[test]
    fn other_schemes_are_not_followed() {
        for location in ["ftp://b/", "mailto:ada@example.com", "file:///etc/passwd", "http://"] {
            assert!(next("ws://a/", location).is_err(), "{location}");
        }
    }

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        let origin = |a: &str, b: &str| same_origin(&Url::parse(a).unwrap(), &Url::parse(b).unwrap());
        assert!(origin("ws://a/x", "ws://a:80/y"));
        assert!(origin("ws://A.example/x", "ws://a.example/y"));
        assert!(!origin("ws://a/", "wss://a/"));
        assert!(!origin("wss://a/", "ws://a:443/"));
        assert!(!origin("ws://a/", "ws://a:8080/"));
        assert!(!origin("ws://a/", "ws://b/"));
    }

    /// The `Location` of a server's answer with `status`, if it is a redirect followed.
    fn followed(status: u16) -> Option<String> {
        let mut handshake = ClientHandshake::new("h", "/", &[], &[]);
        let answer = format!("HTTP/1.1 {status} X\r\nLocation: /next\r\n\r\n");
        location(&handshake.feed(answer.as_bytes()).unwrap_err()).map(str::to_owned)
    }

    #[test]
    fn the_followed_statuses() {
        let followed: Vec<u16> = (200..600).filter(|&s| followed(s).is_some()).collect();
        assert_eq!(followed, [301, 302, 303, 307, 308]);
        assert_eq!(self::followed(307).as_deref(), Some("/next"));
        assert!(is_credential("Authorization") && is_credential("cookie"));
        assert!(!is_credential("Origin") && !is_credential("Proxy-Authorization"));
    }
}
