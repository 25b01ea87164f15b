//! COPY TO STDOUT in text and CSV format.

use super::*;

fn masker(format: CopyFormatSpec, plan: Vec<Option<ColumnMask>>) -> CopyMasker {
    CopyMasker::new(format, plan, arc_key())
}

/// Pushes each payload, then finishes; returns the joined output stream.
fn run(masker: &mut CopyMasker, payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for payload in payloads {
        masker.push(payload, &mut out).unwrap();
    }
    masker.finish(&mut out).unwrap();
    copy_stream(&out)
}

fn person_plan() -> Vec<Option<ColumnMask>> {
    vec![
        None,
        text_mask(MaskMethod::KeepLast(4), oid::TEXT),
        text_mask(MaskMethod::Redact, oid::TEXT),
    ]
}

#[test]
fn text_rows_are_masked_per_column() {
    let mut copy = masker(CopyFormatSpec::text(), person_plan());
    let out = run(
        &mut copy,
        &[
            b"1\t123-45-6789\tJane Roe\n",
            b"2\t\\N\t\\N\n",
            b"3\t987-65-4321\t\n",
        ],
    );
    assert_eq!(
        out,
        b"1\t***-**-6789\tREDACTED\n2\t\\N\t\\N\n3\t***-**-4321\tREDACTED\n"
    );
}

#[test]
fn one_frame_per_push_with_all_its_rows() {
    let mut copy = masker(CopyFormatSpec::text(), person_plan());
    let mut out = BytesMut::new();
    copy.push(b"1\t111-22\ta\n2\t333-44\tb\n", &mut out)
        .unwrap();
    let payloads = copy_payloads(&out);
    assert_eq!(
        payloads,
        vec![b"1\t*11-22\tREDACTED\n2\t*33-44\tREDACTED\n".to_vec()]
    );
}

#[test]
fn text_escapes_are_decoded_before_masking_and_written_back() {
    let plan = vec![text_mask(MaskMethod::KeepLast(1), oid::TEXT)];
    let mut copy = masker(CopyFormatSpec::text(), plan);
    // Escaped tab, newline, backslash, octal 'A' (\101), hex 'B' (\x42), escaped 'q'.
    let out = run(&mut copy, &[b"ab\\tc\\nd\\\\e\\101\\x42\\qz\n"]);
    // Decoded: "ab\tc\nd\\eABqz"; all but the last letter starred; controls re-escaped.
    assert_eq!(out, b"**\\t*\\n*\\\\****z\n");
}

#[test]
fn text_custom_delimiter_and_null_marker() {
    let format = CopyFormatSpec::Text {
        delimiter: b'|',
        null: b"NULL".to_vec(),
    };
    let plan = vec![text_mask(MaskMethod::KeepLast(1), oid::TEXT), None];
    let mut copy = masker(format, plan);
    let out = run(&mut copy, &[b"a\\|b|x\\|y\n", b"NULL|NULL\n"]);
    // The escaped delimiter is data: one field, then re-escaped after masking.
    assert_eq!(out, b"*\\|b|x\\|y\nNULL|NULL\n");
}

#[test]
fn masks_to_null_write_the_null_marker() {
    let plan = vec![
        text_mask(MaskMethod::Null, oid::TEXT),
        text_mask(MaskMethod::Zip3, oid::INT4),
    ];
    let mut copy = masker(CopyFormatSpec::text(), plan);
    assert_eq!(run(&mut copy, &[b"Jane\t2139\n"]), b"\\N\t\\N\n");
}

#[test]
fn typed_masks_read_copy_values_as_text() {
    let plan = vec![
        // The column's result format is ignored: COPY text values are text.
        binary_mask(MaskMethod::Year, oid::DATE),
        binary_mask(MaskMethod::Tokenize, oid::INT4),
        binary_mask(MaskMethod::Age90, oid::INT2),
    ];
    let mut copy = masker(CopyFormatSpec::text(), plan);
    assert_eq!(
        run(&mut copy, &[b"1980-05-17\t123456789\t93\n"]),
        b"1980-01-01\t604451507\t90\n"
    );
}

#[test]
fn rows_split_across_pushes_are_reassembled() {
    let mut copy = masker(CopyFormatSpec::text(), person_plan());
    let mut out = BytesMut::new();
    copy.push(b"1\t123-4", &mut out).unwrap();
    assert!(out.is_empty(), "no frame until a row completes");
    copy.push(b"5-6789\tJa", &mut out).unwrap();
    copy.push(b"ne\n2\t1\t", &mut out).unwrap();
    copy.push(b"x\n", &mut out).unwrap();
    copy.finish(&mut out).unwrap();
    assert_eq!(
        copy_payloads(&out),
        vec![
            b"1\t***-**-6789\tREDACTED\n".to_vec(),
            b"2\t1\tREDACTED\n".to_vec()
        ]
    );
}

#[test]
fn a_row_cut_off_at_copy_done_is_an_error() {
    let mut copy = masker(CopyFormatSpec::text(), person_plan());
    let mut out = BytesMut::new();
    copy.push(b"1\t123-45-6789\tJa", &mut out).unwrap();
    assert_eq!(copy.finish(&mut out), Err(MaskError::CopyIncomplete));
    assert!(out.is_empty());
}

#[test]
fn text_field_count_mismatch_is_an_error() {
    for row in [&b"1\t2\n"[..], b"1\t2\t3\t4\n", b"\n"] {
        let mut copy = masker(CopyFormatSpec::text(), person_plan());
        let mut out = BytesMut::from(&b"keep"[..]);
        let result = copy.push(row, &mut out);
        assert!(
            matches!(result, Err(MaskError::FieldCount { .. })),
            "{result:?}"
        );
        assert_eq!(&out[..], b"keep");
    }
}

#[test]
fn csv_rows_are_masked_per_column() {
    let mut copy = masker(CopyFormatSpec::csv(), person_plan());
    let out = run(&mut copy, &[b"1,123-45-6789,Jane Roe\n", b"2,,\"\"\n"]);
    // Unquoted empty is NULL and stays; quoted empty is a value and is masked.
    assert_eq!(out, b"1,***-**-6789,REDACTED\n2,,REDACTED\n");
}

#[test]
fn csv_quoted_newlines_do_not_end_rows() {
    let plan = vec![None, text_mask(MaskMethod::KeepLast(2), oid::TEXT)];
    let mut copy = masker(CopyFormatSpec::csv(), plan);
    let mut out = BytesMut::new();
    copy.push(b"1,\"line one\nline", &mut out).unwrap();
    assert!(out.is_empty());
    copy.push(b" two\"\n2,\"a,b\"\n", &mut out).unwrap();
    copy.finish(&mut out).unwrap();
    // The kept newline and comma force quoting again.
    assert_eq!(copy_stream(&out), b"1,\"**** ***\n**** *wo\"\n2,\"a,b\"\n");
}

#[test]
fn csv_quotes_inside_values() {
    let plan = vec![text_mask(MaskMethod::KeepLast(2), oid::TEXT)];
    let mut copy = masker(CopyFormatSpec::csv(), plan);
    let out = run(&mut copy, &[b"\"say \"\"hi\"\"\"\n"]);
    assert_eq!(out, b"\"*** \"\"hi\"\"\"\n");
}

#[test]
fn csv_custom_escape_quote_delimiter_and_null() {
    let format = CopyFormatSpec::Csv {
        delimiter: b';',
        quote: b'\'',
        escape: b'\\',
        null: b"NULL".to_vec(),
    };
    let plan = vec![
        text_mask(MaskMethod::KeepLast(3), oid::TEXT),
        text_mask(MaskMethod::Redact, oid::TEXT),
        text_mask(MaskMethod::Tokenize, oid::TEXT),
    ];
    let mut copy = masker(format, plan);
    let out = run(&mut copy, &[b"'it\\'s;x\\\\y';NULL;'NULL'\n"]);
    let token = crate::policy::mask::mask_value(
        MaskMethod::Tokenize,
        oid::TEXT,
        ValueFormat::Text,
        b"NULL",
        &key(),
    )
    .unwrap();
    let mut expected = b"'**\\'s;x\\\\y';NULL;".to_vec();
    expected.extend_from_slice(&token);
    expected.push(b'\n');
    assert_eq!(out, expected);
}

#[test]
fn csv_masked_value_equal_to_the_null_marker_is_quoted() {
    let plan = vec![text_mask(MaskMethod::Redact, oid::TEXT)];
    let format = CopyFormatSpec::Csv {
        delimiter: b',',
        quote: b'"',
        escape: b'"',
        null: b"REDACTED".to_vec(),
    };
    let mut copy = masker(format, plan);
    assert_eq!(run(&mut copy, &[b"Jane\n"]), b"\"REDACTED\"\n");
}

#[test]
fn csv_unterminated_quote_at_copy_done_is_an_error() {
    let mut copy = masker(CopyFormatSpec::csv(), person_plan());
    let mut out = BytesMut::new();
    copy.push(b"1,\"123\n", &mut out).unwrap();
    assert_eq!(copy.finish(&mut out), Err(MaskError::CopyIncomplete));
}

#[test]
fn debug_shows_no_rows() {
    let mut copy = masker(CopyFormatSpec::text(), person_plan());
    let mut out = BytesMut::new();
    copy.push(b"1\t123-45-6789\tJa", &mut out).unwrap();
    let debug = format!("{copy:?}");
    assert!(!debug.contains("123-45"), "{debug}");
    assert!(debug.contains("buffered_bytes: 16"), "{debug}");
}
