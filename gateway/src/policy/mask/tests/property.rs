//! Property: no mask but `clear` shows a random value of six or more characters whole.
//! Values come from a small deterministic generator, so a failure reproduces exactly.

use super::*;

/// xorshift64*: enough randomness for test inputs, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const ALPHABET: &[char] = &[
    'a', 'b', 'k', 'q', 'z', 'A', 'M', 'Z', '0', '1', '4', '7', '9', '-', ' ', '.', '@', '/', '\'',
    '"', '\\', '\t', 'é', 'ß', 'Ж', '漢', '😀',
];

fn random_value(rng: &mut Rng) -> String {
    let len = 6 + rng.below(30);
    let mut value = String::new();
    match rng.below(4) {
        // Digits and separators only, like an SSN, phone number or MRN.
        0 => (0..len).for_each(|_| {
            let c = if rng.below(5) == 0 {
                '-'
            } else {
                char::from(b'0' + rng.below(10) as u8)
            };
            value.push(c);
        }),
        // Dates and ZIP codes, which the generalising masks parse.
        1 => value.push_str(&format!(
            "{:04}-{:02}-{:02}{}",
            rng.below(3000),
            1 + rng.below(12),
            1 + rng.below(28),
            ["", " 13:45:00", "x"][rng.below(3)]
        )),
        2 => value.push_str(&format!(
            "{:05}-{:04}",
            rng.below(100_000),
            rng.below(10_000)
        )),
        _ => (0..len).for_each(|_| value.push(ALPHABET[rng.below(ALPHABET.len())])),
    }
    value
}

/// Characters that masks replace: ASCII letters and digits and every non-ASCII character.
fn maskable(value: &str) -> usize {
    value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || !c.is_ascii())
        .count()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn masked_output_never_contains_a_long_original() {
    let methods = [
        MaskMethod::Redact,
        MaskMethod::Null,
        MaskMethod::KeepLast(1),
        MaskMethod::KeepLast(4),
        MaskMethod::Tokenize,
        MaskMethod::Year,
        MaskMethod::Zip3,
        MaskMethod::Age90,
    ];
    let types = [
        oid::TEXT,
        oid::VARCHAR,
        oid::BPCHAR,
        oid::NAME,
        oid::UNKNOWN,
        oid::JSON,
        oid::JSONB,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    for _ in 0..3000 {
        let value = random_value(&mut rng);
        assert!(value.chars().count() >= 6);
        for method in methods {
            // By definition keep_last_N shows up to N characters, tokenize keeps what is not
            // a letter or digit, and age_90 shows numbers up to 89.
            if let MaskMethod::KeepLast(n) = method {
                if maskable(&value) <= usize::from(n) {
                    continue;
                }
            }
            if method == MaskMethod::Tokenize && maskable(&value) < 6 {
                continue;
            }
            if method == MaskMethod::Age90 && value.parse::<f64>().is_ok_and(|age| age <= 89.0) {
                continue;
            }
            for type_oid in types {
                let Some(masked) = mask(method, type_oid, ValueFormat::Text, value.as_bytes())
                else {
                    continue;
                };
                checked += 1;
                assert!(
                    !contains(&masked, value.as_bytes()),
                    "{method} on type {type_oid} showed {value:?} as {:?}",
                    String::from_utf8_lossy(&masked)
                );
                assert!(std::str::from_utf8(&masked).is_ok(), "{method}: UTF-8");
            }
        }
    }
    assert!(checked > 50_000, "only {checked} checks ran");
}
