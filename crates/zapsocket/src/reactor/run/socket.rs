//! What a callback gets: its connection, as a `Socket`.

use super::*;

/// A connection as its callbacks see it: send, close, subscribe, publish, its state.
pub struct Socket<'a, S> {
    open: &'a mut Live,
    state: &'a mut S,
    key: usize,
    stream: &'a TcpStream,
    cx: &'a mut Cx,
}

impl<'a, S> Socket<'a, S> {
    pub(super) fn of(open: &'a mut Open<S>, key: usize, stream: &'a TcpStream, cx: &'a mut Cx) -> Self {
        let Open { live, state } = open;
        Socket { open: live, state, key, stream, cx }
    }
}

impl<S> std::fmt::Debug for Socket<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("key", &self.key).field("state", &self.ready_state()).finish()
    }
}

impl<S> Socket<'_, S> {
    /// What [`Handler::upgrade`] made for this connection.
    pub fn state(&mut self) -> &mut S {
        self.state
    }

    /// The same connection with a part of its state as the state: how a handler hands
    /// its connections to another handler (one for each path, say), whose callbacks take
    /// a `Socket` of their own state. `None` when `part` finds none.
    ///
    /// ```
    /// use zapsocket::reactor::Socket;
    /// # struct Chat;
    /// enum Conn {
    ///     Echo,
    ///     Chat(Chat),
    /// }
    /// fn chat<'s>(ws: &'s mut Socket<'_, Conn>) -> Option<Socket<'s, Chat>> {
    ///     ws.map(|conn| match conn {
    ///         Conn::Chat(chat) => Some(chat),
    ///         Conn::Echo => None,
    ///     })
    /// }
    /// ```
    pub fn map<T>(&mut self, part: impl FnOnce(&mut S) -> Option<&mut T>) -> Option<Socket<'_, T>> {
        let state = part(&mut *self.state)?;
        Some(Socket { open: &mut *self.open, state, key: self.key, stream: self.stream, cx: &mut *self.cx })
    }

    /// Queues a message (written at the end of the loop's pass, with whatever else is
    /// queued for this connection). A ping or pong payload is cut to 125 bytes.
    pub fn send(&mut self, message: impl Into<Message>) -> Sent {
        if self.open.flags & TERMINATE != 0 {
            return Sent::Closed;
        }
        let ws = &mut self.open.ws;
        let control = |payload: &[u8]| payload.len().min(125);
        let result = match message.into() {
            Message::Text(text) => ws.send(zapsocket_proto::Message::Text(text)),
            Message::Binary(data) => ws.send(zapsocket_proto::Message::Binary(data)),
            Message::Ping(payload) => ws.ping(&payload[..control(&payload)]),
            Message::Pong(payload) => ws.pong(&payload[..control(&payload)]),
        };
        if result.is_err() {
            return Sent::Closed;
        }
        self.cx.mark(self.open, self.key);
        if self.open.ws.outbound().cost() > self.cx.shared.settings.config.max_send_queue {
            self.open.flags |= PAUSED;
            Sent::Backpressure
        } else {
            Sent::Queued
        }
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes): the
    /// connection ends when the peer answers, or after the close timeout. Closing twice
    /// does nothing. [`CloseCode::NO_STATUS`] (1005) sends a close frame without a code
    /// (and no reason); another code that may not be sent (1006, 1015, under 1000...) or
    /// a longer reason is an error.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> crate::Result<()> {
        self.open.ws.close(self.cx.now, code, reason)?;
        self.cx.mark(self.open, self.key);
        Ok(())
    }

    /// Ends the connection at once, without a close handshake (`ws.terminate()`); the
    /// close callback gets 1006.
    pub fn terminate(&mut self) {
        self.open.end(CloseCode::ABNORMAL, "terminated");
        self.cx.mark(self.open, self.key);
    }

    /// Where the connection stands.
    pub fn ready_state(&self) -> ReadyState {
        if self.open.flags & TERMINATE != 0 {
            return ReadyState::Closing;
        }
        match self.open.ws.state() {
            State::Open => ReadyState::Open,
            State::CloseSent => ReadyState::Closing,
            State::Closed => ReadyState::Closed,
        }
    }

    /// The bytes queued and not yet written (`ws`'s `bufferedAmount`).
    pub fn buffered_amount(&mut self) -> usize {
        self.open.ws.outbound().len()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// The subprotocol agreed on in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.open.protocol.as_deref()
    }

    /// Subscribes to `topic`; false if it was already.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.cx.topics.subscribe(self.key, &mut self.open.topics, topic)
    }

    /// Unsubscribes from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.cx.topics.unsubscribe(self.key, &mut self.open.topics, topic)
    }

    /// Whether this socket is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.cx.topics.subscribed(topic, &self.open.topics)
    }

    /// Sends `message` to every subscriber of `topic` on every loop, this socket
    /// included if it is one, encoded once. A ping or pong is not published.
    pub fn publish(&mut self, topic: &str, message: impl Into<Message>) {
        self.publish_to(Target::Topic(topic.into()), message.into(), None);
    }

    /// [`Socket::publish`] to every subscriber but this socket (uWebSockets'
    /// `ws.publish`).
    pub fn publish_except_self(&mut self, topic: &str, message: impl Into<Message>) {
        self.publish_to(Target::Topic(topic.into()), message.into(), Some(self.key));
    }

    /// Sends `message` to every open socket on every loop, this one included, encoded
    /// once.
    pub fn broadcast(&mut self, message: impl Into<Message>) {
        self.publish_to(Target::All, message.into(), None);
    }

    /// [`Socket::broadcast`] to every open socket but this one.
    pub fn broadcast_except_self(&mut self, message: impl Into<Message>) {
        self.publish_to(Target::All, message.into(), Some(self.key));
    }

    fn publish_to(&mut self, target: Target, message: Message, except: Option<usize>) {
        if message.is_data() {
            self.cx.publish(target, crate::clients::encode(message), except);
        }
    }

    /// A handle to this connection for other threads (and for later): send, close,
    /// or have the loop call [`Handler::wake`] for it. The first call makes what the
    /// handles share (one allocation); the next ones clone it.
    pub fn handle(&mut self) -> Handle {
        let link = self.open.link.get_or_insert_with(|| {
            let link = Link::new(self.cx.shared.clone(), self.cx.index, self.key);
            link.saw_queue(self.open.ws.outbound());
            Arc::new(link)
        });
        Handle(link.clone())
    }

    /// Stops reading this connection (`ws`'s `pause`): no message after this one is
    /// handed to the handler (those already read wait, decoded in order later), what the
    /// peer sends waits in the kernel's buffers, then TCP pushes back. A peer that closes
    /// the connection meanwhile ends it at once (1006 to [`Handler::close`]). For a handler that must finish something
    /// (on another thread, say) before the next message. The heartbeat does not count
    /// the time held against the peer.
    pub fn pause(&mut self) {
        self.open.flags |= HELD;
    }

    /// Reads the connection again after [`Socket::pause`], starting with what arrived
    /// meanwhile (in this pass of the loop).
    pub fn resume(&mut self) {
        if self.open.flags & HELD != 0 {
            self.open.flags = (self.open.flags & !HELD) | RESUMED;
            if self.open.flags & PAUSED == 0 {
                self.cx.again.push(self.key);
            }
        }
    }

    /// Whether reading is paused ([`Socket::pause`], or its own sends filled its send
    /// queue: [`Sent::Backpressure`]).
    pub fn is_paused(&self) -> bool {
        self.open.flags & (HELD | PAUSED) != 0
    }

    /// A handle that publishes from any thread (see [`crate::reactor::Publisher`]).
    pub fn publisher(&self) -> crate::reactor::Publisher {
        crate::reactor::Publisher { shared: self.cx.shared.clone() }
    }
}
