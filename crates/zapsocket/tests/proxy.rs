//! The client through an HTTP CONNECT proxy (RFC 9110 §9.3.6), through real sockets: a
//! tiny proxy in the test tunnels to the servers (or refuses), for `ws://` and `wss://`,
//! with and without credentials. The environment's rules are unit tests of
//! `src/proxy.rs` (they take the variables as input).

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use common::proxy::{ProxyOptions, TestProxy, test_pki};
use zapsocket::{Certificate, Client, Identity, Server, WebSocket};

/// A server that first sends what it saw of the request (path, `Proxy-Authorization`),
/// then echoes.
async fn server(builder: zapsocket::ServerBuilder) -> u16 {
    let server = builder.bind().await.unwrap();
    let port = server.local_addr().port();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move {
        let request = ws.request().unwrap();
        let seen = format!("{} {:?}", request.path(), request.header("proxy-authorization"));
        let _ = ws.send(seen).await;
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    }));
    port
}

async fn next_text(ws: &mut WebSocket) -> String {
    let message = zapsocket::time::timeout(std::time::Duration::from_secs(5), ws.recv()).await.unwrap();
    message.unwrap().unwrap().as_text().unwrap().to_owned()
}

#[tokio::test]
async fn ws_goes_through_a_proxy_given_by_url() {
    let port = server(Server::builder()).await;
    let proxy = TestProxy::start(ProxyOptions::default()).await;
    let mut ws = Client::builder()
        .proxy(&proxy.url())
        .connect(&format!("ws://127.0.0.1:{port}/chat?x=1"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "/chat None");
    ws.send("through the tunnel").await.unwrap();
    assert_eq!(next_text(&mut ws).await, "through the tunnel");
    assert_eq!(proxy.targets(), [format!("127.0.0.1:{port}")]);
    assert_eq!(ws.peer_addr(), Some(proxy.addr), "the TCP peer is the proxy");
    let head = proxy.requests.lock().unwrap()[0].clone();
    assert_eq!(head, format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"));
}

/// The proxy, not the client, resolves the server's name: a name only the proxy knows.
#[tokio::test]
async fn the_proxy_is_asked_for_the_name_and_port_of_the_url() {
    let port = server(Server::builder()).await;
    let to = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = TestProxy::start(ProxyOptions { to: Some(to), ..Default::default() }).await;
    let mut ws = Client::builder().proxy(&proxy.url()).connect("ws://echo.invalid/").await.unwrap();
    assert_eq!(next_text(&mut ws).await, "/ None");
    assert_eq!(proxy.targets(), ["echo.invalid:80"]);
}

#[tokio::test]
async fn credentials_in_the_proxy_url_go_to_the_proxy_only() {
    let port = server(Server::builder()).await;
    // "ada@home" and "p:ss w", percent-encoded in the URL, sent as Basic base64("ada@home:p:ss w").
    let options = ProxyOptions { authorization: Some("Basic YWRhQGhvbWU6cDpzcyB3"), ..Default::default() };
    let proxy = TestProxy::start(options).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let with = format!("http://ada%40home:p%3Ass%20w@{}", proxy.addr);
    let mut ws = Client::builder().proxy(&with).connect(&url).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "/ None", "the server never sees Proxy-Authorization");

    let error = Client::builder().proxy(&proxy.url()).connect(&url).await.unwrap_err();
    assert!(error.is_proxy() && !error.is_handshake(), "{error}");
    assert_eq!(error.status(), Some(407));
    assert_eq!(
        error.to_string(),
        format!("proxy refused CONNECT 127.0.0.1:{port}: 407 Proxy Authentication Required")
    );
    let wrong = format!("http://ada%40home:wrong@{}", proxy.addr);
    let error = Client::builder().proxy(&wrong).connect(&url).await.unwrap_err();
    assert_eq!(error.status(), Some(407), "{error}");
}

#[tokio::test]
async fn wss_goes_through_the_tunnel_with_tls_end_to_end() {
    let (ca, cert, key) = test_pki();
    let identity = Identity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let port = server(Server::builder().tls(identity)).await;
    let options = ProxyOptions { authorization: Some("Basic YWRhOnMzY3JldA=="), ..Default::default() };
    let proxy = TestProxy::start(options).await;
    let mut ws = Client::builder()
        .add_root_certificate(Certificate::from_pem(ca.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .proxy(&format!("http://ada:s3cret@{}", proxy.addr))
        .connect(&format!("wss://localhost:{port}/secure"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await, "/secure None");
    let big = "x".repeat(100_000);
    ws.send(big.as_str()).await.unwrap();
    assert_eq!(next_text(&mut ws).await, big);
    assert_eq!(proxy.targets(), [format!("localhost:{port}")]);

    // The certificate is still checked: the tunnel changes nothing about it.
    let error = Client::builder()
        .tls_built_in_root_certs(false)
        .proxy(&format!("http://ada:s3cret@{}", proxy.addr))
        .connect(&format!("wss://localhost:{port}/"))
        .await
        .unwrap_err();
    assert!(error.is_tls(), "{error}");
}

#[tokio::test]
async fn a_refusing_proxy_fails_with_its_status_and_reason() {
    let port = server(Server::builder()).await;
    let proxy = TestProxy::start(ProxyOptions { refuse: Some("403 Forbidden"), ..Default::default() }).await;
    let error =
        Client::builder().proxy(&proxy.url()).connect(&format!("ws://127.0.0.1:{port}/")).await.unwrap_err();
    assert!(error.is_proxy(), "{error}");
    assert_eq!(error.status(), Some(403));
    assert_eq!(error.to_string(), format!("proxy refused CONNECT 127.0.0.1:{port}: 403 Forbidden"));

    let unreachable = TestProxy::start(ProxyOptions::default()).await;
    let error = Client::builder().proxy(&unreachable.url()).connect("ws://127.0.0.1:1/").await.unwrap_err();
    assert_eq!(error.status(), Some(502), "the proxy could not reach the server: {error}");
}

#[tokio::test]
async fn no_proxy_ignores_a_proxy_url_and_the_last_choice_wins() {
    let port = server(Server::builder()).await;
    let proxy = TestProxy::start(ProxyOptions::default()).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let mut ws = Client::builder().proxy(&proxy.url()).no_proxy().connect(&url).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "/ None");
    assert!(proxy.targets().is_empty(), "direct");
    assert_eq!(ws.peer_addr().unwrap().port(), port);

    let mut ws = Client::builder().no_proxy().proxy(&proxy.url()).connect(&url).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "/ None");
    assert_eq!(proxy.targets().len(), 1, "through the proxy");
}

#[tokio::test]
async fn unsupported_or_broken_proxy_urls_are_invalid_arguments() {
    for (url, says) in [
        ("https://proxy.example:3128", "not supported"),
        ("socks5://proxy.example:1080", "\"socks5\""),
        ("http://", "proxy URL"),
    ] {
        let error = Client::builder().proxy(url).connect("ws://127.0.0.1:1/").await.unwrap_err();
        assert!(error.is_invalid() && error.to_string().contains(says), "{url}: {error}");
    }
}

/// A proxy that accepts and closes, or answers what is not HTTP: a proxy error without
/// a status, not a hang.
#[tokio::test]
async fn a_proxy_that_does_not_speak_http_is_a_proxy_error() {
    for answer in [&b""[..], b"SSH-2.0-OpenSSH_9.6\r\n\r\n"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = common::proxy::read_head(&mut stream).await;
            let _ = stream.write_all(answer).await;
        });
        let error = Client::builder()
            .proxy(&format!("http://{addr}"))
            .connect("ws://example.com/")
            .await
            .unwrap_err();
        assert!(error.is_proxy() && error.status().is_none(), "{error}");
    }
}
