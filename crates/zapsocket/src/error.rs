//! The I/O layer's error type: opaque, with `is_*` predicates.

use std::fmt;
use std::io;

use zapsocket_proto::CloseCode;
use zapsocket_proto::handshake::HandshakeError;

/// A `Result` with zapsocket's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from a WebSocket connection, server or client.
///
/// Opaque on purpose: ask what it is with the `is_*` predicates, or read the close code a
/// protocol violation caused with [`Error::close_code`]. A clean close is not an error:
/// `recv()` returns `None` and [`crate::WebSocket::close_frame`] has the peer's code.
#[derive(Clone)]
pub struct Error {
    kind: Box<Kind>,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// The transport failed.
    Io(io::ErrorKind, String),
    /// The peer broke the protocol or a limit (or a keepalive/close timer expired).
    Protocol(zapsocket_proto::Error),
    /// The opening handshake failed; a server's refusal keeps the start of its body.
    Handshake(HandshakeError, Option<bytes::Bytes>),
    /// The connection is closing or closed: nothing more can be sent.
    Closed,
    /// The send queue is full (a non-waiting send) and the message was not queued.
    QueueFull,
    /// The connection was terminated (by `terminate()`, the slow-consumer policy or a
    /// shutdown).
    Terminated,
    /// A deadline passed (handshake or connect).
    Timeout(&'static str),
    /// A URL or argument was invalid.
    Invalid(String),
    /// TLS failed: a bad certificate or key, or a peer's certificate not trusted.
    Tls(String),
    /// An HTTP proxy did not open the tunnel: its status (anything but 2xx), or none
    /// when its answer was not HTTP or too long.
    Proxy(Option<u16>, String),
    /// A redirect (its 3xx status) could not be followed: too many, or a `Location`
    /// that is not a `ws`, `wss`, `http` or `https` URL.
    Redirect(u16, String),
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error { kind: Box::new(kind) }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::new(Kind::Invalid(msg.into()))
    }

    /// The transport (TCP, TLS) failed.
    pub fn is_io(&self) -> bool {
        matches!(*self.kind, Kind::Io(..))
    }

    /// The peer violated RFC 6455 or a configured limit, or a keepalive or close timer
    /// expired.
    pub fn is_protocol(&self) -> bool {
        matches!(*self.kind, Kind::Protocol(_))
    }

    /// The opening handshake failed (see [`Error::status`]), or a redirect could not
    /// be followed ([`ClientBuilder::follow_redirects`](crate::ClientBuilder::follow_redirects):
    /// too many, or to a URL that is not `ws`, `wss`, `http` or `https`).
    pub fn is_handshake(&self) -> bool {
        matches!(*self.kind, Kind::Handshake(..) | Kind::Redirect(..))
    }

    /// An HTTP proxy did not open the tunnel ([`ClientBuilder::proxy`](crate::ClientBuilder::proxy)):
    /// it refused `CONNECT` ([`Error::status`] has its status: 407 for missing or wrong
    /// credentials, 403, 502…), or answered what is not HTTP. A proxy that cannot be
    /// reached at all is an I/O error ([`Error::is_io`]) naming it.
    pub fn is_proxy(&self) -> bool {
        matches!(*self.kind, Kind::Proxy(..))
    }

    /// The connection is closing or closed, so the operation could not be done.
    pub fn is_closed(&self) -> bool {
        matches!(*self.kind, Kind::Closed | Kind::Terminated)
    }

    /// A non-waiting send found the send queue full.
    pub fn is_queue_full(&self) -> bool {
        matches!(*self.kind, Kind::QueueFull)
    }

    /// A deadline passed: handshake, connect, keepalive (pong) or close handshake.
    pub fn is_timeout(&self) -> bool {
        match &*self.kind {
            Kind::Timeout(_) => true,
            Kind::Protocol(e) => {
                matches!(e, zapsocket_proto::Error::KeepaliveTimeout | zapsocket_proto::Error::CloseTimeout)
            }
            Kind::Io(k, _) => *k == io::ErrorKind::TimedOut,
            _ => false,
        }
    }

    /// TLS failed: the peer's certificate was not trusted (unknown issuer, wrong name,
    /// expired), the TLS handshake failed, or a certificate or key could not be loaded.
    pub fn is_tls(&self) -> bool {
        matches!(*self.kind, Kind::Tls(_))
    }

    pub(crate) fn tls(msg: impl Into<String>) -> Self {
        Error::new(Kind::Tls(msg.into()))
    }

    /// An argument (URL, header, close code) was invalid.
    pub fn is_invalid(&self) -> bool {
        matches!(*self.kind, Kind::Invalid(_))
    }

    /// The close code a protocol violation caused (1002, 1007, 1009, ...).
    pub fn close_code(&self) -> Option<CloseCode> {
        match &*self.kind {
            Kind::Protocol(e) => e.close_code(),
            _ => None,
        }
    }

    /// The HTTP status of a failed handshake (the one we answered, or the server's; a
    /// redirect's 3xx when it was not followed), or of a proxy's refusal to open the
    /// tunnel (then [`Error::is_proxy`] is true).
    pub fn status(&self) -> Option<u16> {
        match &*self.kind {
            Kind::Handshake(e, _) => Some(e.status()),
            Kind::Proxy(status, _) => *status,
            Kind::Redirect(status, _) => Some(*status),
            _ => None,
        }
    }

    /// The start of the body of a server's refusal (a failed handshake with a status
    /// other than 101): up to [`MAX_REFUSAL_BODY`] bytes, read for at most a second.
    /// `authorize` hooks (ours, socket.io's, most frameworks') say why in it.
    ///
    /// ```no_run
    /// # async fn run() {
    /// match zapsocket::Client::connect("ws://127.0.0.1:8080/").await {
    ///     Err(e) if e.status() == Some(401) => {
    ///         let why = e.body().map(String::from_utf8_lossy).unwrap_or_default();
    ///         eprintln!("refused: {why}");
    ///     }
    ///     _ => {}
    /// }
    /// # }
    /// ```
    pub fn body(&self) -> Option<&[u8]> {
        match &*self.kind {
            Kind::Handshake(_, Some(body)) => Some(body),
            _ => None,
        }
    }

    /// The protocol error, if this is one.
    pub fn protocol_error(&self) -> Option<&zapsocket_proto::Error> {
        match &*self.kind {
            Kind::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// This error as an [`io::Error`] with itself inside, of the kind that fits (the
    /// table in [`crate::WebSocketStream`]'s docs).
    pub(crate) fn into_io(self) -> io::Error {
        use zapsocket_proto::Error as Proto;
        let kind = match &*self.kind {
            Kind::Io(kind, _) => *kind,
            Kind::Protocol(Proto::ConnectionReset) => io::ErrorKind::UnexpectedEof,
            Kind::Protocol(Proto::KeepaliveTimeout | Proto::CloseTimeout) | Kind::Timeout(_) => {
                io::ErrorKind::TimedOut
            }
            Kind::Protocol(_) => io::ErrorKind::InvalidData,
            Kind::Closed => io::ErrorKind::BrokenPipe,
            Kind::Terminated => io::ErrorKind::ConnectionAborted,
            Kind::QueueFull => io::ErrorKind::WouldBlock,
            Kind::Invalid(_) => io::ErrorKind::InvalidInput,
            Kind::Handshake(..) | Kind::Tls(_) | Kind::Proxy(..) | Kind::Redirect(..) => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Error").field(&self.kind).finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            Kind::Io(_, msg) => write!(f, "I/O error: {msg}"),
            Kind::Protocol(e) => match e.close_code() {
                Some(code) => write!(f, "protocol error ({code}): {e}"),
                None => write!(f, "{e}"),
            },
            Kind::Handshake(e, body) => {
                write!(f, "{e}")?;
                match body.as_deref().map(String::from_utf8_lossy) {
                    Some(text) if !text.trim().is_empty() => {
                        let text: String = text.trim().chars().take(200).collect();
                        write!(f, ": {text}")
                    }
                    _ => Ok(()),
                }
            }
            Kind::Closed => f.write_str("the connection is closed"),
            Kind::QueueFull => f.write_str("the send queue is full"),
            Kind::Terminated => f.write_str("the connection was terminated"),
            Kind::Timeout(what) => write!(f, "{what} timed out"),
            Kind::Invalid(msg) => write!(f, "invalid argument: {msg}"),
            Kind::Tls(msg) => write!(f, "TLS error: {msg}"),
            Kind::Proxy(_, msg) => f.write_str(msg),
            Kind::Redirect(status, msg) => write!(f, "handshake failed ({status}): {msg}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::new(Kind::Io(e.kind(), e.to_string()))
    }
}

impl From<zapsocket_proto::Error> for Error {
    fn from(e: zapsocket_proto::Error) -> Self {
        match e {
            zapsocket_proto::Error::AlreadyClosed => Error::new(Kind::Closed),
            zapsocket_proto::Error::ControlPayloadTooLong
            | zapsocket_proto::Error::UnsendableCloseCode(_)
            | zapsocket_proto::Error::FragmentOrder => Error::new(Kind::Invalid(e.to_string())),
            e => Error::new(Kind::Protocol(e)),
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::new(Kind::Handshake(e, None))
    }
}

impl Error {
    pub(crate) fn refused(e: HandshakeError, body: bytes::Bytes) -> Self {
        Error::new(Kind::Handshake(e, Some(body)))
    }

    /// A transport error, with what it concerned (`proxy 10.0.0.1:3128: connection refused`).
    pub(crate) fn io_about(e: &io::Error, about: impl fmt::Display) -> Self {
        Error::new(Kind::Io(e.kind(), format!("{about}: {e}")))
    }

    /// A server's redirect a client may follow: its status and `Location`.
    pub(crate) fn redirect(&self) -> Option<(u16, &str)> {
        match &*self.kind {
            Kind::Handshake(e, _) => Some((e.status(), crate::redirect::location(e)?)),
            _ => None,
        }
    }
}

/// The most bytes of a refused handshake's body kept in the error ([`Error::body`]).
pub const MAX_REFUSAL_BODY: usize = 1024;
