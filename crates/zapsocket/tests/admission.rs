//! Who gets in, through real sockets: the `authorize` hook (refusals with its own
//! status and body, data attached for handlers), the origin allow-list, subprotocol
//! choice, extra 101 headers and the connection caps.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::Duration;

use zapsocket::{Accept, Client, HttpResponse, Server, WebSocket};

use common::{RawPeer, upgrade_request, url};

#[derive(Debug, PartialEq)]
struct UserId(String);

/// A server whose handler sends back the attached user id, then echoes.
async fn whoami_server(builder: zapsocket::ServerBuilder) -> std::net::SocketAddr {
    let server = builder.bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        let user = ws.data::<UserId>().map_or("nobody".to_owned(), |u| u.0.clone());
        let _ = ws.send(user).await;
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    }));
    addr
}

fn token_hook(builder: zapsocket::ServerBuilder) -> zapsocket::ServerBuilder {
    builder.authorize(|request| async move {
        // An async lookup, as a real session store would do.
        tokio::time::sleep(Duration::from_millis(5)).await;
        match request.query_param("access_token").as_deref() {
            Some("good") => Ok(Accept::new().data(UserId("ada".into())).header("X-User", "ada")),
            Some(_) => Err(HttpResponse::text(403, "token revoked")),
            None => Err(HttpResponse::text(401, "access_token required")
                .with_header("WWW-Authenticate", "Bearer realm=\"chat\"")),
        }
    })
}

#[tokio::test]
async fn a_refused_token_gets_the_hooks_status_and_body_and_no_upgrade() {
    let addr = whoami_server(token_hook(Server::builder())).await;
    let (mut peer, head) = RawPeer::request(addr, upgrade_request("/?access_token=bad")).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-accept"), "{head}");
    let rest = String::from_utf8(peer.read_to_end().await).unwrap();
    assert!(rest.contains("token revoked"), "{rest}");

    let (_peer, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(head.contains("\r\nWWW-Authenticate: Bearer realm=\"chat\"\r\n"), "{head}");
    let err = Client::connect(&url(addr, "/")).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    // The client keeps the refusal's body, and says it.
    assert_eq!(err.body(), Some(&b"access_token required"[..]));
    assert!(err.to_string().ends_with(": access_token required"), "{err}");
}

#[tokio::test]
async fn an_accepted_token_attaches_data_that_handlers_read() {
    let addr = whoami_server(token_hook(Server::builder())).await;
    let (_peer, head) = RawPeer::request(addr, upgrade_request("/?access_token=good")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("X-User: ada"), "{head}");

    let mut ws = Client::connect(&url(addr, "/?access_token=good")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("ada"));
}

#[tokio::test]
async fn a_session_cookie_decides_who_gets_in() {
    let builder = Server::builder().authorize(|request| async move {
        match request.cookie("session") {
            Some("s-42") => Ok(Accept::new().data(UserId("grace".into()))),
            _ => Err(HttpResponse::text(401, "no session")),
        }
    });
    let addr = whoami_server(builder).await;
    let mut ws = Client::builder()
        .header("Cookie", "theme=dark; session=s-42")
        .connect(&url(addr, "/"))
        .await
        .unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("grace"));
    let err = Client::builder().header("Cookie", "session=nope").connect(&url(addr, "/")).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn a_token_in_the_subprotocol_header_stays_out_of_the_url() {
    let builder = Server::builder().subprotocol("chat").authorize(|request| async move {
        let token = request.subprotocols().iter().find_map(|p| p.strip_prefix("token.").map(str::to_owned));
        match token.as_deref() {
            Some("abc") => Ok(Accept::new().data(UserId("linus".into()))),
            _ => Err(HttpResponse::text(401, "token required")),
        }
    });
    let addr = whoami_server(builder).await;
    let mut ws =
        Client::builder().protocol("chat").protocol("token.abc").connect(&url(addr, "/")).await.unwrap();
    assert_eq!(ws.protocol(), Some("chat"), "the token is never echoed back");
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("linus"));
    let err = Client::builder().protocol("chat").connect(&url(addr, "/")).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn a_refused_origin_gets_403_and_allowed_or_absent_ones_get_in() {
    let addr = whoami_server(Server::builder().allowed_origin("https://app.example")).await;
    let with_origin = |origin: &str| {
        upgrade_request("/")
            .replace("Host: localhost\r\n", &format!("Host: localhost\r\nOrigin: {origin}\r\n"))
    };
    let (_p, head) = RawPeer::request(addr, with_origin("https://evil.example")).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (_p, head) = RawPeer::request(addr, with_origin("https://APP.example")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (_p, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "no Origin: not a browser: {head}");
}

#[tokio::test]
async fn a_subprotocol_function_picks_from_the_offer() {
    let builder = Server::builder()
        .select_subprotocol(|offered, request| {
            let want = if request.query_param("v").as_deref() == Some("2") { "chat.v2" } else { "chat.v1" };
            offered.iter().find(|p| **p == want).map(|p| p.to_string())
        })
        .header("X-Server", "zapsocket");
    let addr = whoami_server(builder).await;
    let offer = Client::builder().protocol("chat.v1").protocol("chat.v2");
    assert_eq!(offer.clone().connect(&url(addr, "/?v=2")).await.unwrap().protocol(), Some("chat.v2"));
    assert_eq!(offer.connect(&url(addr, "/")).await.unwrap().protocol(), Some("chat.v1"));
    let (_p, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.contains("X-Server: zapsocket"), "{head}");
}

#[tokio::test]
async fn the_caps_answer_503_and_free_places_when_connections_end() {
    let addr = whoami_server(Server::builder().max_connections(3).max_connections_per_ip(2)).await;
    let a = Client::connect(&url(addr, "/")).await.unwrap();
    let b = Client::connect(&url(addr, "/")).await.unwrap();
    let (mut peer, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.starts_with("HTTP/1.1 503"), "third from one IP: {head}");
    let body = String::from_utf8(peer.read_to_end().await).unwrap();
    assert!(body.contains("too many connections from your address"), "{body}");
    a.close(zapsocket::CloseCode::NORMAL, "").await.unwrap();
    drop(a);
    // The place is given back once the server's side has ended.
    let mut third = None;
    for _ in 0..100 {
        if let Ok(ws) = Client::connect(&url(addr, "/")).await {
            third = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(third.is_some(), "a place came free");
    drop(b);
}

#[tokio::test]
async fn the_total_cap_answers_503_with_a_clear_body() {
    let addr = whoami_server(Server::builder().max_connections(1)).await;
    let _first = Client::connect(&url(addr, "/")).await.unwrap();
    let (mut peer, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let body = String::from_utf8(peer.read_to_end().await).unwrap();
    assert!(body.contains("connection limit"), "{body}");
}

/// A6, L2: past the per-address handshake rate, a handshake gets 429 with `Retry-After`
/// before the `authorize` hook runs; another address is not affected (the server-wide
/// rate is checked in the unit tests), and handshakes come back once tokens refill.
#[tokio::test]
async fn handshakes_past_the_rate_get_429_with_retry_after_and_come_back() {
    let hook_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = hook_calls.clone();
    let builder = Server::builder().max_handshake_rate_per_ip(zapsocket::RateLimit::new(2.0, 3)).authorize(
        move |_request| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Ok(Accept::new()) }
        },
    );
    let addr = whoami_server(builder).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Client::connect(&url(addr, "/")).await.unwrap());
    }
    let (mut peer, head) = RawPeer::request(addr, upgrade_request("/")).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(head.contains("\r\nRetry-After: 1\r\n"), "{head}");
    let body = String::from_utf8(peer.read_to_end().await).unwrap();
    assert!(body.contains("too many handshakes from your address"), "{body}");
    assert_eq!(Client::connect(&url(addr, "/")).await.unwrap_err().status(), Some(429));
    assert_eq!(hook_calls.load(std::sync::atomic::Ordering::Relaxed), 3, "refused before the hook");
    // Open connections are not counted: only handshakes are. Tokens come back at 2 a second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    open.push(Client::connect(&url(addr, "/")).await.unwrap());
    assert_eq!(hook_calls.load(std::sync::atomic::Ordering::Relaxed), 4);
}

/// A server whose handler sends back the client's address as `Request::ip` gives it,
/// then holds the connection.
async fn ip_server(builder: zapsocket::ServerBuilder) -> std::net::SocketAddr {
    let server = builder.bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        let ip = ws.request().map(|r| r.ip().to_string()).unwrap_or_default();
        let _ = ws.send(ip).await;
        while let Some(Ok(_)) = ws.recv().await {}
    }));
    addr
}

async fn ip_seen(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> Result<String, zapsocket::Error> {
    let mut builder = Client::builder();
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut ws = builder.connect(&url(addr, "/")).await?;
    let message = ws.recv().await.unwrap().unwrap();
    Ok(message.as_text().unwrap().to_owned())
}

/// Behind a trusted proxy the client's address comes from the forwarding headers, read
/// from the nearest hop; from anyone else the headers are ignored. The per-IP cap counts
/// the forwarded address.
#[tokio::test]
async fn the_client_address_comes_from_forwarding_headers_only_through_trusted_proxies() {
    let spoof = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7")];
    let untrusting = ip_server(Server::builder()).await;
    assert_eq!(ip_seen(untrusting, &spoof).await.unwrap(), "127.0.0.1");

    let builder = Server::builder()
        .trusted_proxy("127.0.0.0/8".parse().unwrap())
        .trusted_proxy("10.0.0.0/8".parse().unwrap())
        .max_connections_per_ip(1);
    let trusting = ip_server(builder).await;
    // 198.51.100.1 is what the client wrote; 203.0.113.7 what the first proxy saw.
    let chain = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.1.2.3")];
    let forwarded = [("Forwarded", "for=\"[2001:db8::7]:4711\";proto=https, for=10.9.9.9")];
    let mut held = Vec::new();
    for (headers, expected) in
        [(&chain[..], "203.0.113.7"), (&forwarded[..], "2001:db8::7"), (&[][..], "127.0.0.1")]
    {
        let mut builder = Client::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut ws = builder.connect(&url(trusting, "/")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some(expected));
        held.push(ws);
    }
    // One connection per client address: a second from 203.0.113.7 is refused, though
    // every connection comes from 127.0.0.1.
    let err = ip_seen(trusting, &chain).await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
}
