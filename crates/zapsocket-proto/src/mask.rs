//! The masking kernel (RFC 6455 §5.3), in safe Rust.

/// XORs `buf` with the 4-byte masking `key`, as if `buf` started `offset` bytes into the
/// masked payload. Masking and unmasking are the same operation.
///
/// Works sixteen bytes at a time on a `u128`, which the compiler turns into vector
/// instructions; no `unsafe`.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    let narrow = u32::from_ne_bytes(key);
    // The key repeated: the same bytes whatever the byte order.
    let wide = u128::from(narrow) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
    let (chunks, rest) = buf.as_chunks_mut::<16>();
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
        for len in 0..70 {
            for offset in 0..4 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, key, offset);
                apply_mask_reference(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
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
