//! A token target for the setup-time bench: a role with a SCRAM password the gateway holds,
//! a JWKS with one ES256 key, and access tokens signed with it.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use xtask::testbed::{
    tokens::{write_jwks, SigningKey},
    PgCluster, TempDir,
};

pub const DB_USER: &str = "bench_rw";
pub const DB_PASSWORD: &str = "bench-rw-password";
const ISSUER: &str = "https://idp.bench.test";
const AUDIENCE: &str = "bench-db";
const KEY_ID: &str = "bench-1";

pub struct TokenSetup {
    files: TempDir,
    key: SigningKey,
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
        let key = SigningKey::new(KEY_ID);
        write_jwks(&files.path().join("jwks.json"), &[&key])?;
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
        Ok(self.key.sign(&claims))
    }
}
