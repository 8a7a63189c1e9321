//! How the hub reaches a socket's connection, whichever server hosts it: the async
//! [`zapsocket::Server`] (a [`WebSocketSender`]) or the reactor (a
//! [`zapsocket::reactor::Handle`], with the upgrade request kept beside it).

use std::sync::Arc;

use zapsocket::reactor::{Fanout, Handle};
use zapsocket::{CloseCode, EncodedFrame, Request, WebSocketSender};

/// A socket's connection, as the hub's parts send to it.
#[derive(Clone)]
pub(crate) enum Sender {
    /// On the async server.
    Task(WebSocketSender),
    /// On a reactor loop; the request when it is kept.
    Loop { handle: Handle, request: Option<Arc<Request>> },
}

impl Sender {
    /// Queues a frame without waiting (the send queue's slow-consumer policy applies);
    /// false when the connection is gone (or the frame was dropped on the way).
    pub(crate) fn send_encoded(&self, frame: &EncodedFrame) -> bool {
        match self {
            Sender::Task(sender) => sender.send_encoded(frame).unwrap_or(false),
            Sender::Loop { handle, .. } => handle.send_encoded(frame),
        }
    }

    /// Queues a frame once the send queue has room (a replay waits for its reader).
    pub(crate) async fn queue_encoded(&self, frame: &EncodedFrame) -> Result<(), String> {
        match self {
            Sender::Task(sender) => sender.queue_encoded(frame).await.map_err(|e| e.to_string()),
            Sender::Loop { handle, .. } => {
                handle.writable().await;
                match handle.send_encoded(frame) {
                    true => Ok(()),
                    false => Err("the connection closed".to_owned()),
                }
            }
        }
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        match self {
            Sender::Task(sender) => sender.buffered_amount(),
            Sender::Loop { handle, .. } => handle.buffered_amount(),
        }
    }

    /// Closes with `code` and `reason`, after what is queued; waits until closed.
    pub(crate) async fn close(&self, code: CloseCode, reason: &str) {
        match self {
            Sender::Task(sender) => {
                let _ = sender.close(code, reason).await;
            }
            Sender::Loop { handle, .. } => {
                handle.close(code, reason);
                handle.closed().await;
            }
        }
    }

    /// Ends the connection without a close handshake.
    pub(crate) fn terminate(&self) {
        match self {
            Sender::Task(sender) => sender.terminate(),
            Sender::Loop { handle, .. } => handle.terminate(),
        }
    }

    /// Waits until the connection ended.
    pub(crate) async fn closed(&self) {
        match self {
            Sender::Task(sender) => sender.closed().await,
            Sender::Loop { handle, .. } => handle.closed().await,
        }
    }

    /// The reactor connection's handle, on a loop.
    pub(crate) fn handle(&self) -> Option<&Handle> {
        match self {
            Sender::Task(_) => None,
            Sender::Loop { handle, .. } => Some(handle),
        }
    }

    pub(crate) fn request(&self) -> Option<&Request> {
        match self {
            Sender::Task(sender) => sender.request(),
            Sender::Loop { request, .. } => request.as_deref(),
        }
    }
}

/// A message's deliveries to many sockets: queued at once on the async server's
/// connections; gathered for the reactor's, then posted once per loop and frame
/// ([`Fanout`]) by [`Deliveries::post`].
#[derive(Default)]
pub(crate) struct Deliveries {
    /// One per frame (a message has one, or a binary and a text one).
    fanouts: Vec<Fanout>,
}

impl Deliveries {
    /// Queues (or gathers) `frame` for `sender`'s connection; false when it is gone.
    pub(crate) fn send(&mut self, sender: &Sender, frame: &EncodedFrame) -> bool {
        match sender {
            Sender::Task(sender) => sender.send_encoded(frame).unwrap_or(false),
            Sender::Loop { handle, .. } => {
                let same = |f: &Fanout| f.frame().as_bytes().as_ptr() == frame.as_bytes().as_ptr();
                let at = match self.fanouts.iter().position(same) {
                    Some(at) => at,
                    None => {
                        self.fanouts.push(Fanout::new(frame));
                        self.fanouts.len() - 1
                    }
                };
                self.fanouts[at].add(handle)
            }
        }
    }

    /// Posts what was gathered; returns how many of the deliveries were refused (a loop's
    /// inbox was full).
    pub(crate) fn post(self) -> u64 {
        self.fanouts.into_iter().map(|fanout| fanout.post() as u64).sum()
    }
}
