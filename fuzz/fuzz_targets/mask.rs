//! Differential: the word-at-a-time masking kernel against the byte-at-a-time reference,
//! for any key, offset and data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zapsocket_proto::{apply_mask, apply_mask_reference};

fuzz_target!(|data: &[u8]| {
    let [k0, k1, k2, k3, offset, data @ ..] = data else { return };
    let (key, offset) = ([*k0, *k1, *k2, *k3], usize::from(*offset));
    let mut fast = data.to_vec();
    let mut reference = data.to_vec();
    apply_mask(&mut fast, key, offset);
    apply_mask_reference(&mut reference, key, offset);
    assert_eq!(fast, reference);
});
