//! Request and response headers from arbitrary bytes: the decoders must return an error
//! or a value that re-encodes to itself, and never panic.
#![no_main]

use fdw_net::wire::{decode_request, decode_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(request) = decode_request(bytes) {
        assert_eq!(decode_request(&request.encode()).as_ref(), Ok(&request));
    }
    if let Ok(response) = decode_response(bytes) {
        assert_eq!(decode_response(&response.encode()).as_ref(), Ok(&response));
    }
});
