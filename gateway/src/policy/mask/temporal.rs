//! Masks for date, timestamp and timestamptz. Binary values count days (date) or microseconds
//! (timestamps) from 2000-01-01 UTC; text values are read in the ISO DateStyle (PostgreSQL's
//! default). Any other text style gives NULL rather than a guess.
//!
//! `year` keeps only the year (Jan 1, midnight). `tokenize` keeps the year and replaces month,
//! day (1..=28, always valid) and time of day (whole seconds) with values keyed by the instant,
//! so equal instants give equal tokens. Infinities pass unchanged: they identify no one.

use bytes::BytesMut;

use super::{
    number::push_decimal,
    token::{Domain, TokenKey},
    MaskMethod, ValueFormat,
};

pub(super) use crate::clock::days_from_civil;

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 86_400 * USECS_PER_SEC;
/// 2000-01-01 counted from 1970-01-01.
pub(super) const PG_EPOCH_DAYS: i64 = days_from_civil(2000, 1, 1);
/// PostgreSQL's first date and timestamp: 4714-11-24 BC (Julian day 0).
const MIN_DAYS: i64 = days_from_civil(-4713, 11, 24) - PG_EPOCH_DAYS;
/// Last date: 5874897-12-31; timestamps end before 294277-01-01.
const MAX_DATE_DAYS: i64 = days_from_civil(5_874_897, 12, 31) - PG_EPOCH_DAYS;
const END_TIMESTAMP_DAYS: i64 = days_from_civil(294_277, 1, 1) - PG_EPOCH_DAYS;

/// The astronomical year of a day counted from 1970-01-01.
fn year_from_days(days: i64) -> i64 {
    crate::clock::civil_from_days(days).0
}

/// The fields a mask writes back.
#[derive(Clone, Copy)]
struct Fields {
    year: i64,
    month: i64,
    day: i64,
    /// Seconds since midnight.
    second_of_day: i64,
}

impl Fields {
    fn days(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) - PG_EPOCH_DAYS
    }
}

/// Year kept; the rest replaced per `method`. `instant` keys the token.
fn remask(method: MaskMethod, year: i64, instant: i64, domain: Domain, key: &TokenKey) -> Fields {
    if method == MaskMethod::Tokenize {
        let mut stream = key.keystream(domain, &instant.to_be_bytes());
        let month = 1 + i64::from(stream.below(12));
        let day = 1 + i64::from(stream.below(28));
        let hour = i64::from(stream.below(24));
        let minute = i64::from(stream.below(60));
        let second = i64::from(stream.below(60));
        Fields {
            year,
            month,
            day,
            second_of_day: hour * 3600 + minute * 60 + second,
        }
    } else {
        Fields {
            year,
            month: 1,
            day: 1,
            second_of_day: 0,
        }
    }
}

pub fn mask_date(
    method: MaskMethod,
    format: ValueFormat,
    value: &[u8],
    key: &TokenKey,
    out: &mut BytesMut,
) -> bool {
    if !matches!(method, MaskMethod::Year | MaskMethod::Tokenize) {
        return false;
    }
    match format {
        ValueFormat::Binary => {
            let Ok(bytes) = <[u8; 4]>::try_from(value) else {
                return false;
            };
            let days = i32::from_be_bytes(bytes);
            if days == i32::MIN || days == i32::MAX {
                out.extend_from_slice(value);
                return true;
            }
            let days = i64::from(days);
            let year = year_from_days(days + PG_EPOCH_DAYS);
            let masked = remask(method, year, days, Domain::Date, key).days();
            match i32::try_from(masked) {
                Ok(masked) if (MIN_DAYS..=MAX_DATE_DAYS).contains(&i64::from(masked)) => {
                    out.extend_from_slice(&masked.to_be_bytes());
                    true
                }
                _ => false,
            }
        }
        ValueFormat::Text => {
            if matches!(value, b"infinity" | b"-infinity") {
                out.extend_from_slice(value);
                return true;
            }
            let Some((date, rest)) = parse_date(value) else {
                return false;
            };
            let Some(bc) = parse_era(rest) else {
                return false;
            };
            if method == MaskMethod::Year && value.len() == 10 {
                // The common case, `YYYY-MM-DD`: a four-digit year AD, always in range.
                out.extend_from_slice(&value[..4]);
                out.extend_from_slice(b"-01-01");
                return true;
            }
            let year = astronomical(date.year, bc);
            let days = days_from_civil(year, date.month, date.day) - PG_EPOCH_DAYS;
            let masked = remask(method, year, days, Domain::Date, key);
            if !(MIN_DAYS..=MAX_DATE_DAYS).contains(&masked.days()) {
                return false;
            }
            push_date(&masked, bc, out);
            if bc {
                out.extend_from_slice(b" BC");
            }
            true
        }
    }
}

pub fn mask_timestamp(
    method: MaskMethod,
    with_zone: bool,
    format: ValueFormat,
    value: &[u8],
    key: &TokenKey,
    out: &mut BytesMut,
) -> bool {
    if !matches!(method, MaskMethod::Year | MaskMethod::Tokenize) {
        return false;
    }
    match format {
        ValueFormat::Binary => {
            let Ok(bytes) = <[u8; 8]>::try_from(value) else {
                return false;
            };
            let usecs = i64::from_be_bytes(bytes);
            if usecs == i64::MIN || usecs == i64::MAX {
                out.extend_from_slice(value);
                return true;
            }
            let year = year_from_days(usecs.div_euclid(USECS_PER_DAY) + PG_EPOCH_DAYS);
            let masked = remask(method, year, usecs, Domain::Timestamp, key);
            let days = masked.days();
            if !(MIN_DAYS..END_TIMESTAMP_DAYS).contains(&days) {
                return false;
            }
            let usecs = days * USECS_PER_DAY + masked.second_of_day * USECS_PER_SEC;
            out.extend_from_slice(&usecs.to_be_bytes());
            true
        }
        ValueFormat::Text => mask_timestamp_text(method, with_zone, value, key, out),
    }
}

/// `1980-05-17 13:45:00[.ffffff][+02[:30[:15]]][ BC]`
fn mask_timestamp_text(
    method: MaskMethod,
    with_zone: bool,
    value: &[u8],
    key: &TokenKey,
    out: &mut BytesMut,
) -> bool {
    if matches!(value, b"infinity" | b"-infinity") {
        out.extend_from_slice(value);
        return true;
    }
    let Some((date, rest)) = parse_date(value) else {
        return false;
    };
    let Some((second_of_day, usecs, rest)) = parse_time(rest) else {
        return false;
    };
    let (offset_seconds, offset_text, rest) = if with_zone {
        match parse_offset(rest) {
            Some(parsed) => parsed,
            None => return false,
        }
    } else {
        (0, &rest[..0], rest)
    };
    let Some(bc) = parse_era(rest) else {
        return false;
    };
    let year = astronomical(date.year, bc);
    let local_days = days_from_civil(year, date.month, date.day) - PG_EPOCH_DAYS;
    let instant =
        local_days * USECS_PER_DAY + (second_of_day - offset_seconds) * USECS_PER_SEC + usecs;
    let masked = remask(method, year, instant, Domain::Timestamp, key);
    // One day of margin at the start, where the zone offset could cross the first instant.
    if !(MIN_DAYS + 1..END_TIMESTAMP_DAYS).contains(&masked.days()) {
        return false;
    }
    push_date(&masked, bc, out);
    let (hour, minute, second) = (
        masked.second_of_day / 3600,
        masked.second_of_day / 60 % 60,
        masked.second_of_day % 60,
    );
    out.extend_from_slice(b" ");
    push_two(hour, out);
    out.extend_from_slice(b":");
    push_two(minute, out);
    out.extend_from_slice(b":");
    push_two(second, out);
    // The original offset: Jan 1 (or the token) in the zone the client was shown.
    out.extend_from_slice(offset_text);
    if bc {
        out.extend_from_slice(b" BC");
    }
    true
}

/// The date as displayed: year, month and day.
struct Date {
    year: i64,
    month: i64,
    day: i64,
}

fn astronomical(displayed_year: i64, bc: bool) -> i64 {
    if bc {
        1 - displayed_year
    } else {
        displayed_year
    }
}

fn digits_value(digits: &[u8]) -> i64 {
    digits
        .iter()
        .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'))
}

/// `n` ASCII digits at the start of `text`.
fn fixed_digits(text: &[u8], n: usize) -> Option<(i64, &[u8])> {
    let digits = text.get(..n)?;
    digits
        .iter()
        .all(u8::is_ascii_digit)
        .then(|| (digits_value(digits), &text[n..]))
}

/// `YYYY-MM-DD` (four or more year digits) at the start of `text`.
fn parse_date(text: &[u8]) -> Option<(Date, &[u8])> {
    let year_len = text.iter().take_while(|b| b.is_ascii_digit()).count();
    // Years in range have at most seven digits.
    if !(4..=7).contains(&year_len) {
        return None;
    }
    let year = digits_value(&text[..year_len]);
    let rest = text[year_len..].strip_prefix(b"-")?;
    let (month, rest) = fixed_digits(rest, 2)?;
    let rest = rest.strip_prefix(b"-")?;
    let (day, rest) = fixed_digits(rest, 2)?;
    let valid = year >= 1 && (1..=12).contains(&month) && (1..=31).contains(&day);
    valid.then_some((Date { year, month, day }, rest))
}

/// ` HH:MM:SS[.f...]`: seconds of the day, microseconds and the rest.
fn parse_time(text: &[u8]) -> Option<(i64, i64, &[u8])> {
    let rest = text.strip_prefix(b" ")?;
    let (hour, rest) = fixed_digits(rest, 2)?;
    let rest = rest.strip_prefix(b":")?;
    let (minute, rest) = fixed_digits(rest, 2)?;
    let rest = rest.strip_prefix(b":")?;
    let (second, mut rest) = fixed_digits(rest, 2)?;
    let mut usecs = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        let kept = &fraction[..len.min(6)];
        usecs = digits_value(kept) * 10i64.pow(6 - kept.len() as u32);
        rest = &fraction[len..];
    }
    // 24:00:00 is a valid time of day in PostgreSQL.
    let valid = hour <= 24 && minute < 60 && second < 61;
    valid.then_some((hour * 3600 + minute * 60 + second, usecs, rest))
}

/// `+HH[:MM[:SS]]` or `-...`: offset east of UTC in seconds, its text and the rest.
fn parse_offset(text: &[u8]) -> Option<(i64, &[u8], &[u8])> {
    let sign = match text.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, mut rest) = fixed_digits(&text[1..], 2)?;
    let mut seconds = hours * 3600;
    for unit in [60, 1] {
        match rest.strip_prefix(b":") {
            Some(after) => {
                let (part, after) = fixed_digits(after, 2)?;
                seconds += part * unit;
                rest = after;
            }
            None => break,
        }
    }
    let len = text.len() - rest.len();
    Some((sign * seconds, &text[..len], rest))
}

/// Empty or ` BC`; `Some(true)` for BC.
fn parse_era(rest: &[u8]) -> Option<bool> {
    match rest {
        b"" => Some(false),
        b" BC" => Some(true),
        _ => None,
    }
}

/// `YYYY-MM-DD` with the displayed (BC-counted) year zero-padded to four digits.
fn push_date(fields: &Fields, bc: bool, out: &mut BytesMut) {
    let displayed = if bc { 1 - fields.year } else { fields.year };
    for digit_limit in [1000, 100, 10] {
        if displayed < digit_limit {
            out.extend_from_slice(b"0");
        }
    }
    push_decimal(displayed, out);
    out.extend_from_slice(b"-");
    push_two(fields.month, out);
    out.extend_from_slice(b"-");
    push_two(fields.day, out);
}

fn push_two(n: i64, out: &mut BytesMut) {
    let tens = (n / 10 % 10) as u8;
    let ones = (n % 10) as u8;
    out.extend_from_slice(&[b'0' + tens, b'0' + ones]);
}
