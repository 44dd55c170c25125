//! The HTTP-01 listener's input: a request head from anyone on port 80, parsed, then looked up.
#![no_main]

use bmcert_acme::{http01_response, parse_request_line, ChallengeBoard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let board = ChallengeBoard::new();
    board.add_http01("known_token-1", "known_token-1.thumbprint");
    if let Some((method, path)) = parse_request_line(data) {
        assert!(method == "GET" || method == "HEAD");
        if let Some(answer) = http01_response(path, &board) {
            assert_eq!(answer, "known_token-1.thumbprint");
        }
    }
});
