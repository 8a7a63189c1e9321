//! WebSockets over HTTP/2 (RFC 8441), feature `http2`: a TLS connection whose client chose
//! ALPN `h2` is served as HTTP/2. The server sends `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`;
//! an extended CONNECT with `:protocol = websocket` on a stream goes through the same
//! admission as an HTTP/1.1 upgrade (paths, origins, caps, rates, the `authorize` hook,
//! subprotocols, compression), is answered `200` and becomes a WebSocket on that stream.
//! Other requests get the server's HTTP answers ([`ServerBuilder::http`](crate::ServerBuilder::http)),
//! as over HTTP/1.1. Bad input gets a stream error (RST_STREAM) or, from the h2 crate,
//! a connection error (GOAWAY): a CONNECT without `:protocol`, streams past the limit,
//! header lists past the limit (CONTINUATION floods included).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Settings;
use super::handshake::{Admitted, PeerCertificates, Refusal, admit, count, open};
use crate::HttpResponse;
use crate::joined::Joined;
use crate::request::Request;
use crate::socket::WebSocket;

/// The ALPN protocol of HTTP/2.
pub(crate) const ALPN: &[u8] = b"h2";

/// Streams one HTTP/2 connection may have open at once (each WebSocket is one).
const MAX_STREAMS: u32 = 256;

/// Serves one HTTP/2 connection until it ends or the server shuts down (then GOAWAY,
/// and the streams open finish).
pub(crate) async fn serve<S, F, Fut>(
    io: S,
    peer: SocketAddr,
    peer_certificates: Option<PeerCertificates>,
    settings: Arc<Settings>,
    handler: Arc<F>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(u32::try_from(settings.limits.max_head_size).unwrap_or(u32::MAX))
        .max_send_buffer_size(64 * 1024);
    let handshake = crate::time::timeout(settings.handshake_timeout, builder.handshake::<_, Bytes>(io));
    let mut connection = match handshake.await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    let mut shutting_down = false;
    loop {
        let next = tokio::select! {
            next = connection.accept() => next,
            () = settings.shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                connection.graceful_shutdown();
                continue;
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                let (settings, handler, certs) =
                    (settings.clone(), handler.clone(), peer_certificates.clone());
                tokio::spawn(stream(request, respond, peer, certs, settings, handler));
            }
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 connection failed");
                return;
            }
            None => return,
        }
    }
}

/// One stream: a WebSocket (extended CONNECT), or an HTTP request answered as over
/// HTTP/1.1.
async fn stream<F, Fut>(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: SocketAddr,
    peer_certificates: Option<PeerCertificates>,
    settings: Arc<Settings>,
    handler: Arc<F>,
) where
    F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (parts, body) = request.into_parts();
    let protocol = parts.extensions.get::<h2::ext::Protocol>().map(|p| p.as_str().to_owned());
    let websocket = match (&parts.method, protocol.as_deref()) {
        (&http::Method::CONNECT, Some(p)) if p.eq_ignore_ascii_case("websocket") => true,
        // A plain CONNECT (a proxy's) or another protocol: not served here (RFC 8441 §4).
        (&http::Method::CONNECT, _) => {
            respond.send_reset(Reason::PROTOCOL_ERROR);
            return;
        }
        _ => false,
    };
    let request = match crate::upgrade::read_head(&parts, websocket, &settings) {
        Ok(request) => {
            let request = Request::new(request, peer, &settings.trusted_proxies)
                .with_peer_certificates(peer_certificates);
            if websocket { request.with_http2() } else { request }
        }
        Err(refusal) => return answer(&mut respond, refusal),
    };
    let admitted = match crate::time::timeout(settings.handshake_timeout, admit(&request, &settings)).await {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(refusal)) => {
            if websocket {
                count(&settings, refusal.status());
            }
            return answer(&mut respond, refusal);
        }
        Err(_) => {
            count(&settings, 503);
            let refusal = Refusal::Response(HttpResponse::text(503, "handshake not decided in time"));
            return answer(&mut respond, refusal);
        }
    };
    let send = match respond.send_response(accepted(&admitted), false) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 stream gone before its answer");
            return;
        }
    };
    let io = H2Stream { send, recv: body, pending: Bytes::new(), ended: false };
    let (ws, driver) = open(io, None, &[], request, admitted, &settings);
    Joined::new(driver, handler(ws)).await;
}

/// The `200` that opens a WebSocket stream: subprotocol, extensions, extra headers.
fn accepted(admitted: &Admitted) -> http::Response<()> {
    let mut response = http::Response::new(());
    let answer = &admitted.response;
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    pairs.extend(answer.protocol.as_deref().map(|p| ("sec-websocket-protocol", p)));
    pairs.extend(answer.extensions.as_deref().map(|e| ("sec-websocket-extensions", e)));
    pairs.extend(answer.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    append(&mut response, pairs);
    response
}

/// Answers a refused or plain HTTP request with its status, headers and body.
fn answer(respond: &mut SendResponse<Bytes>, refusal: Refusal) {
    let refused = match refusal {
        Refusal::Handshake(e) => HttpResponse::text(e.status(), e.reason()),
        Refusal::Response(r) => r,
    };
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(refused.status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let headers = refused.valid_headers();
    let mut pairs: Vec<(&str, &str)> = vec![("content-type", refused.content_type.as_str())];
    // Connection-specific fields are not allowed in HTTP/2 (RFC 9113 §8.2.2).
    let hop = ["connection", "keep-alive", "transfer-encoding", "upgrade", "content-length"];
    pairs.extend(headers.filter(|(n, _)| !hop.iter().any(|h| n.eq_ignore_ascii_case(h))));
    append(&mut response, pairs);
    let empty = refused.body.is_empty();
    match respond.send_response(response, empty) {
        Ok(mut send) if !empty => {
            let _ = send.send_data(Bytes::from(refused.body), true);
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "HTTP/2 answer not sent"),
    }
}

fn append<'a>(response: &mut http::Response<()>, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    use http::header::{HeaderName, HeaderValue};
    for (name, value) in pairs {
        let name = HeaderName::try_from(name.to_ascii_lowercase());
        if let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(value)) {
            response.headers_mut().append(name, value);
        }
    }
}

/// An HTTP/2 stream as the byte stream a WebSocket runs on: DATA frames in and out,
/// within the stream's flow control.
struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// What arrived and was not read yet (its flow-control credit is given back once
    /// it is taken from the stream, so the peer cannot send past what is read).
    pending: Bytes,
    ended: bool,
}

fn io_error(e: h2::Error) -> std::io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| std::io::Error::other("HTTP/2 I/O error"));
    }
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, e)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => self.ended = true,
            }
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        match ready!(self.send.poll_capacity(cx)) {
            Some(Ok(n)) if n > 0 => {
                let n = n.min(buf.len());
                match self.send.send_data(Bytes::copy_from_slice(&buf[..n]), false) {
                    Ok(()) => Poll::Ready(Ok(n)),
                    Err(e) => Poll::Ready(Err(io_error(e))),
                }
            }
            Some(Err(e)) => Poll::Ready(Err(io_error(e))),
            // No capacity (the stream was reset) or none yet: the reset tells.
            _ => match ready!(self.send.poll_reset(cx)) {
                Ok(reason) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    format!("HTTP/2 stream reset: {reason}"),
                ))),
                Err(e) => Poll::Ready(Err(io_error(e))),
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // The connection's task writes what the streams queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
