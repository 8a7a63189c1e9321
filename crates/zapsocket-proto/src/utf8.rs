//! Incremental UTF-8 validation across fragments and partial frames (RFC 6455 §8.1).

/// Validates UTF-8 fed in pieces that may split a code point anywhere.
///
/// A sequence is rejected as soon as the bytes seen so far cannot start valid UTF-8, so a
/// bad fragment fails the connection before the rest of the message arrives.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: usize,
}

/// The width of the code point a lead byte starts (0 for a byte that cannot lead).
fn width(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Whether `bytes` is valid UTF-8 or a valid prefix of it.
fn valid_prefix(bytes: &[u8]) -> bool {
    match simdutf8::compat::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes; `Err(())` as soon as they cannot be valid UTF-8.
    #[allow(clippy::result_unit_err)]
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ()> {
        if self.partial_len > 0 {
            let need = width(self.partial[0]) - self.partial_len;
            let take = need.min(data.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&data[..take]);
            self.partial_len += take;
            data = &data[take..];
            let bytes = &self.partial[..self.partial_len];
            if take < need {
                return if valid_prefix(bytes) { Ok(()) } else { Err(()) };
            }
            if simdutf8::basic::from_utf8(bytes).is_err() {
                return Err(());
            }
            self.partial_len = 0;
        }
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(()),
            Err(e) => {
                let rest = &data[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len();
                Ok(())
            }
        }
    }

    /// Ends the message: `Err(())` if it stopped inside a code point.
    #[allow(clippy::result_unit_err)]
    pub fn finish(&mut self) -> Result<(), ()> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete { Ok(()) } else { Err(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], cuts: &[usize]) -> Result<(), ()> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts {
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    #[test]
    fn code_points_split_at_every_position_are_accepted() {
        let text = "κόσμε€𝄞 ok".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                assert_eq!(feed_split(text, &[a, b]), Ok(()), "cuts {a} {b}");
            }
        }
    }

    #[test]
    fn invalid_sequences_fail_at_the_first_bad_piece() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xce\xba\xe1"), Ok(()));
        // 0xe1 must be followed by a continuation byte.
        assert_eq!(v.feed(b"A"), Err(()));
        let mut v = Utf8Validator::new();
        // 0xf4 0x90 is above U+10FFFF: rejected before the code point completes.
        assert_eq!(v.feed(b"\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(()));
        // Surrogates are invalid.
        assert_eq!(feed_split(b"\xed\xa0\x80", &[1]), Err(()));
    }

    #[test]
    fn a_message_ending_inside_a_code_point_is_rejected() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"ab\xe2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(()));
    }
}
