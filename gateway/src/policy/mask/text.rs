//! Masks for text-like types (text, varchar, bpchar, name, unknown), whose text and binary
//! formats are the same bytes. Outputs are valid UTF-8 even when the input is not, and never
//! longer than the input except for fixed replacements (so `name` stays within 63 bytes).

use bytes::BytesMut;

use super::{
    number,
    token::{Domain, TokenKey},
    MaskMethod,
};

pub const REDACTED: &[u8] = b"REDACTED";

/// ZIP3 areas with 20,000 people or fewer, which Safe Harbor requires to become 000.
const RESTRICTED_ZIP3: [&[u8; 3]; 17] = [
    b"036", b"059", b"063", b"102", b"203", b"556", b"692", b"790", b"821", b"823", b"830", b"831",
    b"878", b"879", b"884", b"890", b"893",
];

pub fn mask(method: MaskMethod, value: &[u8], key: &TokenKey, out: &mut BytesMut) -> bool {
    match method {
        MaskMethod::Clear => out.extend_from_slice(value),
        MaskMethod::Null => return false,
        MaskMethod::Redact => out.extend_from_slice(REDACTED),
        MaskMethod::KeepLast(n) => keep_last(value, usize::from(n), out),
        MaskMethod::Tokenize => tokenize(value, key, out),
        MaskMethod::Year => year(value, out),
        MaskMethod::Zip3 => zip3(value, out),
        MaskMethod::Age90 => age90(value, out),
    }
    true
}

/// `123-45-6789` with N = 4 gives `***-**-6789`. ASCII letters and digits and every
/// non-ASCII character (letters of other scripts) count; other ASCII is a separator.
fn keep_last(value: &[u8], n: usize, out: &mut BytesMut) {
    if value.is_ascii() {
        // The common case: one byte per character, starred in place.
        let maskable = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
        let mut hide = maskable.saturating_sub(n);
        let start = out.len();
        out.extend_from_slice(value);
        for byte in &mut out[start..] {
            if hide == 0 {
                break;
            }
            if byte.is_ascii_alphanumeric() {
                *byte = b'*';
                hide -= 1;
            }
        }
        return;
    }
    if std::str::from_utf8(value).is_err() {
        // Kept characters are copied as they are, which needs valid UTF-8.
        out.extend_from_slice(REDACTED);
        return;
    }
    // In valid UTF-8 each character starts with a byte that is not 0b10xxxxxx.
    let starts_maskable = |b: u8| b.is_ascii_alphanumeric() || b >= 0xc0;
    let maskable = value.iter().filter(|&&b| starts_maskable(b)).count();
    let mut hide = maskable.saturating_sub(n);
    let start = out.len();
    out.extend_from_slice(value);
    // Rewritten in place: a starred character is never longer than the original.
    let buf = &mut out[start..];
    let mut write = 0;
    let mut read = 0;
    while read < buf.len() {
        let byte = buf[read];
        let len = if byte < 0x80 {
            1
        } else {
            // The lead byte and its continuation bytes.
            1 + buf[read + 1..]
                .iter()
                .take_while(|&&b| (0x80..0xc0).contains(&b))
                .count()
        };
        if hide > 0 && starts_maskable(byte) {
            buf[write] = b'*';
            write += 1;
            hide -= 1;
        } else {
            buf.copy_within(read..read + len, write);
            write += len;
        }
        read += len;
    }
    out.truncate(start + write);
}

/// Digits stay digits, ASCII letters keep their case, other ASCII stays, and each non-ASCII
/// character (or stray byte) becomes one lowercase letter, so the output is ASCII.
fn tokenize(value: &[u8], key: &TokenKey, out: &mut BytesMut) {
    let mut stream = key.keystream(Domain::Text, value);
    let start = out.len();
    out.extend_from_slice(value);
    if value.is_ascii() {
        // The common case: one byte per character, replaced in place.
        for byte in &mut out[start..] {
            match *byte {
                b'0'..=b'9' => *byte = b'0' + stream.below(10),
                b'a'..=b'z' => *byte = b'a' + stream.below(26),
                b'A'..=b'Z' => *byte = b'A' + stream.below(26),
                _ => {}
            }
        }
        return;
    }
    // Rewritten in place: the output is never longer than the input.
    let buf = &mut out[start..];
    let mut write = 0;
    for read in 0..buf.len() {
        let byte = buf[read];
        let replacement = match byte {
            b'0'..=b'9' => b'0' + stream.below(10),
            b'a'..=b'z' | 0xc0..=0xff => b'a' + stream.below(26),
            b'A'..=b'Z' => b'A' + stream.below(26),
            // A continuation byte's character was replaced at its lead byte.
            0x80..=0xbf => continue,
            _ => byte,
        };
        buf[write] = replacement;
        write += 1;
    }
    out.truncate(start + write);
}

/// A value starting with a four-digit year (`1980-05-17...`) gives the year.
fn year(value: &[u8], out: &mut BytesMut) {
    let trimmed = value.trim_ascii();
    let year_like = trimmed.len() >= 4
        && trimmed[..4].iter().all(u8::is_ascii_digit)
        && trimmed.get(4).is_none_or(|b| !b.is_ascii_digit());
    if year_like {
        out.extend_from_slice(&trimmed[..4]);
    } else {
        out.extend_from_slice(REDACTED);
    }
}

/// `02139`, `02139-1234`, `02139 1234` and `021391234` give `021`.
fn zip3(value: &[u8], out: &mut BytesMut) {
    let trimmed = value.trim_ascii();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let is_zip = match trimmed.len() {
        5 | 9 => digits(trimmed),
        10 => digits(&trimmed[..5]) && matches!(trimmed[5], b'-' | b' ') && digits(&trimmed[6..]),
        _ => false,
    };
    if !is_zip {
        out.extend_from_slice(REDACTED);
        return;
    }
    let prefix = &trimmed[..3];
    if RESTRICTED_ZIP3
        .iter()
        .any(|restricted| &restricted[..] == prefix)
    {
        out.extend_from_slice(b"000");
    } else {
        out.extend_from_slice(prefix);
    }
}

/// A number over 89 gives `90+`; other numbers stay; anything else is redacted.
fn age90(value: &[u8], out: &mut BytesMut) {
    match number::decimal_over_89(value.trim_ascii()) {
        Some(true) => out.extend_from_slice(b"90+"),
        Some(false) => out.extend_from_slice(value),
        None => out.extend_from_slice(REDACTED),
    }
}
