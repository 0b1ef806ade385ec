//! A composed object's part records from arbitrary text (they come back from
//! under-stores): each decoder returns `None` or a value that encodes back to text
//! naming the same value, and never panics.
#![no_main]

use fdw_net::wire::{PartChecksums, PartSizes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Some(sizes) = PartSizes::decode(text)
        && let Some(again) = PartSizes::encode(&sizes)
    {
        assert_eq!(PartSizes::decode(&again), Some(sizes));
    }
    if let Some(checksums) = PartChecksums::decode(text) {
        assert_eq!(checksums.encode().as_deref(), Some(text));
    }
});
