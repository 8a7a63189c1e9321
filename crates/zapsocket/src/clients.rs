//! A set of connections to broadcast to: the server's clients, or any group.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use zapsocket_proto::{EncodedFrame, OpCode};

use crate::message::Message;
use crate::shared::Shared;
use crate::socket::WebSocketSender;

/// A set of connections, cheap to clone, to iterate and broadcast to.
///
/// The server keeps one with every open connection ([`crate::Server::clients`]); make
/// your own for rooms or topics. A broadcast encodes the message once: every recipient
/// queues the same buffer (no copy per recipient) without waiting, so one slow client
/// never holds back the others; a client whose send queue is full gets the
/// [`SlowConsumer`](crate::SlowConsumer) policy. Closed connections leave the set.
///
/// With permessage-deflate, recipients that compress each message on their own (the
/// server's default) share one compressed copy per setting, made once; a recipient with
/// context takeover compresses the message itself (see [`EncodedFrame`]).
///
/// ```no_run
/// # async fn run(server: zapsocket::Server, ws: zapsocket::WebSocket) {
/// let clients = server.clients();
/// clients.broadcast("to everyone");
/// clients.broadcast_except(ws.id(), "to everyone else");
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Clients {
    members: Arc<RwLock<HashMap<u64, Member>>>,
}

/// A member holds no handle: the set does not keep a connection open.
#[derive(Clone, Debug)]
struct Member {
    shared: Arc<Shared>,
}

impl Clients {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a connection (by a sending handle). The set does not keep the connection
    /// open: it leaves the set once closed.
    pub fn insert(&self, sender: &WebSocketSender) {
        let member = Member { shared: sender.shared().clone() };
        self.write().insert(sender.id(), member);
    }

    /// Removes a connection by id; returns whether it was there.
    pub fn remove(&self, id: u64) -> bool {
        self.write().remove(&id).is_some()
    }

    /// Whether the connection with this id is in the set.
    pub fn contains(&self, id: u64) -> bool {
        self.read().contains_key(&id)
    }

    /// The number of connections in the set.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The ids of the connections in the set.
    pub fn ids(&self) -> Vec<u64> {
        self.read().keys().copied().collect()
    }

    /// A sending handle for each connection, to iterate (like `ws`'s `wss.clients`).
    pub fn senders(&self) -> Vec<WebSocketSender> {
        self.read().values().map(|m| WebSocketSender::from_shared(m.shared.clone())).collect()
    }

    /// Sends `message` to every connection; returns how many queued it.
    pub fn broadcast(&self, message: impl Into<Message>) -> usize {
        self.broadcast_encoded(&encode(message.into()), None)
    }

    /// Sends `message` to every connection but `except` (the sender, usually); returns
    /// how many queued it.
    pub fn broadcast_except(&self, except: u64, message: impl Into<Message>) -> usize {
        self.broadcast_encoded(&encode(message.into()), Some(except))
    }

    /// Sends an already encoded frame to every connection but `except`.
    pub fn broadcast_encoded(&self, frame: &EncodedFrame, except: Option<u64>) -> usize {
        let mut queued = 0;
        let mut gone = Vec::new();
        for (id, member) in self.read().iter() {
            if Some(*id) == except {
                continue;
            }
            match member.shared.send_encoded(frame) {
                Ok(true) => queued += 1,
                Ok(false) => {}
                Err(_) => gone.push(*id),
            }
        }
        if !gone.is_empty() {
            let mut members = self.write();
            for id in gone {
                members.remove(&id);
            }
        }
        queued
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Member>> {
        self.members.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Member>> {
        self.members.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Encodes a message once, as a server frame.
pub fn encode(message: Message) -> EncodedFrame {
    match message {
        Message::Text(t) => EncodedFrame::new(OpCode::Text, t.as_bytes()),
        Message::Binary(b) => EncodedFrame::new(OpCode::Binary, &b),
        Message::Ping(p) => EncodedFrame::new(OpCode::Ping, &p[..p.len().min(125)]),
        Message::Pong(p) => EncodedFrame::new(OpCode::Pong, &p[..p.len().min(125)]),
    }
}
