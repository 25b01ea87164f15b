//! Wire rewriting: DataRow, COPY TO STDOUT in text, CSV and binary, errors and notices.

mod copy_binary;
mod copy_text;
mod data_row;
mod notice;

use std::sync::Arc;

use bytes::BytesMut;

use super::*;
use crate::policy::mask::{oid, MaskMethod, TokenKey, ValueFormat};

pub(super) fn key() -> TokenKey {
    TokenKey::from_bytes(*b"tollgate-test-key-0123456789abcd")
}

pub(super) fn arc_key() -> Arc<TokenKey> {
    Arc::new(key())
}

pub(super) fn text_mask(method: MaskMethod, type_oid: u32) -> Option<ColumnMask> {
    Some(ColumnMask {
        method,
        type_oid,
        format: ValueFormat::Text,
    })
}

pub(super) fn binary_mask(method: MaskMethod, type_oid: u32) -> Option<ColumnMask> {
    Some(ColumnMask {
        method,
        type_oid,
        format: ValueFormat::Binary,
    })
}

/// The payloads of consecutive CopyData frames in `out`, checking each frame's framing.
pub(super) fn copy_payloads(out: &[u8]) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        assert_eq!(rest[0], b'd', "a CopyData frame");
        let len = i32::from_be_bytes(rest[1..5].try_into().unwrap());
        let len = usize::try_from(len).unwrap();
        assert!(len > 4, "no empty CopyData frames");
        payloads.push(rest[5..1 + len].to_vec());
        rest = &rest[1 + len..];
    }
    payloads
}

/// Everything a masker wrote, frames joined.
pub(super) fn copy_stream(out: &[u8]) -> Vec<u8> {
    copy_payloads(out).concat()
}
