//! Value masks, method by type by format. Token outputs under a fixed key are asserted
//! literally: they must never change, or joins against earlier results break.

mod number;
mod property;
mod temporal;
mod text;

use std::borrow::Cow;

use super::*;

/// Fixed key: the literal tokens asserted in these tests depend on it.
pub(super) fn key() -> TokenKey {
    TokenKey::from_bytes(*b"tollgate-test-key-0123456789abcd")
}

pub(super) fn other_key() -> TokenKey {
    TokenKey::from_bytes(*b"tollgate-test-key-0123456789abce")
}

pub(super) fn mask(
    method: MaskMethod,
    type_oid: u32,
    format: ValueFormat,
    value: &[u8],
) -> Option<Vec<u8>> {
    mask_value(method, type_oid, format, value, &key()).map(Cow::into_owned)
}

/// Text format, UTF-8 in and out.
pub(super) fn mask_text(method: MaskMethod, type_oid: u32, value: &str) -> Option<String> {
    mask(method, type_oid, ValueFormat::Text, value.as_bytes())
        .map(|bytes| String::from_utf8(bytes).expect("masked text is UTF-8"))
}

pub(super) const ALL_METHODS: [MaskMethod; 8] = [
    MaskMethod::Clear,
    MaskMethod::Redact,
    MaskMethod::Null,
    MaskMethod::KeepLast(4),
    MaskMethod::Tokenize,
    MaskMethod::Year,
    MaskMethod::Zip3,
    MaskMethod::Age90,
];

#[test]
fn method_names_round_trip() {
    let cases = [
        ("clear", MaskMethod::Clear),
        ("redact", MaskMethod::Redact),
        ("null", MaskMethod::Null),
        ("keep_last_1", MaskMethod::KeepLast(1)),
        ("keep_last_4", MaskMethod::KeepLast(4)),
        ("keep_last_32", MaskMethod::KeepLast(32)),
        ("tokenize", MaskMethod::Tokenize),
        ("year", MaskMethod::Year),
        ("zip3", MaskMethod::Zip3),
        ("age_90", MaskMethod::Age90),
    ];
    for (name, method) in cases {
        assert_eq!(name.parse::<MaskMethod>(), Ok(method), "{name}");
        assert_eq!(method.to_string(), name);
    }
}

#[test]
fn unknown_method_names_are_refused_with_the_accepted_forms() {
    for name in [
        "",
        "Clear",
        "REDACT",
        "keep_last_0",
        "keep_last_33",
        "keep_last_",
        "keep_last_+4",
        "keep_last_04x",
        "keep_last_256",
        "age90",
        "hash",
    ] {
        let error = name.parse::<MaskMethod>().expect_err(name);
        let text = error.to_string();
        assert!(text.contains("keep_last_N"), "{text}");
        assert!(text.contains("age_90") && text.contains("zip3"), "{text}");
    }
}

#[test]
fn format_codes() {
    assert_eq!(ValueFormat::from_code(0), Some(ValueFormat::Text));
    assert_eq!(ValueFormat::from_code(1), Some(ValueFormat::Binary));
    assert_eq!(ValueFormat::from_code(2), None);
}

#[test]
fn token_key_is_hmac_sha256_under_the_32_byte_key() {
    use hmac::{Hmac, Mac};
    let bytes = *b"tollgate-test-key-0123456789abcd";
    let key = TokenKey::from_bytes(bytes);
    // Every length around the padding and block boundaries of the hand-rolled HMAC.
    let value: Vec<u8> = (0..=200u8).map(|i| i.wrapping_mul(37)).collect();
    for len in 0..=value.len() {
        let mut reference = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&bytes).unwrap();
        reference.update(b"T");
        reference.update(&value[..len]);
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        let digest = key.digest(token::Domain::Text, &value[..len]);
        assert_eq!(digest, expected, "value of {len} bytes");
    }
}

#[test]
fn token_key_debug_hides_the_key() {
    assert_eq!(format!("{:?}", key()), "TokenKey(..)");
}

#[test]
fn clear_passes_any_type_unchanged_and_null_is_null() {
    for type_oid in [
        oid::TEXT,
        oid::INT4,
        oid::NUMERIC,
        oid::DATE,
        oid::JSONB,
        2950,
        16,
    ] {
        for format in [ValueFormat::Text, ValueFormat::Binary] {
            let value = b"\x01\x02anything";
            assert_eq!(
                mask(MaskMethod::Clear, type_oid, format, value).as_deref(),
                Some(&value[..])
            );
            assert_eq!(mask(MaskMethod::Null, type_oid, format, value), None);
        }
    }
}

#[test]
fn other_types_become_null_under_every_method_but_clear() {
    // uuid, bool, bytea, float8, time, interval, text[].
    for type_oid in [2950, 16, 17, 701, 1083, 1186, 1009] {
        for format in [ValueFormat::Text, ValueFormat::Binary] {
            for method in ALL_METHODS {
                if method != MaskMethod::Clear {
                    assert_eq!(mask(method, type_oid, format, b"value"), None, "{method}");
                }
            }
        }
    }
}

#[test]
fn mask_into_appends_and_leaves_the_buffer_alone_on_null() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let outcome = mask_into(
        MaskMethod::Redact,
        oid::TEXT,
        ValueFormat::Text,
        b"Jane",
        &key(),
        &mut out,
    );
    assert_eq!(outcome, Masked::Value);
    assert_eq!(&out[..], b"prefixREDACTED");
    let outcome = mask_into(
        MaskMethod::Zip3,
        oid::INT4,
        ValueFormat::Text,
        b"2139",
        &key(),
        &mut out,
    );
    assert_eq!(outcome, Masked::Null);
    assert_eq!(&out[..], b"prefixREDACTED");
}

#[test]
fn json_redact_is_a_json_string() {
    assert_eq!(
        mask_text(MaskMethod::Redact, oid::JSON, r#"{"ssn":"123-45-6789"}"#).as_deref(),
        Some(r#""REDACTED""#)
    );
    assert_eq!(
        mask_text(MaskMethod::Redact, oid::JSONB, r#"{"a":1}"#).as_deref(),
        Some(r#""REDACTED""#)
    );
    assert_eq!(
        mask(MaskMethod::Redact, oid::JSON, ValueFormat::Binary, b"[1]").as_deref(),
        Some(&br#""REDACTED""#[..])
    );
    // jsonb binary: version byte 1, then the text.
    assert_eq!(
        mask(
            MaskMethod::Redact,
            oid::JSONB,
            ValueFormat::Binary,
            b"\x01{}"
        )
        .as_deref(),
        Some(&b"\x01\"REDACTED\""[..])
    );
    assert_eq!(
        mask(
            MaskMethod::Redact,
            oid::JSONB,
            ValueFormat::Binary,
            b"\x02{}"
        ),
        None,
        "an unknown jsonb version is not guessed at"
    );
}

#[test]
fn json_tokenize_is_a_stable_json_string() {
    let document = r#"{"name":"Jane Roe","mrn":12345}"#;
    let token = mask_text(MaskMethod::Tokenize, oid::JSON, document).unwrap();
    assert_eq!(token, r#""tok_af7494a3f19b82a3""#);
    let parsed: serde_json::Value = serde_json::from_str(&token).unwrap();
    assert!(parsed.is_string());
    assert_eq!(
        mask_text(MaskMethod::Tokenize, oid::JSONB, document).as_deref(),
        Some(token.as_str()),
        "json and jsonb agree"
    );
    let mut binary = vec![1];
    binary.extend_from_slice(document.as_bytes());
    let mut expected = vec![1];
    expected.extend_from_slice(token.as_bytes());
    assert_eq!(
        mask(
            MaskMethod::Tokenize,
            oid::JSONB,
            ValueFormat::Binary,
            &binary
        ),
        Some(expected)
    );
    let other = mask_value(
        MaskMethod::Tokenize,
        oid::JSON,
        ValueFormat::Text,
        document.as_bytes(),
        &other_key(),
    );
    assert_ne!(other.as_deref(), Some(token.as_bytes()));
}

#[test]
fn json_has_no_generalisations() {
    for method in [
        MaskMethod::KeepLast(4),
        MaskMethod::Year,
        MaskMethod::Zip3,
        MaskMethod::Age90,
    ] {
        assert_eq!(mask_text(method, oid::JSON, r#"{"a":"1980-01-01"}"#), None);
        assert_eq!(mask_text(method, oid::JSONB, "93"), None);
    }
}
