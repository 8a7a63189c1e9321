//! `zap serve`: echo on `/` and `/echo`, relay to every client on `/broadcast`, the
//! realtime hub on `/ws`; for plain HTTP, the demo chat page on `/`, the JS client on
//! `/zapsocket.js` and metrics on `/metrics` (see `realtime.rs`).

use std::process::ExitCode;
use std::time::Duration;

use crate::Output;
use zapsocket::{Clients, DeflateConfig, MemoryBudget, Server, WebSocket, WebSocketConfig};
use zapsocket_realtime::{Hub, RateLimit};

use crate::realtime;

/// Options of `zap serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// The host or IP address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// The port to listen on (0: any free port, printed at startup).
    #[arg(long, short, default_value_t = 8080)]
    pub(crate) port: u16,
    /// The largest message (and frame) accepted, in bytes; bigger ones close with 1009.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub(crate) max_message: usize,
    /// Seconds between heartbeat pings; a peer that stays silent as long after a ping is
    /// dropped. 0 turns the heartbeat off.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) ping_interval: u64,
    /// Accept permessage-deflate (RFC 7692) from clients that offer it: messages of 1 KiB
    /// and more are compressed, each on its own (no compressor kept per connection).
    #[arg(long)]
    pub(crate) deflate: bool,
    /// Accept browsers only from this Origin (repeatable; `*` for any); others get 403.
    /// Default: any origin.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub(crate) allowed_origins: Vec<String>,
    /// Trust the reverse proxies at this address or network (`127.0.0.1`, `10.0.0.0/8`;
    /// repeatable): for their connections the client's address (per-IP limits, the handlers'
    /// `socket.request().ip()`) is read from `Forwarded` or `X-Forwarded-For`.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub(crate) trusted_proxies: Vec<zapsocket::IpNet>,
    /// A subprotocol to accept when a client offers it (repeatable, in order of
    /// preference), besides the realtime hub's own.
    #[arg(long = "subprotocol", value_name = "NAME")]
    pub(crate) subprotocols: Vec<String>,
    /// Serve wss:// with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert. On SIGHUP both files are read again: a renewed
    /// certificate serves the next handshakes, without a restart.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// Mutual TLS: require a client certificate signed by a CA in this PEM file.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub(crate) tls_client_ca: Option<std::path::PathBuf>,
    /// On SIGINT or SIGTERM: seconds to wait for clients to answer the 1001 close before
    /// they are dropped.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub(crate) shutdown_timeout: u64,
    /// The most bytes of incoming data held across all connections (messages still
    /// arriving, and decoded ones not yet handled), beyond 64 KiB each. Past it, the
    /// connections holding more stop being read until it frees up (a wait of over 10 s
    /// ends one with close code 1013). 0: no limit. Default: 256 MiB.
    #[arg(long, value_name = "BYTES", default_value_t = zapsocket::DEFAULT_MEMORY_BUDGET)]
    pub(crate) memory_budget: usize,
    /// The most connections open at once; more get 503. Default: no limit.
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// The most connections open at once from one IP address; more get 503.
    #[arg(long, value_name = "N")]
    pub(crate) max_connections_per_ip: Option<usize>,
    /// The most WebSocket handshakes a second, all addresses together, as `RATE` or
    /// `RATE:BURST` (default burst: twice the rate); more get 429 with Retry-After.
    /// Default: no limit.
    #[arg(long, value_name = "RATE[:BURST]", value_parser = parse_rate)]
    pub(crate) max_handshake_rate: Option<RateLimit>,
    /// The most WebSocket handshakes a second from one IP address (IPv6: one /64), as
    /// `RATE` or `RATE:BURST`; more get 429 with Retry-After. Default: no limit.
    #[arg(long, value_name = "RATE[:BURST]", value_parser = parse_rate)]
    pub(crate) max_handshake_rate_per_ip: Option<RateLimit>,
    /// The most messages a second each realtime socket (`/ws`) may send, as `RATE` or
    /// `RATE:BURST` (default burst: twice the rate); past it the socket is not read until
    /// its next message is due, so its sends wait. Default: no limit.
    #[arg(long, value_name = "RATE[:BURST]", value_parser = parse_rate)]
    pub(crate) max_message_rate: Option<RateLimit>,
    /// Seconds queued bytes may wait for a peer that takes none of them (it stopped
    /// reading) before its connection is dropped. 0: no limit.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) write_timeout: u64,
    /// Many nodes, one server: link the realtime hub to other `zap serve` nodes through
    /// this Redis (`redis://[user:password@]host:port[/db]`, Redis 7 or later). Rooms,
    /// presence, recovery and requests then span every node started with the same URL.
    /// Without it: one node, nothing shared.
    #[arg(long, value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// This node's id in the cluster (shown in `$hello`, the demo page and presence
    /// lookups). Default: `n-` and 16 random hex digits.
    #[arg(long, value_name = "ID", requires = "redis")]
    pub(crate) node_id: Option<String>,
    /// Serve an admin page at `/admin?token=TOKEN` (nodes, connections, rooms, live
    /// message and byte rates, recent disconnects; its data at `/admin/data`). Without
    /// the token: 401. Without this option there is no admin page (404). The token may
    /// come from the environment instead, out of sight of `ps`.
    #[arg(long, value_name = "TOKEN", env = "ZAP_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Serve on the reactor: one event loop per core owns its connections (the shape of
    /// uWebSockets), and realtime sessions are state machines on their loop instead of
    /// tasks: less memory per connection and less CPU per message. Not with
    /// --memory-budget, --max-connections-per-ip, --max-handshake-rate* (refused), and no
    /// HTTP/2.
    #[arg(long)]
    pub(crate) reactor: bool,
    /// With --reactor: the number of event loops. Default: one per core this process may
    /// use.
    #[arg(long, value_name = "N", requires = "reactor", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,
}

/// `RATE` or `RATE:BURST` (a second; the burst defaults to twice the rate).
fn parse_rate(text: &str) -> Result<RateLimit, String> {
    let (rate, burst) = match text.split_once(':') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (text, None),
    };
    let rate: f64 = rate.trim().parse().map_err(|_| format!("not a rate: '{rate}'"))?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("the rate must be above 0, got {rate}"));
    }
    let burst = match burst {
        Some(b) => b.trim().parse::<u32>().map_err(|_| format!("not a burst: '{b}'"))?,
        None => (rate * 2.0).ceil().min(f64::from(u32::MAX)) as u32,
    };
    Ok(RateLimit::new(rate, burst))
}

impl ServeArgs {
    /// Whether the hub links to other nodes through Redis.
    pub(crate) fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }
}

/// Runs the server until Ctrl-C or SIGTERM, then shuts down gracefully: every client gets
/// 1001 after what was queued for it.
pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    crate::init_logging("info", Output::Stdout);
    let shutdown = Shutdown::install();
    let adapter = match &args.redis {
        Some(url) => match realtime::redis(url, args.node_id.clone()).await {
            Ok(adapter) => Some(adapter),
            Err(e) => {
                eprintln!("error: --redis {url}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let hub = realtime::hub(args.max_message, args.max_message_rate, adapter);
    tracing::info!(node = hub.node(), redis = args.redis.as_deref().unwrap_or("none"), "realtime node");
    if args.reactor {
        return crate::serve_reactor::run(args, hub, shutdown).await;
    }
    let server = match bind(&args, &hub).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: cannot listen on {}:{}: {e}", args.host, args.port);
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    // On stdout: scripts that start us on port 0 read the port from this line.
    let scheme = if args.tls_cert.is_some() { "wss" } else { "ws" };
    tracing::info!("listening on {scheme}://{addr}");
    let broadcast = Clients::new();
    let signal = async {
        let signal = shutdown.recv().await;
        tracing::info!("{signal}: shutting down");
    };
    match server.serve_with_shutdown(move |ws| handle(ws, broadcast.clone(), hub.clone()), signal).await {
        Ok(()) => {
            tracing::info!("shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server stopped");
            ExitCode::FAILURE
        }
    }
}

async fn bind(args: &ServeArgs, hub: &Hub) -> zapsocket::Result<Server> {
    let budget = (args.memory_budget > 0).then(|| MemoryBudget::new(args.memory_budget));
    let mut config = WebSocketConfig::default()
        .max_message_size(args.max_message)
        .max_frame_size(args.max_message)
        .memory_budget(budget.clone())
        .write_timeout((args.write_timeout > 0).then(|| Duration::from_secs(args.write_timeout)));
    config = match args.ping_interval {
        0 => config.no_heartbeat(),
        secs => config.heartbeat(Duration::from_secs(secs), Duration::from_secs(secs)),
    };
    let hub = hub.clone();
    let admin = match &args.admin_token {
        Some(token) => Some(crate::admin::Admin::start(token.clone(), &hub).await),
        None => None,
    };
    let metrics = zapsocket::Metrics::new();
    let mut builder = Server::builder().metrics(&metrics);
    if args.deflate {
        builder = builder.deflate(DeflateConfig::default());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let identity = tls_identity(cert, key, args.tls_client_ca.as_deref())?;
        reload_on_sighup(identity.clone(), args);
        builder = builder.tls(identity);
    }
    for origin in &args.allowed_origins {
        builder = builder.allowed_origin(origin.as_str());
    }
    for net in &args.trusted_proxies {
        builder = builder.trusted_proxy(*net);
    }
    for name in &args.subprotocols {
        builder = builder.subprotocol(name.as_str());
    }
    if let Some(max) = args.max_connections {
        builder = builder.max_connections(max);
    }
    if let Some(max) = args.max_connections_per_ip {
        builder = builder.max_connections_per_ip(max);
    }
    if let Some(rate) = args.max_handshake_rate {
        builder = builder.max_handshake_rate(rate);
    }
    if let Some(rate) = args.max_handshake_rate_per_ip {
        builder = builder.max_handshake_rate_per_ip(rate);
    }
    builder
        .host(args.host.as_str())
        .port(args.port)
        .path("/")
        .path("/echo")
        .path("/broadcast")
        .path(realtime::PATH)
        .subprotocol(zapsocket_realtime::SUBPROTOCOL_V2)
        .subprotocol(zapsocket_realtime::SUBPROTOCOL)
        .config(config)
        .shutdown_timeout(Duration::from_secs(args.shutdown_timeout))
        .http(move |request| match &admin {
            Some(admin) if request.path().starts_with("/admin") => admin.http(request),
            _ => realtime::http(&hub, budget.as_ref(), Some(&metrics), request),
        })
        .bind()
        .await
}

/// One connection: the path chose its behavior at the handshake.
async fn handle(ws: WebSocket, broadcast: Clients, hub: Hub) {
    let id = ws.id();
    let route = match ws.request().map(|r| r.path()) {
        Some(realtime::PATH) => Route::Realtime,
        Some("/broadcast") => Route::Broadcast,
        _ => Route::Echo,
    };
    tracing::debug!(id, peer = ?ws.peer_addr(), ?route, "connected");
    let result = match route {
        Route::Realtime => {
            // Boxed: a future is as large as its largest branch, and the realtime one
            // would make every echo connection's as large as a realtime session's.
            Box::pin(hub.handle(ws)).await;
            tracing::debug!(id, "realtime connection closed");
            return;
        }
        Route::Broadcast => relay(ws, &broadcast).await,
        Route::Echo => echo(ws).await,
    };
    match result {
        Ok(Some(frame)) => {
            tracing::debug!(id, code = frame.code.0, reason = %frame.reason, "closed")
        }
        Ok(None) => tracing::debug!(id, "closed"),
        Err(e) => tracing::debug!(id, error = %e, "connection failed"),
    }
}

/// What a connection does, by its path.
#[derive(Clone, Copy, Debug)]
enum Route {
    Echo,
    Broadcast,
    Realtime,
}

/// Echoes every data message with its type. Returns the close frame once the connection
/// is over.
async fn echo(ws: WebSocket) -> zapsocket::Result<Option<zapsocket::CloseFrame>> {
    // `queue` waits only while the send queue is full, not for the write. A lone message
    // is written at once, on this task; the echoes of a burst already received are
    // queued and go out in one syscall once this task has taken the last of them. Pings
    // and pongs are not echoed (the library answers pings itself).
    let (tx, mut rx) = ws.split();
    while let Some(message) = rx.recv().await {
        let message = message?;
        if message.is_data() {
            tx.queue(message).await?;
        }
    }
    Ok(rx.close_frame())
}

/// Relays every data message to every client of `/broadcast`, the sender included.
async fn relay(mut ws: WebSocket, broadcast: &Clients) -> zapsocket::Result<Option<zapsocket::CloseFrame>> {
    broadcast.insert(&ws.sender());
    let result = async {
        while let Some(message) = ws.recv().await {
            let message = message?;
            if message.is_data() {
                broadcast.broadcast(message);
            }
        }
        Ok(ws.close_frame())
    }
    .await;
    broadcast.remove(ws.id());
    result
}

/// The server's TLS identity from PEM files; with `client_ca`, client certificates
/// signed by it are required (mutual TLS).
pub(crate) fn tls_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> zapsocket::Result<zapsocket::Identity> {
    use std::sync::Arc;
    use zapsocket::rustls::{
        self, pki_types::CertificateDer, pki_types::PrivateKeyDer, pki_types::pem::PemObject,
    };
    let Some(client_ca) = client_ca else { return zapsocket::Identity::from_pem_files(cert, key) };
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        zapsocket::Error::from(std::io::Error::other(format!("{what}: {e}")))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(client_ca).map_err(|e| fail("--tls-client-ca", &e))? {
        roots.add(ca.map_err(|e| fail("--tls-client-ca", &e))?).map_err(|e| fail("--tls-client-ca", &e))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| fail("--tls-client-ca", &e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail("--tls-cert", &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail("--tls-cert", &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| fail("--tls-key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("TLS", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| fail("--tls-cert and --tls-key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(zapsocket::Identity::from_config(Arc::new(config)))
}

/// On SIGHUP, reads the certificate, key (and client CA) files again and serves the
/// next handshakes with them; a file that does not load leaves the old ones in place.
pub(crate) fn reload_on_sighup(identity: zapsocket::Identity, args: &ServeArgs) {
    #[cfg(unix)]
    {
        let (Some(cert), Some(key)) = (args.tls_cert.clone(), args.tls_key.clone()) else { return };
        let client_ca = args.tls_client_ca.clone();
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match tls_identity(&cert, &key, client_ca.as_deref()) {
                    Ok(fresh) => {
                        identity.replace(&fresh);
                        tracing::info!("SIGHUP: TLS certificate reloaded from {}", cert.display());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SIGHUP: TLS certificate not reloaded, the old one stays")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (identity, args);
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is created,
/// so a signal that comes right after startup is not lost.
pub(crate) struct Shutdown {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Shutdown {
    fn install() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals =
                signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
            Shutdown { signals: signals.ok() }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    /// Resolves with the name of the signal received.
    pub(crate) async fn recv(self) -> &'static str {
        #[cfg(unix)]
        if let Some((mut interrupt, mut terminate)) = self.signals {
            return tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without running it.
    fn size_of_output<A, F>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Each connection keeps its handler's future for its whole life: the echo one must
    /// not carry the realtime session's states (docs/BENCHMARKS.md, "Memory per idle
    /// connection").
    #[test]
    fn handler_futures_stay_small() {
        let hub = || zapsocket_realtime::Hub::builder().build();
        let echo = size_of_output(|ws: WebSocket| handle(ws, Clients::default(), hub()));
        // 360 bytes in a test build (the sizes of a release build differ a little).
        assert!(echo <= 384, "the handler future of an echo connection is {echo} bytes");
        // 528 bytes: what a message may wait for (the message rate, the protocol's own
        // requests such as `$resume`) and the set of running handlers are boxed; it was
        // 952 bytes in a release build.
        let realtime = size_of_output(|ws: WebSocket| hub().handle(ws));
        assert!(realtime <= 576, "a realtime session's future is {realtime} bytes");
    }
}
