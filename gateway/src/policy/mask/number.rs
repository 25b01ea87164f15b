//! Masks for integers (int2, int4, int8 in both formats) and numeric (text format only; its
//! binary format is a base-10000 digit array that is not worth rewriting, so it gets NULL).

use bytes::BytesMut;

use super::{
    token::{Domain, TokenKey},
    MaskMethod, ValueFormat,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntWidth {
    I2,
    I4,
    I8,
}

impl IntWidth {
    fn min(self) -> i64 {
        match self {
            Self::I2 => i64::from(i16::MIN),
            Self::I4 => i64::from(i32::MIN),
            Self::I8 => i64::MIN,
        }
    }

    fn max(self) -> i64 {
        match self {
            Self::I2 => i64::from(i16::MAX),
            Self::I4 => i64::from(i32::MAX),
            Self::I8 => i64::MAX,
        }
    }
}

/// A plausible four-digit (birth) year survives `year`; other integers do not.
const YEARS: std::ops::RangeInclusive<i64> = 1000..=9999;

pub fn mask_int(
    method: MaskMethod,
    width: IntWidth,
    format: ValueFormat,
    value: &[u8],
    key: &TokenKey,
    out: &mut BytesMut,
) -> bool {
    let Some(number) = parse_int(width, format, value) else {
        return false;
    };
    let masked = match method {
        MaskMethod::Clear => Some(number),
        MaskMethod::Tokenize => tokenize_int(number, width, key),
        MaskMethod::Year => YEARS.contains(&number).then_some(number),
        MaskMethod::Age90 => Some(if number > 89 { 90 } else { number }),
        MaskMethod::Redact | MaskMethod::Null | MaskMethod::KeepLast(_) | MaskMethod::Zip3 => None,
    };
    match masked {
        Some(masked) => write_int(masked, width, format, out),
        None => false,
    }
}

fn parse_int(width: IntWidth, format: ValueFormat, value: &[u8]) -> Option<i64> {
    let number = match format {
        ValueFormat::Text => std::str::from_utf8(value)
            .ok()?
            .trim()
            .parse::<i64>()
            .ok()?,
        ValueFormat::Binary => match width {
            IntWidth::I2 => i64::from(i16::from_be_bytes(value.try_into().ok()?)),
            IntWidth::I4 => i64::from(i32::from_be_bytes(value.try_into().ok()?)),
            IntWidth::I8 => i64::from_be_bytes(value.try_into().ok()?),
        },
    };
    (width.min()..=width.max())
        .contains(&number)
        .then_some(number)
}

fn write_int(number: i64, width: IntWidth, format: ValueFormat, out: &mut BytesMut) -> bool {
    match format {
        ValueFormat::Text => push_decimal(number, out),
        ValueFormat::Binary => match width {
            IntWidth::I2 => match i16::try_from(number) {
                Ok(n) => out.extend_from_slice(&n.to_be_bytes()),
                Err(_) => return false,
            },
            IntWidth::I4 => match i32::try_from(number) {
                Ok(n) => out.extend_from_slice(&n.to_be_bytes()),
                Err(_) => return false,
            },
            IntWidth::I8 => out.extend_from_slice(&number.to_be_bytes()),
        },
    }
    true
}

pub fn push_decimal(number: i64, out: &mut BytesMut) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = number.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if number < 0 {
        out.extend_from_slice(b"-");
    }
    out.extend_from_slice(&digits[at..]);
}

fn decimal_digits(mut n: u64) -> u32 {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Same sign and, where the type's range allows, the same number of digits; the token is
/// keyed by the value (not its bytes), so the text and binary formats agree.
fn tokenize_int(number: i64, width: IntWidth, key: &TokenKey) -> Option<i64> {
    let mut stream = key.keystream(Domain::Int, &number.to_be_bytes());
    let negative = number < 0;
    let digits = decimal_digits(number.unsigned_abs());
    let (low, high) = if digits == 1 {
        // A negative one-digit value stays negative: -1..-9.
        (u64::from(negative), 9)
    } else {
        (10u64.pow(digits - 1), 10u64.pow(digits) - 1)
    };
    let limit = if negative {
        width.min().unsigned_abs()
    } else {
        width.max().unsigned_abs()
    };
    // `low` is at most the value's own magnitude, so it is within the limit.
    let high = high.min(limit);
    let token = low + stream.below_u64(high - low + 1);
    let signed = if negative {
        -i128::from(token)
    } else {
        i128::from(token)
    };
    i64::try_from(signed).ok()
}

pub fn mask_numeric_text(
    method: MaskMethod,
    value: &[u8],
    key: &TokenKey,
    out: &mut BytesMut,
) -> bool {
    let special = matches!(value, b"NaN" | b"Infinity" | b"-Infinity");
    match method {
        MaskMethod::Clear => out.extend_from_slice(value),
        // Special values say nothing about a person.
        MaskMethod::Tokenize if special => out.extend_from_slice(value),
        MaskMethod::Tokenize => return tokenize_numeric(value, key, out),
        MaskMethod::Age90 => match value {
            b"NaN" => return false,
            b"Infinity" => out.extend_from_slice(b"90"),
            b"-Infinity" => out.extend_from_slice(value),
            _ => match decimal_over_89(value) {
                Some(true) => out.extend_from_slice(b"90"),
                Some(false) => out.extend_from_slice(value),
                None => return false,
            },
        },
        MaskMethod::Year if is_year_numeric(value) => out.extend_from_slice(value),
        _ => return false,
    }
    true
}

/// `1980` or `1980.00`.
fn is_year_numeric(value: &[u8]) -> bool {
    let (whole, fraction) = split_decimal(value);
    whole.len() == 4
        && whole[0] != b'0'
        && whole.iter().all(u8::is_ascii_digit)
        && fraction.is_none_or(|f| f.iter().all(|&b| b == b'0'))
}

fn split_decimal(value: &[u8]) -> (&[u8], Option<&[u8]>) {
    match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], Some(&value[dot + 1..])),
        None => (value, None),
    }
}

/// Digits replaced by keyed digits; sign, scale and the number of integer digits kept (the
/// first of several never becomes 0, so the text stays canonical).
fn tokenize_numeric(value: &[u8], key: &TokenKey, out: &mut BytesMut) -> bool {
    let unsigned = value.strip_prefix(b"-").unwrap_or(value);
    let (whole, fraction) = split_decimal(unsigned);
    let fraction = fraction.unwrap_or_default();
    let well_formed = !whole.is_empty()
        && whole.iter().all(u8::is_ascii_digit)
        && fraction.iter().all(u8::is_ascii_digit);
    if !well_formed {
        return false;
    }
    let mut stream = key.keystream(Domain::Numeric, value);
    if unsigned.len() < value.len() {
        out.extend_from_slice(b"-");
    }
    for (i, _) in whole.iter().enumerate() {
        let digit = if i == 0 && whole.len() > 1 {
            1 + stream.below(9)
        } else {
            stream.below(10)
        };
        out.extend_from_slice(&[b'0' + digit]);
    }
    if unsigned.len() > whole.len() {
        out.extend_from_slice(b".");
        for _ in fraction {
            out.extend_from_slice(&[b'0' + stream.below(10)]);
        }
    }
    true
}

/// For a plain decimal (`93`, `-4`, `89.5`, `+07`): is it over 89? `None` if not a number.
pub fn decimal_over_89(text: &[u8]) -> Option<bool> {
    let (negative, unsigned) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let (whole, fraction) = split_decimal(unsigned);
    let fraction = fraction.unwrap_or_default();
    let well_formed = whole.len() + fraction.len() > 0
        && whole.iter().all(u8::is_ascii_digit)
        && fraction.iter().all(u8::is_ascii_digit);
    if !well_formed {
        return None;
    }
    if negative {
        return Some(false);
    }
    let significant = whole
        .iter()
        .position(|&b| b != b'0')
        .map_or(&[][..], |first| &whole[first..]);
    let over = match significant {
        [] | [_] => false,
        [tens, ones] => {
            let years = (tens - b'0') * 10 + (ones - b'0');
            years > 89 || (years == 89 && fraction.iter().any(|&b| b != b'0'))
        }
        _ => true,
    };
    Some(over)
}
