//! DataRow: masked fields rewritten, others and NULLs copied, lengths patched, bad frames
//! refused with nothing written.

use super::*;
use crate::{policy::mask::mask_value, postgres::encoding::ClientEncoding};

fn data_row(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&i16::try_from(fields.len()).unwrap().to_be_bytes());
    for field in fields {
        match field {
            Some(value) => {
                body.extend_from_slice(&i32::try_from(value.len()).unwrap().to_be_bytes());
                body.extend_from_slice(value);
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let mut frame = vec![b'D'];
    frame.extend_from_slice(&i32::try_from(body.len() + 4).unwrap().to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Fields of a DataRow frame, checking its framing.
fn fields_of(frame: &[u8]) -> Vec<Option<Vec<u8>>> {
    assert_eq!(frame[0], b'D');
    let len = usize::try_from(i32::from_be_bytes(frame[1..5].try_into().unwrap())).unwrap();
    assert_eq!(len, frame.len() - 1, "patched length");
    let count = i16::from_be_bytes(frame[5..7].try_into().unwrap());
    let mut pos = 7;
    let mut fields = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes(frame[pos..pos + 4].try_into().unwrap());
        pos += 4;
        if len < 0 {
            fields.push(None);
        } else {
            let len = usize::try_from(len).unwrap();
            fields.push(Some(frame[pos..pos + len].to_vec()));
            pos += len;
        }
    }
    assert_eq!(pos, frame.len());
    fields
}

fn rewrite(frame: &[u8], plan: &[Option<ColumnMask>]) -> Result<Vec<u8>, MaskError> {
    let mut out = BytesMut::new();
    rewrite_data_row(frame, plan, &key(), ClientEncoding::UTF8, &mut out)?;
    Ok(out.to_vec())
}

#[test]
fn masks_planned_fields_and_copies_the_rest() {
    let id = 42i32.to_be_bytes();
    let frame = data_row(&[
        Some(&id),
        Some(b"123-45-6789"),
        Some(b"Jane Roe"),
        None,
        Some(b"1980-05-17"),
        Some(b"kept as is"),
        Some(b"02139"),
    ]);
    let plan = [
        None,
        text_mask(MaskMethod::KeepLast(4), oid::TEXT),
        text_mask(MaskMethod::Tokenize, oid::VARCHAR),
        text_mask(MaskMethod::Redact, oid::TEXT),
        text_mask(MaskMethod::Year, oid::DATE),
        None,
        text_mask(MaskMethod::Zip3, oid::BPCHAR),
    ];
    let out = rewrite(&frame, &plan).unwrap();
    let tokenized = mask_value(
        MaskMethod::Tokenize,
        oid::VARCHAR,
        ValueFormat::Text,
        b"Jane Roe",
        &key(),
    )
    .unwrap();
    assert_eq!(
        fields_of(&out),
        vec![
            Some(id.to_vec()),
            Some(b"***-**-6789".to_vec()),
            Some(tokenized.into_owned()),
            None,
            Some(b"1980-01-01".to_vec()),
            Some(b"kept as is".to_vec()),
            Some(b"021".to_vec()),
        ]
    );
}

#[test]
fn binary_fields_and_masks_to_null() {
    let ssn = 123_456_789i32.to_be_bytes();
    let age = 93i16.to_be_bytes();
    let frame = data_row(&[Some(&ssn), Some(&age), Some(b"Jane"), Some(b"x")]);
    let plan = [
        binary_mask(MaskMethod::Tokenize, oid::INT4),
        binary_mask(MaskMethod::Age90, oid::INT2),
        binary_mask(MaskMethod::Null, oid::TEXT),
        binary_mask(MaskMethod::Redact, 2950),
    ];
    let fields = fields_of(&rewrite(&frame, &plan).unwrap());
    assert_eq!(fields[0], Some(604_451_507i32.to_be_bytes().to_vec()));
    assert_eq!(fields[1], Some(90i16.to_be_bytes().to_vec()));
    assert_eq!(fields[2], None);
    assert_eq!(fields[3], None);
}

#[test]
fn clear_and_unplanned_rows_are_byte_identical() {
    let frame = data_row(&[Some(b"a"), None, Some(b""), Some(b"Jane")]);
    let plan = [
        None,
        text_mask(MaskMethod::Redact, oid::TEXT),
        None,
        text_mask(MaskMethod::Clear, oid::TEXT),
    ];
    assert_eq!(rewrite(&frame, &plan).unwrap(), frame);
}

#[test]
fn appends_after_what_out_already_holds() {
    let frame = data_row(&[Some(b"Jane")]);
    let mut out = BytesMut::from(&b"earlier"[..]);
    rewrite_data_row(
        &frame,
        &[text_mask(MaskMethod::Redact, oid::TEXT)],
        &key(),
        ClientEncoding::UTF8,
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..7], b"earlier");
    assert_eq!(fields_of(&out[7..]), vec![Some(b"REDACTED".to_vec())]);
}

#[test]
fn empty_row() {
    let frame = data_row(&[]);
    assert_eq!(rewrite(&frame, &[]).unwrap(), frame);
}

#[test]
fn field_count_mismatch_is_an_error() {
    let frame = data_row(&[Some(b"a"), Some(b"b")]);
    let plan = [text_mask(MaskMethod::Redact, oid::TEXT)];
    assert_eq!(
        rewrite(&frame, &plan),
        Err(MaskError::FieldCount {
            expected: 1,
            found: 2
        })
    );
}

#[test]
fn malformed_frames_are_errors_and_write_nothing() {
    let plan = [text_mask(MaskMethod::Redact, oid::TEXT), None];
    let good = data_row(&[Some(b"Jane"), Some(b"Roe")]);
    let mut wrong_tag = good.clone();
    wrong_tag[0] = b'T';
    let mut long_length = good.clone();
    long_length[4] += 1;
    let truncated = good[..good.len() - 1].to_vec();
    let mut trailing = good.clone();
    trailing.push(0);
    trailing[4] += 1;
    let mut field_past_end = good.clone();
    field_past_end[10] = 100;
    let mut negative_field = good.clone();
    negative_field[7..11].copy_from_slice(&(-2i32).to_be_bytes());
    let mut negative_count = good.clone();
    negative_count[5..7].copy_from_slice(&(-1i16).to_be_bytes());
    let cases: [(&str, &[u8]); 9] = [
        ("empty", &[]),
        ("header only", &good[..5]),
        ("wrong tag", &wrong_tag),
        ("length past the frame", &long_length),
        ("truncated", &truncated),
        ("trailing bytes", &trailing),
        ("field past the end", &field_past_end),
        ("negative field length", &negative_field),
        ("negative count", &negative_count),
    ];
    for (name, frame) in cases {
        let mut out = BytesMut::from(&b"keep"[..]);
        let result = rewrite_data_row(frame, &plan, &key(), ClientEncoding::UTF8, &mut out);
        assert!(
            matches!(result, Err(MaskError::MalformedRow(_))),
            "{name}: {result:?}"
        );
        assert_eq!(&out[..], b"keep", "{name}: nothing written");
    }
}

#[test]
fn errors_name_no_values() {
    let frame = data_row(&[Some(b"123-45-6789")]);
    let error = rewrite(&frame, &[None, None]).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("123-45"), "{text}");
}

#[test]
fn values_in_another_encoding_are_masked_as_the_same_text_and_written_back_in_it() {
    let latin1 = ClientEncoding::from_name("LATIN1").unwrap();
    let utf8_name = "José Müller".as_bytes();
    let latin1_name = b"Jos\xe9 M\xfcller";
    let masked = |value: &[u8], encoding: ClientEncoding, method: MaskMethod| {
        let mut out = BytesMut::new();
        rewrite_data_row(
            &data_row(&[Some(value)]),
            &[text_mask(method, oid::TEXT)],
            &key(),
            encoding,
            &mut out,
        )
        .unwrap();
        fields_of(&out)[0].clone().unwrap()
    };
    // The same token whatever the session's encoding, written in that encoding.
    let token_utf8 = masked(utf8_name, ClientEncoding::UTF8, MaskMethod::Tokenize);
    let token_latin1 = masked(latin1_name, latin1, MaskMethod::Tokenize);
    assert_eq!(
        token_latin1,
        latin1
            .encode(std::str::from_utf8(&token_utf8).unwrap())
            .to_vec()
    );
    // Kept characters stay themselves, in LATIN1 bytes.
    assert_eq!(
        masked(latin1_name, latin1, MaskMethod::KeepLast(5)),
        b"**** *\xfcller"
    );
}
