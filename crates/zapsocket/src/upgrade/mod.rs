//! Upgrades taken from another server: any stream ([`Upgrader::handle_upgrade`]), a
//! hyper 1 request ([`hyper::upgrade`], feature `hyper`), or the axum extractor
//! ([`axum::WebSocketUpgrade`], feature `axum`).

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "hyper")]
pub mod hyper;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::clients::Clients;
use crate::error::{Error, Kind, Result};
use crate::server::{Settings, ShutdownHandle};
use crate::socket::WebSocket;

/// A server's settings without a listener, like `ws`'s `noServer` mode: it upgrades
/// connections another server accepted, with the same checks (path, origin, caps,
/// [`authorize`](crate::ServerBuilder::authorize)), subprotocols, compression, heartbeat,
/// client tracking and graceful shutdown as a [`Server`](crate::Server). Cheap to clone.
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener) -> zapsocket::Result<()> {
/// let upgrader = zapsocket::Server::builder().path("/ws").build_upgrader();
/// let (stream, peer) = listener.accept().await?;
/// // The request head is still unread on `stream`: the upgrader reads and answers it.
/// let mut ws = upgrader.handle_upgrade(stream, peer).await?;
/// ws.send("hello").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Upgrader {
    pub(crate) settings: Arc<Settings>,
}

impl std::fmt::Debug for Upgrader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrader").field("clients", &self.settings.clients.len()).finish()
    }
}

impl Default for Upgrader {
    /// The [`ServerBuilder`](crate::ServerBuilder) defaults.
    fn default() -> Self {
        crate::Server::builder().build_upgrader()
    }
}

impl Upgrader {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        Upgrader { settings }
    }

    /// Reads the upgrade request from `stream`, answers it (101, or the refusal) and
    /// returns the connection, whose driver runs in its own task. `Err` when the
    /// request was refused (the client got its HTTP answer) or the stream failed.
    pub async fn handle_upgrade<S>(&self, stream: S, peer: SocketAddr) -> Result<WebSocket>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Once shut down, the request is still read and answered (503, by `admit`).
        let (ws, driver) = crate::server::handshake(stream, peer, None, &self.settings)
            .await
            .ok_or_else(|| Error::new(Kind::Closed))?;
        tokio::spawn(driver);
        Ok(ws)
    }

    /// The open connections (empty when tracking is off).
    pub fn clients(&self) -> Clients {
        if self.settings.track_clients { self.settings.clients.clone() } else { Clients::new() }
    }

    /// A handle to shut the upgraded connections down gracefully (1001 to each).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { settings: self.settings.clone() }
    }
}

/// The request line and headers of an HTTP request that another server parsed, as the
/// protocol layer parses them, with the same limits. An extended CONNECT of HTTP/2 for a
/// WebSocket (RFC 8441, `websocket`) is read as the HTTP/1.1 upgrade it stands for: a
/// GET with `Upgrade`, `Connection` and a placeholder key (HTTP/2 has no key and no
/// `Sec-WebSocket-Accept`), so that every check and limit is the same.
#[cfg(feature = "hyper")]
fn parse_head(
    parts: &http::request::Parts,
    peer: SocketAddr,
    settings: &Settings,
) -> Result<crate::Request, crate::server::Refusal> {
    let websocket = parts.method == http::Method::CONNECT
        && parts
            .extensions
            .get::<::hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    let request =
        crate::Request::new(read_head(parts, websocket, settings)?, peer, &settings.trusted_proxies);
    Ok(if websocket { request.with_http2() } else { request })
}

/// The placeholder `Sec-WebSocket-Key` of an extended CONNECT read as an upgrade.
#[cfg(any(feature = "hyper", feature = "http2"))]
const PLACEHOLDER_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Reads `parts` as an HTTP/1.1 head (see [`parse_head`]); with `websocket`, an extended
/// CONNECT as the upgrade it stands for.
#[cfg(any(feature = "hyper", feature = "http2"))]
pub(crate) fn read_head(
    parts: &http::request::Parts,
    websocket: bool,
    settings: &Settings,
) -> Result<zapsocket_proto::handshake::Request, crate::server::Refusal> {
    use crate::server::Refusal;
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let method = if websocket { "GET" } else { parts.method.as_str() };
    let mut head = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    let mut line = |name: &str, value: &[u8]| {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    // HTTP/2 has `:authority` where HTTP/1.1 has `Host`.
    let authority = parts.uri.authority().filter(|_| !parts.headers.contains_key(http::header::HOST));
    if let Some(authority) = authority {
        line("host", authority.as_str().as_bytes());
    }
    if websocket {
        line("upgrade", b"websocket");
        line("connection", b"Upgrade");
        line("sec-websocket-key", PLACEHOLDER_KEY.as_bytes());
    }
    for (name, value) in &parts.headers {
        let name = name.as_str();
        if !(websocket && ["upgrade", "connection", "sec-websocket-key"].contains(&name)) {
            line(name, value.as_bytes());
        }
    }
    head.extend_from_slice(b"\r\n");
    let mut parser = zapsocket_proto::handshake::RequestParser::new(settings.limits.clone());
    match parser.feed(&head).map_err(Refusal::Handshake)? {
        Some(request) => Ok(request),
        None => Err(Refusal::Response(crate::HttpResponse::text(400, "incomplete request head"))),
    }
}
