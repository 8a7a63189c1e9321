//! The connection state machine, for either role.
//!
//! See [`Connection`] for the order in which the I/O layer calls it.

mod read;
mod timers;
mod write;

pub use read::{Decoded, Lent};

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rand::RngCore;

use crate::deflate::{DeflateConfig, DeflateParams, Inflater, Session};
use crate::utf8::Utf8Validator;
use crate::{CloseFrame, Config, Error, FrameHeader, Outbound};

/// Which end of the connection this is. Clients mask what they send; servers do not
/// (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The end that accepted the connection.
    Server,
    /// The end that opened the connection.
    Client,
}

/// Where a connection stands, like the browser's `readyState` (after the handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// Closed: by a completed handshake (ours or the peer's, answered), a failure, a
    /// timeout or the end of the stream.
    Closed,
}

/// A fragmented message being received.
#[derive(Debug)]
struct Assembly {
    text: bool,
    /// The payload so far (an uncompressed message).
    buf: BytesMut,
    /// A compressed message (RSV1 on its first frame): what was inflated so far.
    inflated: Option<Vec<u8>>,
    parts: usize,
    size: u64,
}

/// The state a data frame's work needs: with the connection, or lent out with the frame
/// (see [`Connection::poll_event_lending`]).
#[derive(Debug, Default)]
struct Receiving {
    /// A fragmented message being received (boxed: most connections never have one).
    assembly: Option<Box<Assembly>>,
    utf8: Utf8Validator,
    /// permessage-deflate's receiving side, once negotiated.
    inflater: Option<Box<Inflater>>,
}

/// A frame whose header was decoded and whose payload is still arriving.
#[derive(Debug, Clone, Copy)]
struct Pending {
    header: FrameHeader,
    header_len: usize,
    /// Payload bytes already unmasked and checked (text only).
    checked: usize,
}

/// The RFC 6455 state machine of one connection, sans I/O.
///
/// # Call order
///
/// A [`Connection`] never does I/O and never reads a clock. The I/O layer drives it:
///
/// 1. **Inputs**: append received bytes with [`Connection::feed`] (or read straight into
///    [`Connection::read_buffer`]); report the end of the stream with
///    [`Connection::feed_eof`]; pass the current time to [`Connection::handle_timeout`]
///    when [`Connection::poll_timeout`] says so.
/// 2. **Outputs**: call [`Connection::poll_event`] until it returns `None`; each call
///    decodes at most one event. Then write what [`Connection::outbound`] holds, call
///    [`Outbound::advance`](crate::Outbound::advance) with the bytes written, then
///    [`Connection::queue_held_pong`] (a pong held while the queue was full goes out).
/// 3. **Commands** at any time: [`Connection::send`], [`Connection::send_uncompressed`],
///    [`Connection::send_fragment`], [`Connection::send_encoded`], [`Connection::ping`],
///    [`Connection::pong`], [`Connection::close`]. They only queue bytes. With
///    permessage-deflate on ([`Connection::set_deflate`], right after the handshake) they
///    compress as they queue.
/// 4. **Getters**: [`Connection::state`], [`Connection::is_closed`],
///    [`Connection::close_frame`] tell where the connection stands. When
///    [`Connection::is_closed`] is true and the outbound queue is empty, the transport can
///    be shut down.
///
/// ```
/// use zapsocket_proto::{Connection, Config, Event, Message, Role};
///
/// let mut client = Connection::new(Role::Client, Config::default());
/// let mut server = Connection::new(Role::Server, Config::default());
/// client.send(Message::text("hello")).unwrap();
/// let wire = client.outbound().first_chunk().to_vec();
/// client.outbound().advance(wire.len());
/// server.feed(&wire);
/// assert_eq!(server.poll_event(), Some(Ok(Event::Message(Message::text("hello")))));
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    /// Shared by the connections of a server (it is read, never written).
    config: Arc<Config>,
    state: State,
    rbuf: BytesMut,
    /// `rbuf.len()` when `poll_event` last returned: more means new bytes arrived.
    rbuf_seen: usize,
    pending: Option<Pending>,
    rx: Receiving,
    /// A data frame is lent out: nothing is decoded until it is taken back.
    lent: bool,
    outbound: Outbound,
    /// A fragmented message we are sending.
    sending_fragmented: Option<Sending>,
    close_frame: Option<CloseFrame>,
    /// The code of the close frame we queued, once we did.
    close_sent: Option<crate::CloseCode>,
    /// The pong for the latest ping, held while the send queue is over
    /// [`Config::max_pong_backlog`].
    held_pong: Option<Bytes>,
    timers: timers::Timers,
    /// permessage-deflate's sending side, once negotiated.
    deflate: Option<Box<Session>>,
    /// Message counters, when asked for ([`Connection::count_messages`]).
    counts: Option<Box<crate::Counts>>,
}

/// The fragmented message being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sending {
    text: bool,
    compressed: bool,
}

impl Connection {
    /// A connection in the [`State::Open`] state, right after the handshake.
    pub fn new(role: Role, config: Config) -> Self {
        Self::with_shared_config(role, Arc::new(config))
    }

    /// [`Connection::new`] with a configuration that many connections share (a
    /// server's): each keeps a pointer instead of its own copy.
    pub fn with_shared_config(role: Role, config: Arc<Config>) -> Self {
        Connection {
            role,
            config,
            state: State::Open,
            rbuf: BytesMut::new(),
            rbuf_seen: 0,
            pending: None,
            rx: Receiving::default(),
            lent: false,
            outbound: Outbound::default(),
            sending_fragmented: None,
            close_frame: None,
            close_sent: None,
            held_pong: None,
            timers: timers::Timers::default(),
            deflate: None,
            counts: None,
        }
    }

    // Getters.

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the connection is closed (no more events; write out what is queued, then
    /// end the transport).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The code of the close frame this end queued (its own, or the echo of the
    /// peer's), once it did.
    pub fn sent_close_code(&self) -> Option<crate::CloseCode> {
        self.close_sent
    }

    /// Starts counting data messages and their payload bytes each way, with a histogram
    /// of their sizes ([`Connection::counts`]). Off by default: it costs a few
    /// additions per message and about 150 bytes.
    pub fn count_messages(&mut self) {
        self.counts.get_or_insert_with(Default::default);
    }

    /// The message counters, when [`Connection::count_messages`] was called.
    pub fn counts(&self) -> Option<&crate::Counts> {
        self.counts.as_deref()
    }

    /// The message counters, to add what the I/O layer saw (messages it dropped).
    pub fn counts_mut(&mut self) -> Option<&mut crate::Counts> {
        self.counts.as_deref_mut()
    }

    /// The peer's close frame, once received (`code` 1005 if it had no status code).
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.close_frame.as_ref()
    }

    /// How many more bytes the frame being received needs (0 when unknown), so the I/O
    /// layer can size its next read without trusting the declared length for
    /// allocation: reads should still be capped.
    ///
    /// Before the next frame is decoded, its header is peeked at, so that a large frame
    /// can be read in few syscalls; a header over `max_frame_size` gives 0 (it will be
    /// refused when decoded, and nothing more should be read for it).
    pub fn read_hint(&self) -> usize {
        let (header_len, payload_len) = match self.pending {
            Some(p) => (p.header_len, p.header.payload_len),
            None => match FrameHeader::decode(&self.rbuf, true) {
                Ok(Some((h, len))) if h.payload_len <= self.config.max_frame_size as u64 => {
                    (len, h.payload_len)
                }
                _ => return 0,
            },
        };
        (header_len as u64 + payload_len)
            .saturating_sub(self.rbuf.len() as u64)
            .try_into()
            .unwrap_or(usize::MAX)
    }

    /// Bytes buffered for messages still being received: the received bytes not yet
    /// decoded (a partial frame, or frames read ahead) plus the fragments assembled so
    /// far (inflated, for a compressed message).
    pub fn buffered_incoming(&self) -> usize {
        self.rbuf.len()
            + self.rx.assembly.as_ref().map_or(0, |a| a.buf.len() + a.inflated.as_ref().map_or(0, Vec::len))
    }

    /// Received bytes not yet decoded (the read buffer's length).
    pub fn undecoded_len(&self) -> usize {
        self.rbuf.len()
    }

    // Inputs.

    /// The read buffer: append received bytes to it, then call
    /// [`Connection::poll_event`]. Lets the I/O layer read without an extra copy.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.rbuf.extend_from_slice(data);
        self.note_received();
    }

    /// Records that bytes were appended to [`Connection::read_buffer`]: the peer is alive
    /// (for the keepalive timer), even if the bytes are decoded later.
    pub fn note_received(&mut self) {
        self.timers.heard();
    }

    /// The transport reached its end. Returns [`Error::ConnectionReset`] unless the
    /// connection was already closed: by a completed close handshake, or by an error
    /// that was already reported (a violation, a timeout).
    pub fn feed_eof(&mut self) -> Result<(), Error> {
        let clean = self.state == State::Closed;
        self.finish();
        if clean { Ok(()) } else { Err(Error::ConnectionReset) }
    }

    /// Turns permessage-deflate on with the parameters agreed in the handshake
    /// ([`DeflateConfig::accept`] on a server, [`DeflateConfig::check_response`] on a
    /// client) and this end's `config` (level, threshold). Call it before any message
    /// flows. From then on, RSV1 marks a compressed message (RFC 7692 §6): outgoing
    /// messages of at least [`DeflateConfig::threshold`] bytes are compressed, compressed
    /// incoming ones are inflated (capped at [`Config::max_message_size`], counted on the
    /// decompressed bytes) and then checked as usual.
    pub fn set_deflate(&mut self, params: DeflateParams, config: &DeflateConfig) {
        let (session, inflater) = Session::new(self.role, params, config);
        self.deflate = Some(Box::new(session));
        self.rx.inflater = Some(Box::new(inflater));
    }

    /// How this connection compresses a message on its own, when it is a server that
    /// does (permessage-deflate with `server_no_context_takeover`): its output then does
    /// not depend on what was sent before, so it can be made ahead, outside any lock
    /// ([`crate::EncodedFrame::prepare_compressed`]). `None` otherwise.
    pub fn compress_alone(&self) -> Option<crate::CompressAlone> {
        let session = self.deflate.as_deref().filter(|_| self.role == Role::Server)?;
        let (level, bits) = session.shared_setting()?;
        Some(crate::CompressAlone { level, bits, threshold: session.threshold() })
    }

    /// The agreed permessage-deflate parameters, if it is on.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_deref().map(Session::params)
    }

    // Internal helpers shared by the read, write and timer halves.

    /// Ends the connection for good.
    fn finish(&mut self) {
        self.state = State::Closed;
        self.rbuf = BytesMut::new();
        self.rbuf_seen = 0;
        self.pending = None;
        self.rx.assembly = None;
        // A pong held back for a full send queue never goes out on a closed connection
        // (found by the `connection` fuzz target: a keepalive timeout or the end of the
        // stream closed it, and the pong was still queued after).
        self.held_pong = None;
    }

    /// Fails the connection: queue a close frame carrying the error's code (unless one
    /// was already sent), then close.
    #[cold]
    fn fail(&mut self, error: Error) -> Error {
        if let Some(code) = error.close_code()
            && self.close_sent.is_none()
        {
            self.queue_close(code, error.reason());
        }
        self.finish();
        error
    }

    /// A fresh masking key for a client frame; `None` for a server (a test per frame,
    /// inlined: the generator is only reached on the client side).
    #[inline]
    fn mask_key(&mut self) -> Option<[u8; 4]> {
        if self.role == Role::Server { None } else { Some(self.next_mask_key()) }
    }

    /// From the thread's CSPRNG (ChaCha, seeded from the OS and reseeded), rather than a
    /// generator per connection: that one was 336 bytes of every connection's state.
    fn next_mask_key(&mut self) -> [u8; 4] {
        rand::rng().next_u32().to_ne_bytes()
    }
}

#[cfg(test)]
mod tests;
