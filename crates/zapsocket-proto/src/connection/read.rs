//! The receiving half: frames in, events out (RFC 6455 §5, §6.2).

use bytes::{Buf, Bytes, BytesMut};

use super::{Assembly, Connection, Pending, Receiving, State};
use crate::close::MAX_CLOSE_REASON;
use crate::config::PART_OVERHEAD;
use crate::deflate::Inflated;
use crate::mask::apply_mask;
use crate::message::Utf8Bytes;
use crate::{CloseCode, CloseFrame, Error, Event, FrameHeader, Message, OpCode, Role};

impl Connection {
    /// Decodes the next event from the bytes fed so far.
    ///
    /// Returns `None` when more bytes are needed or the connection is closed. A protocol
    /// violation returns the error once: the matching close frame is queued and the
    /// connection is closed.
    pub fn poll_event(&mut self) -> Option<Result<Event, Error>> {
        match self.poll_decoded(None)? {
            Ok(Decoded::Event(event)) => Some(Ok(event)),
            // Nothing is lent without a minimum; were it, its work is done here.
            Ok(Decoded::Lent(lent)) => self.take_back(lent),
            Err(e) => Some(Err(e)),
        }
    }

    /// Like [`Connection::poll_event`], but a data frame with costly work (unmasking,
    /// UTF-8 validation, inflating) is lent out rather than decoded: a payload of at
    /// least `min` bytes, or a compressed one of at least `min / 64` bytes (it may
    /// inflate manyfold). The caller does the work with [`Lent::run`] without the
    /// connection (say, outside the lock the connection is kept under, so that sends
    /// from other tasks do not wait for it), then hands it back with
    /// [`Connection::take_back`]. Until then nothing more is decoded: both calls return
    /// `None`.
    ///
    /// ```
    /// use zapsocket_proto::{Config, Connection, Decoded, Event, Message, Role};
    ///
    /// let mut client = Connection::new(Role::Client, Config::default());
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// client.send(Message::text("x".repeat(100_000))).unwrap();
    /// let wire = client.outbound().first_chunk().to_vec();
    /// server.feed(&wire);
    /// let Some(Ok(Decoded::Lent(mut lent))) = server.poll_event_lending(64 * 1024) else { panic!() };
    /// assert_eq!(server.poll_event(), None, "nothing is decoded while a frame is lent");
    /// lent.run(); // unmasks and validates, without `server`
    /// let event = server.take_back(lent);
    /// assert_eq!(event, Some(Ok(Event::Message(Message::text("x".repeat(100_000))))));
    /// ```
    #[inline]
    pub fn poll_event_lending(&mut self, min: usize) -> Option<Result<Decoded, Error>> {
        self.poll_decoded(Some(min))
    }

    /// Takes back a frame lent by [`Connection::poll_event_lending`] (doing its work
    /// first if [`Lent::run`] was not called) and returns its event: the message it
    /// completed, `None` for a fragment of a message still arriving (or when the
    /// connection closed meanwhile), or the protocol error it held (the close frame is
    /// then queued and the connection closed, as with [`Connection::poll_event`]).
    pub fn take_back(&mut self, mut lent: Lent) -> Option<Result<Event, Error>> {
        lent.run();
        self.lent = false;
        if self.state == State::Closed {
            // Closed while it was out (a timeout, the end of the stream): dropped with
            // the rest of what was received.
            return None;
        }
        let work = *lent.0;
        self.rx = work.rx;
        match work.outcome? {
            Ok(message) => message.map(|m| {
                if let Some(counts) = &mut self.counts {
                    counts.received(m.len());
                }
                Ok(Event::Message(m))
            }),
            Err(e) => Some(Err(self.fail(e))),
        }
    }

    /// Whether a frame is lent out (see [`Connection::poll_event_lending`]).
    pub fn lending(&self) -> bool {
        self.lent
    }

    #[inline]
    fn poll_decoded(&mut self, lend: Option<usize>) -> Option<Result<Decoded, Error>> {
        // Only new bytes are a sign of life: a partial frame polled again and again is
        // not (bytes may also have been written straight into `read_buffer`).
        if self.rbuf.len() > self.rbuf_seen {
            self.timers.heard();
        }
        self.queue_held_pong();
        let event = self.decode_event(lend);
        self.rbuf_seen = self.rbuf.len();
        event
    }

    /// Decodes frames until one yields an event (or is lent) or more bytes are needed.
    #[inline]
    fn decode_event(&mut self, lend: Option<usize>) -> Option<Result<Decoded, Error>> {
        loop {
            if self.state == State::Closed || self.lent || self.rbuf.is_empty() {
                return None;
            }
            let pending = match self.pending {
                Some(p) => p,
                None => match self.next_header() {
                    Ok(Some(p)) => p,
                    Ok(None) => return None,
                    Err(e) => return Some(Err(self.fail(e))),
                },
            };
            // Checked against max_frame_size, so it fits in usize.
            let total = pending.header_len + pending.header.payload_len as usize;
            if self.rbuf.len() < total {
                if let Err(e) = self.check_partial_text() {
                    return Some(Err(self.fail(e)));
                }
                return None;
            }
            self.pending = None;
            let mut payload = self.rbuf.split_to(total);
            payload.advance(pending.header_len);
            if pending.header.opcode.is_control() {
                if let Some(key) = pending.header.mask {
                    apply_mask(&mut payload, key, 0);
                }
                return match self.on_control(pending.header, payload) {
                    Ok(event) => Some(Ok(Decoded::Event(event))),
                    Err(e) => Some(Err(self.fail(e))),
                };
            }
            if let Some(min) = lend
                && self.rx.worth_lending(&pending, min)
            {
                self.lent = true;
                let rx = std::mem::take(&mut self.rx);
                let max = self.config.max_message_size;
                let work = Work { pending, payload, rx, max, outcome: None };
                return Some(Ok(Decoded::Lent(Lent(Box::new(work)))));
            }
            match self.rx.data_frame(pending, payload, self.config.max_message_size) {
                Ok(Some(message)) => {
                    // Counted here, where the message is made: matching the returned
                    // event again would keep it in memory on the hot path.
                    if let Some(counts) = &mut self.counts {
                        counts.received(message.len());
                    }
                    return Some(Ok(Decoded::Event(Event::Message(message))));
                }
                Ok(None) => continue,
                Err(e) => return Some(Err(self.fail(e))),
            }
        }
    }

    /// Decodes and checks the next frame header.
    fn next_header(&mut self) -> Result<Option<Pending>, Error> {
        let Some((header, header_len)) = FrameHeader::decode(&self.rbuf, self.deflate.is_some())? else {
            return Ok(None);
        };
        self.check_header(&header)?;
        let pending = Pending { header, header_len, checked: 0 };
        self.pending = Some(pending);
        Ok(Some(pending))
    }

    /// The rules that need the connection's state (RFC 6455 §5.1, §5.4) and the limits.
    fn check_header(&mut self, header: &FrameHeader) -> Result<(), Error> {
        if header.mask.is_some() != (self.role == Role::Server) {
            return Err(Error::BadMasking);
        }
        if header.payload_len > self.config.max_frame_size as u64 {
            return Err(Error::FrameTooLarge { size: header.payload_len, max: self.config.max_frame_size });
        }
        // RFC 7692 §6.1: RSV1 only on the first frame of a data message.
        if header.rsv1 && (header.opcode.is_control() || header.opcode == OpCode::Continuation) {
            return Err(Error::ReservedBits);
        }
        let (prior, parts, compressed) = match (header.opcode, &self.rx.assembly) {
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(Error::ExpectedContinuation),
            (OpCode::Continuation, None) => return Err(Error::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, None) => {
                self.rx.utf8 = crate::utf8::Utf8Validator::new();
                (0, 1, header.rsv1)
            }
            (OpCode::Continuation, Some(a)) => {
                (a.size + PART_OVERHEAD as u64, a.parts + 1, a.inflated.is_some())
            }
            _ => return Ok(()),
        };
        // A compressed message is counted on its decompressed bytes, as it is inflated.
        let size = prior + header.payload_len;
        if !compressed && size > self.config.max_message_size as u64 {
            return Err(Error::MessageTooLarge { size, max: self.config.max_message_size });
        }
        if parts > self.config.max_message_parts {
            return Err(Error::TooManyParts { max: self.config.max_message_parts });
        }
        Ok(())
    }

    /// Validates the part of a text frame's payload that has arrived, so that invalid
    /// UTF-8 fails the connection at once rather than when the frame completes. (Compressed
    /// text is validated as it is inflated.)
    // Out of line, like the other rare paths below: decoding a whole uncompressed frame
    // then stays small enough to inline into the caller's loop.
    #[inline(never)]
    fn check_partial_text(&mut self) -> Result<(), Error> {
        let Some(mut pending) = self.pending else { return Ok(()) };
        if !self.rx.is_text(&pending) || self.rx.is_compressed(&pending) {
            return Ok(());
        }
        let available = self.rbuf.len().saturating_sub(pending.header_len);
        if available <= pending.checked {
            return Ok(());
        }
        let range = pending.header_len + pending.checked..pending.header_len + available;
        if let Some(key) = pending.header.mask {
            apply_mask(&mut self.rbuf[range.clone()], key, pending.checked);
        }
        self.rx.utf8.feed(&self.rbuf[range]).map_err(|()| Error::InvalidUtf8)?;
        pending.checked = available;
        self.pending = Some(pending);
        Ok(())
    }

    /// Handles one complete, unmasked control frame.
    #[inline(never)]
    fn on_control(&mut self, header: FrameHeader, payload: BytesMut) -> Result<Event, Error> {
        match header.opcode {
            OpCode::Ping => {
                let payload = payload.freeze();
                self.answer_ping(&payload);
                Ok(Event::Ping(payload))
            }
            OpCode::Pong => Ok(Event::Pong(payload.freeze())),
            _ => self.on_close(&payload),
        }
    }

    /// The peer's close frame (RFC 6455 §5.5.1): validate, answer if we had not sent
    /// ours, and close.
    #[inline(never)]
    fn on_close(&mut self, payload: &[u8]) -> Result<Event, Error> {
        let frame = match payload {
            [] => None,
            [_] => return Err(Error::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_sendable() {
                    return Err(Error::InvalidCloseCode(code.0));
                }
                let reason = simdutf8::basic::from_utf8(reason).map_err(|_| Error::InvalidUtf8)?;
                debug_assert!(reason.len() <= MAX_CLOSE_REASON);
                Some(CloseFrame::new(code, reason))
            }
        };
        if self.close_sent.is_none() {
            // Echo the code and reason (RFC 6455 §5.5.1), as `ws` does.
            match &frame {
                Some(f) => self.queue_close(f.code, &f.reason),
                None => self.queue_close(CloseCode::NO_STATUS, ""),
            }
        }
        self.close_frame = Some(frame.clone().unwrap_or(CloseFrame::new(CloseCode::NO_STATUS, "")));
        self.finish();
        Ok(Event::Close(frame))
    }
}

/// What [`Connection::poll_event_lending`] decoded: an event, or a data frame lent out
/// for its work to be done without the connection.
#[derive(Debug)]
pub enum Decoded {
    /// An event, as [`Connection::poll_event`] returns it.
    Event(Event),
    /// A data frame to [`Lent::run`], then hand back with [`Connection::take_back`].
    Lent(Lent),
}

/// A data frame lent out by [`Connection::poll_event_lending`], with the receiving state
/// its work needs (the message being assembled, the UTF-8 validator, the inflater).
///
/// (Boxed: it is rare, and decoding returns it through several calls.)
#[derive(Debug)]
pub struct Lent(Box<Work>);

#[derive(Debug)]
struct Work {
    pending: Pending,
    payload: BytesMut,
    rx: Receiving,
    max: usize,
    outcome: Option<Result<Option<Message>, Error>>,
}

impl Lent {
    /// Does the frame's work: unmasking, inflating, UTF-8 validation, assembly. Its
    /// outcome (a message, nothing yet, or a protocol error) is reported by
    /// [`Connection::take_back`].
    pub fn run(&mut self) {
        let work = &mut *self.0;
        if work.outcome.is_none() {
            let payload = std::mem::take(&mut work.payload);
            work.outcome = Some(work.rx.data_frame(work.pending, payload, work.max));
        }
    }

    /// The frame's payload length on the wire.
    pub fn len(&self) -> usize {
        self.0.pending.header.payload_len as usize
    }

    /// Whether the frame's payload is empty (never, for a frame worth lending).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Receiving {
    /// Whether the frame being received carries text.
    fn is_text(&self, pending: &Pending) -> bool {
        match pending.header.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.assembly.as_ref().is_some_and(|a| a.text),
            _ => false,
        }
    }

    /// Whether the frame being received belongs to a compressed message.
    fn is_compressed(&self, pending: &Pending) -> bool {
        match pending.header.opcode {
            OpCode::Text | OpCode::Binary => pending.header.rsv1,
            OpCode::Continuation => self.assembly.as_ref().is_some_and(|a| a.inflated.is_some()),
            _ => false,
        }
    }

    /// Whether a complete data frame has work worth doing without the connection.
    #[inline]
    fn worth_lending(&self, pending: &Pending, min: usize) -> bool {
        let len = pending.header.payload_len;
        if len < (min / 64) as u64 {
            return false; // most frames: too small either way
        }
        if self.is_compressed(pending) {
            return len >= (min / 64) as u64;
        }
        let work = pending.header.mask.is_some() || self.is_text(pending);
        work && len >= min as u64
    }

    /// Handles one complete data frame (still masked past `pending.checked`): its
    /// message when it completes one.
    #[inline]
    fn data_frame(
        &mut self,
        pending: Pending,
        mut payload: BytesMut,
        max: usize,
    ) -> Result<Option<Message>, Error> {
        let header = pending.header;
        if let Some(key) = header.mask {
            apply_mask(&mut payload[pending.checked..], key, pending.checked);
        }
        if self.is_compressed(&pending) {
            return self.on_compressed(header, &payload, max);
        }
        let text = self.is_text(&pending);
        if text {
            self.validate_text(
                &payload[pending.checked..],
                pending.checked == 0 && header.fin && self.assembly.is_none(),
                header.fin,
            )?;
        }
        match header.opcode {
            OpCode::Continuation => Ok(self.on_continuation(header.fin, &payload)),
            _ if header.fin => Ok(Some(message(text, payload.freeze()))),
            _ => {
                let size = payload.len() as u64;
                self.assembly =
                    Some(Box::new(Assembly { text, buf: payload, inflated: None, parts: 1, size }));
                Ok(None)
            }
        }
    }

    /// Validates text: the whole payload at once when it is a complete single-frame
    /// message, else incrementally.
    fn validate_text(&mut self, bytes: &[u8], whole: bool, fin: bool) -> Result<(), Error> {
        if whole {
            return simdutf8::basic::from_utf8(bytes).map(drop).map_err(|_| Error::InvalidUtf8);
        }
        self.utf8.feed(bytes).map_err(|()| Error::InvalidUtf8)?;
        if fin {
            self.utf8.finish().map_err(|()| Error::InvalidUtf8)?;
        }
        Ok(())
    }

    /// A frame of a compressed message (RFC 7692 §7.2.2): inflate it, capped at
    /// `max` (`max_message_size`) on the decompressed bytes (plus the per-part
    /// overhead), then validate text as it comes out.
    #[inline(never)]
    fn on_compressed(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        max: usize,
    ) -> Result<Option<Message>, Error> {
        let mut assembly = self.assembly.take().map(|a| *a).unwrap_or_else(|| Assembly {
            text: header.opcode == OpCode::Text,
            buf: BytesMut::new(),
            inflated: Some(Vec::new()),
            parts: 0,
            size: 0,
        });
        assembly.parts += 1;
        let overhead = (assembly.parts - 1) * PART_OVERHEAD;
        let out = assembly.inflated.get_or_insert_with(Vec::new);
        let start = out.len();
        let inflater = self.inflater.as_mut().ok_or(Error::ReservedBits)?;
        inflater.inflate(payload, header.fin, out, max.saturating_sub(overhead)).map_err(|e| match e {
            Inflated::TooLarge => Error::MessageTooLarge { size: max as u64 + 1, max },
            Inflated::Corrupt => Error::InvalidCompressedData,
        })?;
        assembly.size = (out.len() + overhead) as u64;
        if assembly.text {
            let out = assembly.inflated.as_deref().unwrap_or_default();
            self.validate_text(&out[start..], header.fin && assembly.parts == 1, header.fin)?;
        }
        if !header.fin {
            self.assembly = Some(Box::new(assembly));
            return Ok(None);
        }
        let bytes = Bytes::from(assembly.inflated.take().unwrap_or_default());
        Ok(Some(message(assembly.text, bytes)))
    }

    #[inline(never)]
    fn on_continuation(&mut self, fin: bool, payload: &[u8]) -> Option<Message> {
        let assembly = self.assembly.as_mut()?;
        assembly.buf.extend_from_slice(payload);
        assembly.parts += 1;
        assembly.size += (payload.len() + PART_OVERHEAD) as u64;
        if !fin {
            return None;
        }
        let assembly = *self.assembly.take()?;
        Some(message(assembly.text, assembly.buf.freeze()))
    }
}

fn message(text: bool, bytes: Bytes) -> Message {
    if text { Message::Text(Utf8Bytes::from_validated(bytes)) } else { Message::Binary(bytes) }
}
