//! The opening handshake over any stream: read the request, decide, answer, open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zapsocket_proto::deflate::DeflateParams;
use zapsocket_proto::handshake::{HandshakeError, RequestParser, ServerResponse, error_response};
use zapsocket_proto::{CloseCode, Connection, Role};

use super::admission::{Accept, Permit, origin_allowed};
use super::builder::Settings;
use super::{HttpResponse, next_id};
use crate::driver::Driver;
use crate::extensions::Extensions;
use crate::heartbeat::Heartbeat;
use crate::joined::Joined;
use crate::request::Request;
use crate::shared::{Info, Shared};
use crate::socket::WebSocket;

/// Why a request gets no upgrade: the HTTP response it gets instead.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The request is not a valid upgrade (400, 405, 426, 431...).
    Handshake(HandshakeError),
    /// A chosen answer: 403 origin, 404 path, 503 full, the hook's refusal, HTTP routes.
    Response(HttpResponse),
}

/// Counts a handshake answered with `status`, when the server keeps metrics.
pub(crate) fn count(settings: &Settings, status: u16) {
    if let Some(metrics) = &settings.metrics {
        metrics.handshake(status);
    }
}

impl Refusal {
    /// The HTTP status it answers with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Refusal::Handshake(e) => e.status(),
            Refusal::Response(r) => r.status,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Refusal::Handshake(e) => e.to_response(),
            Refusal::Response(r) => r.encode(),
        }
    }

    #[cfg(feature = "hyper")]
    pub(crate) fn into_response(self) -> HttpResponse {
        match self {
            Refusal::Handshake(e) => HttpResponse::text(e.status(), e.reason()),
            Refusal::Response(r) => r,
        }
    }
}

/// A request let in: what to answer, and what the connection holds until it ends.
pub(crate) struct Admitted {
    pub(crate) accept: String,
    pub(crate) response: ServerResponse,
    deflate: Option<DeflateParams>,
    extensions: Extensions,
    permit: Option<Permit>,
    context_slot: ContextSlot,
}

/// Reads and answers the opening handshake, then runs `handler` with the driver in one
/// task (the hot path: see `joined.rs`).
pub(crate) async fn serve_stream<S, F, Fut>(
    stream: S,
    peer: SocketAddr,
    peer_certificates: Option<PeerCertificates>,
    settings: Arc<Settings>,
    handler: Arc<F>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // The handshake's state (its read buffer, the hook's future...) is boxed and freed
    // once it is done: in the task it would stay allocated for the connection's life.
    if let Some((ws, driver)) = Box::pin(handshake(stream, peer, peer_certificates, &settings)).await {
        // A task of its own: every poll of the connection goes straight to `Joined`,
        // not through the layers of this function and the accept loop's task.
        tokio::spawn(Joined::new(driver, handler(ws)));
    }
}

/// The certificates a TLS client presented, leaf first.
pub(crate) type PeerCertificates = Arc<[rustls::pki_types::CertificateDer<'static>]>;

/// Reads and answers the opening handshake; on success returns the socket and its
/// driver.
pub(crate) async fn handshake<S>(
    mut stream: S,
    peer: SocketAddr,
    peer_certificates: Option<PeerCertificates>,
    settings: &Arc<Settings>,
) -> Option<(WebSocket, Driver)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = std::time::Instant::now() + settings.handshake_timeout;
    let read = crate::time::timeout_at(deadline, read_request(&mut stream, settings)).await;
    let (request, leftover) = match read {
        Ok(Ok(Some(parsed))) => parsed,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!(%peer, status = e.status(), reason = e.reason(), "handshake refused");
            count(settings, e.status());
            refuse(&mut stream, &e.to_response()).await;
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            count(settings, 408);
            refuse(&mut stream, &error_response(408, &[], "request head not received in time")).await;
            return None;
        }
    };
    let request =
        Request::new(request, peer, &settings.trusted_proxies).with_peer_certificates(peer_certificates);
    let admitted = match crate::time::timeout_at(deadline, admit(&request, settings)).await {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(refusal)) => {
            if request.as_proto().is_upgrade() {
                count(settings, refusal.status()); // (not a plain HTTP request answered)
            }
            refuse(&mut stream, &refusal.encode()).await;
            return None;
        }
        Err(_) => {
            count(settings, 503);
            refuse(&mut stream, &error_response(503, &[], "handshake not decided in time")).await;
            return None;
        }
    };
    // The 101 is the first thing the driver writes, so a handler's first steps (say,
    // joining a broadcast set) run before the client can see the connection open, as
    // with `ws`'s `connection` event.
    let response = admitted.response.encode(&admitted.accept);
    Some(open(stream, Some(response), &leftover, request, admitted, settings))
}

/// Decides on an upgrade request, in order: HTTP routes, shutting down (503), path (404),
/// validity (400...), origin (403), handshake rates (429), caps (503), the `authorize` hook; then the
/// subprotocol and compression.
pub(crate) async fn admit(request: &Request, settings: &Settings) -> Result<Admitted, Refusal> {
    if !request.as_proto().is_upgrade()
        && let Some(handler) = &settings.http
    {
        return Err(Refusal::Response(
            handler(request).unwrap_or_else(|| HttpResponse::text(404, "not found")),
        ));
    }
    if settings.shutdown.is_cancelled() {
        // Draining: no new WebSocket, whatever path (ws and Python's websockets answer so).
        return Err(Refusal::Response(HttpResponse::text(503, "server is shutting down")));
    }
    if !settings.paths.is_empty() && !settings.paths.iter().any(|p| p == request.path()) {
        return Err(Refusal::Response(HttpResponse::text(404, "no WebSocket endpoint at this path")));
    }
    let accept = request.as_proto().validate_upgrade().map_err(Refusal::Handshake)?;
    if !origin_allowed(request, &settings.allowed_origins) {
        tracing::debug!(peer = %request.peer_addr(), origin = request.origin(), "origin refused");
        return Err(Refusal::Response(HttpResponse::text(403, "origin not allowed")));
    }
    if settings.handshake_rate.is_some() || settings.handshake_rate_per_ip.is_some() {
        let (total, per_ip) = (settings.handshake_rate, settings.handshake_rate_per_ip);
        let now = std::time::Instant::now();
        settings.rates.take(request.ip(), total, per_ip, now).map_err(Refusal::Response)?;
    }
    let permit = match (settings.max_connections, settings.max_connections_per_ip) {
        (None, None) => None,
        (total, per_ip) => Some(settings.slots.take(request.ip(), total, per_ip).map_err(Refusal::Response)?),
    };
    let mut accepted = match &settings.authorize {
        Some(hook) => hook(request.clone()).await.map_err(Refusal::Response)?,
        None => Accept::new(),
    };
    let protocol = choose_protocol(request, settings);
    let deflate = if accepted.no_compression { None } else { negotiate_deflate(request, settings) };
    let context_slot = ContextSlot::take(settings, deflate.as_ref());
    let mut headers = settings.headers.clone();
    headers.append(&mut accepted.headers);
    let response = ServerResponse { protocol, extensions: deflate.map(|p| p.to_header()), headers };
    Ok(Admitted { accept, response, deflate, extensions: accepted.extensions, permit, context_slot })
}

fn choose_protocol(request: &Request, settings: &Settings) -> Option<String> {
    let offered = request.subprotocols();
    match &settings.select_subprotocol {
        Some(select) => select(&offered, request).filter(|p| offered.contains(&p.as_str())),
        None => settings.subprotocols.iter().find(|p| offered.contains(&p.as_str())).cloned(),
    }
}

/// Opens the connection on `stream`: the socket and its driver. `response` is the 101
/// still to send (the driver writes it first), `None` when it was sent already.
pub(crate) fn open<S>(
    stream: S,
    response: Option<Vec<u8>>,
    leftover: &[u8],
    request: Request,
    admitted: Admitted,
    settings: &Arc<Settings>,
) -> (WebSocket, Driver)
where
    S: crate::transport::Transport,
{
    let mut conn = Connection::with_shared_config(Role::Server, settings.protocol());
    if let (Some(params), Some(config)) = (admitted.deflate, &settings.deflate) {
        conn.set_deflate(params, config);
    }
    if settings.metrics.is_some() {
        conn.count_messages();
    }
    if let Some(response) = response {
        conn.outbound().push(response.into());
    }
    conn.feed(leftover);
    let alone = conn.compress_alone();
    let status = if request.is_http2() { 200 } else { 101 };
    let peer = request.peer_addr();
    let info = Info {
        request: Some(request),
        protocol: admitted.response.protocol,
        peer_addr: Some(peer),
        deflate: admitted.deflate,
        extensions: admitted.extensions,
        alone,
    };
    let shared = Shared::new(next_id(), conn, &settings.config, stream, info);
    if let Some(metrics) = &settings.metrics {
        metrics.opened(&shared, status);
        shared.lock().metrics = Some(metrics.clone());
    }
    let ws = WebSocket::new(shared.clone());
    let clients = settings.clients.clone();
    clients.insert(&ws.sender());
    if settings.shutdown.is_cancelled() {
        // Shutdown began while this handshake ran: it gets its 1001 too.
        super::shutdown::start_close(&ws.sender(), CloseCode::GOING_AWAY);
    }
    let id = shared.id;
    let mut driver = Driver::new(shared.clone());
    if Heartbeat::needed(&settings.config) {
        settings.heartbeat.get_or_init(|| Heartbeat::start(&settings.config)).add(&shared);
        if settings.config.protocol.ping_interval.is_some() {
            driver = driver.external_keepalive();
        }
    }
    let (permit, context_slot) = (admitted.permit, admitted.context_slot);
    let driver = driver.on_done(move || {
        clients.remove(id);
        drop((permit, context_slot));
    });
    (ws, driver)
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

type Parsed = (zapsocket_proto::handshake::Request, Vec<u8>);

pub(crate) async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    settings: &Settings,
) -> Result<Option<Parsed>, HandshakeError> {
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
pub(crate) async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, response: &[u8]) {
    let _ = crate::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(response).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
