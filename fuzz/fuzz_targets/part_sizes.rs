//! A composed object's part sizes from arbitrary text (it comes back from under-stores):
//! the decoder returns `None` or sizes that encode back to text naming the same sizes,
//! and never panics.
#![no_main]

use fdw_net::wire::PartSizes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Some(sizes) = PartSizes::decode(text)
        && let Some(again) = PartSizes::encode(&sizes)
    {
        assert_eq!(PartSizes::decode(&again), Some(sizes));
    }
});
