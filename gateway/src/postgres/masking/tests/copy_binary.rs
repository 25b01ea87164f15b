//! COPY TO STDOUT in binary format: header, tuples of binary values, trailer.

use super::*;

fn header(flags: i32, extension: &[u8]) -> Vec<u8> {
    let mut header = b"PGCOPY\n\xff\r\n\0".to_vec();
    header.extend_from_slice(&flags.to_be_bytes());
    header.extend_from_slice(&i32::try_from(extension.len()).unwrap().to_be_bytes());
    header.extend_from_slice(extension);
    header
}

fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut tuple = i16::try_from(fields.len()).unwrap().to_be_bytes().to_vec();
    for field in fields {
        match field {
            Some(value) => {
                tuple.extend_from_slice(&i32::try_from(value.len()).unwrap().to_be_bytes());
                tuple.extend_from_slice(value);
            }
            None => tuple.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    tuple
}

const TRAILER: [u8; 2] = [0xff, 0xff];

fn plan() -> Vec<Option<ColumnMask>> {
    vec![
        None,
        binary_mask(MaskMethod::Tokenize, oid::INT4),
        text_mask(MaskMethod::Redact, oid::TEXT),
        binary_mask(MaskMethod::Year, oid::DATE),
    ]
}

fn input() -> Vec<u8> {
    let id = 7i64.to_be_bytes();
    let ssn = 123_456_789i32.to_be_bytes();
    let birth = (-7168i32).to_be_bytes();
    [
        header(0, b"ext"),
        tuple(&[Some(&id), Some(&ssn), Some(b"Jane Roe"), Some(&birth)]),
        tuple(&[Some(&id), None, None, None]),
        TRAILER.to_vec(),
    ]
    .concat()
}

fn expected() -> Vec<u8> {
    let id = 7i64.to_be_bytes();
    let token = 604_451_507i32.to_be_bytes();
    let year = (-7305i32).to_be_bytes();
    [
        header(0, b"ext"),
        tuple(&[Some(&id), Some(&token), Some(b"REDACTED"), Some(&year)]),
        tuple(&[Some(&id), None, None, None]),
        TRAILER.to_vec(),
    ]
    .concat()
}

#[test]
fn binary_tuples_are_masked_with_binary_values() {
    let mut copy = CopyMasker::new(CopyFormatSpec::Binary, plan(), arc_key());
    let mut out = BytesMut::new();
    copy.push(&input(), &mut out).unwrap();
    copy.finish(&mut out).unwrap();
    assert_eq!(copy_stream(&out), expected());
}

#[test]
fn binary_survives_any_split() {
    let input = input();
    for chunk in [1, 2, 3, 5, 7, 11, 19, 64] {
        let mut copy = CopyMasker::new(CopyFormatSpec::Binary, plan(), arc_key());
        let mut out = BytesMut::new();
        for piece in input.chunks(chunk) {
            copy.push(piece, &mut out).unwrap();
        }
        copy.finish(&mut out).unwrap();
        assert_eq!(copy_stream(&out), expected(), "chunks of {chunk}");
    }
}

#[test]
fn binary_without_trailer_is_incomplete() {
    let input = input();
    let mut copy = CopyMasker::new(CopyFormatSpec::Binary, plan(), arc_key());
    let mut out = BytesMut::new();
    copy.push(&input[..input.len() - 2], &mut out).unwrap();
    assert_eq!(copy.finish(&mut out), Err(MaskError::CopyIncomplete));
    let mut copy = CopyMasker::new(CopyFormatSpec::Binary, plan(), arc_key());
    copy.push(&input[..5], &mut out).unwrap();
    assert_eq!(copy.finish(&mut out), Err(MaskError::CopyIncomplete));
}

#[test]
fn binary_errors() {
    let id = 7i64.to_be_bytes();
    let mut bad_signature = input();
    bad_signature[0] = b'X';
    let mut bad_length = header(0, b"");
    bad_length.extend_from_slice(&4i16.to_be_bytes());
    bad_length.extend_from_slice(&(-5i32).to_be_bytes());
    let cases: [(&str, Vec<u8>, MaskError); 5] = [
        (
            "signature",
            bad_signature,
            MaskError::MalformedCopy("bad binary signature"),
        ),
        (
            "critical flag",
            header(1 << 16, b""),
            MaskError::MalformedCopy("unsupported critical flag"),
        ),
        (
            "field count",
            [header(0, b""), tuple(&[Some(&id)])].concat(),
            MaskError::FieldCount {
                expected: 4,
                found: 1,
            },
        ),
        (
            "negative length",
            bad_length,
            MaskError::MalformedCopy("negative field length"),
        ),
        (
            "after trailer",
            [input(), tuple(&[Some(&id)])].concat(),
            MaskError::MalformedCopy("data after the trailer"),
        ),
    ];
    for (name, data, error) in cases {
        let mut copy = CopyMasker::new(CopyFormatSpec::Binary, plan(), arc_key());
        let mut out = BytesMut::new();
        assert_eq!(copy.push(&data, &mut out), Err(error), "{name}");
        assert!(out.is_empty(), "{name}: nothing written");
    }
}

#[test]
fn binary_flags_below_bit_16_are_allowed() {
    let data = [header(1, b""), TRAILER.to_vec()].concat();
    let mut copy = CopyMasker::new(CopyFormatSpec::Binary, plan(), arc_key());
    let mut out = BytesMut::new();
    copy.push(&data, &mut out).unwrap();
    copy.finish(&mut out).unwrap();
    assert_eq!(copy_stream(&out), data);
}
