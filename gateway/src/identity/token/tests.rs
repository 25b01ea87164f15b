//! Token validation against a JWKS file: keys made with rcgen, tokens signed with jsonwebtoken.

use std::{path::PathBuf, time::Duration};

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "clinic-db";

struct Key {
    kid: &'static str,
    pair: rcgen::KeyPair,
}

impl Key {
    fn new(kid: &'static str) -> Self {
        Self {
            kid,
            pair: rcgen::KeyPair::generate().unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key_raw();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
               "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.to_owned());
        let key = EncodingKey::from_ec_pem(self.pair.serialize_pem().as_bytes()).unwrap();
        encode(&header, claims, &key).unwrap()
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "agent-7", "exp": now() + 300,
           "groups": ["etl", "readers"]})
}

struct Jwks {
    path: PathBuf,
}

impl Jwks {
    fn write(keys: &[&Key]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "tollgate-jwks-{}-{:?}.json",
            std::process::id(),
            std::thread::current().id()
        ));
        let jwks = Self { path };
        jwks.rewrite(keys);
        jwks
    }

    fn rewrite(&self, keys: &[&Key]) {
        let set = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        std::fs::write(&self.path, set.to_string()).unwrap();
    }

    fn validator(&self) -> TokenValidator {
        let settings = TokenValidation {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks: JwksSource::File(self.path.clone()),
            required_claims: vec!["sub".into()],
            groups_claim: "groups".into(),
            leeway: Duration::from_secs(30),
        };
        TokenValidator::new("targets[db]", &settings, 0).unwrap()
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

#[tokio::test]
async fn a_valid_token_yields_subject_and_groups() {
    let key = Key::new("k1");
    let jwks = Jwks::write(&[&key]);
    let identity = jwks
        .validator()
        .validate(&key.sign(&claims()))
        .await
        .unwrap();
    assert_eq!(identity.subject, "agent-7");
    assert_eq!(identity.groups, ["etl", "readers"]);
    assert_eq!(identity.issuer, ISSUER);
    assert_eq!(identity.key_id.as_deref(), Some("k1"));
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_reason() {
    let key = Key::new("k1");
    let jwks = Jwks::write(&[&key]);
    let validator = jwks.validator();
    let cases = [
        (
            "expired beyond leeway",
            with(claims(), json!({"exp": now() - 120})),
            TokenError::Expired,
        ),
        (
            "not yet valid",
            with(claims(), json!({"nbf": now() + 600})),
            TokenError::NotYetValid,
        ),
        (
            "wrong audience",
            with(claims(), json!({"aud": "other-db"})),
            TokenError::Audience,
        ),
        (
            "wrong issuer",
            with(claims(), json!({"iss": "https://evil.test"})),
            TokenError::Issuer,
        ),
        (
            "no subject",
            with(claims(), json!({"sub": null})),
            TokenError::MissingClaim("sub".into()),
        ),
        (
            "no expiry",
            with(claims(), json!({"exp": null})),
            TokenError::MissingClaim("exp".into()),
        ),
    ];
    for (what, claims, expected) in cases {
        assert_eq!(
            validator.validate(&key.sign(&claims)).await,
            Err(expected),
            "{what}"
        );
    }
    // Inside the leeway an expired token still passes.
    let recent = with(claims(), json!({"exp": now() - 10}));
    assert!(validator.validate(&key.sign(&recent)).await.is_ok());
}

#[tokio::test]
async fn signatures_and_algorithms_are_checked() {
    let key = Key::new("k1");
    let jwks = Jwks::write(&[&key]);
    let validator = jwks.validator();
    // Signed by another key that claims to be k1.
    let impostor = Key {
        kid: "k1",
        pair: rcgen::KeyPair::generate().unwrap(),
    };
    assert_eq!(
        validator.validate(&impostor.sign(&claims())).await,
        Err(TokenError::Signature)
    );
    // alg none: an unsigned token.
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "k1"})),
        b64(&claims())
    );
    assert_eq!(
        validator.validate(&unsigned).await,
        Err(TokenError::Algorithm("none".into()))
    );
    // HS256 "signed" with the public key as the secret (algorithm confusion).
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let confused = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(key.jwk()["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        validator.validate(&confused).await,
        Err(TokenError::Algorithm(_))
    ));
    assert_eq!(
        validator.validate("not a jwt").await,
        Err(TokenError::Malformed)
    );
}

#[tokio::test]
async fn rotated_keys_are_picked_up_from_the_file() {
    let old = Key::new("2026-old");
    let new = Key::new("2026-new");
    let jwks = Jwks::write(&[&old]);
    let validator = jwks.validator();
    let token = new.sign(&claims());
    assert_eq!(
        validator.validate(&token).await,
        Err(TokenError::UnknownKey("2026-new".into()))
    );
    // The identity provider publishes the new key; the next unknown-key token re-reads.
    jwks.rewrite(&[&old, &new]);
    std::thread::sleep(file::RELOAD_INTERVAL + Duration::from_millis(100));
    assert!(validator.validate(&token).await.is_ok());
    assert!(validator.validate(&old.sign(&claims())).await.is_ok());
}
