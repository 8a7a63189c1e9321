//! The masking kernel (RFC 6455 §5.3), in safe Rust.

/// XORs `buf` with the 4-byte masking `key`, as if `buf` started `offset` bytes into the
/// masked payload. Masking and unmasking are the same operation.
///
/// Works 32 bytes at a time on byte arrays, which the compiler turns into vector
/// instructions; no `unsafe`. A buffer of 1 KiB or more is first brought
/// to a 16-byte boundary, so the vector loads and stores never straddle cache lines
/// (a payload starts right after its frame's header, 2 to 14 bytes into a read; the
/// `mask` group of the codec benchmark measures both starts).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    if buf.len() < ALIGN_FROM {
        return mask_chunks(buf, key);
    }
    let head = buf.as_ptr().align_offset(16).min(buf.len());
    let (prefix, body) = buf.split_at_mut(head);
    for (byte, k) in prefix.iter_mut().zip(key.into_iter().cycle()) {
        *byte ^= k;
    }
    mask_chunks(body, rotate(key, head));
}

/// From this length on, [`apply_mask`] aligns before its vector loop (below it, the
/// bytes before the boundary cost more than the alignment saves).
const ALIGN_FROM: usize = 1024;

/// The key as seen from `offset` bytes into the payload: byte `i` of the result is
/// byte `(i + offset) % 4` of `key`.
#[inline(always)]
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    // `offset % 4 < 4`, so the shift is below 32 bits.
    u32::from_le_bytes(key).rotate_right(8 * (offset % 4) as u32).to_le_bytes()
}

/// Masks `buf` from the start of `key`: 32-byte blocks, then a 16-byte one, then
/// words, then bytes.
#[inline(always)]
fn mask_chunks(buf: &mut [u8], key: [u8; 4]) {
    let narrow = u32::from_ne_bytes(key);
    let block: [u8; 32] = std::array::from_fn(|i| key[i % 4]);
    let (blocks, rest) = buf.as_chunks_mut::<32>();
    for chunk in blocks {
        for (byte, k) in chunk.iter_mut().zip(block) {
            *byte ^= k;
        }
    }
    // The key repeated: the same bytes whatever the byte order.
    let wide = u128::from(narrow) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
    let (chunks, rest) = rest.as_chunks_mut::<16>();
    for chunk in chunks {
        *chunk = (u128::from_ne_bytes(*chunk) ^ wide).to_ne_bytes();
    }
    let (words, rest) = rest.as_chunks_mut::<4>();
    for word in words {
        *word = (u32::from_ne_bytes(*word) ^ narrow).to_ne_bytes();
    }
    for (byte, k) in rest.iter_mut().zip(key) {
        *byte ^= k;
    }
}

/// The byte-at-a-time reference kernel, for tests and differential fuzzing.
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(i + offset) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_kernel_matches_reference_at_every_offset_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let lengths = (0..70).chain([ALIGN_FROM - 1, ALIGN_FROM, ALIGN_FROM + 1, ALIGN_FROM + 37, 5000]);
        for len in lengths {
            for offset in 0..4 {
                // Every start alignment, as a payload after headers of 2 to 14 bytes has.
                for start in 0..17 {
                    let data: Vec<u8> = (0..len + start).map(|i| (i * 7 + 3) as u8).collect();
                    let mut fast = data.clone();
                    let mut slow = data.clone();
                    apply_mask(&mut fast[start..], key, offset);
                    apply_mask_reference(&mut slow[start..], key, offset);
                    assert_eq!(fast, slow, "len {len} offset {offset} start {start}");
                }
            }
        }
    }

    #[test]
    fn masking_twice_restores_the_data() {
        let mut data = b"Hello, masking kernel!".to_vec();
        apply_mask(&mut data, [1, 2, 3, 4], 0);
        assert_ne!(&data[..], b"Hello, masking kernel!");
        apply_mask(&mut data, [1, 2, 3, 4], 0);
        assert_eq!(&data[..], b"Hello, masking kernel!");
    }
}
