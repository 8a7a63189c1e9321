//! permessage-deflate (RFC 7692): negotiation and the per-message transformer.
//!
//! - [`DeflateConfig`]: what this end wants (level, threshold, the four RFC parameters, and
//!   on a server how many connections may keep a compression context).
//! - [`DeflateParams`]: what both ends agreed in the handshake; a
//!   [`Connection`](crate::Connection) gets it with
//!   [`Connection::set_deflate`](crate::Connection::set_deflate).
//! - Server side: [`DeflateConfig::accept`] picks the first acceptable offer of a request
//!   (several offers, in one header or several, are tried in order: fallbacks) and declines
//!   what it cannot accept by not answering it. Client side: [`DeflateConfig::offer`] makes
//!   the offer and [`DeflateConfig::check_response`] validates the server's answer.
//!
//! # Memory
//!
//! With the zlib-rs backend a compressor costs about 300 KiB (window bits 15; 200 KiB at 9:
//! its hash table alone is 128 KiB whatever the settings) and a decompressor about 40 KiB
//! (a 32 KiB window whatever the window bits). So:
//!
//! - a compressor is kept per connection only with context takeover on our sending side;
//!   without it (a server's default, see [`DeflateConfig::max_context_takeover_connections`])
//!   each message is compressed with a compressor borrowed from a small per-thread cache;
//! - a decompressor is kept per connection only while the peer uses context takeover (the
//!   window is the context); otherwise it is borrowed per message as well;
//! - both are created on first use: a connection that never sends or receives a compressed
//!   message costs nothing.
//!
//! Inflating is capped by [`Config::max_message_size`](crate::Config::max_message_size),
//! counted on the decompressed bytes: a compression bomb gets close 1009 and never more than
//! the limit in memory.
//!
//! docs/DEFLATE.md gives the design and measured figures.

mod codec;
mod negotiate;
mod session;

pub(crate) use codec::Inflated;
pub(crate) use session::{Inflater, Session, compress_alone};

/// The registered extension name (RFC 7692 §6).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// permessage-deflate settings of one end. `Default` is what a server enables with
/// `deflate(DeflateConfig::default())` and what a client offers when it is on.
///
/// The four RFC 7692 parameters keep their RFC names. On a server they say what the server
/// answers at least (it also honours what the client asks); on a client they say what the
/// client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The zlib compression level, 0 (store) to 9 (smallest). Default: 6, zlib's default
    /// (as `ws` and `websockets`). Lower levels trade ratio for CPU.
    pub level: u32,
    /// Messages shorter than this (in bytes) are sent uncompressed. Default: 1024, as
    /// `ws`. Small messages gain little and cost a compressor call each. Fragmented messages
    /// (whose size is unknown up front) are always compressed.
    pub threshold: usize,
    /// `server_no_context_takeover`: the server compresses each message on its own.
    /// Server: answer it to every offer (it is also answered when the client asks for it, or
    /// past [`DeflateConfig::max_context_takeover_connections`]). Client: ask for it.
    /// Default: false.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`: the client compresses each message on its own.
    /// Server: ask the client for it (it is also answered when the client offers it, so the
    /// server can release the client's window between messages). Client: offer it.
    /// Default: false.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits`, 9 to 15: the LZ77 window of what the server sends.
    /// Server: the largest window it compresses with. Client: ask the server for at most
    /// this (15 asks nothing). Default: 15.
    pub server_max_window_bits: u8,
    /// `client_max_window_bits`, 9 to 15: the window of what the client sends. Server: ask
    /// the client for at most this, when the client's offer allows it. Client: the largest
    /// window it compresses with (it always offers `client_max_window_bits`, so that servers
    /// may lower it). Default: 15.
    pub client_max_window_bits: u8,
    /// Server only: how many connections at once may use context takeover on the server's
    /// side (each keeps a compressor, about 300 KiB). Past it, new connections get
    /// `server_no_context_takeover`. Default: 0, every connection compresses each message
    /// on its own: no compressor per connection (an idle connection stays small), and a
    /// broadcast is compressed once for all its recipients. Raise it for a better ratio on
    /// streams of similar messages. Bounds the compression memory of a busy server.
    pub max_context_takeover_connections: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 6,
            threshold: 1024,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            max_context_takeover_connections: 0,
        }
    }
}

impl DeflateConfig {
    /// Sets [`DeflateConfig::level`] (clamped to 0..=9).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets [`DeflateConfig::threshold`].
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets [`DeflateConfig::server_no_context_takeover`].
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`DeflateConfig::client_no_context_takeover`].
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`DeflateConfig::server_max_window_bits`] (clamped to 9..=15).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// Sets [`DeflateConfig::client_max_window_bits`] (clamped to 9..=15).
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(9, 15);
        self
    }

    /// Sets [`DeflateConfig::max_context_takeover_connections`].
    pub fn max_context_takeover_connections(mut self, connections: usize) -> Self {
        self.max_context_takeover_connections = connections;
        self
    }
}

/// The parameters both ends agreed on (RFC 7692 §7.1): the server's answer, parsed.
///
/// A window of `None` means the parameter was absent (15 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server compresses each message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own.
    pub client_no_context_takeover: bool,
    /// The server's window, if limited.
    pub server_max_window_bits: Option<u8>,
    /// The client's window, if limited.
    pub client_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value that states these parameters.
    ///
    /// ```
    /// use zapsocket_proto::deflate::DeflateParams;
    ///
    /// let params = DeflateParams { server_no_context_takeover: true, ..Default::default() };
    /// assert_eq!(params.to_header(), "permessage-deflate; server_no_context_takeover");
    /// ```
    pub fn to_header(&self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            out.push_str(&format!("; client_max_window_bits={bits}"));
        }
        out
    }

    /// Whether the `role` end compresses each message on its own.
    pub fn no_context_takeover(&self, role: crate::Role) -> bool {
        match role {
            crate::Role::Server => self.server_no_context_takeover,
            crate::Role::Client => self.client_no_context_takeover,
        }
    }

    /// The window the `role` end compresses with (15 when not limited).
    pub fn max_window_bits(&self, role: crate::Role) -> u8 {
        match role {
            crate::Role::Server => self.server_max_window_bits.unwrap_or(15),
            crate::Role::Client => self.client_max_window_bits.unwrap_or(15),
        }
    }
}

#[cfg(test)]
mod tests;
