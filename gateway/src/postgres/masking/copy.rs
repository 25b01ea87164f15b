//! COPY TO STDOUT: rows carried in CopyData messages, masked per column. The server sends one
//! row per message, but nothing in the protocol promises it, so rows are re-assembled across
//! messages and a row cut off at CopyDone is an error.

mod textual;

use std::{fmt, sync::Arc};

use bytes::{Buf, BufMut, BytesMut};

use super::{patch_length, put_masked_field, read_i16, read_i32, ColumnMask, MaskError};
use crate::policy::mask::{MaskMethod, TokenKey, ValueFormat};
use crate::postgres::encoding::ClientEncoding;

/// The COPY options that decide how rows are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormatSpec {
    Text {
        delimiter: u8,
        null: Vec<u8>,
    },
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: Vec<u8>,
    },
    Binary,
}

impl CopyFormatSpec {
    /// `FORMAT text` with its defaults: tab-delimited, `\N` for NULL.
    pub fn text() -> Self {
        Self::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec(),
        }
    }

    #[cfg(test)]
    /// `FORMAT csv` with its defaults: comma, double quote as quote and escape, NULL unquoted
    /// empty.
    pub fn csv() -> Self {
        Self::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
        }
    }
}

/// The 11-byte signature that opens binary COPY data.
const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryStage {
    Header,
    Tuples,
    /// The trailer (field count -1) has been seen; nothing may follow.
    Done,
}

/// Masks the rows of one COPY TO STDOUT.
pub struct CopyMasker {
    format: CopyFormatSpec,
    plan: Vec<Option<ColumnMask>>,
    key: Arc<TokenKey>,
    /// The session's client encoding, which the server wrote the rows in.
    encoding: ClientEncoding,
    /// The start of an incomplete row (or binary header/tuple).
    pending: BytesMut,
    /// CSV: where the search for the end of the pending row resumes, and its quote state.
    scan: textual::Scan,
    stage: BinaryStage,
    /// Scratch for decoded and masked values, reused across rows.
    decoded: BytesMut,
    masked: BytesMut,
}

// Rows and values never appear in Debug output.
impl fmt::Debug for CopyMasker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyMasker")
            .field("format", &self.format)
            .field("columns", &self.plan.len())
            .field("buffered_bytes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl CopyMasker {
    pub fn new(format: CopyFormatSpec, plan: Vec<Option<ColumnMask>>, key: Arc<TokenKey>) -> Self {
        Self {
            format,
            plan,
            key,
            encoding: ClientEncoding::UTF8,
            pending: BytesMut::new(),
            scan: textual::Scan::default(),
            stage: BinaryStage::Header,
            decoded: BytesMut::new(),
            masked: BytesMut::new(),
        }
    }

    /// Rows written by the server in this client encoding.
    pub fn in_encoding(mut self, encoding: ClientEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Consumes one CopyData payload and appends one CopyData frame (`d`, length, rows) with
    /// every row it completes; an incomplete trailing row stays buffered. On error nothing is
    /// appended. Text and CSV rows in another encoding than UTF-8 are read as UTF-8 and
    /// written back (a second byte in the ASCII range must not be taken for a delimiter,
    /// quote or escape); binary rows carry their values whole, masked one by one.
    pub fn push(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), MaskError> {
        if self.format == CopyFormatSpec::Binary || self.encoding.is_utf8() || payload.is_ascii() {
            return self.push_utf8(payload, out);
        }
        let text = self
            .encoding
            .decode(payload)
            .map_err(|_| MaskError::MalformedCopy("row not valid in the client encoding"))?;
        let mut framed = BytesMut::new();
        self.push_utf8(text.as_bytes(), &mut framed)?;
        if framed.is_empty() {
            return Ok(());
        }
        let frame_start = out.len();
        out.put_u8(b'd');
        out.put_i32(0);
        out.extend_from_slice(&self.encoding.encode(&String::from_utf8_lossy(&framed[5..])));
        let result = patch_length(out, frame_start);
        if result.is_err() {
            out.truncate(frame_start);
        }
        result
    }

    fn push_utf8(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), MaskError> {
        let frame_start = out.len();
        out.put_u8(b'd');
        out.put_i32(0);
        let result = if self.pending.is_empty() {
            self.consume(payload, out).map(|used| {
                self.pending.extend_from_slice(&payload[used..]);
            })
        } else {
            self.pending.extend_from_slice(payload);
            let mut pending = std::mem::take(&mut self.pending);
            let result = self.consume(&pending, out);
            if let Ok(used) = result {
                pending.advance(used);
            }
            self.pending = pending;
            result.map(drop)
        };
        let result = result.and_then(|()| {
            if out.len() == frame_start + 5 {
                out.truncate(frame_start);
                Ok(())
            } else {
                patch_length(out, frame_start)
            }
        });
        if result.is_err() {
            out.truncate(frame_start);
        }
        result
    }

    /// At CopyDone: a buffered partial row, or binary data without its trailer, is an error.
    pub fn finish(&mut self, _out: &mut BytesMut) -> Result<(), MaskError> {
        let complete = self.pending.is_empty()
            && (self.format != CopyFormatSpec::Binary || self.stage == BinaryStage::Done);
        if complete {
            Ok(())
        } else {
            Err(MaskError::CopyIncomplete)
        }
    }

    /// Masks the complete rows at the start of `data` into `out`; returns the bytes used.
    fn consume(&mut self, data: &[u8], out: &mut BytesMut) -> Result<usize, MaskError> {
        match self.format {
            CopyFormatSpec::Binary => self.consume_binary(data, out),
            _ => self.consume_rows(data, out),
        }
    }

    fn consume_rows(&mut self, data: &[u8], out: &mut BytesMut) -> Result<usize, MaskError> {
        let mut row_start = 0;
        while let Some(row_end) = self.scan.row_end(&self.format, data, row_start) {
            let row = &data[row_start..row_end];
            let mut scratch = textual::Scratch {
                decoded: &mut self.decoded,
                masked: &mut self.masked,
            };
            textual::mask_row(&self.format, &self.plan, &self.key, row, &mut scratch, out)?;
            out.put_u8(b'\n');
            row_start = row_end + 1;
            self.scan = textual::Scan::default();
        }
        // The scan position is kept relative to the start of the row still pending.
        self.scan.rebase(row_start);
        Ok(row_start)
    }

    fn consume_binary(&mut self, data: &[u8], out: &mut BytesMut) -> Result<usize, MaskError> {
        let malformed = MaskError::MalformedCopy;
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            match self.stage {
                BinaryStage::Header => {
                    let Some(header_len) = binary_header_len(rest)? else {
                        return Ok(pos);
                    };
                    out.extend_from_slice(&rest[..header_len]);
                    pos += header_len;
                    self.stage = BinaryStage::Tuples;
                }
                BinaryStage::Tuples => {
                    let Some(count) = read_i16(rest, 0) else {
                        return Ok(pos);
                    };
                    if count == -1 {
                        out.put_i16(-1);
                        pos += 2;
                        self.stage = BinaryStage::Done;
                        continue;
                    }
                    let count =
                        usize::try_from(count).map_err(|_| malformed("negative field count"))?;
                    if count != self.plan.len() {
                        return Err(MaskError::FieldCount {
                            expected: self.plan.len(),
                            found: count,
                        });
                    }
                    let Some(tuple_len) = binary_tuple_len(rest, count)? else {
                        return Ok(pos);
                    };
                    self.mask_binary_tuple(&rest[..tuple_len], out)?;
                    pos += tuple_len;
                }
                BinaryStage::Done if rest.is_empty() => return Ok(pos),
                BinaryStage::Done => return Err(malformed("data after the trailer")),
            }
        }
    }

    /// `tuple` is complete and its lengths were checked by `binary_tuple_len`.
    fn mask_binary_tuple(&self, tuple: &[u8], out: &mut BytesMut) -> Result<(), MaskError> {
        out.extend_from_slice(&tuple[..2]);
        let mut pos = 2;
        for mask in &self.plan {
            let len = read_i32(tuple, pos).ok_or(MaskError::MalformedCopy("truncated tuple"))?;
            let value_start = pos + 4;
            let value_end = value_start + usize::try_from(len).unwrap_or(0);
            let mask = mask.filter(|mask| mask.method != MaskMethod::Clear);
            match mask {
                Some(mask) if len >= 0 => {
                    let value = &tuple[value_start..value_end];
                    put_masked_field(
                        mask,
                        ValueFormat::Binary,
                        value,
                        &self.key,
                        self.encoding,
                        out,
                    )?;
                }
                _ => out.extend_from_slice(&tuple[pos..value_end]),
            }
            pos = value_end;
        }
        Ok(())
    }
}

/// Length of the binary header at the start of `data`, once all of it is there.
fn binary_header_len(data: &[u8]) -> Result<Option<usize>, MaskError> {
    let malformed = MaskError::MalformedCopy;
    let signature_len = BINARY_SIGNATURE.len();
    let prefix = data.len().min(signature_len);
    if data[..prefix] != BINARY_SIGNATURE[..prefix] {
        return Err(malformed("bad binary signature"));
    }
    let (Some(flags), Some(extension)) = (
        read_i32(data, signature_len),
        read_i32(data, signature_len + 4),
    ) else {
        return Ok(None);
    };
    // Bits 16-31 are critical: a reader must refuse data with one it does not know
    // (bit 16, WITH OIDS, would add a field the plan does not describe).
    if flags & !0xffff != 0 {
        return Err(malformed("unsupported critical flag"));
    }
    let extension = usize::try_from(extension).map_err(|_| malformed("negative extension"))?;
    let len = signature_len + 8 + extension;
    Ok((data.len() >= len).then_some(len))
}

/// Length of the tuple at the start of `data` (count already read), once all of it is there.
fn binary_tuple_len(data: &[u8], count: usize) -> Result<Option<usize>, MaskError> {
    let mut pos = 2;
    for _ in 0..count {
        let Some(len) = read_i32(data, pos) else {
            return Ok(None);
        };
        pos += 4;
        if len == -1 {
            continue;
        }
        let len =
            usize::try_from(len).map_err(|_| MaskError::MalformedCopy("negative field length"))?;
        pos += len;
    }
    Ok((data.len() >= pos).then_some(pos))
}
