//! Dates and timestamps: year generalisation and keyed tokens, in both formats.

use super::super::temporal::{days_from_civil, PG_EPOCH_DAYS};
use super::*;

const USECS_PER_DAY: i64 = 86_400_000_000;

fn pg_days(year: i64, month: i64, day: i64) -> i64 {
    days_from_civil(year, month, day) - PG_EPOCH_DAYS
}

fn date_binary(days: i64) -> Vec<u8> {
    i32::try_from(days).unwrap().to_be_bytes().to_vec()
}

fn binary_i32(bytes: &[u8]) -> i64 {
    i64::from(i32::from_be_bytes(bytes.try_into().unwrap()))
}

fn binary_i64(bytes: &[u8]) -> i64 {
    i64::from_be_bytes(bytes.try_into().unwrap())
}

/// (year, month, day) of `YYYY-MM-DD...`.
fn ymd(text: &str) -> (i64, i64, i64) {
    let mut parts = text[..10].split('-').map(|p| p.parse::<i64>().unwrap());
    (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    )
}

#[test]
fn civil_day_arithmetic_matches_postgres() {
    // Values from PostgreSQL: SELECT d - date '2000-01-01'.
    assert_eq!(pg_days(1980, 5, 17), -7168);
    assert_eq!(pg_days(1980, 1, 1), -7305);
    assert_eq!(pg_days(2024, 2, 29), 8825);
    assert_eq!(pg_days(1999, 12, 31), -1);
    assert_eq!(pg_days(2000, 1, 1), 0);
}

#[test]
fn date_year_in_text() {
    let year = |v: &str| mask_text(MaskMethod::Year, oid::DATE, v);
    assert_eq!(year("1980-05-17").as_deref(), Some("1980-01-01"));
    assert_eq!(year("2024-12-31").as_deref(), Some("2024-01-01"));
    assert_eq!(year("0044-03-15 BC").as_deref(), Some("0044-01-01 BC"));
    assert_eq!(year("12345-06-07").as_deref(), Some("12345-01-01"));
    assert_eq!(year("0001-02-03").as_deref(), Some("0001-01-01"));
    // A zero-padded year is not cut at four characters.
    assert_eq!(year("01980-05-17").as_deref(), Some("1980-01-01"));
    assert_eq!(year("infinity").as_deref(), Some("infinity"));
    assert_eq!(year("-infinity").as_deref(), Some("-infinity"));
    // Other DateStyles and junk are not guessed at.
    assert_eq!(year("05/17/1980"), None);
    assert_eq!(year("17.05.1980"), None);
    assert_eq!(year("1980-13-01"), None);
    assert_eq!(year("1980-05-17x"), None);
    // Before PostgreSQL's first date (4714-11-24 BC).
    assert_eq!(year("4714-12-01 BC"), None);
}

#[test]
fn date_year_in_binary() {
    let year = |days: i64| {
        mask(
            MaskMethod::Year,
            oid::DATE,
            ValueFormat::Binary,
            &date_binary(days),
        )
        .map(|b| binary_i32(&b))
    };
    assert_eq!(year(-7168), Some(-7305));
    assert_eq!(year(8825), Some(8766));
    assert_eq!(year(-1), Some(pg_days(1999, 1, 1)));
    assert_eq!(year(0), Some(0));
    for infinity in [i32::MAX, i32::MIN] {
        let bytes = infinity.to_be_bytes();
        assert_eq!(
            mask(MaskMethod::Year, oid::DATE, ValueFormat::Binary, &bytes).as_deref(),
            Some(&bytes[..])
        );
    }
    assert_eq!(
        mask(MaskMethod::Year, oid::DATE, ValueFormat::Binary, &[0, 0, 1]),
        None
    );
}

#[test]
fn date_tokens_keep_the_year_and_are_stable() {
    let token = mask_text(MaskMethod::Tokenize, oid::DATE, "1980-05-17").unwrap();
    assert_eq!(token, "1980-06-18");
    let (year, month, day) = ymd(&token);
    assert_eq!(year, 1980);
    assert!((1..=12).contains(&month) && (1..=28).contains(&day));
    // Binary agrees with text: both are keyed by the day.
    let binary = mask(
        MaskMethod::Tokenize,
        oid::DATE,
        ValueFormat::Binary,
        &date_binary(-7168),
    )
    .map(|b| binary_i32(&b));
    assert_eq!(binary, Some(pg_days(year, month, day)));
    let other = mask_value(
        MaskMethod::Tokenize,
        oid::DATE,
        ValueFormat::Text,
        b"1980-05-17",
        &other_key(),
    );
    assert_ne!(other.as_deref(), Some(token.as_bytes()));
    let bc = mask_text(MaskMethod::Tokenize, oid::DATE, "0044-03-15 BC").unwrap();
    assert!(bc.starts_with("0044-") && bc.ends_with(" BC"), "{bc}");
    assert_eq!(
        mask_text(MaskMethod::Tokenize, oid::DATE, "infinity").as_deref(),
        Some("infinity")
    );
}

#[test]
fn date_tokens_spread_over_the_year() {
    let days: std::collections::HashSet<String> = (1..=28)
        .map(|d| mask_text(MaskMethod::Tokenize, oid::DATE, &format!("1980-05-{d:02}")).unwrap())
        .collect();
    assert!(days.len() > 20, "{} distinct", days.len());
}

#[test]
fn timestamp_year_in_text() {
    let ts = |v: &str| mask_text(MaskMethod::Year, oid::TIMESTAMP, v);
    assert_eq!(
        ts("1980-05-17 13:45:00").as_deref(),
        Some("1980-01-01 00:00:00")
    );
    assert_eq!(
        ts("1980-05-17 13:45:00.123456").as_deref(),
        Some("1980-01-01 00:00:00")
    );
    assert_eq!(
        ts("0044-03-15 12:00:00 BC").as_deref(),
        Some("0044-01-01 00:00:00 BC")
    );
    assert_eq!(ts("infinity").as_deref(), Some("infinity"));
    assert_eq!(
        ts("1980-05-17 13:45:00+02"),
        None,
        "no offset without a zone"
    );
    assert_eq!(ts("1980-05-17T13:45:00"), None);
    assert_eq!(ts("1980-05-17 13:45"), None);
    assert_eq!(ts("1980-05-17"), None);
    let tz = |v: &str| mask_text(MaskMethod::Year, oid::TIMESTAMPTZ, v);
    assert_eq!(
        tz("1980-05-17 13:45:00+02").as_deref(),
        Some("1980-01-01 00:00:00+02")
    );
    assert_eq!(
        tz("1980-05-17 13:45:00.5-03:30").as_deref(),
        Some("1980-01-01 00:00:00-03:30")
    );
    assert_eq!(
        tz("1890-05-17 13:45:00+00:53:28").as_deref(),
        Some("1890-01-01 00:00:00+00:53:28")
    );
    assert_eq!(
        tz("0044-03-15 12:00:00+00 BC").as_deref(),
        Some("0044-01-01 00:00:00+00 BC")
    );
    assert_eq!(tz("-infinity").as_deref(), Some("-infinity"));
    assert_eq!(
        tz("1980-05-17 13:45:00"),
        None,
        "timestamptz text carries an offset"
    );
    assert_eq!(tz("1980-05-17 13:45:00 UTC"), None);
}

#[test]
fn timestamp_year_in_binary() {
    let at = |days: i64, seconds: i64| days * USECS_PER_DAY + seconds * 1_000_000;
    for type_oid in [oid::TIMESTAMP, oid::TIMESTAMPTZ] {
        let year = |usecs: i64| {
            mask(
                MaskMethod::Year,
                type_oid,
                ValueFormat::Binary,
                &usecs.to_be_bytes(),
            )
            .map(|b| binary_i64(&b))
        };
        assert_eq!(
            year(at(-7168, 13 * 3600 + 45 * 60)),
            Some(-631_152_000_000_000)
        );
        assert_eq!(year(at(8825, 1) + 17), Some(at(8766, 0)));
        assert_eq!(year(-1), Some(at(pg_days(1999, 1, 1), 0)));
        for infinity in [i64::MAX, i64::MIN] {
            assert_eq!(year(infinity), Some(infinity));
        }
        assert_eq!(
            mask(MaskMethod::Year, type_oid, ValueFormat::Binary, &[0; 4]),
            None
        );
    }
}

#[test]
fn timestamp_tokens_keep_the_year_and_are_stable() {
    let token = mask_text(
        MaskMethod::Tokenize,
        oid::TIMESTAMP,
        "1980-05-17 13:45:00.25",
    )
    .unwrap();
    assert_eq!(token, "1980-08-26 13:25:30");
    assert_eq!(token.len(), "1980-05-17 13:45:00".len());
    let (year, month, day) = ymd(&token);
    assert_eq!(year, 1980);
    assert!((1..=12).contains(&month) && (1..=28).contains(&day));
    let clock: Vec<i64> = token[11..].split(':').map(|p| p.parse().unwrap()).collect();
    assert!(clock[0] < 24 && clock[1] < 60 && clock[2] < 60, "{token}");
    // Binary agrees with text for timestamp without zone.
    let usecs = -619_265_700_000_000i64 + 250_000;
    let binary = mask(
        MaskMethod::Tokenize,
        oid::TIMESTAMP,
        ValueFormat::Binary,
        &usecs.to_be_bytes(),
    )
    .map(|b| binary_i64(&b))
    .unwrap();
    let expected = pg_days(year, month, day) * USECS_PER_DAY
        + (clock[0] * 3600 + clock[1] * 60 + clock[2]) * 1_000_000;
    assert_eq!(binary, expected);

    let tz = mask_text(
        MaskMethod::Tokenize,
        oid::TIMESTAMPTZ,
        "1980-05-17 13:45:00+02",
    )
    .unwrap();
    assert!(tz.starts_with("1980-") && tz.ends_with("+02"), "{tz}");
    // The same instant shown in another zone gets the same month, day and time.
    let utc = mask_text(
        MaskMethod::Tokenize,
        oid::TIMESTAMPTZ,
        "1980-05-17 11:45:00+00",
    )
    .unwrap();
    assert_eq!(tz[..19], utc[..19]);
    let other = mask_value(
        MaskMethod::Tokenize,
        oid::TIMESTAMP,
        ValueFormat::Text,
        b"1980-05-17 13:45:00.25",
        &other_key(),
    );
    assert_ne!(other.as_deref(), Some(token.as_bytes()));
}

#[test]
fn dates_have_no_text_masks() {
    for type_oid in [oid::DATE, oid::TIMESTAMP, oid::TIMESTAMPTZ] {
        for method in [
            MaskMethod::Redact,
            MaskMethod::KeepLast(4),
            MaskMethod::Zip3,
            MaskMethod::Age90,
        ] {
            assert_eq!(mask_text(method, type_oid, "1980-05-17 13:45:00+02"), None);
            assert_eq!(mask(method, type_oid, ValueFormat::Binary, &[0; 8]), None);
        }
    }
}
