//! Arbitrary bytes as the server's SCRAM-SHA-256 messages: input up to the first NUL is
//! server-first, the rest server-final. Any outcome but a panic is fine.

#![no_main]

#[allow(dead_code)]
mod decoder;

use decoder::scram::{parse_server_final, parse_server_first, ScramClient};
use libfuzzer_sys::fuzz_target;

const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
/// PBKDF2 cost grows with the count from the input; above this only the parser is fuzzed.
const MAX_FUZZ_ITERATIONS: u32 = 16;

fuzz_target!(|data: &[u8]| {
    let (server_first, server_final) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let _ = parse_server_final(server_final);
    let Ok(parsed) = parse_server_first(server_first) else {
        return;
    };
    if parsed.iterations > MAX_FUZZ_ITERATIONS {
        return;
    }
    let client = ScramClient::with_nonce("pencil", NONCE);
    if let Ok((client_final, verifier)) = client.handle_server_first(server_first) {
        let expected = format!("c=biws,r={},p=", parsed.nonce);
        assert!(client_final.starts_with(expected.as_bytes()));
        let _ = verifier.verify_server_final(server_final);
    }
});
