//! ErrorResponse and NoticeResponse rewritten so they cannot carry data values. PostgreSQL
//! quotes the offending input in messages (`invalid input syntax for type integer: "..."`)
//! and puts key values and failing rows in DETAIL, so quoted spans and value groups are
//! starred, the free-text fields are replaced, and messages written by user code (RAISE) are
//! replaced whole.

use bytes::{BufMut, BytesMut};

use super::{patch_length, read_i32, MaskError};

/// What replaces a free-text field (detail, context, hint, internal query).
pub const MASKED_FIELD: &[u8] = b"[masked by Tollgate]";
/// What replaces a message written by user code.
pub const MASKED_USER_MESSAGE: &[u8] = b"message raised by user code masked by Tollgate";

/// Rewrites an ErrorResponse (`E`) or NoticeResponse (`N`) frame into `out`. On error
/// nothing is appended.
pub fn scrub_error_fields(frame: &[u8], out: &mut BytesMut) -> Result<(), MaskError> {
    let malformed = MaskError::MalformedNotice;
    let Some((&tag @ (b'E' | b'N'), rest)) = frame.split_first() else {
        return Err(malformed("not an error or notice"));
    };
    let declared = read_i32(rest, 0).ok_or(malformed("truncated header"))?;
    if usize::try_from(declared).ok() != Some(rest.len()) {
        return Err(malformed("length does not match the frame"));
    }
    let body = &rest[4..];
    // First pass: the whole frame must parse, and the SQLSTATE may follow the message.
    let mut sqlstate: &[u8] = b"";
    for field in Fields::new(body) {
        let (code, value) = field?;
        if code == b'C' {
            sqlstate = value;
        }
    }
    let user_text = raised_by_user_code(sqlstate);

    let start = out.len();
    out.reserve(frame.len() + MASKED_FIELD.len());
    out.put_u8(tag);
    out.put_i32(0);
    for field in Fields::new(body) {
        let (code, value) = field?;
        match code {
            // Severity, SQLSTATE, statement position, source file, line and routine.
            b'S' | b'V' | b'C' | b'P' | b'F' | b'L' | b'R' => put_field(code, value, out),
            b'M' if user_text => put_field(code, MASKED_USER_MESSAGE, out),
            b'M' => {
                out.put_u8(code);
                scrub_message(value, out);
                out.put_u8(0);
            }
            b'D' | b'W' | b'H' | b'q' => put_field(code, MASKED_FIELD, out),
            // Schema, table, column, data type and constraint names: identifiers, unless
            // user code set them with RAISE ... USING.
            b's' | b't' | b'c' | b'd' | b'n' if !user_text => put_field(code, value, out),
            // The internal position points into the masked internal query; unknown fields
            // may hold anything. Clients ignore absent fields.
            _ => {}
        }
    }
    out.put_u8(0);
    let result = patch_length(out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// RAISE EXCEPTION (P0001) and the rest of class P0, RAISE NOTICE/INFO/LOG (00000) and
/// warnings (class 01, where RAISE WARNING lands) carry text written by user code.
fn raised_by_user_code(sqlstate: &[u8]) -> bool {
    (sqlstate.len() == 5 && (sqlstate.starts_with(b"P0") || sqlstate.starts_with(b"01")))
        || sqlstate == b"00000"
}

fn put_field(code: u8, value: &[u8], out: &mut BytesMut) {
    out.put_u8(code);
    out.extend_from_slice(value);
    out.put_u8(0);
}

/// The (code, text) fields of an error or notice body, which ends with a zero byte.
struct Fields<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Fields<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self {
            rest: body,
            done: false,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u8, &'a [u8]), MaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let malformed = MaskError::MalformedNotice;
        let Some((&code, rest)) = self.rest.split_first() else {
            self.done = true;
            return Some(Err(malformed("missing terminator")));
        };
        if code == 0 {
            self.done = true;
            return (!rest.is_empty()).then_some(Err(malformed("bytes after the terminator")));
        }
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            self.done = true;
            return Some(Err(malformed("unterminated field")));
        };
        self.rest = &rest[end + 1..];
        Some(Ok((code, &rest[..end])))
    }
}

const STARS: &[u8] = b"***";

/// Stars quoted spans (`"..."`, `'...'`), value groups after `=(` and hex byte dumps.
fn scrub_message(message: &[u8], out: &mut BytesMut) {
    let mut copied = 0;
    let mut at = 0;
    while at < message.len() {
        let byte = message[at];
        let replaced_to = match byte {
            b'"' | b'\'' if opens(message, at) => {
                out.extend_from_slice(&message[copied..=at]);
                out.extend_from_slice(STARS);
                match closing_quote(message, at, byte) {
                    Some(close) => {
                        out.put_u8(byte);
                        close + 1
                    }
                    None => message.len(),
                }
            }
            b'=' if message.get(at + 1) == Some(&b'(') => {
                out.extend_from_slice(&message[copied..at + 2]);
                out.extend_from_slice(STARS);
                match closing_paren(message, at + 2) {
                    Some(close) => {
                        out.put_u8(b')');
                        close + 1
                    }
                    None => message.len(),
                }
            }
            b'0' if opens(message, at) && hex_dump_len(&message[at..]) > 0 => {
                out.extend_from_slice(&message[copied..at]);
                out.extend_from_slice(STARS);
                at + hex_dump_len(&message[at..])
            }
            _ => {
                at += 1;
                continue;
            }
        };
        at = replaced_to;
        copied = at;
    }
    out.extend_from_slice(&message[copied..]);
}

/// A quote opens a span at the start or after a space or punctuation (not inside a word, as
/// in "patient's").
fn opens(message: &[u8], at: usize) -> bool {
    at == 0
        || matches!(
            message[at - 1],
            b' ' | b'\t' | b'\n' | b'(' | b'[' | b'{' | b':' | b',' | b'=' | b'.'
        )
}

/// A quote or parenthesis closes at the end or before a space or punctuation.
fn closes(message: &[u8], at: usize) -> bool {
    matches!(
        message.get(at + 1),
        None | Some(b' ' | b'\t' | b'\n' | b',' | b'.' | b';' | b':' | b')' | b']' | b'}')
    )
}

/// The quote closing the span opened at `open`. A value may itself contain quotes, so the
/// close must leave an even number of the same quote after it (balanced spans); with none,
/// the span runs to the end of the message.
fn closing_quote(message: &[u8], open: usize, quote: u8) -> Option<usize> {
    let mut remaining = message[open + 1..].iter().filter(|&&b| b == quote).count();
    for (at, &byte) in message.iter().enumerate().skip(open + 1) {
        if byte != quote {
            continue;
        }
        remaining -= 1;
        if remaining % 2 == 0 && closes(message, at) {
            return Some(at);
        }
    }
    None
}

/// The parenthesis closing a group whose content starts at `start` (nesting counted).
fn closing_paren(message: &[u8], start: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (at, &byte) in message.iter().enumerate().skip(start) {
        match byte {
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 && closes(message, at) {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
    None
}

/// Length of `0x` followed by hex digits (as in "invalid byte sequence ...: 0xe9 0x41").
fn hex_dump_len(text: &[u8]) -> usize {
    if !text.starts_with(b"0x") {
        return 0;
    }
    let digits = text[2..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        0
    } else {
        2 + digits
    }
}
