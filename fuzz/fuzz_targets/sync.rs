//! Feeds arbitrary bytes to the `/hearth/sync/1` decoders (the first byte picks request or
//! response). A message that decodes must encode and decode back to itself.
#![no_main]

use hearth_node::daemon::sync::{MAX_REQUEST, decode_request, decode_response, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        let Ok(request) = decode_request(bytes) else {
            return;
        };
        let again = match encode(&request) {
            Ok(again) => again,
            Err(e) => panic!("a decoded request does not encode: {e}"),
        };
        // The canonical encoding may be longer than the input (named fields for packed ones).
        if again.len() <= MAX_REQUEST {
            assert_eq!(decode_request(&again).ok(), Some(request));
        }
    } else {
        let Ok(response) = decode_response(bytes) else {
            return;
        };
        let again = match encode(&response) {
            Ok(again) => again,
            Err(e) => panic!("a decoded response does not encode: {e}"),
        };
        assert_eq!(decode_response(&again).ok(), Some(response));
    }
});
