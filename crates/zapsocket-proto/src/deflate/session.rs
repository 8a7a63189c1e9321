//! The transformer one connection uses once permessage-deflate is agreed: when to compress,
//! which codec state to keep, and when to release it.

use bytes::Bytes;

use super::codec::{Compressor, Decompressor, Inflated};
use super::{DeflateConfig, DeflateParams};
use crate::Role;

/// permessage-deflate on one connection.
#[derive(Debug)]
pub(crate) struct Session {
    params: DeflateParams,
    level: u32,
    threshold: usize,
    /// The window we compress with; `None` when it would be 8 bits (zlib cannot): then we
    /// send everything uncompressed, which RFC 7692 always allows.
    send_bits: Option<u8>,
    /// We compress each message on its own: no compressor kept between messages.
    send_alone: bool,
    compressor: Option<Compressor>,
}

/// The receiving side of permessage-deflate: apart from [`Session`], so that a frame's
/// inflating can be done without the connection (see `Connection::poll_event_lending`).
#[derive(Debug)]
pub(crate) struct Inflater {
    /// The window the peer compresses with.
    receive_bits: u8,
    /// The peer compresses each message on its own: no window kept between messages.
    receive_alone: bool,
    decompressor: Option<Decompressor>,
}

impl Session {
    /// The sending side for `role`, and the receiving side ([`Inflater`]).
    pub(crate) fn new(role: Role, params: DeflateParams, config: &DeflateConfig) -> (Self, Inflater) {
        let peer = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        let bits = params.max_window_bits(role);
        let inflater = Inflater {
            receive_bits: params.max_window_bits(peer),
            receive_alone: params.no_context_takeover(peer),
            decompressor: None,
        };
        let session = Session {
            params,
            level: config.level.min(9),
            threshold: config.threshold,
            send_bits: (9..=15).contains(&bits).then_some(bits),
            send_alone: params.no_context_takeover(role),
            compressor: None,
        };
        (session, inflater)
    }

    pub(crate) fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// Whether a complete message of `len` bytes is sent compressed.
    pub(crate) fn compresses(&self, len: usize) -> bool {
        self.send_bits.is_some() && len >= self.threshold
    }

    /// Whether a fragmented message is sent compressed (always, when we can).
    pub(crate) fn compresses_fragments(&self) -> bool {
        self.send_bits.is_some()
    }

    /// The setting a message compressed on its own depends on, when this connection can
    /// share one compressed copy with others (a broadcast): level and window bits.
    pub(crate) fn shared_setting(&self) -> Option<(u32, u8)> {
        self.send_bits.filter(|_| self.send_alone).map(|bits| (self.level, bits))
    }

    /// The smallest message compressed.
    pub(crate) fn threshold(&self) -> usize {
        self.threshold
    }

    /// Compresses one frame of a message (`fin` on its last frame).
    pub(crate) fn compress(&mut self, payload: &[u8], fin: bool) -> Bytes {
        let bits = self.send_bits.unwrap_or(15);
        let level = self.level;
        let compressor = self.compressor.get_or_insert_with(|| Compressor::take(level, bits));
        let out = compressor.compress(payload, fin);
        if fin && self.send_alone {
            // Each message on its own: reset, and keep no compressor while idle.
            if let Some(c) = self.compressor.take() {
                c.give_back();
            }
        }
        Bytes::from(out)
    }
}

impl Inflater {
    /// Inflates one frame of a compressed message into `out`, at most `limit` bytes in all.
    pub(crate) fn inflate(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), Inflated> {
        let bits = self.receive_bits;
        let decompressor = self.decompressor.get_or_insert_with(|| Decompressor::take(bits));
        let result = decompressor.inflate(payload, fin, out, limit);
        if result.is_err() || (fin && self.receive_alone) {
            // A failed stream cannot be used again; a peer without context takeover needs
            // no window between messages.
            if let Some(d) = self.decompressor.take() {
                d.give_back();
            }
        }
        result
    }
}

/// Compresses a whole message on its own with a fresh compressor for `(level, bits)`: the
/// copy a broadcast shares between connections with that setting.
pub(crate) fn compress_alone(payload: &[u8], level: u32, bits: u8) -> Bytes {
    let mut compressor = Compressor::take(level, bits);
    let out = compressor.compress(payload, true);
    compressor.give_back();
    Bytes::from(out)
}
