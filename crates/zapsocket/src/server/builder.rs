//! [`ServerBuilder`] and the settings every connection of a server shares.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use zapsocket_proto::deflate::DeflateConfig;
use zapsocket_proto::handshake::HandshakeLimits;

use super::admission::{Accept, Rates, Slots};
use super::{HttpResponse, Server};
use crate::clients::Clients;
use crate::config::{WebSocketConfig, server_default};
use crate::error::Result;
use crate::heartbeat::Heartbeat;
use crate::rate::RateLimit;
use crate::request::Request;
use crate::tls::Identity;

pub(crate) type HttpHandler = Arc<dyn Fn(&Request) -> Option<HttpResponse> + Send + Sync>;
pub(crate) type AuthorizeFuture = Pin<Box<dyn Future<Output = Result<Accept, HttpResponse>> + Send>>;
pub(crate) type Authorize = Arc<dyn Fn(Request) -> AuthorizeFuture + Send + Sync>;
pub(crate) type SelectProtocol = Arc<dyn Fn(&[&str], &Request) -> Option<String> + Send + Sync>;

/// The settings every connection of a server shares.
pub(crate) struct Settings {
    pub(crate) paths: Vec<String>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) select_subprotocol: Option<SelectProtocol>,
    pub(crate) allowed_origins: Vec<String>,
    /// Peers whose forwarding headers give the client's address (`Request::ip`).
    pub(crate) trusted_proxies: Vec<crate::IpNet>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) authorize: Option<Authorize>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_ip: Option<usize>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) handshake_rate: Option<RateLimit>,
    pub(crate) handshake_rate_per_ip: Option<RateLimit>,
    pub(crate) rates: Rates,
    pub(crate) config: WebSocketConfig,
    pub(crate) limits: HandshakeLimits,
    pub(crate) handshake_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) track_clients: bool,
    pub(crate) http: Option<HttpHandler>,
    /// Every open connection (for graceful shutdown), shown as `Server::clients` when
    /// `track_clients` is on.
    pub(crate) clients: Clients,
    pub(crate) tls: Option<Identity>,
    pub(crate) deflate: Option<DeflateConfig>,
    /// Connections open with context takeover on the server's side (each keeps a
    /// compressor), bounded by `DeflateConfig::max_context_takeover_connections`.
    pub(crate) context_takeover: Arc<AtomicUsize>,
    /// The keepalive and write-timeout ticker, started with the first connection that
    /// needs it.
    pub(crate) heartbeat: OnceLock<Arc<Heartbeat>>,
    /// `config.protocol`, made once and shared by every connection's protocol state.
    protocol: OnceLock<Arc<zapsocket_proto::Config>>,
    /// Cancelled when graceful shutdown starts.
    pub(crate) shutdown: CancellationToken,
    /// Where handshakes and connections are counted, when asked for.
    pub(crate) metrics: Option<crate::Metrics>,
}

impl Settings {
    /// The protocol's limits and timers, one copy for all the connections (they are
    /// settled once the server is built).
    pub(crate) fn protocol(&self) -> Arc<zapsocket_proto::Config> {
        self.protocol.get_or_init(|| Arc::new(self.config.protocol.clone())).clone()
    }

    fn new() -> Self {
        Settings {
            paths: Vec::new(),
            subprotocols: Vec::new(),
            select_subprotocol: None,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            headers: Vec::new(),
            authorize: None,
            max_connections: None,
            max_connections_per_ip: None,
            slots: Arc::default(),
            handshake_rate: None,
            handshake_rate_per_ip: None,
            rates: Rates::default(),
            config: server_default(),
            limits: HandshakeLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            track_clients: true,
            http: None,
            clients: Clients::new(),
            tls: None,
            deflate: None,
            context_takeover: Arc::default(),
            heartbeat: OnceLock::new(),
            protocol: OnceLock::new(),
            metrics: None,
            shutdown: CancellationToken::new(),
        }
    }
}

/// Builds a [`Server`]: where to listen, who gets in, and how each connection behaves.
///
/// ```no_run
/// # async fn run() -> zapsocket::Result<()> {
/// use std::time::Duration;
/// let server = zapsocket::Server::builder()
///     .host("127.0.0.1")
///     .port(8080)
///     .path("/ws")
///     .allowed_origin("https://example.com")
///     .max_message_size(1 << 20)
///     .heartbeat(Duration::from_secs(30), Duration::from_secs(10))
///     .bind()
///     .await?;
/// # Ok(()) }
/// ```
pub struct ServerBuilder {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) settings: Settings,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder { host: "127.0.0.1".into(), port: 0, settings: Settings::new() }
    }
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

    /// Counts handshakes, connections, messages, close codes and why connections
    /// ended into `metrics` (see [`Metrics`](crate::Metrics)), which may be shared with
    /// other servers. Off by default: each connection then keeps its counters (about 150
    /// bytes) and does a few additions per message.
    pub fn metrics(mut self, metrics: &crate::Metrics) -> Self {
        self.settings.metrics = Some(metrics.clone());
        self
    }

    /// Accepts WebSocket upgrades on this path (may be given several times). Default:
    /// every path. Other paths get 404.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.settings.paths.push(path.into());
        self
    }

    /// A subprotocol this server speaks, in order of preference: the first one the
    /// client offers is chosen. A client that offers none of them is still accepted,
    /// without a subprotocol (as `ws` does); see [`ServerBuilder::select_subprotocol`].
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.settings.subprotocols.push(name.into());
        self
    }

    /// Picks the subprotocol with `select(offered, request)`, like `ws`'s
    /// `handleProtocols`: return one of `offered`, or `None` for none. Replaces the list
    /// of [`ServerBuilder::subprotocol`]. A name the client did not offer is ignored.
    pub fn select_subprotocol(
        mut self,
        select: impl Fn(&[&str], &Request) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.settings.select_subprotocol = Some(Arc::new(select));
        self
    }

    /// Accepts browsers only from this `Origin` (may be given several times; `*` allows
    /// any), against cross-site WebSocket hijacking. Another origin gets 403. Requests
    /// without `Origin` (not from a browser) are let through. Default: any origin.
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.settings.allowed_origins.push(origin.into());
        self
    }

    /// Trusts the reverse proxies in `net` (may be given several times): for a
    /// connection from one of them, [`Request::ip`] is the client's address the proxies
    /// forwarded in `Forwarded` (RFC 7239) or `X-Forwarded-For`, not the proxy's, and
    /// the per-IP limits count it. The chain is read from the nearest hop back, to the
    /// first address that is not a trusted proxy, so a client cannot pass itself off as
    /// another by writing the header itself. Default: none (the headers are ignored).
    ///
    /// ```
    /// # fn f() -> Result<(), zapsocket::InvalidIpNet> {
    /// let builder = zapsocket::Server::builder()
    ///     .trusted_proxy("127.0.0.1".parse()?)   // a proxy on this machine
    ///     .trusted_proxy("10.0.0.0/8".parse()?); // the load balancers' network
    /// # Ok(()) }
    /// ```
    pub fn trusted_proxy(mut self, net: crate::IpNet) -> Self {
        self.settings.trusted_proxies.push(net);
        self
    }

    /// Adds a header to every 101 response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.headers.push((name.into(), value.into()));
        self
    }

    /// An async hook that sees each upgrade request (peer address, headers, query,
    /// cookies, offered subprotocols) before the 101 answer, like `ws`'s `verifyClient`:
    /// `Ok(Accept)` lets the client in, with data attached to the connection (read with
    /// [`WebSocket::data`](crate::WebSocket::data)); `Err(response)` refuses with that
    /// status and body, and no upgrade. It runs after the path, origin and cap checks,
    /// within the handshake timeout.
    ///
    /// ```no_run
    /// # async fn run() -> zapsocket::Result<()> {
    /// use zapsocket::{Accept, HttpResponse};
    /// struct User(String);
    /// let server = zapsocket::Server::builder()
    ///     .authorize(|request| async move {
    ///         match request.query_param("access_token").as_deref() {
    ///             Some("s3cret") => Ok(Accept::new().data(User("ada".into()))),
    ///             _ => Err(HttpResponse::text(401, "bad or missing access_token")),
    ///         }
    ///     })
    ///     .bind()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn authorize<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Accept, HttpResponse>> + Send + 'static,
    {
        self.settings.authorize = Some(Arc::new(move |request| Box::pin(hook(request))));
        self
    }

    /// The most connections open at once; more get 503. Default: no limit. Stops one
    /// crowd of clients from exhausting memory and file descriptors.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.settings.max_connections = Some(max);
        self
    }

    /// The most connections open at once from one IP address; more get 503. Default: no
    /// limit. Stops one host from taking every connection.
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.settings.max_connections_per_ip = Some(max);
        self
    }

    /// The most WebSocket handshakes the server takes, all addresses together: past it
    /// they get **429** with `Retry-After`, before the `authorize` hook runs. Default: no
    /// limit. Spreads out a reconnection storm (every client of a restarted node coming
    /// back at once) and bounds what the `authorize` hook and TLS cost under a flood.
    ///
    /// ```
    /// use zapsocket::RateLimit;
    /// let builder = zapsocket::Server::builder()
    ///     .max_handshake_rate(RateLimit::new(500.0, 1_000))
    ///     .max_handshake_rate_per_ip(RateLimit::new(5.0, 20));
    /// ```
    pub fn max_handshake_rate(mut self, rate: RateLimit) -> Self {
        self.settings.handshake_rate = Some(rate);
        self
    }

    /// The most WebSocket handshakes from one IP address (IPv6: one /64): past it they
    /// get **429** with `Retry-After`. Default: no limit. Buckets are kept for up to
    /// [`MAX_RATE_ADDRESSES`](crate::MAX_RATE_ADDRESSES) addresses at once. Behind a
    /// proxy every client has the proxy's address: set it on the proxy instead.
    pub fn max_handshake_rate_per_ip(mut self, rate: RateLimit) -> Self {
        self.settings.handshake_rate_per_ip = Some(rate);
        self
    }

    /// Serves `wss://` with this certificate and key. Default: plain `ws://`.
    pub fn tls(mut self, identity: Identity) -> Self {
        self.settings.tls = Some(identity);
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

    /// How long queued bytes may wait for a peer that takes none before its connection
    /// is terminated ([`WebSocketConfig::write_timeout`]). Default: 30 s; `None` for no
    /// limit.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.config = self.settings.config.write_timeout(timeout);
        self
    }

    /// Limits on the request head (bytes, header count). Default: 16 KiB, 64 headers.
    pub fn handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// How long a client may take to send its request head (and, with TLS, to finish
    /// the TLS handshake). Default: 10 s. Stops slow-loris clients from holding sockets.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for clients to answer its 1001 close before it
    /// terminates them. Default: 10 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Whether [`Server::clients`] shows the open connections. Default: true.
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
        Server::from_listener(listener, Arc::new(self.settings))
    }

    /// The settings without a listener: for upgrades taken from another server (hyper,
    /// axum, or any stream), like `ws`'s `noServer` mode.
    pub fn build_upgrader(self) -> crate::Upgrader {
        crate::Upgrader::new(Arc::new(self.settings))
    }
}
