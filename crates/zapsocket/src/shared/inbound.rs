//! The receiving side of a connection's shared state: decoding what was read (on the
//! reader's task, or ahead of it by the driver), the queue of messages decoded ahead of
//! `recv()`, and the memory budget for incoming data.

use zapsocket_proto::{CloseCode, Decoded, Event, Lent, State};

use super::{Ending, Inner, Reading};
use crate::error::Result;
use crate::message::Message;

/// Data frames with at least this many bytes of work (unmasking, validating; a
/// compressed one with a 64th of it, since it may inflate manyfold) are decoded by the
/// reader outside the connection's lock, so that sends from other tasks, the driver and
/// the heartbeat never wait for it (see `Shared::poll_recv`).
pub(crate) const LEND_MIN: usize = 16 * 1024;

/// What the reader's next decode gave.
pub(crate) enum Next {
    /// A message or an error, for `recv()`.
    Ready(Result<Message>),
    /// A frame whose work the reader does outside the lock, then hands back
    /// ([`Inner::take_back`]).
    Lent(Lent),
}

/// What one decoded event means for the decoding loop.
enum Handled {
    Return(Option<Result<Message>>),
    Continue,
}

impl Inner {
    /// Whether the driver decodes what arrives (see `drain`), so it must see readiness
    /// even while a `recv()` waits.
    pub(crate) fn drain_wanted(&self) -> bool {
        !self.receiver_alive || self.conn.state() == State::CloseSent || self.waits_for_end()
    }

    /// Decodes the next message for the reader (or reports the end of the stream), or
    /// lends it a large frame to decode outside the lock. Pings, pongs and close frames
    /// are handled on the way: their replies are queued for the driver.
    pub(crate) fn next_message(&mut self) -> Option<Next> {
        if let Some(item) = self.inbound.pop_front() {
            if let Ok(m) = &item {
                self.inbound_bytes -= inbound_cost(m);
            }
            self.settle_budget();
            return Some(Next::Ready(item));
        }
        if self.conn.undecoded_len() == 0 && !self.eof() {
            // Nothing to decode (the common case when `recv()` comes back for more).
            return None;
        }
        let next = self.decode();
        if !matches!(next, Some(Next::Lent(_))) {
            // (A lent frame stays charged to the budget until it is taken back.)
            self.settle_budget();
        }
        next
    }

    /// Takes back a frame the reader decoded outside the lock: its message, if it
    /// completed one.
    pub(crate) fn take_back(&mut self, lent: Lent) -> Option<Result<Message>> {
        let before = self.conn.outbound().len();
        let event = self.conn.take_back(lent);
        let item = match self.handle(before, event) {
            Handled::Return(item) => item,
            Handled::Continue => None,
        };
        self.settle_budget();
        item
    }

    /// The incoming data this connection holds: undecoded bytes, fragments assembled,
    /// messages decoded ahead of `recv()`.
    fn held_incoming(&self) -> usize {
        self.conn.buffered_incoming() + self.inbound_bytes
    }

    /// Charges (or releases) the change in what this connection holds to its budget.
    #[inline]
    pub(crate) fn settle_budget(&mut self) {
        let held = self.held_incoming();
        self.account.settle(held);
    }

    /// Whether the memory budget lets this connection read (see `budget.rs`).
    #[inline]
    pub(crate) fn budget_allows_read(&mut self) -> bool {
        if self.account.may_read() {
            return true;
        }
        self.budget_paused();
        false
    }

    #[cold]
    fn budget_paused(&mut self) {
        // The driver's timer looks at the budget again, whoever read here (woken once
        // per pause).
        if self.account.take_pause_started() {
            self.wake_driver();
        }
    }

    /// Fails the connection with 1013 when it has waited for the budget past its
    /// deadline. Returns whether it did.
    #[cold]
    pub(crate) fn give_up_on_budget(&mut self, now: std::time::Instant) -> bool {
        if self.account.give_up_at().is_none_or(|at| at > now) {
            return false;
        }
        self.account.close(true);
        let reason = "server busy: incoming memory budget spent";
        let _ = self.conn.fail_connection(CloseCode::TRY_AGAIN_LATER, reason);
        self.set_local_close(CloseCode::TRY_AGAIN_LATER, reason);
        self.ending.get_or_insert(Ending::MemoryBudget);
        self.inbound.clear();
        self.inbound_bytes = 0;
        self.wake_recv();
        true
    }

    /// Decodes until a message, an error or the end, or until a frame with work worth
    /// doing outside the lock (see [`LEND_MIN`]), which is lent out.
    #[inline]
    fn decode(&mut self) -> Option<Next> {
        loop {
            let before = self.conn.outbound().len();
            let event = match self.conn.poll_event_lending(LEND_MIN) {
                // The hot path first, with nothing rewrapped.
                Some(Ok(Decoded::Event(Event::Message(m)))) => {
                    self.after_decode(before);
                    return Some(Next::Ready(Ok(m.into())));
                }
                Some(Ok(Decoded::Lent(lent))) => return Some(Next::Lent(lent)),
                Some(Ok(Decoded::Event(event))) => Some(Ok(event)),
                Some(Err(e)) => Some(Err(e)),
                None => None,
            };
            match self.handle(before, event) {
                Handled::Return(item) => return item.map(Next::Ready),
                Handled::Continue => {}
            }
        }
    }

    /// After a decode: the driver writes what it queued (a pong, a close) and reads
    /// again once the read buffer has room. `before` is the outbound queue's length
    /// before it.
    #[inline]
    fn after_decode(&mut self, before: usize) {
        if self.conn.outbound().len() != before
            || (self.reading == Reading::Paused && self.below_read_limit())
        {
            self.wake_driver();
        }
    }

    /// What a decoded event means: a message or an error for `recv()`, the end, or
    /// decode on (a close frame, answered). `before` is the outbound queue's length
    /// before it was decoded.
    fn handle(
        &mut self,
        before: usize,
        event: Option<std::result::Result<Event, zapsocket_proto::Error>>,
    ) -> Handled {
        self.after_decode(before);
        match event {
            Some(Ok(Event::Message(m))) => Handled::Return(Some(Ok(m.into()))),
            Some(Ok(Event::Ping(p))) => Handled::Return(Some(Ok(Message::Ping(p)))),
            Some(Ok(Event::Pong(p))) => Handled::Return(Some(Ok(Message::Pong(p)))),
            Some(Ok(Event::Close(_))) => {
                // The answer goes out now (as the close for a violation, below); the
                // driver finishes the close (shutdown) once written.
                self.write_now();
                self.wake_driver();
                Handled::Continue
            }
            Some(Err(e)) => {
                // The close for the violation goes out now rather than when the
                // driver next runs: a caller that gives up on this error, even by
                // exiting, has still told the peer why.
                self.write_now();
                self.wake_driver();
                Handled::Return(Some(Err(e.into())))
            }
            None if self.eof() && !self.conn.is_closed() && !self.conn.lending() => {
                Handled::Return(self.decode_eof())
            }
            None => Handled::Return(None),
        }
    }

    /// The stream ended with nothing left to decode.
    #[cold]
    fn decode_eof(&mut self) -> Option<Result<Message>> {
        let result = self.conn.feed_eof();
        self.wake_driver();
        result.err().map(|e| Err(e.into()))
    }

    /// Decodes in the driver when no `recv()` may: once our close frame is sent (so the
    /// peer's answer is seen even if nobody reads), when the receiver is gone, while a
    /// task waits in `closed()`, and with `ahead` (the driver found the handler busy
    /// elsewhere: no `recv()` for `BUSY_GRACE` while data waited, so its peer's pings are
    /// still answered). Messages are kept for `recv()` up to `max_read_buffer` bytes: past that,
    /// while closing they are dropped; otherwise decoding stops until `recv()` takes them
    /// (nothing is lost). Otherwise decoding is left to `recv()`, on the reader's task, so
    /// that a message is handed over (and answered) before a protocol error in a later
    /// frame fails the connection. Returns whether anything was decoded, and a large
    /// frame for the driver to decode outside the lock and hand back with
    /// [`Inner::take_back_ahead`] (decoding stops at it).
    pub(crate) fn drain(&mut self, ahead: bool) -> (bool, Option<Lent>) {
        let closing = self.closing();
        if !closing && (self.conn.read_buffer().is_empty() || (!self.waits_for_end() && !ahead)) {
            return (false, None);
        }
        let mut any = false;
        let mut lent = None;
        while !self.conn.is_closed() {
            if !closing && self.inbound_bytes >= self.max_read_buffer {
                break;
            }
            match self.decode() {
                None => break,
                Some(Next::Ready(item)) => {
                    any = true;
                    self.keep_ahead(item, closing);
                }
                Some(Next::Lent(frame)) => {
                    lent = Some(frame);
                    break;
                }
            }
        }
        if any {
            self.settle_budget();
            self.wake_recv();
        }
        (any, lent)
    }

    /// Takes back a frame the driver decoded outside the lock (see `drain`).
    pub(crate) fn take_back_ahead(&mut self, lent: Lent) {
        let closing = self.closing();
        if let Some(item) = self.take_back(lent) {
            self.keep_ahead(item, closing);
            self.wake_recv();
        }
    }

    fn closing(&self) -> bool {
        !self.receiver_alive || self.conn.state() == State::CloseSent
    }

    /// Keeps a message decoded ahead of `recv()` (see `drain` for which are dropped).
    fn keep_ahead(&mut self, item: Result<Message>, closing: bool) {
        let keep = match &item {
            Ok(m) => {
                self.receiver_alive
                    && (!closing || self.inbound_bytes + inbound_cost(m) <= self.max_read_buffer)
            }
            Err(_) => self.receiver_alive,
        };
        if keep {
            self.inbound_bytes += item.as_ref().map_or(0, inbound_cost);
            self.inbound.push_back(item);
        }
    }

    pub(crate) fn below_read_limit(&self) -> bool {
        // Fragments already assembled are bounded by max_message_size; this bounds what
        // is read ahead of `recv()`.
        self.conn.undecoded_len() < self.max_read_buffer || self.conn.read_hint() > 0
    }
}

/// What a message decoded ahead of `recv()` counts against
/// [`WebSocketConfig::max_read_buffer`](crate::WebSocketConfig::max_read_buffer): its
/// payload plus its place in the queue, so that empty messages (6 bytes on the wire each)
/// are not free.
fn inbound_cost(message: &Message) -> usize {
    message.len() + std::mem::size_of::<Result<Message>>()
}
