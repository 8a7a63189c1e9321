//! `zap serve --reactor`: the same endpoints on the reactor server
//! ([`zapsocket::reactor`]): one event loop per core owns its connections, and each
//! realtime session is a state machine on its loop ([`Hub::reactor_handler`]) instead of
//! a task. Lighter per connection; what it does not have yet (the memory budget, per-IP
//! and handshake rate limits, HTTP/2, the WebSocket layer's metrics) is refused at
//! startup rather than ignored.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use zapsocket::reactor::{Handler, Reactor, Socket};
use zapsocket::{CloseCode, DeflateConfig, HttpResponse, Message, Request, WebSocketConfig};
use zapsocket_realtime::{Hub, HubHandler, Session};

use crate::realtime;
use crate::serve::ServeArgs;

/// The topic of `/broadcast`.
const BROADCAST: &str = "broadcast";

/// A connection, by its path.
enum Conn {
    Echo,
    Broadcast,
    Realtime(Session),
}

/// One loop's handler: echo, relay, or the hub's.
struct Serve {
    hub: Hub,
    realtime: HubHandler,
    admin: Option<Arc<crate::admin::Admin>>,
}

impl Serve {
    fn realtime<'s>(ws: &'s mut Socket<'_, Conn>) -> Option<Socket<'s, Session>> {
        ws.map(|conn| match conn {
            Conn::Realtime(session) => Some(session),
            _ => None,
        })
    }
}

impl Handler for Serve {
    type State = Conn;

    fn upgrade(&mut self, request: &Request) -> Result<Conn, HttpResponse> {
        Ok(match request.path() {
            realtime::PATH => Conn::Realtime(self.realtime.upgrade(request)?),
            "/broadcast" => Conn::Broadcast,
            _ => Conn::Echo,
        })
    }

    fn http(&mut self, request: &Request) -> Option<HttpResponse> {
        match &self.admin {
            Some(admin) if request.path().starts_with("/admin") => admin.http(request),
            _ => realtime::http(&self.hub, None, None, request),
        }
    }

    fn open(&mut self, ws: &mut Socket<'_, Conn>) {
        if matches!(ws.state(), Conn::Broadcast) {
            ws.subscribe(BROADCAST);
        } else if let Some(mut ws) = Serve::realtime(ws) {
            self.realtime.open(&mut ws);
        }
    }

    fn message(&mut self, ws: &mut Socket<'_, Conn>, message: Message) {
        match ws.state() {
            Conn::Echo if message.is_data() => {
                // A full send queue pauses reading by itself until `drain`.
                let _ = ws.send(message);
            }
            Conn::Broadcast if message.is_data() => ws.publish(BROADCAST, message),
            Conn::Echo | Conn::Broadcast => {}
            Conn::Realtime(_) => {
                if let Some(mut ws) = Serve::realtime(ws) {
                    self.realtime.message(&mut ws, message);
                }
            }
        }
    }

    fn drain(&mut self, ws: &mut Socket<'_, Conn>) {
        if let Some(mut ws) = Serve::realtime(ws) {
            self.realtime.drain(&mut ws);
        }
    }

    fn wake(&mut self, ws: &mut Socket<'_, Conn>) {
        if let Some(mut ws) = Serve::realtime(ws) {
            self.realtime.wake(&mut ws);
        }
    }

    fn close(&mut self, conn: Conn, code: CloseCode, reason: &str) {
        if let Conn::Realtime(session) = conn {
            self.realtime.close(session, code, reason);
        }
    }
}

/// What `--reactor` does not do yet: the options that would be ignored.
fn unsupported(args: &ServeArgs) -> Vec<&'static str> {
    let mut refused = Vec::new();
    if args.memory_budget != zapsocket::DEFAULT_MEMORY_BUDGET {
        refused.push("--memory-budget");
    }
    if args.max_connections_per_ip.is_some() {
        refused.push("--max-connections-per-ip");
    }
    if args.max_handshake_rate.is_some() {
        refused.push("--max-handshake-rate");
    }
    if args.max_handshake_rate_per_ip.is_some() {
        refused.push("--max-handshake-rate-per-ip");
    }
    refused
}

/// Serves on the reactor until Ctrl-C or SIGTERM, then shuts down gracefully.
pub(crate) async fn run(args: ServeArgs, hub: Hub, shutdown: crate::serve::Shutdown) -> ExitCode {
    let refused = unsupported(&args);
    if !refused.is_empty() {
        eprintln!(
            "error: --reactor does not support {} yet (zap serve without --reactor does)",
            refused.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let mut config = WebSocketConfig::default()
        .max_message_size(args.max_message)
        .max_frame_size(args.max_message)
        .write_timeout((args.write_timeout > 0).then(|| Duration::from_secs(args.write_timeout)));
    config = match args.ping_interval {
        0 => config.no_heartbeat(),
        secs => config.heartbeat(Duration::from_secs(secs), Duration::from_secs(secs)),
    };
    let mut builder = Reactor::builder()
        .host(args.host.as_str())
        .port(args.port)
        .config(config)
        .shutdown_timeout(Duration::from_secs(args.shutdown_timeout));
    for path in ["/", "/echo", "/broadcast", realtime::PATH] {
        builder = builder.path(path);
    }
    for name in args
        .subprotocols
        .iter()
        .map(String::as_str)
        .chain([zapsocket_realtime::SUBPROTOCOL_V2, zapsocket_realtime::SUBPROTOCOL])
    {
        builder = builder.subprotocol(name);
    }
    if args.deflate {
        builder = builder.deflate(DeflateConfig::default());
    }
    for origin in &args.allowed_origins {
        builder = builder.allowed_origin(origin.as_str());
    }
    for net in &args.trusted_proxies {
        builder = builder.trusted_proxy(*net);
    }
    if let Some(max) = args.max_connections {
        builder = builder.max_connections(max);
    }
    if let Some(threads) = args.threads {
        builder = builder.threads(usize::from(threads));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        match crate::serve::tls_identity(cert, key, args.tls_client_ca.as_deref()) {
            Ok(identity) => {
                crate::serve::reload_on_sighup(identity.clone(), &args);
                builder = builder.tls(identity);
            }
            Err(e) => {
                eprintln!("error: cannot listen on {}:{}: {e}", args.host, args.port);
                return ExitCode::FAILURE;
            }
        }
    }
    let admin = match &args.admin_token {
        Some(token) => Some(crate::admin::Admin::start(token.clone(), &hub).await),
        None => None,
    };
    let realtime = hub.reactor_handler(tokio::runtime::Handle::current());
    let serve = |_| Serve { hub: hub.clone(), realtime: realtime.clone(), admin: admin.clone() };
    let running = match builder.start(serve) {
        Ok(running) => Arc::new(running),
        Err(e) => {
            eprintln!("error: cannot listen on {}:{}: {e}", args.host, args.port);
            return ExitCode::FAILURE;
        }
    };
    let scheme = if args.tls_cert.is_some() { "wss" } else { "ws" };
    // On stdout: scripts that start us on port 0 read the port from this line.
    tracing::info!("on the reactor");
    tracing::info!("listening on {scheme}://{}", running.local_addr());
    let signal = shutdown.recv().await;
    tracing::info!("{signal}: shutting down");
    running.shutdown();
    let joined = running.clone();
    match tokio::task::spawn_blocking(move || joined.join()).await {
        Ok(()) => {
            // The sessions' departures (presence, the sessions kept for recovery) run on
            // this runtime, after their connections ended.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while hub.metrics().connections > 0 && std::time::Instant::now() < deadline {
                zapsocket::time::sleep(Duration::from_millis(10)).await;
            }
            tracing::info!("shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server stopped");
            ExitCode::FAILURE
        }
    }
}
