//! Rows of COPY text and CSV: splitting (CSV quotes may hold newlines), fields decoded before
//! masking and written back escaped or quoted the way COPY TO writes them. All values in
//! these formats are in text format.

use bytes::{BufMut, BytesMut};

use super::CopyFormatSpec;
use crate::{
    policy::mask::{mask_into, MaskMethod, Masked, TokenKey, ValueFormat},
    postgres::masking::{ColumnMask, MaskError},
};

/// Where the search for the end of the pending row stands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scan {
    pos: usize,
    in_quotes: bool,
    /// CSV with an escape other than the quote: the previous byte was that escape.
    escaped: bool,
}

impl Scan {
    /// Index of the newline ending the row that starts at `row_start`, if it is in `data`.
    pub fn row_end(
        &mut self,
        format: &CopyFormatSpec,
        data: &[u8],
        row_start: usize,
    ) -> Option<usize> {
        let start = self.pos.max(row_start);
        match *format {
            // COPY TO writes a newline inside a value as `\n`: every raw newline ends a row.
            CopyFormatSpec::Text { .. } | CopyFormatSpec::Binary => {
                match data[start..].iter().position(|&b| b == b'\n') {
                    Some(at) => Some(start + at),
                    None => {
                        self.pos = data.len();
                        None
                    }
                }
            }
            CopyFormatSpec::Csv { quote, escape, .. } => {
                for (at, &byte) in data.iter().enumerate().skip(start) {
                    if self.escaped {
                        self.escaped = false;
                    } else if self.in_quotes {
                        if byte == escape && escape != quote {
                            self.escaped = true;
                        } else if byte == quote {
                            // A doubled quote closes and reopens: same state either way.
                            self.in_quotes = false;
                        }
                    } else if byte == quote {
                        self.in_quotes = true;
                    } else if byte == b'\n' {
                        return Some(at);
                    }
                }
                self.pos = data.len();
                None
            }
        }
    }

    /// The pending row now starts at `row_start`; positions are relative to it.
    pub fn rebase(&mut self, row_start: usize) {
        self.pos = self.pos.saturating_sub(row_start);
    }
}

pub struct Scratch<'a> {
    pub decoded: &'a mut BytesMut,
    pub masked: &'a mut BytesMut,
}

/// Masks one row (without its newline) into `out`.
pub fn mask_row(
    format: &CopyFormatSpec,
    plan: &[Option<ColumnMask>],
    key: &TokenKey,
    row: &[u8],
    scratch: &mut Scratch<'_>,
    out: &mut BytesMut,
) -> Result<(), MaskError> {
    let (delimiter, null) = match format {
        CopyFormatSpec::Text { delimiter, null } => (*delimiter, null.as_slice()),
        CopyFormatSpec::Csv {
            delimiter, null, ..
        } => (*delimiter, null.as_slice()),
        CopyFormatSpec::Binary => return Err(MaskError::MalformedCopy("not a text format")),
    };
    let mut pos = 0;
    for (index, mask) in plan.iter().enumerate() {
        if index > 0 {
            if row.get(pos) != Some(&delimiter) {
                return Err(too_few(plan.len(), index));
            }
            out.put_u8(delimiter);
            pos += 1;
        }
        let (end, quoted) = match *format {
            CopyFormatSpec::Csv { quote, escape, .. } => {
                csv_field_end(row, pos, delimiter, quote, escape)?
            }
            _ => (text_field_end(row, pos, delimiter), false),
        };
        let raw = &row[pos..end];
        pos = end;
        let is_null = !quoted && raw == null;
        let Some(mask) = mask.filter(|mask| mask.method != MaskMethod::Clear && !is_null) else {
            out.extend_from_slice(raw);
            continue;
        };
        scratch.decoded.clear();
        scratch.masked.clear();
        match *format {
            CopyFormatSpec::Csv { quote, escape, .. } => {
                decode_csv(raw, quote, escape, scratch.decoded);
            }
            _ => decode_text(raw, scratch.decoded),
        }
        let masked = mask_into(
            mask.method,
            mask.type_oid,
            ValueFormat::Text,
            scratch.decoded,
            key,
            scratch.masked,
        );
        match (masked, format) {
            (Masked::Null, _) => out.extend_from_slice(null),
            (Masked::Value, CopyFormatSpec::Csv { quote, escape, .. }) => {
                encode_csv(scratch.masked, delimiter, *quote, *escape, null, out);
            }
            (Masked::Value, _) => encode_text(scratch.masked, delimiter, out),
        }
    }
    if pos != row.len() {
        return Err(MaskError::FieldCount {
            expected: plan.len(),
            found: plan.len() + 1,
        });
    }
    Ok(())
}

fn too_few(expected: usize, found: usize) -> MaskError {
    MaskError::FieldCount { expected, found }
}

/// End of a text-format field: the next delimiter not escaped by a backslash.
fn text_field_end(row: &[u8], start: usize, delimiter: u8) -> usize {
    let mut at = start;
    while at < row.len() {
        match row[at] {
            b'\\' => at += 2,
            byte if byte == delimiter => return at,
            _ => at += 1,
        }
    }
    row.len()
}

/// End of a CSV field and whether any part of it was quoted (a quoted empty string is not
/// NULL).
fn csv_field_end(
    row: &[u8],
    start: usize,
    delimiter: u8,
    quote: u8,
    escape: u8,
) -> Result<(usize, bool), MaskError> {
    let mut quoted = false;
    let mut in_quotes = false;
    let mut at = start;
    while at < row.len() {
        let byte = row[at];
        if in_quotes {
            if byte == escape && escape != quote && at + 1 < row.len() {
                at += 1;
            } else if byte == quote {
                in_quotes = false;
            }
        } else if byte == quote {
            in_quotes = true;
            quoted = true;
        } else if byte == delimiter {
            return Ok((at, quoted));
        }
        at += 1;
    }
    if in_quotes {
        return Err(MaskError::MalformedCopy("unterminated quoted field"));
    }
    Ok((row.len(), quoted))
}

/// Undoes COPY text escapes: `\b \f \n \r \t \v`, `\\`, octal `\ddd`, hex `\xHH`, and a
/// backslash before any other byte (such as the delimiter) standing for that byte.
fn decode_text(raw: &[u8], out: &mut BytesMut) {
    let mut at = 0;
    while at < raw.len() {
        let Some(backslash) = raw[at..].iter().position(|&b| b == b'\\') else {
            out.extend_from_slice(&raw[at..]);
            return;
        };
        out.extend_from_slice(&raw[at..at + backslash]);
        at += backslash + 1;
        let Some(&code) = raw.get(at) else {
            return;
        };
        at += 1;
        let byte = match code {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut value = u32::from(code - b'0');
                for _ in 0..2 {
                    match raw.get(at) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            at += 1;
                        }
                        _ => break,
                    }
                }
                (value & 0xff) as u8
            }
            b'x' => match raw.get(at).and_then(|&d| hex_value(d)) {
                Some(high) => {
                    at += 1;
                    match raw.get(at).and_then(|&d| hex_value(d)) {
                        Some(low) => {
                            at += 1;
                            high * 16 + low
                        }
                        None => high,
                    }
                }
                None => b'x',
            },
            other => other,
        };
        out.put_u8(byte);
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Escapes as COPY TO does: control characters by name, backslash and the delimiter with a
/// backslash.
fn encode_text(value: &[u8], delimiter: u8, out: &mut BytesMut) {
    for &byte in value {
        let escaped = match byte {
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x0b => b'v',
            b'\\' => b'\\',
            _ if byte == delimiter => byte,
            _ => {
                out.put_u8(byte);
                continue;
            }
        };
        out.put_slice(&[b'\\', escaped]);
    }
}

/// Removes CSV quoting: quotes delimit, and inside them the escape makes the next byte
/// literal (a doubled quote when escape and quote are the same).
fn decode_csv(raw: &[u8], quote: u8, escape: u8, out: &mut BytesMut) {
    let mut in_quotes = false;
    let mut at = 0;
    while at < raw.len() {
        let byte = raw[at];
        if in_quotes {
            let next = raw.get(at + 1).copied();
            if byte == escape && (next == Some(quote) || next == Some(escape)) {
                out.put_u8(raw[at + 1]);
                at += 2;
                continue;
            }
            if byte == quote {
                in_quotes = false;
            } else {
                out.put_u8(byte);
            }
        } else if byte == quote {
            in_quotes = true;
        } else {
            out.put_u8(byte);
        }
        at += 1;
    }
}

/// Quotes a value when COPY TO would: it holds the delimiter, quote, a newline or carriage
/// return, equals the NULL marker (so it is not read as NULL), or is the end marker `\.`.
fn encode_csv(value: &[u8], delimiter: u8, quote: u8, escape: u8, null: &[u8], out: &mut BytesMut) {
    let needs_quotes = value == null
        || value == b"\\."
        || value
            .iter()
            .any(|&b| b == delimiter || b == quote || b == b'\n' || b == b'\r');
    if !needs_quotes {
        out.extend_from_slice(value);
        return;
    }
    out.put_u8(quote);
    for &byte in value {
        if byte == quote || byte == escape {
            out.put_u8(escape);
        }
        out.put_u8(byte);
    }
    out.put_u8(quote);
}
