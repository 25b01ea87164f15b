//! The masks of one row of the masking bench (`cargo xtask bench --only masking`): a name
//! tokenized, an SSN kept to its last four, a date cut to its year and a ZIP to three digits,
//! all in text format. The cost per row is what the gateway adds to a masked result.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::policy::mask::{mask_into, oid, MaskMethod, TokenKey, ValueFormat};

fn masks(c: &mut Criterion) {
    let key = TokenKey::from_bytes([7; 32]);
    let row: [(MaskMethod, u32, &[u8]); 4] = [
        (MaskMethod::Tokenize, oid::TEXT, b"Patient Number 123456"),
        (MaskMethod::KeepLast(4), oid::TEXT, b"123-45-6789"),
        (MaskMethod::Year, oid::DATE, b"1953-05-17"),
        (MaskMethod::Zip3, oid::TEXT, b"02139"),
    ];
    let mut out = BytesMut::with_capacity(4096);
    c.bench_function("masks_bench_row", |b| {
        b.iter(|| {
            out.clear();
            for (method, type_oid, value) in &row {
                black_box(mask_into(
                    *method,
                    *type_oid,
                    ValueFormat::Text,
                    black_box(value),
                    &key,
                    &mut out,
                ));
            }
        })
    });
    // The HMAC every tokenized value needs: the part of a token that cannot get cheaper.
    c.bench_function("masks_hmac_sha256_only", |b| {
        use hmac::{Hmac, Mac};
        let mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&[7; 32])
            .expect("HMAC takes any key length");
        b.iter(|| {
            let mut m = mac.clone();
            m.update(b"T");
            m.update(black_box(b"Patient Number 123456"));
            black_box(m.finalize().into_bytes());
        })
    });
    c.bench_function("masks_tokenize_name", |b| {
        b.iter(|| {
            out.clear();
            let value: &[u8] = b"Patient Number 123456";
            black_box(mask_into(
                MaskMethod::Tokenize,
                oid::TEXT,
                ValueFormat::Text,
                black_box(value),
                &key,
                &mut out,
            ));
        })
    });
}

criterion_group!(benches, masks);
criterion_main!(benches);
