//! Arbitrary bytes from a server: framing, then typed decoding. Any outcome but a panic is
//! fine.

#![no_main]

#[allow(dead_code)]
mod decoder;

use bytes::BytesMut;
use decoder::{
    codec::decode_backend,
    frame::{complete_frame_len, FrameKind},
};
use libfuzzer_sys::fuzz_target;
use pgwire::messages::{DecodeContext, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    for protocol in [ProtocolVersion::PROTOCOL3_0, ProtocolVersion::PROTOCOL3_2] {
        let mut context = DecodeContext::new(protocol);
        context.awaiting_frontend_ssl = false;
        context.awaiting_frontend_startup = false;
        let mut buf = BytesMut::from(data);
        while let Ok(Some(len)) = complete_frame_len(&buf, FrameKind::Tagged, 1 << 20) {
            let frame = buf.split_to(len);
            let _ = decode_backend(&frame, &context);
        }
    }
});
