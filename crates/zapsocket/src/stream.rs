//! A WebSocket as a byte stream: [`WebSocketStream`], tokio's `AsyncRead + AsyncWrite`
//! over the payloads of data messages (Node `ws`'s `createWebSocketStream`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zapsocket_proto::CloseFrame;

use crate::error::{Error, Kind};
use crate::message::Message;
use crate::socket::{WebSocket, WebSocketReceiver, WebSocketSender};

impl WebSocket {
    /// This connection as a byte stream (tokio's `AsyncRead + AsyncWrite`), like `ws`'s
    /// `createWebSocketStream`: for `tokio::io::copy`, `tokio_util::codec::Framed` and
    /// anything else written for a socket. See [`WebSocketStream`].
    pub fn into_stream(self) -> WebSocketStream {
        let (sender, receiver) = self.split();
        let max_write = {
            let inner = sender.shared().lock();
            let config = inner.conn.config();
            config.max_message_size.min(config.max_frame_size).max(1)
        };
        WebSocketStream { sender, receiver, unread: Bytes::new(), max_write, shut_down: false }
    }
}

/// A WebSocket as a byte stream, from [`WebSocket::into_stream`]: implements tokio's
/// [`AsyncRead`] and [`AsyncWrite`].
///
/// **Reading** gives the payloads of data messages, binary and text alike (a text
/// message as its UTF-8 bytes), one after another as one stream of bytes; a read may
/// return part of a message and the rest on the next reads. Pings and pongs are not data
/// (pings are still answered). The peer's close, whatever its code, is the end of the
/// stream (a read of 0 bytes; [`WebSocketStream::close_frame`] has the code); an error
/// is an [`io::Error`] carrying the [`Error`] (`get_ref()`, `into_inner()`, then
/// `downcast`), of kind:
///
/// | the error | [`io::ErrorKind`] |
/// |---|---|
/// | the transport ended without a close handshake | `UnexpectedEof` |
/// | the transport failed | its own (`ConnectionReset`, ...) |
/// | the peer broke the protocol or a limit (1002, 1007, 1009) | `InvalidData` |
/// | a keepalive, close or write timeout | `TimedOut` |
/// | the connection is closed (a write after the end or after `shutdown`) | `BrokenPipe` |
///
/// **Writing** sends each `write(buf)` as one binary message (a copy of `buf`), at most
/// the connection's message size limit
/// ([`ProtocolConfig::max_message_size`](crate::ProtocolConfig::max_message_size), or
/// its frame size limit if smaller): past it, a write sends the start of `buf` and
/// returns its length. A write waits while the send queue is full
/// ([`WebSocketConfig::max_send_queue`](crate::WebSocketConfig::max_send_queue)), so a
/// peer that does not read holds the writer back; `flush` waits until everything written
/// is on the socket; `shutdown` sends a close with 1000 (once) and waits until the close
/// handshake is done or the connection is gone. Writes after `shutdown` fail with
/// `BrokenPipe`. A WebSocket has no half-close: after `shutdown` the peer answers the
/// close and reading ends too.
///
/// To read and write from different tasks, split it with [`tokio::io::split`].
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = zapsocket::Server::bind("127.0.0.1:0").await?;
/// let url = format!("ws://{}", server.local_addr());
/// tokio::spawn(server.serve(|ws| async move {
///     // An echo: every byte read is written back.
///     let (mut reader, mut writer) = tokio::io::split(ws.into_stream());
///     let _ = tokio::io::copy(&mut reader, &mut writer).await;
/// }));
///
/// let mut stream = zapsocket::Client::connect(&url).await?.into_stream();
/// stream.write_all(b"hello, ").await?; // one binary message
/// stream.write_all(b"world").await?; // another
/// let mut echoed = [0; 12];
/// stream.read_exact(&mut echoed).await?;
/// assert_eq!(&echoed, b"hello, world");
/// stream.shutdown().await?; // a close with 1000, answered by the server
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebSocketStream {
    sender: WebSocketSender,
    receiver: WebSocketReceiver,
    /// What is left of the message being read.
    unread: Bytes,
    /// The most bytes one write sends (one message, in one frame).
    max_write: usize,
    /// `shutdown` was called: writes fail.
    shut_down: bool,
}

impl WebSocketStream {
    /// The peer's close frame, once the connection is closed, or our own record of why it
    /// ended. See [`WebSocketReceiver::close_frame`].
    pub fn close_frame(&self) -> Option<CloseFrame> {
        self.receiver.close_frame()
    }
}

impl AsyncRead for WebSocketStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.unread.is_empty() && buf.remaining() > 0 {
            self.unread = match ready!(Pin::new(&mut self.receiver).poll_next(cx)) {
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Text(text))) => text.into_bytes(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Err(e)) => return Poll::Ready(Err(e.into_io())),
                None => return Poll::Ready(Ok(())),
            };
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WebSocketStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.shut_down {
            return Poll::Ready(Err(Error::new(Kind::Closed).into_io()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Copied only once the queue has room: a write that waits copies nothing.
        ready!(Pin::new(&mut self.sender).poll_ready(cx)).map_err(Error::into_io)?;
        let n = buf.len().min(self.max_write);
        let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
        Pin::new(&mut self.sender).start_send(message).map_err(Error::into_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sender).poll_flush(cx).map_err(Error::into_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The sink sends its close (1000) once, while the connection is open, then waits
        // for the end of the connection.
        self.shut_down = true;
        Pin::new(&mut self.sender).poll_close(cx).map_err(Error::into_io)
    }
}
