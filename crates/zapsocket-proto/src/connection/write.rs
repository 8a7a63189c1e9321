//! The sending half: commands in, encoded bytes out (RFC 6455 §5.2, §5.4, §5.5).

use std::time::Instant;

use bytes::Bytes;

use super::{Connection, Sending, State};
use crate::close::MAX_CLOSE_REASON;
use crate::{CloseCode, EncodedFrame, Error, FrameHeader, Message, OpCode, Outbound, Role};

impl Connection {
    /// Queues a complete message. With permessage-deflate on, a message of at least
    /// [`DeflateConfig::threshold`](crate::deflate::DeflateConfig::threshold) bytes is
    /// compressed.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        let compress = self.deflate.as_ref().is_some_and(|d| d.compresses(message.len()));
        self.send_message(message, compress)
    }

    /// Queues a complete message without compressing it, whatever its size (for data
    /// that is already compressed, such as images, or that must not share a compression
    /// context with secrets: see the BREACH-style attacks in docs/DEFLATE.md).
    pub fn send_uncompressed(&mut self, message: Message) -> Result<(), Error> {
        self.send_message(message, false)
    }

    fn send_message(&mut self, message: Message, compress: bool) -> Result<(), Error> {
        self.check_can_send()?;
        if self.sending_fragmented.is_some() {
            return Err(Error::FragmentOrder);
        }
        let (opcode, payload) = match message {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        if let Some(counts) = &mut self.counts {
            counts.sent(payload.len());
        }
        match self.deflate.as_mut().filter(|_| compress) {
            Some(deflate) => {
                let compressed = deflate.compress(&payload, true);
                self.queue_data(opcode, true, true, compressed);
            }
            None => self.queue_data(opcode, true, false, payload),
        }
        Ok(())
    }

    /// Queues one fragment of a message (RFC 6455 §5.4): the first fragment of a message
    /// sets its type (`text`), later ones must have the same type; `fin` ends the message.
    ///
    /// Text fragments may split a code point; the whole message must be valid UTF-8.
    /// With permessage-deflate on, a fragmented message is compressed (its size is not
    /// known up front, so the threshold does not apply).
    pub fn send_fragment(&mut self, text: bool, payload: Bytes, fin: bool) -> Result<(), Error> {
        self.check_can_send()?;
        let (opcode, sending) = match self.sending_fragmented {
            None => {
                let compressed = self.deflate.as_ref().is_some_and(|d| d.compresses_fragments());
                (if text { OpCode::Text } else { OpCode::Binary }, Sending { text, compressed })
            }
            Some(s) if s.text == text => (OpCode::Continuation, s),
            Some(_) => return Err(Error::FragmentOrder),
        };
        if let Some(counts) = &mut self.counts {
            counts.sent_part(payload.len(), fin);
        }
        self.sending_fragmented = if fin { None } else { Some(sending) };
        match self.deflate.as_mut().filter(|_| sending.compressed) {
            Some(deflate) => {
                let compressed = deflate.compress(&payload, fin);
                self.queue_data(opcode, fin, opcode != OpCode::Continuation, compressed);
            }
            None => self.queue_data(opcode, fin, false, payload),
        }
        Ok(())
    }

    /// Queues a frame encoded once for many connections (a broadcast), sharing its
    /// buffer. On a client connection the frame is re-encoded with a mask.
    ///
    /// With permessage-deflate on and a payload at or above the threshold: a server
    /// connection that compresses each message on its own shares the frame's compressed
    /// copy for its setting (made once, see [`EncodedFrame`]); otherwise the connection
    /// compresses the payload itself (context takeover makes its output its own).
    pub fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        self.check_can_send()?;
        if self.sending_fragmented.is_some() {
            return Err(Error::FragmentOrder);
        }
        let opcode = frame.opcode();
        let data = matches!(opcode, OpCode::Text | OpCode::Binary);
        if let Some(counts) = self.counts.as_mut().filter(|_| data) {
            counts.sent(frame.payload_len());
        }
        let compress = data && self.deflate.as_ref().is_some_and(|d| d.compresses(frame.payload_len()));
        let shared = self.deflate.as_ref().and_then(|d| d.shared_setting());
        match (self.role, compress, shared) {
            (Role::Server, false, _) => self.outbound.push_shared(&frame.bytes),
            (Role::Server, true, Some((level, bits))) => self.outbound.push(frame.compressed(level, bits)),
            (_, true, _) => {
                if let Some(deflate) = self.deflate.as_mut() {
                    let compressed = deflate.compress(&frame.payload(), true);
                    self.queue_data(opcode, true, true, compressed);
                }
            }
            (Role::Client, false, _) => self.queue_data(opcode, true, false, frame.payload()),
        }
        Ok(())
    }

    /// Queues a ping with `payload` (at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.queue_user_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong with `payload` (at most 125 bytes).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.queue_user_control(OpCode::Pong, payload)
    }

    /// Starts the close handshake (RFC 6455 §7.1.2): queues a close frame with `code` and
    /// `reason` (at most 123 bytes). [`CloseCode::NO_STATUS`] sends a close frame with no
    /// payload. The peer then has `Config::close_timeout` from `now` to answer.
    ///
    /// Closing twice is a no-op.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), Error> {
        if code != CloseCode::NO_STATUS && !code.is_sendable() {
            return Err(Error::UnsendableCloseCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::ControlPayloadTooLong);
        }
        if self.close_sent.is_some() || self.state == State::Closed {
            return Ok(());
        }
        self.queue_close(code, reason);
        self.state = State::CloseSent;
        self.timers.close_started(now, self.config.close_timeout);
        Ok(())
    }

    /// Fails the connection from this side (RFC 6455 §7.1.7) for a reason of the
    /// application's, not the peer's protocol: queues a close frame with `code` and
    /// `reason` (unless one was sent) and closes at once, without waiting for the peer's
    /// answer. What was buffered for incoming messages is dropped. Write out what is
    /// queued, then end the transport. A no-op on a closed connection.
    ///
    /// For example a server out of memory for incoming data fails the connections it
    /// cannot serve with [`CloseCode::TRY_AGAIN_LATER`].
    pub fn fail_connection(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if !code.is_sendable() {
            return Err(Error::UnsendableCloseCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::ControlPayloadTooLong);
        }
        if self.state == State::Closed {
            return Ok(());
        }
        if self.close_sent.is_none() {
            self.queue_close(code, reason);
        }
        self.finish();
        Ok(())
    }

    /// The queue of bytes to write.
    pub fn outbound(&mut self) -> &mut Outbound {
        &mut self.outbound
    }

    /// Releases the buffers of an idle connection (nothing buffered either way), so that
    /// an idle connection costs no buffer memory.
    pub fn release_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = bytes::BytesMut::new();
        }
        self.outbound.shrink();
    }

    fn check_can_send(&self) -> Result<(), Error> {
        if self.close_sent.is_some() || self.state != State::Open {
            Err(Error::AlreadyClosed)
        } else {
            Ok(())
        }
    }

    fn queue_user_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        if payload.len() > 125 {
            return Err(Error::ControlPayloadTooLong);
        }
        self.queue_control(opcode, payload);
        Ok(())
    }

    pub(super) fn queue_close(&mut self, code: CloseCode, reason: &str) {
        let mut payload = [0u8; 125];
        let mut len = 0;
        if code != CloseCode::NO_STATUS {
            payload[..2].copy_from_slice(&code.0.to_be_bytes());
            let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
            payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
            len = 2 + reason.len();
        }
        self.queue_control(OpCode::Close, &payload[..len]);
        self.close_sent = Some(code);
        self.held_pong = None;
    }

    /// Answers a received ping: at once while the send queue is under
    /// [`Config::max_pong_backlog`](crate::Config::max_pong_backlog), else by holding the
    /// pong (replacing one held for an earlier ping). Nothing once our close is sent.
    pub(super) fn answer_ping(&mut self, payload: &Bytes) {
        if self.close_sent.is_none() {
            // Supersedes a pong held for an earlier ping; goes out now if below the limit.
            self.held_pong = Some(payload.clone());
            self.queue_held_pong();
        }
    }

    /// Queues the pong held back while the send queue was over
    /// [`Config::max_pong_backlog`](crate::Config::max_pong_backlog), once it is below.
    /// The I/O layer calls this after writing; decoding a frame does too. Returns
    /// whether a pong was queued.
    #[inline]
    pub fn queue_held_pong(&mut self) -> bool {
        // None once our close is sent (sending it drops a held pong).
        let below = self.outbound.len() < self.config.max_pong_backlog;
        let Some(payload) = self.held_pong.take_if(|_| below) else { return false };
        self.queue_control(OpCode::Pong, &payload);
        true
    }

    /// Whether a pong waits for the send queue to fall below
    /// [`Config::max_pong_backlog`](crate::Config::max_pong_backlog).
    pub fn has_held_pong(&self) -> bool {
        self.held_pong.is_some()
    }

    #[inline(never)]
    pub(super) fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = self.mask_key();
        let out = self.outbound.tail(payload.len() + 6);
        let start = out.len();
        crate::frame::encode_frame(out, opcode, true, payload, mask);
        let n = out.len() - start;
        self.outbound.commit(n);
    }

    fn queue_data(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Bytes) {
        let mask = self.mask_key();
        if mask.is_some() || Outbound::copies(payload.len()) {
            let out = self.outbound.tail(payload.len() + 14);
            let start = out.len();
            crate::frame::encode_frame_rsv1(out, opcode, fin, rsv1, &payload, mask);
            let n = out.len() - start;
            self.outbound.commit(n);
            return;
        }
        let header = FrameHeader { fin, rsv1, opcode, mask: None, payload_len: payload.len() as u64 };
        let out = self.outbound.tail(14);
        let start = out.len();
        header.encode(out);
        let n = out.len() - start;
        self.outbound.commit(n);
        self.outbound.push(payload);
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
