//! Integers in both formats and numeric in text format.

use super::*;
use std::borrow::Cow;

fn int_bytes(type_oid: u32, value: i64) -> Vec<u8> {
    match type_oid {
        oid::INT2 => i16::try_from(value).unwrap().to_be_bytes().to_vec(),
        oid::INT4 => i32::try_from(value).unwrap().to_be_bytes().to_vec(),
        _ => value.to_be_bytes().to_vec(),
    }
}

fn int_from_bytes(bytes: &[u8]) -> i64 {
    match bytes.len() {
        2 => i64::from(i16::from_be_bytes(bytes.try_into().unwrap())),
        4 => i64::from(i32::from_be_bytes(bytes.try_into().unwrap())),
        8 => i64::from_be_bytes(bytes.try_into().unwrap()),
        other => panic!("an integer of {other} bytes"),
    }
}

/// The mask of an integer in both formats; both must agree.
fn mask_int(method: MaskMethod, type_oid: u32, value: i64) -> Option<i64> {
    let text = mask(
        method,
        type_oid,
        ValueFormat::Text,
        value.to_string().as_bytes(),
    )
    .map(|t| String::from_utf8(t).unwrap().parse::<i64>().unwrap());
    let binary_in = int_bytes(type_oid, value);
    let binary = mask(method, type_oid, ValueFormat::Binary, &binary_in).map(|b| {
        assert_eq!(b.len(), binary_in.len(), "same width");
        int_from_bytes(&b)
    });
    assert_eq!(
        text, binary,
        "{method} of {value} as {type_oid}: text and binary agree"
    );
    text
}

const INTS: [u32; 3] = [oid::INT2, oid::INT4, oid::INT8];

#[test]
fn integers_have_no_text_masks() {
    for type_oid in INTS {
        for method in [
            MaskMethod::Redact,
            MaskMethod::Null,
            MaskMethod::KeepLast(2),
            MaskMethod::Zip3,
        ] {
            assert_eq!(mask_int(method, type_oid, 2139), None, "{method}");
        }
    }
}

#[test]
fn integer_tokens_are_stable() {
    assert_eq!(
        mask_int(MaskMethod::Tokenize, oid::INT4, 123_456_789),
        Some(604_451_507)
    );
    assert_eq!(
        mask_int(MaskMethod::Tokenize, oid::INT8, 123_456_789),
        Some(604_451_507)
    );
    assert_eq!(mask_int(MaskMethod::Tokenize, oid::INT2, 4711), Some(3923));
    assert_eq!(mask_int(MaskMethod::Tokenize, oid::INT4, -42), Some(-81));
}

#[test]
fn integer_tokens_keep_sign_digits_and_range() {
    let samples = [
        0,
        7,
        -7,
        10,
        99,
        -100,
        4711,
        32_767,
        -32_768,
        123_456_789,
        i64::from(i32::MAX),
        i64::from(i32::MIN),
        i64::MAX,
        i64::MIN,
        -1_000_000_000_000,
    ];
    for type_oid in INTS {
        let (min, max) = match type_oid {
            oid::INT2 => (i64::from(i16::MIN), i64::from(i16::MAX)),
            oid::INT4 => (i64::from(i32::MIN), i64::from(i32::MAX)),
            _ => (i64::MIN, i64::MAX),
        };
        for value in samples.into_iter().filter(|v| (min..=max).contains(v)) {
            let token = mask_int(MaskMethod::Tokenize, type_oid, value).unwrap();
            assert!((min..=max).contains(&token), "{value} -> {token}");
            assert_eq!(token < 0, value < 0, "{value} -> {token}: sign");
            assert_eq!(
                token.unsigned_abs().to_string().len(),
                value.unsigned_abs().to_string().len(),
                "{value} -> {token}: digits"
            );
        }
    }
}

#[test]
fn integer_tokens_depend_on_the_key() {
    let value = 123_456_789i32;
    let with = |key: &TokenKey| {
        mask_value(
            MaskMethod::Tokenize,
            oid::INT4,
            ValueFormat::Binary,
            &value.to_be_bytes(),
            key,
        )
        .map(Cow::into_owned)
    };
    let same = TokenKey::from_bytes(*b"tollgate-test-key-0123456789abcd");
    assert_eq!(with(&key()), with(&same));
    assert_ne!(with(&key()), with(&other_key()));
}

#[test]
fn integer_tokens_spread_out() {
    let tokens: std::collections::HashSet<i64> = (1000..1100)
        .map(|v| mask_int(MaskMethod::Tokenize, oid::INT4, v).unwrap())
        .collect();
    assert!(tokens.len() > 95, "only {} distinct tokens", tokens.len());
}

#[test]
fn integer_year_keeps_plausible_years_only() {
    for type_oid in INTS {
        assert_eq!(mask_int(MaskMethod::Year, type_oid, 1980), Some(1980));
        assert_eq!(mask_int(MaskMethod::Year, type_oid, 999), None);
        assert_eq!(mask_int(MaskMethod::Year, type_oid, -1980), None);
    }
    assert_eq!(mask_int(MaskMethod::Year, oid::INT4, 123_456_789), None);
}

#[test]
fn integer_age90() {
    for type_oid in INTS {
        assert_eq!(mask_int(MaskMethod::Age90, type_oid, 93), Some(90));
        assert_eq!(mask_int(MaskMethod::Age90, type_oid, 90), Some(90));
        assert_eq!(mask_int(MaskMethod::Age90, type_oid, 89), Some(89));
        assert_eq!(mask_int(MaskMethod::Age90, type_oid, 0), Some(0));
        assert_eq!(mask_int(MaskMethod::Age90, type_oid, 30_000), Some(90));
    }
}

#[test]
fn malformed_integers_become_null() {
    for method in [MaskMethod::Tokenize, MaskMethod::Age90, MaskMethod::Year] {
        assert_eq!(
            mask(method, oid::INT4, ValueFormat::Binary, &[0, 0, 7]),
            None
        );
        assert_eq!(
            mask(method, oid::INT2, ValueFormat::Binary, &[0, 0, 0, 7]),
            None
        );
        assert_eq!(mask(method, oid::INT4, ValueFormat::Text, b"12a"), None);
        assert_eq!(mask(method, oid::INT2, ValueFormat::Text, b"40000"), None);
        assert_eq!(mask(method, oid::INT8, ValueFormat::Text, b""), None);
    }
}

#[test]
fn numeric_tokens_keep_sign_scale_and_digits() {
    assert_eq!(
        mask_text(MaskMethod::Tokenize, oid::NUMERIC, "12345.67").as_deref(),
        Some("15534.58")
    );
    for value in [
        "12345.67",
        "-0.5",
        "7",
        "-98765432109876543210.000100",
        "100",
    ] {
        let token = mask_text(MaskMethod::Tokenize, oid::NUMERIC, value).unwrap();
        assert_eq!(token.len(), value.len(), "{value} -> {token}");
        for (o, t) in value.bytes().zip(token.bytes()) {
            assert_eq!(o.is_ascii_digit(), t.is_ascii_digit(), "{value} -> {token}");
            if !o.is_ascii_digit() {
                assert_eq!(o, t);
            }
        }
        let whole = token.trim_start_matches('-').split('.').next().unwrap();
        assert!(
            whole.len() == 1 || !whole.starts_with('0'),
            "{value} -> {token}"
        );
    }
    for special in ["NaN", "Infinity", "-Infinity"] {
        assert_eq!(
            mask_text(MaskMethod::Tokenize, oid::NUMERIC, special).as_deref(),
            Some(special)
        );
    }
    assert_eq!(mask_text(MaskMethod::Tokenize, oid::NUMERIC, "1e5"), None);
    assert_eq!(mask_text(MaskMethod::Tokenize, oid::NUMERIC, "-"), None);
}

#[test]
fn numeric_age90_and_year() {
    let age = |v: &str| mask_text(MaskMethod::Age90, oid::NUMERIC, v);
    assert_eq!(age("93.5").as_deref(), Some("90"));
    assert_eq!(age("89.01").as_deref(), Some("90"));
    assert_eq!(age("89").as_deref(), Some("89"));
    assert_eq!(age("12.25").as_deref(), Some("12.25"));
    assert_eq!(age("Infinity").as_deref(), Some("90"));
    assert_eq!(age("-Infinity").as_deref(), Some("-Infinity"));
    assert_eq!(age("NaN"), None);
    let year = |v: &str| mask_text(MaskMethod::Year, oid::NUMERIC, v);
    assert_eq!(year("1980").as_deref(), Some("1980"));
    assert_eq!(year("1980.00").as_deref(), Some("1980.00"));
    assert_eq!(year("1980.5"), None);
    assert_eq!(year("123456"), None);
}

#[test]
fn numeric_text_masks_and_binary_nulls() {
    for method in [
        MaskMethod::Redact,
        MaskMethod::KeepLast(2),
        MaskMethod::Zip3,
    ] {
        assert_eq!(mask_text(method, oid::NUMERIC, "02139"), None, "{method}");
    }
    // Binary numeric: base-10000 digits, not rewritten.
    let binary = [0, 1, 0, 0, 0, 0, 0, 0, 0, 93];
    for method in ALL_METHODS {
        let masked = mask(method, oid::NUMERIC, ValueFormat::Binary, &binary);
        if method == MaskMethod::Clear {
            assert_eq!(masked.as_deref(), Some(&binary[..]));
        } else {
            assert_eq!(masked, None, "{method}");
        }
    }
}
