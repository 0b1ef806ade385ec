//! A put's trailer and an ETag from arbitrary bytes: the decoders must return an error
//! or a digest that encodes back to the same bytes, and never panic.
#![no_main]

use fdw_net::wire::{Digest, TRAILER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(trailer) = <[u8; TRAILER_BYTES]>::try_from(bytes)
        && let Ok(digest) = Digest::decode_trailer(&trailer)
    {
        assert_eq!(digest.encode_trailer(), trailer);
    }
    if let Ok(tag) = std::str::from_utf8(bytes)
        && let Some(digest) = Digest::from_etag(tag)
    {
        assert_eq!(Digest::from_etag(&digest.etag()), Some(digest));
    }
});
