//! Text-like types: text, varchar, bpchar, name and unknown, in both formats (same bytes).

use super::*;
use std::borrow::Cow;

const TEXT_LIKE: [u32; 5] = [
    oid::TEXT,
    oid::VARCHAR,
    oid::BPCHAR,
    oid::NAME,
    oid::UNKNOWN,
];

/// Every text-like type in both formats gives `expected`.
fn assert_text_like(method: MaskMethod, value: &str, expected: Option<&str>) {
    for type_oid in TEXT_LIKE {
        for format in [ValueFormat::Text, ValueFormat::Binary] {
            let masked = mask(method, type_oid, format, value.as_bytes());
            assert_eq!(
                masked.as_deref(),
                expected.map(str::as_bytes),
                "{method} of {value:?} as type {type_oid} in {format:?}"
            );
        }
    }
}

#[test]
fn redact_is_the_fixed_text() {
    assert_text_like(MaskMethod::Redact, "Jane Roe", Some("REDACTED"));
    assert_text_like(MaskMethod::Redact, "", Some("REDACTED"));
}

#[test]
fn null_is_null() {
    assert_text_like(MaskMethod::Null, "Jane Roe", None);
}

#[test]
fn keep_last_keeps_separators_and_the_last_n_letters_or_digits() {
    assert_text_like(MaskMethod::KeepLast(4), "123-45-6789", Some("***-**-6789"));
    assert_text_like(MaskMethod::KeepLast(1), "ab cd", Some("** *d"));
    assert_text_like(
        MaskMethod::KeepLast(4),
        "4111 1111 1111 1234",
        Some("**** **** **** 1234"),
    );
    assert_text_like(MaskMethod::KeepLast(4), "abc", Some("abc"));
    assert_text_like(MaskMethod::KeepLast(2), "Zoë Ünal", Some("*** **al"));
    assert_text_like(MaskMethod::KeepLast(2), "Zoë Ünë", Some("*** *në"));
    // bpchar padding is a separator.
    assert_text_like(MaskMethod::KeepLast(2), "ab12  ", Some("**12  "));
}

#[test]
fn keep_last_on_invalid_utf8_is_redacted() {
    let masked = mask(
        MaskMethod::KeepLast(2),
        oid::TEXT,
        ValueFormat::Text,
        b"ab\xffcd",
    );
    assert_eq!(masked.as_deref(), Some(&b"REDACTED"[..]));
}

#[test]
fn tokenize_is_stable_under_a_fixed_key() {
    // Literal outputs: a change here breaks joins against earlier results.
    assert_text_like(MaskMethod::Tokenize, "123-45-6789", Some("893-33-1037"));
    assert_text_like(MaskMethod::Tokenize, "Jane Roe", Some("Gcut Yvj"));
    assert_text_like(MaskMethod::Tokenize, "", Some(""));
}

#[test]
fn tokenize_agrees_across_key_instances_and_differs_across_keys() {
    let value = b"jane.roe@example.org";
    let first = TokenKey::from_bytes(*b"tollgate-test-key-0123456789abcd");
    let second = TokenKey::from_bytes(*b"tollgate-test-key-0123456789abcd");
    let tokenize = |key: &TokenKey| {
        mask_value(
            MaskMethod::Tokenize,
            oid::TEXT,
            ValueFormat::Text,
            value,
            key,
        )
        .map(Cow::into_owned)
    };
    assert_eq!(tokenize(&first), tokenize(&second));
    assert_eq!(tokenize(&first), tokenize(&first.clone()));
    assert_ne!(tokenize(&first), tokenize(&other_key()));
    assert_ne!(tokenize(&first).as_deref(), Some(&value[..]));
}

#[test]
fn tokenize_preserves_the_format() {
    let value = "Jane O'Roe-Smith 1980/05/17 #42, apt. 7B (MRN: ab12cd34ef56)";
    let token = mask_text(MaskMethod::Tokenize, oid::TEXT, value).unwrap();
    assert_eq!(token.len(), value.len());
    for (original, masked) in value.chars().zip(token.chars()) {
        let same_class = (original.is_ascii_digit() && masked.is_ascii_digit())
            || (original.is_ascii_lowercase() && masked.is_ascii_lowercase())
            || (original.is_ascii_uppercase() && masked.is_ascii_uppercase())
            || (!original.is_ascii_alphanumeric() && masked == original);
        assert!(same_class, "{original:?} became {masked:?}");
    }
    assert_ne!(token, value);
}

#[test]
fn tokenize_depends_on_the_whole_value() {
    let a = mask_text(MaskMethod::Tokenize, oid::TEXT, "123-45-6789").unwrap();
    let b = mask_text(MaskMethod::Tokenize, oid::TEXT, "123-45-6788").unwrap();
    assert_ne!(
        a[..6],
        b[..6],
        "a one-digit change reshuffles every position"
    );
}

#[test]
fn tokenize_long_values_uses_more_than_one_block() {
    let value = "9".repeat(200);
    let token = mask_text(MaskMethod::Tokenize, oid::TEXT, &value).unwrap();
    assert_eq!(token.len(), 200);
    assert!(token.bytes().all(|b| b.is_ascii_digit()));
    // The tail (past the first 32-byte block) is keyed too, not a repeat of the head.
    assert_ne!(token[..32], token[32..64]);
    assert_ne!(token[150..], value[150..]);
}

#[test]
fn tokenize_non_ascii_becomes_ascii_letters() {
    let token = mask_text(MaskMethod::Tokenize, oid::TEXT, "Zoë 漢字 😀!").unwrap();
    assert_eq!(token.chars().count(), "Zoë 漢字 😀!".chars().count());
    assert!(token.is_ascii());
    assert!(token.ends_with('!'));
    assert_eq!(&token[3..4], " ");
    assert!(token.chars().nth(2).unwrap().is_ascii_lowercase());
}

#[test]
fn masks_of_invalid_utf8_are_valid_utf8() {
    let value = b"ab\xff\xfe \x80\xc3";
    for method in [
        MaskMethod::Redact,
        MaskMethod::KeepLast(2),
        MaskMethod::Tokenize,
        MaskMethod::Year,
        MaskMethod::Zip3,
        MaskMethod::Age90,
    ] {
        let masked = mask(method, oid::TEXT, ValueFormat::Text, value).unwrap();
        assert!(std::str::from_utf8(&masked).is_ok(), "{method}");
        assert_ne!(masked, value);
    }
}

#[test]
fn name_stays_within_63_bytes() {
    let value = "é".repeat(31);
    let token = mask(
        MaskMethod::Tokenize,
        oid::NAME,
        ValueFormat::Binary,
        value.as_bytes(),
    );
    assert_eq!(token.map(|t| t.len()), Some(31));
}

#[test]
fn year_of_a_date_looking_text() {
    assert_text_like(MaskMethod::Year, "1980-05-17", Some("1980"));
    assert_text_like(MaskMethod::Year, "1980-05-17 13:45:00+02", Some("1980"));
    assert_text_like(MaskMethod::Year, "1980", Some("1980"));
    assert_text_like(MaskMethod::Year, " 1980/05/17 ", Some("1980"));
    assert_text_like(MaskMethod::Year, "05/17/1980", Some("REDACTED"));
    assert_text_like(MaskMethod::Year, "19800517", Some("REDACTED"));
    assert_text_like(MaskMethod::Year, "198", Some("REDACTED"));
    assert_text_like(MaskMethod::Year, "Jane", Some("REDACTED"));
}

#[test]
fn zip3_keeps_three_digits() {
    assert_text_like(MaskMethod::Zip3, "02139", Some("021"));
    assert_text_like(MaskMethod::Zip3, "02139-1234", Some("021"));
    assert_text_like(MaskMethod::Zip3, "02139 1234", Some("021"));
    assert_text_like(MaskMethod::Zip3, "021391234", Some("021"));
    assert_text_like(MaskMethod::Zip3, "02139   ", Some("021"));
    assert_text_like(MaskMethod::Zip3, "2139", Some("REDACTED"));
    assert_text_like(MaskMethod::Zip3, "0213a", Some("REDACTED"));
    assert_text_like(MaskMethod::Zip3, "02139-12", Some("REDACTED"));
    assert_text_like(MaskMethod::Zip3, "Boston", Some("REDACTED"));
}

#[test]
fn zip3_restricted_prefixes_become_000() {
    let restricted = [
        "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
        "879", "884", "890", "893",
    ];
    for prefix in restricted {
        assert_text_like(MaskMethod::Zip3, &format!("{prefix}01"), Some("000"));
        assert_text_like(MaskMethod::Zip3, &format!("{prefix}01-0001"), Some("000"));
    }
    assert_text_like(MaskMethod::Zip3, "03701", Some("037"));
    assert_text_like(MaskMethod::Zip3, "89401", Some("894"));
}

#[test]
fn age90_tops_out_at_90_plus() {
    assert_text_like(MaskMethod::Age90, "93", Some("90+"));
    assert_text_like(MaskMethod::Age90, "90", Some("90+"));
    assert_text_like(MaskMethod::Age90, "104", Some("90+"));
    assert_text_like(MaskMethod::Age90, "89.5", Some("90+"));
    assert_text_like(MaskMethod::Age90, "89", Some("89"));
    assert_text_like(MaskMethod::Age90, "89.0", Some("89.0"));
    assert_text_like(MaskMethod::Age90, "007", Some("007"));
    assert_text_like(MaskMethod::Age90, "0093", Some("90+"));
    assert_text_like(MaskMethod::Age90, "-5", Some("-5"));
    assert_text_like(MaskMethod::Age90, "45  ", Some("45  "));
    assert_text_like(MaskMethod::Age90, "ninety", Some("REDACTED"));
    assert_text_like(MaskMethod::Age90, "9 3", Some("REDACTED"));
    assert_text_like(MaskMethod::Age90, "", Some("REDACTED"));
    assert_text_like(MaskMethod::Age90, ".", Some("REDACTED"));
}
