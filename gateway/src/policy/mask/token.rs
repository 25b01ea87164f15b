//! The tokenization key and the keyed byte streams drawn from it. A token is a function of
//! (key, kind of value, value) only, so equal values give equal tokens across connections and
//! restarts (joins and GROUP BY keep working) and nothing without the key can reverse them.

use std::fmt;

use hmac::{
    digest::{Key, KeyInit},
    Hmac, Mac,
};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First input byte of every HMAC, so different kinds of value never share an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Domain {
    Text = b'T',
    Int = b'I',
    Numeric = b'N',
    Date = b'D',
    Timestamp = b'S',
    Json = b'J',
    /// Further keystream blocks for long values.
    Extend = b'X',
}

/// 32-byte secret for tokenization. Holds the keyed HMAC state (inner and outer pads already
/// absorbed), so each token costs a state copy and two compressions, never a re-keying.
#[derive(Clone)]
pub struct TokenKey {
    mac: HmacSha256,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        // HMAC zero-pads a key shorter than the block; padding here gives the identical key
        // without the fallible slice constructor.
        let mut block = Key::<HmacSha256>::default();
        block[..32].copy_from_slice(&bytes);
        Self {
            mac: <HmacSha256 as KeyInit>::new(&block),
        }
    }

    /// HMAC-SHA-256(key, domain || value).
    pub(super) fn digest(&self, domain: Domain, value: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(&[domain as u8]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// A keyed stream of bytes determined by (domain, value).
    pub(super) fn keystream(&self, domain: Domain, value: &[u8]) -> Keystream<'_> {
        let seed = self.digest(domain, value);
        Keystream {
            key: self,
            seed,
            block: seed,
            pos: 0,
            counter: 0,
        }
    }
}

/// Bytes of HMAC(key, domain || value), then HMAC(key, 'X' || seed || counter) blocks.
pub struct Keystream<'k> {
    key: &'k TokenKey,
    seed: [u8; 32],
    block: [u8; 32],
    pos: usize,
    counter: u64,
}

impl Keystream<'_> {
    #[inline]
    pub fn next_byte(&mut self) -> u8 {
        if self.pos == self.block.len() {
            self.refill();
        }
        let byte = self.block[self.pos];
        self.pos += 1;
        byte
    }

    #[cold]
    fn refill(&mut self) {
        self.counter += 1;
        let mut mac = self.key.mac.clone();
        mac.update(&[Domain::Extend as u8]);
        mac.update(&self.seed);
        mac.update(&self.counter.to_be_bytes());
        self.block = mac.finalize().into_bytes().into();
        self.pos = 0;
    }

    /// Uniform in `0..n` (rejection sampling, so no digit or letter is favoured).
    #[inline]
    pub fn below(&mut self, n: u8) -> u8 {
        debug_assert!(n > 0);
        let limit = 256 - (256 % u16::from(n));
        loop {
            let byte = self.next_byte();
            if u16::from(byte) < limit {
                return byte % n;
            }
        }
    }

    /// Uniform in `0..n` for large ranges (128 random bits, so the bias is negligible).
    pub fn below_u64(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut wide = [0u8; 16];
        for byte in &mut wide {
            *byte = self.next_byte();
        }
        // The remainder is below n, so it fits in u64.
        u64::try_from(u128::from_be_bytes(wide) % u128::from(n)).unwrap_or(0)
    }
}
