//! Differential: the vector masking kernel against the byte-at-a-time reference, for
//! any key, offset, data and start alignment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zapsocket_proto::{apply_mask, apply_mask_reference};

fuzz_target!(|data: &[u8]| {
    let [k0, k1, k2, k3, offset, start, data @ ..] = data else { return };
    let (key, offset) = ([*k0, *k1, *k2, *k3], usize::from(*offset));
    // The data starts 0 to 15 bytes past the allocation's start (its alignment).
    let start = usize::from(*start % 16);
    let mut fast = vec![0; start];
    fast.extend_from_slice(data);
    let mut reference = fast.clone();
    apply_mask(&mut fast[start..], key, offset);
    apply_mask_reference(&mut reference[start..], key, offset);
    assert_eq!(fast, reference);
});
