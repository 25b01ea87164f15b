//! Privileged end-to-end tests of `auth = "token"`: an unmodified `psql` agent presents an
//! access token as its password; the gateway checks it against a JWKS file and logs in to the
//! real server with credentials only it holds (SCRAM-SHA-256).

mod common;

use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Output, time::Duration};

use base64::Engine;
use common::{pg_bed, PgBed};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use xtask::testbed::TempDir;

const ISSUER: &str = "https://idp.clinic.test";
const AUDIENCE: &str = "clinic-db";
/// Known to the gateway and the server only.
const DB_PASSWORD: &str = "rw-secret-7f3a9c";

struct SigningKey {
    kid: &'static str,
    pair: rcgen::KeyPair,
}

impl SigningKey {
    fn new(kid: &'static str) -> Self {
        Self {
            kid,
            pair: rcgen::KeyPair::generate().expect("P-256 key"),
        }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
               "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.to_owned());
        let pem = self.pair.serialize_pem();
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("signing key");
        encode(&header, claims, &key).expect("token")
    }
}

fn claims(changes: Value) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "etl-agent-7",
                            "exp": now + 600, "groups": ["etl"]});
    for (name, value) in changes.as_object().expect("object") {
        claims[name] = value.clone();
    }
    claims
}

struct TokenBed {
    bed: PgBed,
    files: TempDir,
}

impl TokenBed {
    fn start(test: &str, keys: &[&SigningKey]) -> Self {
        let files = TempDir::new("tollgate-token").expect("temp dir");
        let jwks = files.path().join("jwks.json");
        let credentials = files.path().join("clinic.credentials");
        write_jwks(&jwks, keys);
        std::fs::write(
            &credentials,
            format!("user = \"agent_rw\"\npassword = \"{DB_PASSWORD}\"\n"),
        )
        .expect("credentials");
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 600");
        let bed = pg_bed(test, |config| {
            let lines = [
                "auth = \"token\"".to_owned(),
                format!("token_issuer = {ISSUER:?}"),
                format!("token_audience = {AUDIENCE:?}"),
                format!("token_jwks_file = {:?}", jwks.display().to_string()),
                format!(
                    "upstream_credentials_file = {:?}",
                    credentials.display().to_string()
                ),
            ];
            for line in lines {
                config.target_lines.push(("clinic".into(), line));
            }
        });
        bed.pg
            .psql_direct(&format!(
                "create role agent_rw login password '{DB_PASSWORD}'; \
                 grant pg_read_all_data to agent_rw"
            ))
            .expect("role");
        // The gateway's user must really prove its password.
        bed.pg
            .prepend_hba(
                "host all agent_rw 0.0.0.0/0 scram-sha-256\nhost all agent_rw ::/0 scram-sha-256",
            )
            .expect("pg_hba");
        Self { bed, files }
    }

    fn jwks_path(&self) -> PathBuf {
        self.files.path().join("jwks.json")
    }

    /// `psql` as an agent, with the token as its password and a user name of its own.
    fn psql(&self, token: &str, sql: &str) -> Output {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=etl-agent-7 dbname=postgres sslmode=disable connect_timeout=10",
            self.bed.pg.port()
        );
        self.bed
            .agents
            .command("psql")
            .args(["-X", "-A", "-t", "-d", &conninfo, "-c", sql])
            .env("PGPASSWORD", token)
            .output()
            .expect("psql")
    }
}

fn write_jwks(path: &std::path::Path, keys: &[&SigningKey]) {
    let set = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    std::fs::write(path, set.to_string()).expect("jwks");
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_refused(bed: &TokenBed, token: &str, reason: &str) {
    let output = bed.psql(token, "select 1");
    assert!(
        !output.status.success(),
        "must be refused: {}",
        text(&output)
    );
    let expected = format!("FATAL:  Tollgate refused the access token: {reason}");
    assert!(
        text(&output).contains(&expected),
        "expected {expected:?}, got: {}",
        text(&output)
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn a_valid_token_logs_in_with_the_gateways_credentials() {
    let key = SigningKey::new("k1");
    let bed = TokenBed::start(
        "a_valid_token_logs_in_with_the_gateways_credentials",
        &[&key],
    );
    let output = bed.psql(&key.sign(&claims(json!({}))), "select current_user");
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "agent_rw");

    let log = bed
        .bed
        .log_when("the statement record with the subject", |log| {
            log.contains("\"event\":\"statement\"") && log.contains("\"subject\":\"etl-agent-7\"")
        });
    assert!(log.contains("\"event\":\"token.accepted\""), "{log}");
    assert!(
        !log.contains(DB_PASSWORD),
        "the database password is never logged"
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn bad_tokens_are_refused_and_recorded() {
    let key = SigningKey::new("k1");
    let bed = TokenBed::start("bad_tokens_are_refused_and_recorded", &[&key]);
    let now = jsonwebtoken::get_current_timestamp();
    assert_refused(
        &bed,
        &key.sign(&claims(json!({"exp": now - 600}))),
        "expired",
    );
    assert_refused(
        &bed,
        &key.sign(&claims(json!({"aud": "billing-db"}))),
        "wrong audience",
    );
    let impostor = SigningKey {
        kid: "k1",
        pair: rcgen::KeyPair::generate().expect("key"),
    };
    assert_refused(&bed, &impostor.sign(&claims(json!({}))), "bad signature");
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT", "kid": "k1"})),
        b64(claims(json!({})))
    );
    assert_refused(&bed, &unsigned, "algorithm none is not accepted");
    assert_refused(&bed, "hunter2", "the password is not a JWT");

    // Each refusal is recorded with its reason and closes as refused.
    bed.bed
        .log_when("five rejections and five refused closes", |log| {
            log.matches("\"event\":\"token.rejected\"").count() == 5
                && log.matches("\"reason\":\"access token rejected\"").count() == 5
        });
    // Nothing reached the server as the gateway's user.
    let logins = bed
        .bed
        .pg
        .psql_direct("select count(*) from pg_stat_activity where usename = 'agent_rw'")
        .expect("activity");
    assert_eq!(logins.trim(), "0");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn rotated_signing_keys_are_picked_up() {
    let old = SigningKey::new("2026-11");
    let new = SigningKey::new("2026-12");
    let bed = TokenBed::start("rotated_signing_keys_are_picked_up", &[&old]);
    let token = new.sign(&claims(json!({})));
    assert_refused(&bed, &token, "no key `2026-12` in the JWKS");
    // The identity provider publishes the new key next to the old one.
    write_jwks(&bed.jwks_path(), &[&old, &new]);
    std::thread::sleep(Duration::from_millis(1100));
    let output = bed.psql(&token, "select current_user");
    assert!(output.status.success(), "{}", text(&output));
    let output = bed.psql(&old.sign(&claims(json!({}))), "select 1");
    assert!(
        output.status.success(),
        "the old key still works: {}",
        text(&output)
    );
}
