//! Masked values written into server messages: DataRow fields, COPY TO STDOUT rows, and the
//! text of errors and notices. Frames are rewritten at byte level (no decode into owned
//! messages) because DataRow is the hot path; any frame that does not parse exactly is an
//! error, and the caller fails closed rather than forwarding it.

mod copy;
mod notice;

#[cfg(test)]
mod tests;

use bytes::{BufMut, BytesMut};

use super::encoding::ClientEncoding;
use crate::policy::mask::{is_client_text, mask_into, MaskMethod, Masked, TokenKey, ValueFormat};

pub use copy::{CopyFormatSpec, CopyMasker};
pub use notice::scrub_error_fields;

/// How one result column is masked (`None` in a plan = passes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnMask {
    pub method: MaskMethod,
    pub type_oid: u32,
    /// The column's result format. COPY ignores it: its own format decides.
    pub format: ValueFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("row has {found} fields but the mask plan has {expected}")]
    FieldCount { expected: usize, found: usize },
    #[error("malformed DataRow: {0}")]
    MalformedRow(&'static str),
    #[error("malformed COPY data: {0}")]
    MalformedCopy(&'static str),
    #[error("COPY data ended inside a row")]
    CopyIncomplete,
    #[error("malformed error or notice message: {0}")]
    MalformedNotice(&'static str),
    #[error("masked message would exceed the protocol's length limit")]
    TooLong,
}

/// Rewrites one complete DataRow frame into `out`, masking the fields whose plan entry is
/// `Some`. On error nothing is appended.
pub fn rewrite_data_row(
    frame: &[u8],
    plan: &[Option<ColumnMask>],
    key: &TokenKey,
    encoding: ClientEncoding,
    out: &mut BytesMut,
) -> Result<(), MaskError> {
    let start = out.len();
    let result = write_data_row(frame, plan, key, encoding, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_data_row(
    frame: &[u8],
    plan: &[Option<ColumnMask>],
    key: &TokenKey,
    encoding: ClientEncoding,
    out: &mut BytesMut,
) -> Result<(), MaskError> {
    let malformed = MaskError::MalformedRow;
    let Some((&b'D', rest)) = frame.split_first() else {
        return Err(malformed("not a DataRow"));
    };
    let declared = read_i32(rest, 0).ok_or(malformed("truncated header"))?;
    if usize::try_from(declared).ok() != Some(rest.len()) {
        return Err(malformed("length does not match the frame"));
    }
    let count = read_i16(rest, 4).ok_or(malformed("truncated header"))?;
    let count = usize::try_from(count).map_err(|_| malformed("negative field count"))?;
    if count != plan.len() {
        return Err(MaskError::FieldCount {
            expected: plan.len(),
            found: count,
        });
    }
    let body = &rest[6..];
    out.reserve(frame.len() + 16 * plan.len());
    let frame_start = out.len();
    out.put_u8(b'D');
    out.put_i32(0);
    out.extend_from_slice(&rest[4..6]);
    // Unmasked fields are copied in runs, not one by one.
    let mut copied = 0;
    let mut pos = 0;
    for mask in plan {
        let field_start = pos;
        let len = read_i32(body, pos).ok_or(malformed("truncated field length"))?;
        pos += 4;
        if len == -1 {
            continue;
        }
        let len = usize::try_from(len).map_err(|_| malformed("negative field length"))?;
        let end = pos
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or(malformed("field runs past the frame"))?;
        let value = &body[pos..end];
        pos = end;
        let Some(mask) = mask.filter(|mask| mask.method != MaskMethod::Clear) else {
            continue;
        };
        out.extend_from_slice(&body[copied..field_start]);
        copied = pos;
        put_masked_field(mask, mask.format, value, key, encoding, out)?;
    }
    if pos != body.len() {
        return Err(malformed("bytes after the last field"));
    }
    out.extend_from_slice(&body[copied..]);
    patch_length(out, frame_start)
}

/// Appends a field as i32 length (-1 for NULL) and the masked bytes.
fn put_masked_field(
    mask: ColumnMask,
    format: ValueFormat,
    value: &[u8],
    key: &TokenKey,
    encoding: ClientEncoding,
    out: &mut BytesMut,
) -> Result<(), MaskError> {
    let len_at = out.len();
    out.put_i32(0);
    let masked = if encoding.is_utf8() || value.is_ascii() || !is_client_text(mask.type_oid, format)
    {
        mask_into(mask.method, mask.type_oid, format, value, key, out)
    } else {
        mask_in_encoding(mask, format, value, key, encoding, out)
    };
    match masked {
        Masked::Value => {
            let len = i32::try_from(out.len() - len_at - 4).map_err(|_| MaskError::TooLong)?;
            out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Masked::Null => {
            out.truncate(len_at);
            out.put_i32(-1);
        }
    }
    Ok(())
}

/// Masks text of another encoding as the same text in UTF-8 (so a token is the same whatever
/// the session's encoding) and writes the result back in that encoding. Bytes that are not
/// valid there are masked as they are (masks of undecodable text write only ASCII).
fn mask_in_encoding(
    mask: ColumnMask,
    format: ValueFormat,
    value: &[u8],
    key: &TokenKey,
    encoding: ClientEncoding,
    out: &mut BytesMut,
) -> Masked {
    let Ok(text) = encoding.decode(value) else {
        return mask_into(mask.method, mask.type_oid, format, value, key, out);
    };
    let mut utf8 = BytesMut::new();
    let masked = mask_into(
        mask.method,
        mask.type_oid,
        format,
        text.as_bytes(),
        key,
        &mut utf8,
    );
    if masked == Masked::Value {
        out.extend_from_slice(&encoding.encode(&String::from_utf8_lossy(&utf8)));
    }
    masked
}

/// Writes the length of the frame that starts (with its tag) at `frame_start`.
fn patch_length(out: &mut BytesMut, frame_start: usize) -> Result<(), MaskError> {
    let len = i32::try_from(out.len() - frame_start - 1).map_err(|_| MaskError::TooLong)?;
    out[frame_start + 1..frame_start + 5].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

fn read_i16(buf: &[u8], at: usize) -> Option<i16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(i16::from_be_bytes(bytes.try_into().ok()?))
}
