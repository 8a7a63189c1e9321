//! The user's handles on a connection: [`WebSocket`], and its two halves.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use zapsocket_proto::deflate::DeflateParams;
use zapsocket_proto::{CloseCode, CloseFrame, Connection, EncodedFrame};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::request::Request;
use crate::shared::{Info, ReadyState, Shared};

/// One WebSocket connection: receive with [`WebSocket::recv`] (or as a [`Stream`]), send
/// with [`WebSocket::send`] (or as a [`Sink`]), close, ping, and read its state.
///
/// `recv()` reads the socket and decodes on the reader's task; a send writes at once on
/// the sender's task when nothing else is queued (an answer to a burst of messages waits
/// for the burst, and goes out with the other answers in one write). A driver, polled in
/// the handler's task on the server, writes the rest, reads ahead while nobody waits in
/// `recv()`, and runs the heartbeat and the close. Pings are answered as they are
/// decoded (as in tokio-tungstenite): a connection nobody reads does
/// not answer pings, so keep a task reading (or waiting in
/// [`closed()`](WebSocketSender::closed), or drop the receiver) for as long as the peer
/// runs a heartbeat. Dropping every handle closes the connection with 1000.
///
/// ```no_run
/// # async fn run() -> zapsocket::Result<()> {
/// let mut ws = zapsocket::Client::connect("ws://127.0.0.1:8080/echo").await?;
/// ws.send("hello").await?;
/// while let Some(msg) = ws.recv().await {
///     println!("{:?}", msg?);
/// }
/// println!("closed: {:?}", ws.close_frame());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebSocket {
    tx: WebSocketSender,
    rx: WebSocketReceiver,
}

/// The sending half of a [`WebSocket`]: cheap to clone, usable from any task.
#[derive(Debug)]
pub struct WebSocketSender {
    shared: Arc<Shared>,
    /// Where the last frame queued through the `Sink` ends, for `poll_flush`.
    flush_target: u64,
}

/// The receiving half of a [`WebSocket`].
#[derive(Debug)]
pub struct WebSocketReceiver {
    shared: Arc<Shared>,
}

impl WebSocket {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.acquire();
        shared.acquire();
        WebSocket {
            tx: WebSocketSender { shared: shared.clone(), flush_target: 0 },
            rx: WebSocketReceiver { shared },
        }
    }

    /// The next message, or `None` once the connection is closed.
    ///
    /// A clean close (the peer's close frame, or the end of our own close handshake)
    /// ends the stream without an error: see [`WebSocket::close_frame`]. A protocol
    /// violation by the peer yields one `Err` (the matching close frame is already
    /// sent), then `None`.
    ///
    /// Pings are answered as frames are decoded: here, or by the connection itself when
    /// no `recv()` has been called for 100 ms while data waited (a handler busy
    /// elsewhere); what it decodes then waits for `recv()`, in order, within
    /// [`WebSocketConfig::max_read_buffer`](crate::WebSocketConfig::max_read_buffer).
    ///
    /// Cancel safe: a message is only taken when this returns it.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        self.rx.recv().await
    }

    /// Sends a message; resolves once it is written to the socket.
    ///
    /// Waits while the send queue is full (see
    /// [`WebSocketConfig::max_send_queue`](crate::WebSocketConfig::max_send_queue)). To
    /// send many messages with one write, queue them through the [`Sink`] (`feed`) and
    /// `flush` once.
    pub async fn send(&self, message: impl Into<Message>) -> Result<()> {
        self.tx.send(message).await
    }

    /// Queues a message without waiting for the write. See [`WebSocketSender::queue`].
    pub async fn queue(&self, message: impl Into<Message>) -> Result<()> {
        self.tx.queue(message).await
    }

    /// Sends a message without compressing it. See [`WebSocketSender::send_uncompressed`].
    pub async fn send_uncompressed(&self, message: impl Into<Message>) -> Result<()> {
        self.tx.send_uncompressed(message).await
    }

    /// Splits into a cloneable sender and a receiver, for use from different tasks.
    pub fn split(self) -> (WebSocketSender, WebSocketReceiver) {
        (self.tx, self.rx)
    }

    /// A new sending handle.
    pub fn sender(&self) -> WebSocketSender {
        self.tx.clone()
    }

    /// The receiving half, by reference.
    pub fn receiver(&mut self) -> &mut WebSocketReceiver {
        &mut self.rx
    }

    pub(crate) fn info(&self) -> &Info {
        &self.rx.shared.info
    }
}

/// The sender's methods, on the whole socket.
impl WebSocket {
    /// Queues a message without waiting. See [`WebSocketSender::try_send`].
    pub fn try_send(&self, message: impl Into<Message>) -> Result<()> {
        self.tx.try_send(message)
    }

    /// Sends one fragment of a message. See [`WebSocketSender::send_fragment`].
    pub async fn send_fragment(&self, message: impl Into<Message>, fin: bool) -> Result<()> {
        self.tx.send_fragment(message, fin).await
    }

    /// Sends a ping. See [`WebSocketSender::ping`].
    pub async fn ping(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.tx.ping(payload).await
    }

    /// Sends an unsolicited pong. See [`WebSocketSender::pong`].
    pub async fn pong(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.tx.pong(payload).await
    }

    /// Closes with `code` and `reason`. See [`WebSocketSender::close`].
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        self.tx.close(code, reason).await
    }

    /// Ends the connection at once. See [`WebSocketSender::terminate`].
    pub fn terminate(&self) {
        self.tx.terminate()
    }

    /// Where the connection stands.
    pub fn ready_state(&self) -> ReadyState {
        self.tx.ready_state()
    }

    /// Bytes queued but not yet written (`bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.tx.buffered_amount()
    }

    /// The peer's close frame once closed. See [`WebSocketReceiver::close_frame`].
    pub fn close_frame(&self) -> Option<CloseFrame> {
        self.tx.close_frame()
    }

    /// Waits until the connection is closed. See [`WebSocketSender::closed`].
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// The connection's id (unique in this process).
    pub fn id(&self) -> u64 {
        self.tx.id()
    }

    /// The upgrade request (server side).
    pub fn request(&self) -> Option<&Request> {
        self.tx.request()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.tx.peer_addr()
    }

    /// The negotiated subprotocol, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.tx.protocol()
    }

    /// The permessage-deflate parameters agreed in the handshake, if compression is on.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.tx.deflate()
    }
}

impl WebSocketReceiver {
    /// The next message, or `None` once closed. See [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        Recv { shared: &self.shared, finished: false }.await
    }

    /// The peer's close frame, once the connection is closed, or our own record of why it
    /// ended (1006 terminated or timed out, 1008 send queue full).
    pub fn close_frame(&self) -> Option<CloseFrame> {
        self.shared.lock().close_frame()
    }

    /// The connection's id (unique in this process).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The upgrade request (server side).
    pub fn request(&self) -> Option<&Request> {
        self.shared.info.request.as_ref()
    }

    pub(crate) fn info(&self) -> &Info {
        &self.shared.info
    }
}

impl WebSocketSender {
    /// Sends a message; resolves once it is written to the socket. See
    /// [`WebSocket::send`].
    pub async fn send(&self, message: impl Into<Message>) -> Result<()> {
        let message = self.prepare(message.into());
        let mut op = Some(|c: &mut Connection| queue_outgoing(c, message));
        let offset = poll_fn(|cx| self.shared.poll_enqueue(cx, &mut op, true)).await?;
        self.written(offset).await
    }

    /// Queues a message, waiting only while the send queue is full; does not wait for
    /// the write (like `ws`'s `send(data)` without a callback). It is written at once
    /// when nothing else is queued; while received messages are still waiting to be
    /// handled (a burst), the answers are queued and go out together in one write once
    /// the burst is handled: the cheapest way to echo or relay. A failed write shows in
    /// a later call or in `recv()`.
    pub async fn queue(&self, message: impl Into<Message>) -> Result<()> {
        let message = self.prepare(message.into());
        let mut op = Some(|c: &mut Connection| queue_outgoing(c, message));
        poll_fn(|cx| self.shared.poll_enqueue(cx, &mut op, true)).await.map(drop)
    }

    /// Sends a message without compressing it, whatever its size (like `ws`'s
    /// `send(data, { compress: false })`): for data that is already compressed (images,
    /// archives), or secrets that must not share a compression context with text an
    /// attacker controls. Without permessage-deflate it is [`WebSocketSender::send`].
    pub async fn send_uncompressed(&self, message: impl Into<Message>) -> Result<()> {
        let message = message.into();
        let mut op = Some(|c: &mut Connection| match message {
            Message::Text(t) => c.send_uncompressed(zapsocket_proto::Message::Text(t)),
            Message::Binary(b) => c.send_uncompressed(zapsocket_proto::Message::Binary(b)),
            other => queue_message(c, other),
        });
        let offset = poll_fn(|cx| self.shared.poll_enqueue(cx, &mut op, true)).await?;
        self.written(offset).await
    }

    /// Queues a message without waiting. Fails with an error for which
    /// [`Error::is_queue_full`] is true when the send queue is full.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<()> {
        let message = self.prepare(message.into());
        self.shared.try_enqueue(|c| queue_outgoing(c, message)).map(drop)
    }

    /// `message`, compressed here when the connection will send it compressed on its
    /// own and it is large: the work is then done before the connection's lock is
    /// taken, not under it (sends from other tasks, the reader and the driver need it).
    fn prepare(&self, message: Message) -> Outgoing {
        let Some(alone) = self
            .shared
            .info
            .alone
            .filter(|a| message.len() >= PRECOMPRESS_MIN && a.compresses(message.len()))
        else {
            return Outgoing::Message(message);
        };
        let frame = match &message {
            Message::Text(t) => EncodedFrame::text(t.as_str()),
            Message::Binary(b) => EncodedFrame::binary(b),
            _ => return Outgoing::Message(message),
        };
        frame.prepare_compressed(alone);
        Outgoing::Frame(frame)
    }

    /// Queues a frame encoded once for many connections (see [`crate::Clients`]), without
    /// waiting and without copying it. A full queue applies the
    /// [`SlowConsumer`](crate::SlowConsumer) policy; returns whether the frame was queued.
    pub fn send_encoded(&self, frame: &EncodedFrame) -> Result<bool> {
        if let Some(alone) = self.shared.info.alone {
            // The shared compressed copy is made here, outside the lock, by the first
            // recipient that needs it.
            frame.prepare_compressed(alone);
        }
        self.shared.send_encoded(frame)
    }

    /// Queues a frame encoded once for many connections, waiting while the send queue
    /// is full instead of applying the slow-consumer policy (as [`WebSocketSender::queue`]
    /// does for a message): for a backlog that must all arrive, like a replay.
    pub async fn queue_encoded(&self, frame: &EncodedFrame) -> Result<()> {
        if let Some(alone) = self.shared.info.alone {
            frame.prepare_compressed(alone);
        }
        let mut op = Some(|c: &mut Connection| c.send_encoded(frame));
        poll_fn(|cx| self.shared.poll_enqueue(cx, &mut op, true)).await.map(drop)
    }

    /// Sends one fragment of a message (like `ws`'s `send(data, { fin })`): the first
    /// fragment sets the type, `fin` ends the message. Other messages cannot be sent
    /// until the fragmented one is finished.
    pub async fn send_fragment(&self, message: impl Into<Message>, fin: bool) -> Result<()> {
        let (text, payload) = match message.into() {
            Message::Text(t) => (true, t.into_bytes()),
            Message::Binary(b) => (false, b),
            _ => return Err(Error::invalid("only text and binary messages can be fragmented")),
        };
        let mut op = Some(move |c: &mut Connection| c.send_fragment(text, payload, fin));
        let offset = poll_fn(|cx| self.shared.poll_enqueue(cx, &mut op, true)).await?;
        self.written(offset).await
    }

    /// Sends a ping with `payload` (at most 125 bytes). The pong arrives through `recv()`.
    pub async fn ping(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Ping(payload.into())).await
    }

    /// Sends an unsolicited pong with `payload` (at most 125 bytes).
    pub async fn pong(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::Pong(payload.into())).await
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes), after
    /// everything already queued, and waits until the connection is closed: when the
    /// peer answers, or after the close timeout. Closing a closed connection is a no-op.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        {
            let mut inner = self.shared.lock();
            if !inner.is_done() {
                inner.conn.close(Instant::now(), code, reason)?;
                inner.wake_driver();
            }
        }
        poll_fn(|cx| self.shared.poll_done(cx)).await;
        Ok(())
    }

    /// Ends the connection at once, without a close handshake (like `ws`'s
    /// `terminate()`). What is queued is dropped.
    pub fn terminate(&self) {
        self.shared.lock().terminate();
    }

    /// Where the connection stands.
    pub fn ready_state(&self) -> ReadyState {
        self.shared.ready_state()
    }

    /// Bytes queued but not yet written to the socket (`ws`'s `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.shared.lock().conn.outbound().len()
    }

    /// The peer's close frame, once the connection is closed (or our record of why it
    /// ended). See [`WebSocketReceiver::close_frame`].
    pub fn close_frame(&self) -> Option<CloseFrame> {
        self.shared.lock().close_frame()
    }

    /// Waits until the connection is closed and the transport released.
    ///
    /// A handler may wait here without reading (`ws.closed().await`, as when it only
    /// broadcasts): while it waits, the connection decodes what arrives, so pings are
    /// answered and the peer's close is seen and answered. Messages are kept for
    /// [`WebSocket::recv`] up to
    /// [`WebSocketConfig::max_read_buffer`](crate::WebSocketConfig::max_read_buffer) bytes;
    /// past that, reading pauses until `recv()` takes some (nothing is dropped).
    pub async fn closed(&self) {
        poll_fn(|cx| self.shared.poll_done(cx)).await
    }

    /// The connection's id (unique in this process).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The upgrade request (server side): peer address, headers, path, query, cookies.
    pub fn request(&self) -> Option<&Request> {
        self.shared.info.request.as_ref()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.info.peer_addr
    }

    /// The negotiated subprotocol, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.shared.info.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed in the handshake, if compression is on.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.shared.info.deflate
    }

    async fn written(&self, offset: u64) -> Result<()> {
        poll_fn(|cx| self.shared.poll_written(cx, offset)).await
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn info(&self) -> &Info {
        &self.shared.info
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        shared.acquire();
        WebSocketSender { shared, flush_target: 0 }
    }
}

/// The future of `recv()`: reads on the caller's task. If it is dropped while waiting
/// (a `select!` took another branch), reading goes back to the driver.
struct Recv<'a> {
    shared: &'a Shared,
    finished: bool,
}

impl Future for Recv<'_> {
    type Output = Option<Result<Message>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let poll = self.shared.poll_recv(cx);
        self.finished = poll.is_ready();
        poll
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.cancel_recv();
        }
    }
}

/// Messages from this size on are compressed before the connection's lock is taken (when
/// the connection compresses each message on its own).
const PRECOMPRESS_MIN: usize = 16 * 1024;

/// A message to queue, or its frame compressed ahead.
enum Outgoing {
    Message(Message),
    Frame(EncodedFrame),
}

fn queue_outgoing(c: &mut Connection, outgoing: Outgoing) -> Result<(), zapsocket_proto::Error> {
    match outgoing {
        Outgoing::Message(message) => queue_message(c, message),
        Outgoing::Frame(frame) => c.send_encoded(&frame),
    }
}

fn queue_message(c: &mut Connection, message: Message) -> Result<(), zapsocket_proto::Error> {
    match message {
        Message::Text(t) => c.send(zapsocket_proto::Message::Text(t)),
        Message::Binary(b) => c.send(zapsocket_proto::Message::Binary(b)),
        Message::Ping(p) => c.ping(&p),
        Message::Pong(p) => c.pong(&p),
    }
}

impl Clone for WebSocketSender {
    fn clone(&self) -> Self {
        self.shared.acquire();
        WebSocketSender { shared: self.shared.clone(), flush_target: 0 }
    }
}

impl Drop for WebSocketSender {
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl Drop for WebSocketReceiver {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.receiver_alive = false;
        inner.wake_driver();
        drop(inner);
        self.shared.release();
    }
}

impl Stream for WebSocketReceiver {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.shared.poll_recv(cx)
    }
}

impl Stream for WebSocket {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.shared.poll_recv(cx)
    }
}

impl Sink<Message> for WebSocketSender {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        type Probe = fn(&mut Connection) -> Result<(), zapsocket_proto::Error>;
        let mut probe: Option<Probe> = Some(|_| Ok(()));
        self.shared.poll_enqueue(cx, &mut probe, false).map_ok(drop)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        let this = self.get_mut();
        let mut inner = this.shared.lock();
        if inner.life != crate::shared::Life::Running {
            return Err(crate::error::Error::new(crate::error::Kind::Closed));
        }
        let was_empty = inner.conn.outbound().is_empty();
        queue_message(&mut inner.conn, item)?;
        this.flush_target = inner.conn.outbound().queued_offset();
        if was_empty {
            inner.wake_driver();
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.poll_written(cx, self.flush_target)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        {
            let mut inner = self.shared.lock();
            if !inner.is_done() && inner.conn.state() == zapsocket_proto::State::Open {
                inner.conn.close(Instant::now(), CloseCode::NORMAL, "")?;
                inner.wake_driver();
            }
        }
        self.shared.poll_done(cx).map(Ok)
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.tx).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<()> {
        Pin::new(&mut self.tx).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.tx).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.tx).poll_close(cx)
    }
}
