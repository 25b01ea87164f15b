//! Value masks: what a masked column's value becomes on the wire. Every output is a valid
//! value of the column's type in the column's format, or SQL NULL, because the client decodes
//! by type OID and format code; a type without a dedicated rule gets NULL (fail closed).

mod number;
mod temporal;
mod text;
mod token;

#[cfg(test)]
mod tests;

use std::{fmt, str::FromStr};

use bytes::BytesMut;

pub use token::TokenKey;

/// Type OIDs with dedicated masking rules (`pg_type.oid`, fixed since PostgreSQL 7).
pub mod oid {
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const JSONB: u32 = 3802;
}

/// Longest `keep_last_N` the policy format accepts.
pub const KEEP_LAST_MAX: u8 = 32;

/// How a classified value is shown to an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskMethod {
    /// The value passes unchanged (an identity allowed to see it).
    Clear,
    /// Text-like and JSON: the fixed text `REDACTED`; other types: NULL.
    Redact,
    /// SQL NULL.
    Null,
    /// Text-like: letters and digits other than the last N become `*`, separators stay.
    KeepLast(u8),
    /// Keyed deterministic, format-preserving token (HMAC-SHA-256 under the [`TokenKey`]).
    Tokenize,
    /// Dates and timestamps generalised to their year (HIPAA Safe Harbor).
    Year,
    /// ZIP codes cut to their first three digits; restricted prefixes become `000`.
    Zip3,
    /// Ages over 89 become 90 (`90+` in text).
    Age90,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown mask method {0:?}: expected clear, redact, null, keep_last_N (N from 1 to 32), \
     tokenize, year, zip3 or age_90"
)]
pub struct ParseMaskMethodError(String);

impl FromStr for MaskMethod {
    type Err = ParseMaskMethodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let method = match s {
            "clear" => Self::Clear,
            "redact" => Self::Redact,
            "null" => Self::Null,
            "tokenize" => Self::Tokenize,
            "year" => Self::Year,
            "zip3" => Self::Zip3,
            "age_90" => Self::Age90,
            _ => {
                let n = s
                    .strip_prefix("keep_last_")
                    // Plain digits only: `u8::from_str` would also take "+4".
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|n| (1..=KEEP_LAST_MAX).contains(n));
                match n {
                    Some(n) => Self::KeepLast(n),
                    None => return Err(ParseMaskMethodError(s.to_owned())),
                }
            }
        };
        Ok(method)
    }
}

impl fmt::Display for MaskMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clear => f.write_str("clear"),
            Self::Redact => f.write_str("redact"),
            Self::Null => f.write_str("null"),
            Self::KeepLast(n) => write!(f, "keep_last_{n}"),
            Self::Tokenize => f.write_str("tokenize"),
            Self::Year => f.write_str("year"),
            Self::Zip3 => f.write_str("zip3"),
            Self::Age90 => f.write_str("age_90"),
        }
    }
}

/// Wire format of a value (the format code of its result column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    Text,
    Binary,
}

impl ValueFormat {
    /// From a protocol format code (0 text, 1 binary); other codes are not valid.
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(Self::Text),
            1 => Some(Self::Binary),
            _ => None,
        }
    }
}

/// What [`mask_into`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masked {
    /// The masked value was appended to the buffer.
    Value,
    /// The value becomes SQL NULL; nothing was appended.
    Null,
}

/// Whether a value of this type and format is text that the server converted into the
/// client's encoding, which masks must read (and write) in that encoding.
pub fn is_client_text(type_oid: u32, format: ValueFormat) -> bool {
    match TypeClass::of(type_oid) {
        TypeClass::TextLike => true,
        TypeClass::Json { binary_version } => !(binary_version && format == ValueFormat::Binary),
        _ => false,
    }
}

/// The families of types that have their own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeClass {
    TextLike,
    Int(number::IntWidth),
    Numeric,
    Date,
    Timestamp { with_zone: bool },
    Json { binary_version: bool },
    Other,
}

impl TypeClass {
    fn of(type_oid: u32) -> Self {
        match type_oid {
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN => Self::TextLike,
            oid::INT2 => Self::Int(number::IntWidth::I2),
            oid::INT4 => Self::Int(number::IntWidth::I4),
            oid::INT8 => Self::Int(number::IntWidth::I8),
            oid::NUMERIC => Self::Numeric,
            oid::DATE => Self::Date,
            oid::TIMESTAMP => Self::Timestamp { with_zone: false },
            oid::TIMESTAMPTZ => Self::Timestamp { with_zone: true },
            oid::JSON => Self::Json {
                binary_version: false,
            },
            // jsonb's binary send format is a version byte (1) followed by the JSON text.
            oid::JSONB => Self::Json {
                binary_version: true,
            },
            _ => Self::Other,
        }
    }
}

/// Masks one non-NULL field value. `None` means SQL NULL.
#[cfg(test)]
pub fn mask_value<'a>(
    method: MaskMethod,
    type_oid: u32,
    format: ValueFormat,
    value: &'a [u8],
    key: &TokenKey,
) -> Option<std::borrow::Cow<'a, [u8]>> {
    match method {
        MaskMethod::Clear => Some(std::borrow::Cow::Borrowed(value)),
        MaskMethod::Null => None,
        _ => {
            let mut out = BytesMut::new();
            match mask_into(method, type_oid, format, value, key, &mut out) {
                Masked::Value => Some(std::borrow::Cow::Owned(out.to_vec())),
                Masked::Null => None,
            }
        }
    }
}

/// Masks one non-NULL field value by appending the result to `out`, so the wire rewriters
/// need no allocation per value. On [`Masked::Null`] `out` is left as it was.
pub fn mask_into(
    method: MaskMethod,
    type_oid: u32,
    format: ValueFormat,
    value: &[u8],
    key: &TokenKey,
    out: &mut BytesMut,
) -> Masked {
    let start = out.len();
    let written = match method {
        MaskMethod::Clear => {
            out.extend_from_slice(value);
            true
        }
        MaskMethod::Null => false,
        _ => match TypeClass::of(type_oid) {
            // Text-like types send the same bytes in both formats.
            TypeClass::TextLike => text::mask(method, value, key, out),
            TypeClass::Int(width) => number::mask_int(method, width, format, value, key, out),
            TypeClass::Numeric => match format {
                ValueFormat::Text => number::mask_numeric_text(method, value, key, out),
                ValueFormat::Binary => false,
            },
            TypeClass::Date => temporal::mask_date(method, format, value, key, out),
            TypeClass::Timestamp { with_zone } => {
                temporal::mask_timestamp(method, with_zone, format, value, key, out)
            }
            TypeClass::Json { binary_version } => {
                let versioned = binary_version && format == ValueFormat::Binary;
                mask_json(method, versioned, value, key, out)
            }
            TypeClass::Other => false,
        },
    };
    if written {
        Masked::Value
    } else {
        out.truncate(start);
        Masked::Null
    }
}

/// JSON masks: a JSON string in place of the document, so the column stays valid JSON.
fn mask_json(
    method: MaskMethod,
    versioned: bool,
    value: &[u8],
    key: &TokenKey,
    out: &mut BytesMut,
) -> bool {
    let document = if versioned {
        match value.split_first() {
            Some((1, rest)) => rest,
            _ => return false,
        }
    } else {
        value
    };
    if versioned {
        out.extend_from_slice(&[1]);
    }
    match method {
        MaskMethod::Redact => out.extend_from_slice(b"\"REDACTED\""),
        // The whole document becomes one opaque token: equal documents stay equal, and no
        // key or value of the original structure is shown.
        MaskMethod::Tokenize => {
            let digest = key.digest(token::Domain::Json, document);
            out.extend_from_slice(b"\"tok_");
            for byte in &digest[..8] {
                out.extend_from_slice(&hex_pair(*byte));
            }
            out.extend_from_slice(b"\"");
        }
        _ => return false,
    }
    true
}

fn hex_pair(byte: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]
}
