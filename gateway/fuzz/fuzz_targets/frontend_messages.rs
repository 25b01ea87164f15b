//! Arbitrary bytes from a client after startup: framing, then typed decoding, in both protocol
//! versions. Any outcome but a panic is fine.

#![no_main]

#[allow(dead_code)]
mod decoder;

use bytes::BytesMut;
use decoder::{
    codec::{decode_frontend, session_context},
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
            let _ = decode_frontend(&frame, &context);
        }
    }
});
