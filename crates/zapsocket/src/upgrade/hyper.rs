//! Upgrade a hyper 1 request (feature `hyper`): serve routes and WebSockets on one port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONNECTION, HeaderName, HeaderValue, UPGRADE};
use http::{Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::Upgrader;
use crate::joined::Joined;
use crate::request::Request;
use crate::server::{Admitted, Refusal, Settings, admit, open};
use crate::socket::WebSocket;

/// Answers a hyper 1 upgrade request: returns the response for hyper to send (101, or
/// the refusal: 400/426 for a bad upgrade, 403, 404, 503, or the `authorize` hook's
/// answer), and once hyper has switched protocols runs `handler` with the connection.
/// The server must be built with upgrades on (`http1::Builder::serve_connection(..)
/// .with_upgrades()`).
///
/// Here hyper writes the 101 before `handler` runs, so a client may see the connection
/// open a moment before the handler has, say, joined a broadcast set (with
/// [`Server::serve`](crate::Server::serve) the handler's first steps come first). A
/// client that must not miss a broadcast waits for a first message from the handler (a
/// welcome) before counting on it.
///
/// ```no_run
/// # async fn run(stream: tokio::net::TcpStream, peer: std::net::SocketAddr) {
/// use hyper::service::service_fn;
/// use hyper_util::rt::TokioIo;
/// let upgrader = zapsocket::Upgrader::default();
/// let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
///     let upgrader = upgrader.clone();
///     async move {
///         if req.uri().path() == "/ws" {
///             return Ok::<_, std::convert::Infallible>(
///                 zapsocket::hyper::upgrade(&upgrader, req, peer, |mut ws| async move {
///                     while let Some(Ok(msg)) = ws.recv().await {
///                         if ws.send(msg).await.is_err() { break; }
///                     }
///                 })
///                 .await,
///             );
///         }
///         Ok(hyper::Response::new("hello over HTTP".to_string()))
///     }
/// });
/// let conn = hyper::server::conn::http1::Builder::new()
///     .serve_connection(TokioIo::new(stream), service)
///     .with_upgrades();
/// let _ = conn.await;
/// # }
/// ```
pub async fn upgrade<B, F, Fut>(
    upgrader: &Upgrader,
    mut req: http::Request<B>,
    peer: SocketAddr,
    handler: F,
) -> Response<String>
where
    F: FnOnce(WebSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let on_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let (parts, _body) = req.into_parts();
    let (request, admitted) = match decide(&upgrader.settings, &parts, peer).await {
        Ok(decided) => decided,
        Err(refusal) => return refusal_response(refusal),
    };
    let Some(on_upgrade) = on_upgrade else {
        return text(StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded");
    };
    let response = switching_protocols(&request, &admitted);
    spawn_connection(upgrader.settings.clone(), on_upgrade, request, admitted, handler);
    response
}

/// The checks of a [`Server`](crate::Server), within its handshake timeout.
pub(crate) async fn decide(
    settings: &Settings,
    parts: &http::request::Parts,
    peer: SocketAddr,
) -> Result<(Request, Admitted), Refusal> {
    let decided = decide_inner(settings, parts, peer).await;
    if let Err(refusal) = &decided {
        crate::server::count(settings, refusal.status());
    }
    decided
}

async fn decide_inner(
    settings: &Settings,
    parts: &http::request::Parts,
    peer: SocketAddr,
) -> Result<(Request, Admitted), Refusal> {
    if settings.shutdown.is_cancelled() {
        return Err(Refusal::Response(crate::HttpResponse::text(503, "server is shutting down")));
    }
    let request = super::parse_head(parts, peer, settings)?;
    match crate::time::timeout(settings.handshake_timeout, admit(&request, settings)).await {
        Ok(admitted) => Ok((request, admitted?)),
        Err(_) => Err(Refusal::Response(crate::HttpResponse::text(503, "handshake not decided in time"))),
    }
}

/// Runs the connection once hyper hands over the upgraded stream.
pub(crate) fn spawn_connection<F, Fut>(
    settings: Arc<Settings>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    request: Request,
    admitted: Admitted,
    handler: F,
) where
    F: FnOnce(WebSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (ws, driver) = open(TokioIo::new(upgraded), None, &[], request, admitted, &settings);
                Joined::new(driver, handler(ws)).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
}

/// The answer that opens an admitted request: 101 for an HTTP/1.1 upgrade; 200 for an
/// extended CONNECT over HTTP/2 (RFC 8441: no `Upgrade`, no `Sec-WebSocket-Accept`).
pub(crate) fn switching_protocols(request: &Request, admitted: &Admitted) -> Response<String> {
    let mut response = Response::new(String::new());
    let headers = response.headers_mut();
    let mut pairs = Vec::new();
    if !request.is_http2() {
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        pairs.push(("sec-websocket-accept", admitted.accept.as_str()));
    }
    *response.status_mut() =
        if request.is_http2() { StatusCode::OK } else { StatusCode::SWITCHING_PROTOCOLS };
    let headers = response.headers_mut();
    let answer = &admitted.response;
    pairs.extend(answer.protocol.as_deref().map(|p| ("sec-websocket-protocol", p)));
    pairs.extend(answer.extensions.as_deref().map(|e| ("sec-websocket-extensions", e)));
    pairs.extend(answer.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    response
}

pub(crate) fn refusal_response(refusal: Refusal) -> Response<String> {
    let refused = refusal.into_response();
    let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = text(status, String::from_utf8_lossy(&refused.body).into_owned());
    if let Ok(value) = HeaderValue::try_from(&refused.content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    for (name, value) in refused.valid_headers() {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<String> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
}
