//! Frame headers: decoding and encoding (RFC 6455 §5.2).
//!
//! Decoding reads only the header and never allocates from the declared payload length;
//! the payload stays in the caller's buffer.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use crate::Error;
use crate::mask::apply_mask;

/// A frame opcode (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a text message (or its first fragment).
    Text,
    /// 0x2: a binary message (or its first fragment).
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or the reserved-opcode error.
    pub fn from_u8(value: u8) -> Result<OpCode, Error> {
        Ok(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(Error::ReservedOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit: this frame ends its message.
    pub fin: bool,
    /// RSV1 (used by permessage-deflate).
    pub rsv1: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// The largest frame header: 2 bytes, 8 of extended length, 4 of masking key.
pub const MAX_HEADER_LEN: usize = 14;

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, else the header and its length.
    /// Checks only what the header alone decides: RSV2/RSV3, reserved opcodes, control
    /// frame rules and the 64-bit length's top bit. `allow_rsv1` is true when an
    /// extension defines RSV1.
    pub fn decode(buf: &[u8], allow_rsv1: bool) -> Result<Option<(FrameHeader, usize)>, Error> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        if b0 & 0x30 != 0 || (!allow_rsv1 && b0 & 0x40 != 0) {
            return Err(Error::ReservedBits);
        }
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut len) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(b);
                    (u64::from_be_bytes(n), 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if payload_len >> 63 != 0 {
            return Err(Error::InvalidLength);
        }
        if opcode.is_control() {
            if !fin {
                return Err(Error::FragmentedControlFrame);
            }
            if payload_len > 125 {
                return Err(Error::ControlFrameTooLong);
            }
        }
        let mask = if masked {
            let Some(k) = buf.get(len..len + 4) else { return Ok(None) };
            len += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        let rsv1 = b0 & 0x40 != 0;
        Ok(Some((FrameHeader { fin, rsv1, opcode, mask, payload_len }, len)))
    }

    /// Appends this header to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let (bytes, len) = self.to_bytes();
        // The whole array, then the unused end cut off: a copy of a known size is a few
        // moves, where a copy of `len` bytes is a call to memcpy.
        let end = out.len() + len;
        out.extend_from_slice(&bytes);
        out.truncate(end);
    }

    /// This header's bytes: the first `len` of the array.
    fn to_bytes(self) -> ([u8; MAX_HEADER_LEN], usize) {
        let mut h = [0u8; MAX_HEADER_LEN];
        h[0] = self.opcode.as_u8() | if self.fin { 0x80 } else { 0 } | if self.rsv1 { 0x40 } else { 0 };
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            n @ 0..=125 => {
                h[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xffff => {
                h[1] = mask_bit | 126;
                h[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                h[1] = mask_bit | 127;
                h[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            h[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        (h, len)
    }
}

/// Encodes a whole frame into one buffer: header, then the payload (masked with `mask`
/// when given).
pub fn encode_frame(out: &mut BytesMut, opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_frame_rsv1(out, opcode, fin, false, payload, mask);
}

/// [`encode_frame`] with RSV1 (a compressed message's first frame, RFC 7692 §6).
pub(crate) fn encode_frame_rsv1(
    out: &mut BytesMut,
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    if mask.is_none() && payload.len() <= 125 {
        // A server's short frame (most of an echo's or a chat's): two header bytes.
        let b0 = opcode.as_u8() | if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 };
        out.reserve(2 + payload.len());
        out.extend_from_slice(&[b0, payload.len() as u8]);
        out.extend_from_slice(payload);
        return;
    }
    let header = FrameHeader { fin, rsv1, opcode, mask, payload_len: payload.len() as u64 };
    out.reserve(MAX_HEADER_LEN + payload.len());
    header.encode(out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

/// Compressed copies of one broadcast frame: (level, window bits, frame bytes).
type CompressedCopies = Mutex<Vec<(u32, u8, Bytes)>>;

/// How a server connection compresses a message on its own
/// (`server_no_context_takeover`): what [`EncodedFrame::prepare_compressed`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressAlone {
    pub(crate) level: u32,
    pub(crate) bits: u8,
    pub(crate) threshold: usize,
}

impl CompressAlone {
    /// Whether a message of `len` payload bytes is sent compressed.
    pub fn compresses(&self, len: usize) -> bool {
        len >= self.threshold
    }
}

/// A server-to-client frame encoded once, to be sent to any number of connections.
///
/// Server frames are not masked, so the same bytes are valid for every client: a
/// broadcast encodes the message once and every recipient shares this buffer (cloning
/// it is a reference-count increment).
///
/// With permessage-deflate, a recipient that compresses each message on its own
/// (`server_no_context_takeover`) gets a compressed copy made once per setting (level and
/// window bits) on first need and shared by every such recipient. A recipient with context
/// takeover compresses the payload with its own compressor: its output depends on what that
/// connection sent before.
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    pub(crate) bytes: Bytes,
    header_len: usize,
    compressed: Arc<CompressedCopies>,
}

impl PartialEq for EncodedFrame {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for EncodedFrame {}

impl EncodedFrame {
    /// Encodes a complete unmasked message frame.
    pub fn new(opcode: OpCode, payload: &[u8]) -> Self {
        let mut out = BytesMut::with_capacity(payload.len() + MAX_HEADER_LEN);
        encode_frame(&mut out, opcode, true, payload, None);
        let header_len = out.len() - payload.len();
        EncodedFrame { bytes: out.freeze(), header_len, compressed: Arc::default() }
    }

    /// A text frame.
    pub fn text(text: &str) -> Self {
        Self::new(OpCode::Text, text.as_bytes())
    }

    /// A binary frame.
    pub fn binary(data: &[u8]) -> Self {
        Self::new(OpCode::Binary, data)
    }

    /// The encoded bytes as they go on the wire (uncompressed).
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The number of bytes on the wire (uncompressed).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a frame has at least a two-byte header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many compressed copies were made so far (one per distinct setting among the
    /// recipients that compress each message on their own).
    pub fn compressed_copies(&self) -> usize {
        self.lock_copies().len()
    }

    /// The opcode (a frame we encoded always decodes).
    pub(crate) fn opcode(&self) -> OpCode {
        OpCode::from_u8(self.bytes[0] & 0x0f).unwrap_or(OpCode::Binary)
    }

    /// The payload length.
    pub(crate) fn payload_len(&self) -> usize {
        self.bytes.len() - self.header_len
    }

    /// The payload, shared.
    pub(crate) fn payload(&self) -> Bytes {
        self.bytes.slice(self.header_len..)
    }

    /// Makes the compressed copy a connection with `setting` would send (see
    /// [`Connection::compress_alone`](crate::Connection::compress_alone)), if it would
    /// compress this frame: so that the work is done here, outside the lock the
    /// connection is kept under, and [`Connection::send_encoded`](crate::Connection::send_encoded)
    /// then only queues the copy.
    pub fn prepare_compressed(&self, setting: CompressAlone) {
        let data = matches!(self.opcode(), OpCode::Text | OpCode::Binary);
        if data && self.payload_len() >= setting.threshold {
            let _ = self.compressed(setting.level, setting.bits);
        }
    }

    /// The frame compressed on its own with `(level, bits)`, made once per setting.
    pub(crate) fn compressed(&self, level: u32, bits: u8) -> Bytes {
        let mut copies = self.lock_copies();
        if let Some((_, _, frame)) = copies.iter().find(|(l, b, _)| (*l, *b) == (level, bits)) {
            return frame.clone();
        }
        let payload = crate::deflate::compress_alone(&self.bytes[self.header_len..], level, bits);
        let mut out = BytesMut::with_capacity(payload.len() + MAX_HEADER_LEN);
        encode_frame_rsv1(&mut out, self.opcode(), true, true, &payload, None);
        let frame = out.freeze();
        copies.push((level, bits, frame.clone()));
        frame
    }

    fn lock_copies(&self) -> std::sync::MutexGuard<'_, Vec<(u32, u8, Bytes)>> {
        self.compressed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form_at_each_boundary() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = BytesMut::new();
            FrameHeader { fin: true, rsv1: false, opcode: OpCode::Binary, mask: None, payload_len: len }
                .encode(&mut out);
            assert_eq!(out.len(), header_len, "len {len}");
            let (h, n) = FrameHeader::decode(&out, false).unwrap().unwrap();
            assert_eq!((h.payload_len, n), (len, header_len));
        }
    }

    #[test]
    fn partial_headers_need_more_bytes() {
        let mut out = BytesMut::new();
        FrameHeader {
            fin: true,
            rsv1: false,
            opcode: OpCode::Text,
            mask: Some([1, 2, 3, 4]),
            payload_len: 70000,
        }
        .encode(&mut out);
        for cut in 0..out.len() {
            assert_eq!(FrameHeader::decode(&out[..cut], false), Ok(None), "cut {cut}");
        }
        assert!(FrameHeader::decode(&out, false).unwrap().is_some());
    }

    #[test]
    fn header_rules_are_enforced() {
        assert_eq!(FrameHeader::decode(&[0x91, 0x00], false), Err(Error::ReservedBits));
        assert_eq!(FrameHeader::decode(&[0xc1, 0x00], false), Err(Error::ReservedBits));
        assert!(FrameHeader::decode(&[0xc1, 0x00], true).is_ok());
        assert_eq!(FrameHeader::decode(&[0x83, 0x00], false), Err(Error::ReservedOpcode(3)));
        assert_eq!(FrameHeader::decode(&[0x8b, 0x00], false), Err(Error::ReservedOpcode(0xb)));
        assert_eq!(FrameHeader::decode(&[0x09, 0x00], false), Err(Error::FragmentedControlFrame));
        assert_eq!(FrameHeader::decode(&[0x89, 126, 0, 126], false), Err(Error::ControlFrameTooLong));
        let huge = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::decode(&huge, false), Err(Error::InvalidLength));
    }
}
