//! Arbitrary bytes as the opening of a connection: SSL/GSS negotiation, the startup packet
//! (parameters, `options` parsing) or a cancel request. Any outcome but a panic is fine.

#![no_main]

#[allow(dead_code)]
mod decoder;

use std::sync::OnceLock;

use decoder::startup::read_opening;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    // The client's bytes to read, and a sink for the gateway's "N" answers.
    let mut stream = tokio::io::join(data, tokio::io::sink());
    let _ = runtime().block_on(read_opening(&mut stream));
});
