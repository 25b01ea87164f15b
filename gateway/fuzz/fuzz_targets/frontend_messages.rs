//! Arbitrary bytes from a client after startup: framing, then typed decoding, in both protocol
//! versions and several client encodings. Any outcome but a panic is fine.

#![no_main]

#[allow(dead_code)]
mod decoder;

use bytes::BytesMut;
use decoder::{
    codec::{decode_frontend, session_context, TextReading},
    encoding::ClientEncoding,
    frame::{complete_frame_len, FrameKind},
};
use libfuzzer_sys::fuzz_target;
use pgwire::messages::ProtocolVersion;

fuzz_target!(|data: &[u8]| {
    for protocol in [ProtocolVersion::PROTOCOL3_0, ProtocolVersion::PROTOCOL3_2] {
        let context = session_context(protocol);
        let mut buf = BytesMut::from(data);
        while let Ok(Some(len)) = complete_frame_len(&buf, FrameKind::Tagged, 1 << 20) {
            let frame = buf.split_to(len);
            for name in ["UTF8", "SJIS", "JOHAB", "LATIN1"] {
                let reading = TextReading {
                    encoding: ClientEncoding::from_name(name).expect("a known encoding"),
                    encoding_settled: name != "LATIN1",
                };
                let _ = decode_frontend(&frame, &context, reading);
            }
        }
    }
});
