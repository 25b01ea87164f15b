//! Access tokens as an identity provider issues them, for the tests, the benchmarks and the
//! demo: an ES256 key, the JWKS that publishes it, and JWTs signed with it.

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub struct SigningKey {
    kid: &'static str,
    pair: rcgen::KeyPair,
}

impl SigningKey {
    /// A fresh P-256 key published as `kid` (two keys may share a kid: an impostor's).
    pub fn new(kid: &'static str) -> Self {
        Self {
            kid,
            pair: rcgen::KeyPair::generate().expect("P-256 key"),
        }
    }

    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
               "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.to_owned());
        let pem = self.pair.serialize_pem();
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("signing key");
        encode(&header, claims, &key).expect("token")
    }
}

pub fn jwks_json(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

pub fn write_jwks(path: &std::path::Path, keys: &[&SigningKey]) -> std::io::Result<()> {
    std::fs::write(path, jwks_json(keys))
}
