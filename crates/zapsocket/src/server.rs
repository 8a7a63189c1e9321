//! The server: bind a port, answer handshakes, track clients.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zapsocket_proto::deflate::{DeflateConfig, DeflateParams};
use zapsocket_proto::handshake::{
    HandshakeError, HandshakeLimits, RequestParser, ServerResponse, error_response,
};
use zapsocket_proto::{Connection, Role};

use crate::clients::Clients;
use crate::config::{WebSocketConfig, server_default};
use crate::driver::Driver;
use crate::error::{Error, Kind, Result};
use crate::heartbeat::Heartbeat;
use crate::joined::Joined;
use crate::request::Request;
use crate::shared::Shared;
use crate::socket::{Info, WebSocket};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A plain HTTP response, for requests that are not WebSocket upgrades.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A 200 response with an HTML body.
    pub fn html(body: impl Into<String>) -> Self {
        HttpResponse {
            status: 200,
            content_type: "text/html; charset=utf-8".into(),
            body: body.into().into_bytes(),
        }
    }

    /// A response with a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: body.into().into_bytes(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            zapsocket_proto::handshake::status_text(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

type HttpHandler = Arc<dyn Fn(&Request) -> Option<HttpResponse> + Send + Sync>;

/// The settings every connection of a server shares.
struct Settings {
    paths: Vec<String>,
    subprotocols: Vec<String>,
    config: WebSocketConfig,
    limits: HandshakeLimits,
    handshake_timeout: Duration,
    track_clients: bool,
    http: Option<HttpHandler>,
    clients: Clients,
    deflate: Option<DeflateConfig>,
    /// Connections open with context takeover on the server's side (each keeps a
    /// compressor), bounded by `DeflateConfig::max_context_takeover_connections`.
    context_takeover: Arc<AtomicUsize>,
    /// The keepalive ticker, started with the first connection that has a heartbeat.
    heartbeat: std::sync::OnceLock<Arc<Heartbeat>>,
}

/// Builds a [`Server`]: where to listen and how each connection behaves.
///
/// ```no_run
/// # async fn run() -> zapsocket::Result<()> {
/// use std::time::Duration;
/// let server = zapsocket::Server::builder()
///     .host("127.0.0.1")
///     .port(8080)
///     .path("/ws")
///     .max_message_size(1 << 20)
///     .heartbeat(Duration::from_secs(30), Duration::from_secs(10))
///     .bind()
///     .await?;
/// # Ok(()) }
/// ```
pub struct ServerBuilder {
    host: String,
    port: u16,
    settings: Settings,
}

impl ServerBuilder {
    /// The host or IP to listen on. Default: `127.0.0.1`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The port. Default: 0 (any free port; see [`Server::local_addr`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Accepts WebSocket upgrades on this path (may be given several times). Default:
    /// every path. Other paths get 404.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.settings.paths.push(path.into());
        self
    }

    /// A subprotocol this server speaks, in order of preference: the first one the
    /// client offers is chosen.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.settings.subprotocols.push(name.into());
        self
    }

    /// Every connection's settings. Default: [`WebSocketConfig::default`] with a
    /// heartbeat every 30 s (30 s to answer).
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.settings.config = config;
        self
    }

    /// The largest message accepted (and frame, if smaller). Default: 64 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.config = self.settings.config.max_message_size(bytes);
        self
    }

    /// A ping every `interval`; a peer silent for `timeout` after it is terminated.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.settings.config = self.settings.config.heartbeat(interval, timeout);
        self
    }

    /// No heartbeat.
    pub fn no_heartbeat(mut self) -> Self {
        self.settings.config = self.settings.config.no_heartbeat();
        self
    }

    /// Limits on the request head (bytes, header count). Default: 16 KiB, 64 headers.
    pub fn handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// How long a client may take to send its request head. Default: 10 s. Stops
    /// slow-loris clients from holding sockets.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// Whether the server keeps the set of its clients ([`Server::clients`]). Default:
    /// true.
    pub fn track_clients(mut self, track: bool) -> Self {
        self.settings.track_clients = track;
        self
    }

    /// Turns permessage-deflate (RFC 7692) on: the server accepts a client's offer with
    /// `config`. Default: off.
    ///
    /// With [`DeflateConfig::default`] the server answers `server_no_context_takeover`: it
    /// keeps no compressor per connection (a compressor is lent per message from a small
    /// per-thread cache), and a broadcast is compressed once for all its recipients. Raise
    /// [`DeflateConfig::max_context_takeover_connections`] for a better ratio at about
    /// 300 KiB per connection. docs/DEFLATE.md has the figures.
    ///
    /// ```no_run
    /// # async fn run() -> zapsocket::Result<()> {
    /// use zapsocket::DeflateConfig;
    /// let server = zapsocket::Server::builder().deflate(DeflateConfig::default()).bind().await?;
    /// # Ok(()) }
    /// ```
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        self.settings.deflate = Some(config);
        self
    }

    /// Answers plain HTTP requests (not upgrades): return `None` for 404.
    pub fn http(
        mut self,
        handler: impl Fn(&Request) -> Option<HttpResponse> + Send + Sync + 'static,
    ) -> Self {
        self.settings.http = Some(Arc::new(handler));
        self
    }

    /// Binds the listening socket.
    pub async fn bind(self) -> Result<Server> {
        let listener = TcpListener::bind((self.host.as_str(), self.port)).await?;
        let local_addr = listener.local_addr()?;
        Ok(Server { listener: Some(listener), local_addr, settings: Arc::new(self.settings), incoming: None })
    }
}

/// A WebSocket server, like `ws`'s `WebSocketServer`.
///
/// Take connections one by one with [`Server::accept`], or hand each to a function with
/// [`Server::serve`]. Each connection comes with its upgrade request
/// ([`WebSocketSender::request`](crate::WebSocketSender::request)): peer address, headers,
/// path, query, cookies. The server tracks its clients for iteration and broadcast.
///
/// ```no_run
/// # async fn run() -> zapsocket::Result<()> {
/// let server = zapsocket::Server::bind("127.0.0.1:8080").await?;
/// server.serve(|mut ws| async move {
///     while let Some(Ok(msg)) = ws.recv().await {
///         if ws.send(msg).await.is_err() { break; }
///     }
/// }).await
/// # }
/// ```
pub struct Server {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    settings: Arc<Settings>,
    incoming: Option<(mpsc::Receiver<Result<WebSocket>>, JoinHandle<()>)>,
}

impl Server {
    /// A builder with the defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            host: "127.0.0.1".into(),
            port: 0,
            settings: Settings {
                paths: Vec::new(),
                subprotocols: Vec::new(),
                config: server_default(),
                limits: HandshakeLimits::default(),
                handshake_timeout: Duration::from_secs(10),
                track_clients: true,
                http: None,
                clients: Clients::new(),
                deflate: None,
                context_takeover: Arc::default(),
                heartbeat: std::sync::OnceLock::new(),
            },
        }
    }

    /// Binds `addr` (`"host:port"`) with the defaults.
    pub async fn bind(addr: &str) -> Result<Server> {
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| Error::invalid("expected host:port"))?;
        let port = port.parse().map_err(|_| Error::invalid("bad port"))?;
        Server::builder().host(host.trim_matches(['[', ']'])).port(port).bind().await
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The open connections (empty when tracking is off).
    pub fn clients(&self) -> Clients {
        self.settings.clients.clone()
    }

    /// The next connection, once its handshake succeeded. Handshakes run concurrently
    /// in the background; failed ones are answered with their HTTP status and never
    /// show up here.
    pub async fn accept(&mut self) -> Result<WebSocket> {
        if self.incoming.is_none() {
            let (tx, rx) = mpsc::channel(128);
            let listener = self.listener.take().ok_or_else(|| Error::new(Kind::Closed))?;
            let settings = self.settings.clone();
            let task = tokio::spawn(accept_loop(listener, settings, move |ws| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Ok(ws)).await;
                }
            }));
            self.incoming = Some((rx, task));
        }
        match &mut self.incoming {
            Some((rx, _)) => rx.recv().await.unwrap_or_else(|| Err(Error::new(Kind::Closed))),
            None => Err(Error::new(Kind::Closed)),
        }
    }

    /// Runs `handler` for every connection, each in its own task, until the listener
    /// fails.
    pub async fn serve<F, Fut>(mut self, handler: F) -> Result<()>
    where
        F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = self.listener.take().ok_or_else(|| Error::new(Kind::Closed))?;
        accept_loop(listener, self.settings.clone(), handler).await;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.incoming {
            task.abort();
        }
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, settings: Arc<Settings>, handler: F)
where
    F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let settings = settings.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Some((ws, driver)) = handshake(stream, peer, &settings).await {
                Joined::new(driver, handler(ws)).await;
            }
        });
    }
}

/// Reads and answers the opening handshake; on success returns the socket and its
/// driver.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    settings: &Settings,
) -> Option<(WebSocket, Driver<TcpStream>)> {
    let _ = stream.set_nodelay(true);
    let read = tokio::time::timeout(settings.handshake_timeout, read_request(&mut stream, settings)).await;
    let (request, leftover) = match read {
        Ok(Ok(Some(parsed))) => parsed,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!(%peer, status = e.status(), reason = e.reason(), "handshake refused");
            refuse(&mut stream, &e.to_response()).await;
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            refuse(&mut stream, &error_response(408, &[], "request head not received in time")).await;
            return None;
        }
    };
    let request = Request::new(request, peer);
    let response = match answer(&request, settings) {
        Ok(response) => response,
        Err(bytes) => {
            refuse(&mut stream, &bytes).await;
            return None;
        }
    };
    let (accept, server_response, deflate) = response;
    // Held from here: released when the connection ends (or now, if the answer fails).
    let context_slot = ContextSlot::take(settings, deflate.as_ref());
    if stream.write_all(&server_response.encode(&accept)).await.is_err() {
        return None;
    }
    let mut conn = Connection::new(Role::Server, settings.config.protocol.clone());
    if let (Some(params), Some(config)) = (deflate, &settings.deflate) {
        conn.set_deflate(params, config);
    }
    conn.feed(&leftover);
    let shared = Shared::new(next_id(), conn, &settings.config);
    let info =
        Info { request: Some(request), protocol: server_response.protocol, peer_addr: Some(peer), deflate };
    let ws = WebSocket::new(shared.clone(), info);
    let clients = settings.track_clients.then(|| settings.clients.clone());
    if let Some(clients) = &clients {
        clients.insert(&ws.sender());
    }
    let id = shared.id;
    let mut driver = Driver::new(stream, shared.clone());
    if let Some(interval) = settings.config.protocol.ping_interval {
        let timeout = settings.config.protocol.pong_timeout;
        settings.heartbeat.get_or_init(|| Heartbeat::start(interval, timeout)).add(&shared);
        driver = driver.external_keepalive();
    }
    let driver = driver.on_done(move || {
        if let Some(clients) = clients {
            clients.remove(id);
        }
        drop(context_slot);
    });
    Some((ws, driver))
}

/// One of the server's context-takeover places (see
/// `DeflateConfig::max_context_takeover_connections`), given back on drop.
struct ContextSlot(Option<Arc<AtomicUsize>>);

impl ContextSlot {
    fn take(settings: &Settings, params: Option<&DeflateParams>) -> Self {
        let keeps_context = params.is_some_and(|p| !p.server_no_context_takeover);
        ContextSlot(keeps_context.then(|| settings.context_takeover.clone()))
    }
}

impl Drop for ContextSlot {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// permessage-deflate for a request: the agreed parameters, with context takeover on the
/// server's side only while there is room under the limit (the place is counted here and
/// released by [`ContextSlot`]).
fn negotiate_deflate(request: &Request, settings: &Settings) -> Option<DeflateParams> {
    let config = settings.deflate.as_ref()?;
    let max = config.max_context_takeover_connections;
    let reserved = !config.server_no_context_takeover
        && settings
            .context_takeover
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_ok();
    let params = config.accept(request.as_proto(), reserved);
    if reserved && params.is_none_or(|p| p.server_no_context_takeover) {
        // Not used after all (no offer, or the client asked for no context takeover).
        settings.context_takeover.fetch_sub(1, Ordering::AcqRel);
    }
    params
}

/// The accept key, the 101 to send and the agreed permessage-deflate parameters.
type Answer = (String, ServerResponse, Option<DeflateParams>);

/// Validates an upgrade request; `Err` holds the HTTP response to send instead.
fn answer(request: &Request, settings: &Settings) -> Result<Answer, Vec<u8>> {
    if !request.as_proto().is_upgrade()
        && let Some(handler) = &settings.http
    {
        return Err(match handler(request) {
            Some(response) => response.encode(),
            None => error_response(404, &[], "not found"),
        });
    }
    if !settings.paths.is_empty() && !settings.paths.iter().any(|p| p == request.path()) {
        return Err(error_response(404, &[], "no WebSocket endpoint at this path"));
    }
    let accept = request.as_proto().validate_upgrade().map_err(|e| e.to_response())?;
    let offered = request.subprotocols();
    let protocol = settings.subprotocols.iter().find(|p| offered.contains(&p.as_str())).cloned();
    let deflate = negotiate_deflate(request, settings);
    let extensions = deflate.map(|p| p.to_header());
    Ok((accept, ServerResponse { protocol, extensions, ..ServerResponse::default() }, deflate))
}

async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    settings: &Settings,
) -> Result<Option<(zapsocket_proto::handshake::Request, Vec<u8>)>, HandshakeError> {
    let mut parser = RequestParser::new(settings.limits.clone());
    let mut buf = [0u8; 2048];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        if let Some(request) = parser.feed(&buf[..n])? {
            return Ok(Some((request, parser.take_leftover())));
        }
    }
}

/// Sends an HTTP error response and ends the connection.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, response: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(response).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
