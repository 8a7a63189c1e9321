//! The axum extractor (feature `axum`): `ws: WebSocketUpgrade` in a handler, as with
//! `axum::extract::ws`, but the connection is a zapsocket [`WebSocket`].

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use super::Upgrader;
use super::hyper::{decide, refusal_response, spawn_connection, switching_protocols};
use crate::request::Request;
use crate::server::Admitted;
use crate::socket::WebSocket;

/// Extracts a WebSocket upgrade in an axum handler; answer with
/// [`WebSocketUpgrade::on_upgrade`].
///
/// The checks of the [`Upgrader`] found in the request's extensions (add one with
/// `.layer(axum::Extension(upgrader))`) run during extraction, so a refused request
/// (403 origin, 503 full, the `authorize` hook's answer, 400/426 not an upgrade) never
/// reaches the handler. Without one, an [`Upgrader::default`] shared by the process is
/// used. The peer address comes from `ConnectInfo<SocketAddr>` when the app is served
/// with `into_make_service_with_connect_info`.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use zapsocket::axum::WebSocketUpgrade;
///
/// async fn ws(ws: WebSocketUpgrade) -> axum::response::Response {
///     ws.on_upgrade(|mut socket| async move {
///         while let Some(Ok(msg)) = socket.recv().await {
///             if socket.send(msg).await.is_err() { break; }
///         }
///     })
/// }
///
/// # async fn run() {
/// let app = Router::new().route("/ws", get(ws));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
/// axum::serve(listener, app).await.unwrap();
/// # }
/// ```
pub struct WebSocketUpgrade {
    upgrader: Upgrader,
    request: Request,
    admitted: Admitted,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade").field("request", &self.request).finish()
    }
}

impl WebSocketUpgrade {
    /// Answers 101 and runs `handler` with the connection once axum has switched
    /// protocols.
    pub fn on_upgrade<F, Fut>(self, handler: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let response = switching_protocols(&self.request, &self.admitted);
        spawn_connection(
            self.upgrader.settings.clone(),
            self.on_upgrade,
            self.request,
            self.admitted,
            handler,
        );
        response.into_response()
    }

    /// The upgrade request: peer address, headers, query, cookies.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The subprotocol that will be answered, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.admitted.response.protocol.as_deref()
    }
}

fn shared_default() -> Upgrader {
    static DEFAULT: OnceLock<Upgrader> = OnceLock::new();
    DEFAULT.get_or_init(Upgrader::default).clone()
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let upgrader = parts.extensions.get::<Upgrader>().cloned().unwrap_or_else(shared_default);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |info| info.0);
        let (request, admitted) =
            decide(&upgrader.settings, parts, peer).await.map_err(|r| refusal_response(r).into_response())?;
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            let mut response = "this connection cannot be upgraded".into_response();
            *response.status_mut() = http::StatusCode::UPGRADE_REQUIRED;
            return Err(response);
        };
        Ok(WebSocketUpgrade { upgrader, request, admitted, on_upgrade })
    }
}
