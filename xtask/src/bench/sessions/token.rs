//! A token target for the setup-time bench: a role with a SCRAM password the gateway holds,
//! a JWKS with one ES256 key, and access tokens signed with it.

use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use xtask::testbed::{PgCluster, TempDir};

pub const DB_USER: &str = "bench_rw";
pub const DB_PASSWORD: &str = "bench-rw-password";
const ISSUER: &str = "https://idp.bench.test";
const AUDIENCE: &str = "bench-db";
const KEY_ID: &str = "bench-1";

pub struct TokenSetup {
    files: TempDir,
    key: rcgen::KeyPair,
}

impl TokenSetup {
    pub fn new(pg: &PgCluster) -> anyhow::Result<Self> {
        pg.psql_direct(&format!(
            "create role {DB_USER} login password '{DB_PASSWORD}'"
        ))?;
        pg.prepend_hba(&format!(
            "host all {DB_USER} 0.0.0.0/0 scram-sha-256\nhost all {DB_USER} ::/0 scram-sha-256"
        ))?;
        let files = TempDir::new("tollgate-bench-token")?;
        let key = rcgen::KeyPair::generate().context("signing key")?;
        let point = key.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "kid": KEY_ID, "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
        std::fs::write(files.path().join("jwks.json"), jwks.to_string())?;
        let credentials = files.path().join("credentials.toml");
        std::fs::write(
            &credentials,
            format!("user = \"{DB_USER}\"\npassword = \"{DB_PASSWORD}\"\n"),
        )?;
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self { files, key })
    }

    /// `[[targets]]` lines making `target` a token target.
    pub fn target_lines(&self, target: &str) -> Vec<(String, String)> {
        let path = |name: &str| self.files.path().join(name).display().to_string();
        [
            "auth = \"token\"".to_owned(),
            format!("token_issuer = {ISSUER:?}"),
            format!("token_audience = {AUDIENCE:?}"),
            format!("token_jwks_file = {:?}", path("jwks.json")),
            format!("upstream_credentials_file = {:?}", path("credentials.toml")),
        ]
        .into_iter()
        .map(|line| (target.to_owned(), line))
        .collect()
    }

    /// A token valid for an hour.
    pub fn token(&self) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "bench-agent",
                            "exp": now + 3600});
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KEY_ID.to_owned());
        let key = EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes())?;
        Ok(encode(&header, &claims, &key)?)
    }
}
