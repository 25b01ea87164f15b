//! Errors and notices scrubbed of values.

use super::*;
use crate::postgres::masking::notice::{MASKED_FIELD, MASKED_USER_MESSAGE};

fn frame(tag: u8, fields: &[(u8, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (code, value) in fields {
        body.push(*code);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = vec![tag];
    frame.extend_from_slice(&i32::try_from(body.len() + 4).unwrap().to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Fields of a scrubbed frame, checking its framing.
fn fields_of(frame: &[u8]) -> Vec<(u8, String)> {
    let len = usize::try_from(i32::from_be_bytes(frame[1..5].try_into().unwrap())).unwrap();
    assert_eq!(len, frame.len() - 1, "patched length");
    assert_eq!(frame.last(), Some(&0));
    let mut fields = Vec::new();
    let mut rest = &frame[5..frame.len() - 1];
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == 0).unwrap();
        fields.push((rest[0], String::from_utf8(rest[1..end].to_vec()).unwrap()));
        rest = &rest[end + 1..];
    }
    fields
}

fn scrub(tag: u8, fields: &[(u8, &str)]) -> Vec<(u8, String)> {
    let mut out = BytesMut::new();
    scrub_error_fields(&frame(tag, fields), &mut out).unwrap();
    assert_eq!(out[0], tag);
    fields_of(&out)
}

fn message_of(fields: &[(u8, String)]) -> &str {
    &fields.iter().find(|(code, _)| *code == b'M').unwrap().1
}

fn scrub_message(message: &str) -> String {
    let fields = scrub(b'E', &[(b'C', "22P02"), (b'M', message)]);
    message_of(&fields).to_owned()
}

fn masked() -> String {
    String::from_utf8(MASKED_FIELD.to_vec()).unwrap()
}

#[test]
fn invalid_input_value_is_starred() {
    let fields = scrub(
        b'E',
        &[
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "22P02"),
            (
                b'M',
                r#"invalid input syntax for type integer: "123-45-6789""#,
            ),
            (b'P', "8"),
            (b'F', "numutils.c"),
            (b'L', "617"),
            (b'R', "pg_strtoint32_safe"),
        ],
    );
    assert_eq!(
        fields,
        vec![
            (b'S', "ERROR".into()),
            (b'V', "ERROR".into()),
            (b'C', "22P02".into()),
            (
                b'M',
                r#"invalid input syntax for type integer: "***""#.into()
            ),
            (b'P', "8".into()),
            (b'F', "numutils.c".into()),
            (b'L', "617".into()),
            (b'R', "pg_strtoint32_safe".into()),
        ]
    );
}

#[test]
fn unique_violation_detail_goes_away() {
    let fields = scrub(
        b'E',
        &[
            (b'S', "ERROR"),
            (b'C', "23505"),
            (
                b'M',
                r#"duplicate key value violates unique constraint "patients_ssn_key""#,
            ),
            (b'D', "Key (ssn)=(123-45-6789) already exists."),
            (b's', "public"),
            (b't', "patients"),
            (b'n', "patients_ssn_key"),
        ],
    );
    assert_eq!(
        fields,
        vec![
            (b'S', "ERROR".into()),
            (b'C', "23505".into()),
            (
                b'M',
                r#"duplicate key value violates unique constraint "***""#.into()
            ),
            (b'D', masked()),
            (b's', "public".into()),
            (b't', "patients".into()),
            (b'n', "patients_ssn_key".into()),
        ]
    );
}

#[test]
fn free_text_fields_are_replaced_and_internal_position_dropped() {
    let fields = scrub(
        b'E',
        &[
            (b'C', "22012"),
            (b'M', "division by zero"),
            (b'D', "Failing row contains (1, Jane Roe)."),
            (b'H', "Jane Roe"),
            (b'W', "SQL function \"f\" statement 1"),
            (b'q', "select 1/0 where name = 'Jane Roe'"),
            (b'p', "8"),
            (b'Z', "an unknown field"),
        ],
    );
    assert_eq!(
        fields,
        vec![
            (b'C', "22012".into()),
            (b'M', "division by zero".into()),
            (b'D', masked()),
            (b'H', masked()),
            (b'W', masked()),
            (b'q', masked()),
        ]
    );
}

#[test]
fn user_raised_messages_are_replaced_whole() {
    let user = String::from_utf8(MASKED_USER_MESSAGE.to_vec()).unwrap();
    for (tag, sqlstate) in [
        (b'E', "P0001"),
        (b'E', "P0004"),
        (b'N', "00000"),
        (b'N', "01000"),
    ] {
        // The SQLSTATE may come after the message.
        let fields = scrub(
            tag,
            &[
                (b'S', "NOTICE"),
                (b'M', "patient Jane Roe has SSN 123-45-6789"),
                (b'C', sqlstate),
                (b'c', "Jane Roe"),
            ],
        );
        assert_eq!(
            fields,
            vec![
                (b'S', "NOTICE".into()),
                (b'M', user.clone()),
                (b'C', sqlstate.into()),
            ],
            "{sqlstate}"
        );
    }
}

#[test]
fn message_value_spans() {
    let cases = [
        (
            r#"column "ssn" of relation "patients" does not exist"#,
            r#"column "***" of relation "***" does not exist"#,
        ),
        (
            r#"invalid input syntax for type integer: "He said "hi"""#,
            r#"invalid input syntax for type integer: "***""#,
        ),
        (
            r#"invalid input syntax for type date: "a" b""#,
            r#"invalid input syntax for type date: "***""#,
        ),
        (
            "value for domain ssn violates check constraint 'ssn_check': 'x'",
            "value for domain ssn violates check constraint '***': '***'",
        ),
        ("the patient's chart", "the patient's chart"),
        (
            "Key (ssn)=(123-45-6789) already exists.",
            "Key (ssn)=(***) already exists.",
        ),
        (
            "Key (a, b)=(1, (2)) conflicts with existing key (a, b)=(3, 4).",
            "Key (a, b)=(***) conflicts with existing key (a, b)=(***).",
        ),
        ("Key (ssn)=(123-45", "Key (ssn)=(***"),
        (
            r#"invalid byte sequence for encoding "UTF8": 0xe9 0x41"#,
            r#"invalid byte sequence for encoding "***": *** ***"#,
        ),
        (r#"unterminated "123-45-6789"#, r#"unterminated "***"#),
        (
            "value too long for type character varying(5)",
            "value too long for type character varying(5)",
        ),
        ("", ""),
    ];
    for (message, expected) in cases {
        assert_eq!(scrub_message(message), expected, "{message}");
    }
}

#[test]
fn malformed_notices_are_errors_and_write_nothing() {
    let good = frame(b'E', &[(b'M', "x")]);
    let mut wrong_tag = good.clone();
    wrong_tag[0] = b'D';
    let mut length = good.clone();
    length[4] += 1;
    let mut no_terminator = good[..good.len() - 1].to_vec();
    no_terminator[4] -= 1;
    let mut unterminated_field = good[..good.len() - 2].to_vec();
    unterminated_field[4] -= 2;
    let mut after_terminator = good.clone();
    after_terminator.push(b'x');
    after_terminator[4] += 1;
    let cases: [(&str, &[u8]); 6] = [
        ("empty", &[]),
        ("wrong tag", &wrong_tag),
        ("length", &length),
        ("no terminator", &no_terminator),
        ("unterminated field", &unterminated_field),
        ("bytes after the terminator", &after_terminator),
    ];
    for (name, frame) in cases {
        let mut out = BytesMut::from(&b"keep"[..]);
        let result = scrub_error_fields(frame, &mut out);
        assert!(
            matches!(result, Err(MaskError::MalformedNotice(_))),
            "{name}: {result:?}"
        );
        assert_eq!(&out[..], b"keep", "{name}");
    }
}
