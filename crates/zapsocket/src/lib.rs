//! # zapsocket
//!
//! WebSocket server and client for tokio, for people who know Node's `ws`: a
//! [`Server`] that accepts connections, a [`WebSocket`] per connection (send text or
//! binary, close with a code and reason, terminate, ping/pong, ready state), a
//! [`Client`], and what `ws` users otherwise write by hand: broadcast to all and to all
//! but the sender ([`Clients`], the frame encoded once), and a heartbeat that drops dead
//! peers.
//!
//! ```no_run
//! use zapsocket::{Server, Message};
//!
//! #[tokio::main]
//! async fn main() -> zapsocket::Result<()> {
//!     let server = Server::bind("127.0.0.1:8080").await?;
//!     let clients = server.clients();
//!     server.serve(move |mut ws| {
//!         let clients = clients.clone();
//!         async move {
//!             while let Some(Ok(msg)) = ws.recv().await {
//!                 if msg.is_data() {
//!                     clients.broadcast_except(ws.id(), msg);
//!                 }
//!             }
//!         }
//!     }).await
//! }
//! ```
//!
//! ## How a connection runs
//!
//! `recv()` reads the socket and decodes on your task, so a slow reader pushes back on
//! its peer through TCP instead of growing memory, and a send writes at once when
//! nothing else is queued. Each connection also has a driver (polled in the handler's
//! task on the server) that writes what is left, every queued frame in one vectored
//! write (the answers to a burst of messages, broadcasts), reads ahead into a bounded
//! buffer while nobody waits in `recv()`, runs the heartbeat and ends the transport.
//! Sends resolve once written; broadcasts queue without waiting, and a client whose
//! queue is full gets the [`SlowConsumer`] policy. zapsocket needs no timer from the
//! runtime ([`time`]).
//!
//! ## Compression
//!
//! permessage-deflate (RFC 7692) is off on the server until
//! [`ServerBuilder::deflate`] turns it on, and offered by the client unless
//! [`ClientBuilder::deflate`] is given `None`; either way a connection compresses only when
//! both ends agreed. Messages under [`DeflateConfig::threshold`] (1 KiB) go uncompressed,
//! [`WebSocket::send_uncompressed`] skips compression for one message, and inflating is
//! capped at the message-size limit. By default the server keeps no compressor per
//! connection and compresses a broadcast once for all recipients; docs/DEFLATE.md gives
//! the memory per connection and the trade-offs.
//!
//! ## In a web app
//!
//! [`ServerBuilder::authorize`] runs an async hook before the 101 answer (refuse with any
//! status, or accept with data read later by [`WebSocket::data`]);
//! [`ServerBuilder::allowed_origin`] refuses other origins with 403;
//! [`ServerBuilder::max_connections`] and [`ServerBuilder::max_connections_per_ip`] answer
//! 503 when full; [`ServerBuilder::tls`] serves `wss://` (rustls), and the client verifies
//! certificates against the system roots and [`ClientBuilder::add_root_certificate`].
//! [`Server::serve_with_shutdown`] shuts down gracefully (1001 to every client after its
//! queued messages). To share a port with another server, [`ServerBuilder::build_upgrader`]
//! gives an [`Upgrader`]: [`Upgrader::handle_upgrade`] for any stream, and behind features
//! `hyper::upgrade` (feature `hyper`) and `axum::WebSocketUpgrade` (feature `axum`).
//!
//! ## Proxies and redirects
//!
//! The [`Client`] goes through the HTTP proxy the environment names (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl reads them) or the one given to
//! [`ClientBuilder::proxy`], with `CONNECT` (TLS stays end to end); a proxy's refusal is
//! an error with its status ([`Error::is_proxy`]). Redirects are followed only when
//! [`ClientBuilder::follow_redirects`] asks for it, as in `ws`, without the
//! `Authorization` and `Cookie` headers on another origin.
//!
//! ## As a byte stream
//!
//! [`WebSocket::into_stream`] turns a connection into a [`WebSocketStream`], tokio's
//! `AsyncRead + AsyncWrite` (like `ws`'s `createWebSocketStream`): reads give the
//! payloads of data messages as one stream of bytes, each write sends one binary
//! message, and `shutdown` closes with 1000. `tokio::io::copy`, `copy_bidirectional`
//! (a TCP tunnel) and `tokio_util::codec::Framed` then work over a WebSocket.
//!
//! ## Limits
//!
//! Every buffer a peer can grow is bounded; see [`WebSocketConfig`] and
//! [`ProtocolConfig`] for each default and the attack it stops. Protocol violations close
//! the connection with the matching code (1002, 1007, 1009); bad handshakes get an HTTP
//! status (400, 404, 405, 426, 431).
//!
//! ## Cancel safety
//!
//! `recv()` is cancel safe. A `send()` dropped before it resolves may still deliver
//! its message: it is queued on the first poll.
//!
//! The protocol itself lives in [`zapsocket_proto`] (re-exported as [`proto`]), which has
//! no I/O and can be driven by anything.

#![forbid(unsafe_code)]

mod budget;
mod client;
mod clients;
mod config;
mod driver;
mod error;
mod extensions;
mod forwarded;
mod heartbeat;
mod joined;
mod message;
mod metrics;
pub mod openmetrics;
mod proxy;
mod rate;
pub mod reactor;
mod redirect;
mod request;
mod server;
mod shared;
mod socket;
mod stream;
pub mod time;
mod tls;
mod transport;
mod upgrade;

pub use budget::{DEFAULT_BUDGET_WAIT, DEFAULT_MEMORY_BUDGET, MemoryBudget};
pub use client::{Client, ClientBuilder};
pub use clients::{Clients, encode};
pub use config::{DEFAULT_WRITE_TIMEOUT, ProtocolConfig, SlowConsumer, WebSocketConfig};
pub use error::{Error, MAX_REFUSAL_BODY, Result};
pub use extensions::Extensions;
pub use forwarded::{InvalidIpNet, IpNet};
pub use message::{Message, Utf8Bytes};
pub use metrics::{Metrics, MetricsSnapshot};
pub use rate::{RateLimit, TokenBucket};
pub use request::Request;
/// The rustls this crate uses, for [`ClientBuilder::tls_config`].
pub use rustls;
pub use server::{Accept, HttpResponse, MAX_RATE_ADDRESSES, Server, ServerBuilder, ShutdownHandle};
pub use shared::ReadyState;
pub use socket::{WebSocket, WebSocketReceiver, WebSocketSender};
pub use stream::WebSocketStream;
pub use tls::{Certificate, Identity};
pub use upgrade::Upgrader;
#[cfg(feature = "axum")]
pub use upgrade::axum;
#[cfg(feature = "hyper")]
pub use upgrade::hyper;
pub use zapsocket_proto as proto;
pub use zapsocket_proto::deflate::{DeflateConfig, DeflateParams};
pub use zapsocket_proto::{CloseCode, CloseFrame, EncodedFrame};

/// What every idle connection keeps, checked so that it does not grow back unnoticed
/// (docs/BENCHMARKS.md, "Memory per idle connection"): cold parts are boxed, errors are
/// one pointer.
#[cfg(all(test, target_pointer_width = "64"))]
mod idle_state {
    use std::mem::size_of;

    #[test]
    fn a_connection_state_stays_small() {
        assert_eq!(size_of::<crate::Error>(), 8, "an error is one pointer");
        assert_eq!(size_of::<Option<crate::Error>>(), 8);
        // 400 bytes, then 8 for the inflater apart from the deflate session (a frame's
        // work lent outside the lock) and 8 for the message counters' box (metrics);
        // 352 since its limits are an `Arc` (80 bytes before).
        let connection = size_of::<zapsocket_proto::Connection>();
        assert!(connection <= 352, "zapsocket_proto::Connection is {connection} bytes");
        // Shared lives in an `Arc`, whose 16 bytes of counts come on top: at most 880
        // bytes keeps it in jemalloc's 896-byte size class. It holds the connection's
        // facts (`Info`, 240 bytes; they were an `Arc` of their own, the 256 class) and
        // the protocol's state, whose limits are shared by a server's connections; the
        // tasks waiting for a write, for room or for the end share one list.
        let info = size_of::<crate::shared::Info>();
        assert!(info <= 240, "Info is {info} bytes");
        let shared = size_of::<crate::shared::Shared>();
        assert!(shared <= 880, "Shared is {shared} bytes");
        // Every connection keeps its request: what few have (a forwarded client address,
        // TLS client certificates, HTTP/2) is boxed apart.
        let request = size_of::<crate::Request>();
        assert!(request <= 104, "Request is {request} bytes");
    }
}
