//! Privileged end-to-end tests of `auth = "token"`: an unmodified `psql` agent presents an
//! access token as its password; the gateway checks it against a JWKS file or a JWKS URL (served
//! by a tiny HTTP server thread in this process) and logs in to the real server with credentials
//! only it holds (SCRAM-SHA-256).

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::Output,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use base64::Engine;
use common::{
    pg_bed,
    tokens::{write_jwks, SigningKey},
    PgBed,
};
use serde_json::{json, Value};
use xtask::testbed::{tokens::jwks_json, TempDir};

const ISSUER: &str = "https://idp.clinic.test";
const AUDIENCE: &str = "clinic-db";
/// Known to the gateway and the server only.
const DB_PASSWORD: &str = "rw-secret-7f3a9c";

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
    /// Keys from a JWKS file.
    fn start(test: &str, keys: &[&SigningKey]) -> Self {
        let files = TempDir::new("tollgate-token").expect("temp dir");
        let jwks = files.path().join("jwks.json");
        write_jwks(&jwks, keys);
        let source = format!("token_jwks_file = {:?}", jwks.display().to_string());
        Self::start_with(test, files, &[source])
    }

    /// `source`: the target's lines naming where the keys come from.
    fn start_with(test: &str, files: TempDir, source: &[String]) -> Self {
        let credentials = files.path().join("clinic.credentials");
        std::fs::write(
            &credentials,
            format!("user = \"agent_rw\"\npassword = \"{DB_PASSWORD}\"\n"),
        )
        .expect("credentials");
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 600");
        let bed = pg_bed(test, |config| {
            let mut lines = vec![
                "auth = \"token\"".to_owned(),
                format!("token_issuer = {ISSUER:?}"),
                format!("token_audience = {AUDIENCE:?}"),
                format!(
                    "upstream_credentials_file = {:?}",
                    credentials.display().to_string()
                ),
            ];
            lines.extend(source.iter().cloned());
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
        common::agent_psql(&self.bed, &conninfo, Some(token), sql)
    }
}

/// The identity provider's JWKS endpoint: serves what was last published (or 503 while
/// nothing is), one request per connection, and counts requests. It runs in the test process,
/// outside the agent cgroup, so the gateway reaches it directly.
struct JwksServer {
    port: u16,
    https: bool,
    published: Arc<Mutex<Option<String>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    fn start(published: Option<String>) -> Self {
        Self::start_with(published, None)
    }

    /// With `tls`, served over HTTPS as `localhost`.
    fn start_with(published: Option<String>, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let https = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").expect("JWKS server listens");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local address").port();
        let published = Arc::new(Mutex::new(published));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (published, requests, stop) = (published.clone(), requests.clone(), stop.clone());
            move || {
                // Bounded even if the test forgets to stop it.
                let until = Instant::now() + Duration::from_secs(300);
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let body = published.lock().unwrap_or_else(|p| p.into_inner()).clone();
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                            let served = match &tls {
                                None => answer(stream, body),
                                Some(config) => match rustls::ServerConnection::new(config.clone())
                                {
                                    Ok(conn) => {
                                        answer(rustls::StreamOwned::new(conn, stream), body)
                                    }
                                    Err(_) => false,
                                },
                            };
                            if served {
                                requests.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        Self {
            port,
            https,
            published,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        if self.https {
            format!("https://localhost:{}/jwks.json", self.port)
        } else {
            format!("http://127.0.0.1:{}/jwks.json", self.port)
        }
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = Some(jwks_json(keys));
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the request head, then answers 200 with the key set (or 503) and closes. Counts
/// as served only for a well-formed GET of the key set.
fn answer(mut stream: impl Read + Write, body: Option<String>) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    let expected = head.starts_with(b"GET /jwks.json HTTP/1.1\r\n")
        && head.ends_with(b"Connection: close\r\n\r\n");
    let response = match body {
        _ if !expected => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_owned(),
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    expected
}

/// A throwaway CA and a `localhost` server certificate it issued: (CA PEM, server config).
fn idp_tls() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Tollgate test IdP CA");
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let leaf_key = rcgen::KeyPair::generate().expect("server key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("server certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .expect("server config");
    (ca.pem(), Arc::new(config))
}

fn text(output: &Output) -> String {
    common::output_text(output)
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

    let gateway = &bed.bed.gateway;
    gateway
        .wait_for_statement(Duration::from_secs(5), |s| {
            s["token_subject"] == "etl-agent-7"
        })
        .unwrap_or_else(|| {
            panic!(
                "no statement recorded with the subject: {:?}",
                gateway.statement_records()
            )
        });
    let log = bed.bed.log_when("the accepted token", |log| {
        log.contains("\"event\":\"token.accepted\"")
    });
    let recorded = serde_json::Value::from(gateway.audit_records()).to_string();
    assert!(
        !log.contains(DB_PASSWORD) && !recorded.contains(DB_PASSWORD),
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
    let impostor = SigningKey::new("k1");
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
    // The evidence log keeps each refused login with the reason the agent was given.
    let audit_dir = bed
        .bed
        .gateway
        .config_path()
        .parent()
        .expect("state dir")
        .join("audit");
    let segment = std::fs::read_dir(&audit_dir)
        .expect("audit dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a segment");
    let refused: Vec<Value> = std::fs::read_to_string(segment)
        .expect("segment")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "login_decided" && r["accepted"] == false)
        .collect();
    assert_eq!(refused.len(), 5, "{refused:?}");
    assert!(
        refused.iter().any(|r| r["reason"]
            .as_str()
            .is_some_and(|why| why.contains("not a JWT"))),
        "{refused:?}"
    );
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

/// Seconds between fetches that unknown keys may cause; the default is 10.
const MIN_REFETCH_S: u64 = 2;

fn url_bed(test: &str, server: &JwksServer) -> TokenBed {
    let files = TempDir::new("tollgate-token").expect("temp dir");
    let source = [
        format!("token_jwks_url = {:?}", server.url()),
        format!("token_jwks_min_refetch_s = {MIN_REFETCH_S}"),
    ];
    TokenBed::start_with(test, files, &source)
}

fn assert_accepted(bed: &TokenBed, token: &str, what: &str) {
    let output = bed.psql(token, "select current_user");
    assert!(output.status.success(), "{what}: {}", text(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "agent_rw",
        "{what}"
    );
}

fn wait_out_the_rate_limit() {
    std::thread::sleep(Duration::from_secs(MIN_REFETCH_S) + Duration::from_millis(200));
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn keys_from_the_jwks_url_are_cached_and_rotated() {
    let old = SigningKey::new("2027-01");
    let new = SigningKey::new("2027-02");
    let server = JwksServer::start(Some(jwks_json(&[&old])));
    let bed = url_bed("keys_from_the_jwks_url_are_cached_and_rotated", &server);
    for _ in 0..3 {
        assert_accepted(
            &bed,
            &old.sign(&claims(json!({}))),
            "a token signed by the published key",
        );
    }
    assert_eq!(
        server.requests(),
        1,
        "fetched once at startup, not once per login"
    );

    // A token signed by a key the provider has not published yet: one fetch, still unknown.
    wait_out_the_rate_limit();
    let token = new.sign(&claims(json!({})));
    assert_refused(&bed, &token, "no key `2027-02` in the JWKS");
    assert_eq!(server.requests(), 2, "an unknown key causes a fetch");
    // Published now, but the last fetch was too recent: still refused, nothing fetched.
    server.publish(&[&old, &new]);
    assert_refused(&bed, &token, "no key `2027-02` in the JWKS");
    assert_eq!(server.requests(), 2, "unknown keys are rate-limited");
    wait_out_the_rate_limit();
    assert_accepted(&bed, &token, "the rotated key once fetched");
    assert_eq!(server.requests(), 3);
    for _ in 0..2 {
        assert_accepted(&bed, &token, "the new key, cached");
        assert_accepted(
            &bed,
            &old.sign(&claims(json!({}))),
            "the old key, still published",
        );
    }
    assert_eq!(server.requests(), 3, "known keys need no fetch");
    let log = bed.bed.log_when("three JWKS fetches", |log| {
        log.matches("\"event\":\"token.jwks_fetched\"").count() == 3
    });
    assert!(log.contains(&server.url()), "the fetch log names the URL");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn tokens_are_refused_until_the_jwks_url_answers() {
    let key = SigningKey::new("k1");
    let server = JwksServer::start(None);
    let bed = url_bed("tokens_are_refused_until_the_jwks_url_answers", &server);
    bed.bed.log_when("the failed startup fetch", |log| {
        log.contains("\"event\":\"token.jwks_unavailable\"")
    });
    let token = key.sign(&claims(json!({})));
    assert_refused(
        &bed,
        &token,
        "JWKS unavailable: no signing keys could be fetched yet",
    );
    server.publish(&[&key]);
    wait_out_the_rate_limit();
    assert_accepted(&bed, &token, "once the provider answers");
    assert_accepted(&bed, &token, "cached");
    assert!(server.requests() <= 3, "{} fetches", server.requests());
}

/// `ca_pem`: what the gateway is told to trust for the provider's certificate.
fn https_bed(test: &str, server: &JwksServer, ca_pem: &str) -> TokenBed {
    let files = TempDir::new("tollgate-token").expect("temp dir");
    let ca_file = files.path().join("idp-ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("CA file");
    let source = [
        format!("token_jwks_url = {:?}", server.url()),
        format!("token_jwks_ca_file = {:?}", ca_file.display().to_string()),
    ];
    TokenBed::start_with(test, files, &source)
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn an_https_jwks_url_is_verified_against_its_ca() {
    let key = SigningKey::new("k1");
    let (ca_pem, tls) = idp_tls();
    let server = JwksServer::start_with(Some(jwks_json(&[&key])), Some(tls));
    let bed = https_bed(
        "an_https_jwks_url_is_verified_against_its_ca",
        &server,
        &ca_pem,
    );
    assert_accepted(
        &bed,
        &key.sign(&claims(json!({}))),
        "keys fetched over HTTPS",
    );
    assert_eq!(server.requests(), 1);
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn an_https_jwks_url_with_an_untrusted_certificate_yields_no_keys() {
    let key = SigningKey::new("k1");
    let (_, tls) = idp_tls();
    let (other_ca, _) = idp_tls();
    let server = JwksServer::start_with(Some(jwks_json(&[&key])), Some(tls));
    let bed = https_bed(
        "an_https_jwks_url_with_an_untrusted_certificate_yields_no_keys",
        &server,
        &other_ca,
    );
    let log = bed.bed.log_when("the failed startup fetch", |log| {
        log.contains("\"event\":\"token.jwks_unavailable\"")
    });
    assert!(log.contains("TLS handshake"), "{log}");
    assert_refused(
        &bed,
        &key.sign(&claims(json!({}))),
        "JWKS unavailable: no signing keys could be fetched yet",
    );
    assert_eq!(
        server.requests(),
        0,
        "nothing was served to an unverified client"
    );
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn a_token_session_cannot_switch_roles_at_startup() {
    let key = SigningKey::new("k1");
    let bed = TokenBed::start("a_token_session_cannot_switch_roles_at_startup", &[&key]);
    let token = key.sign(&claims(json!({})));
    let conninfo = format!(
        "host=127.0.0.1 port={} user=etl-agent-7 dbname=postgres sslmode=disable options='-c role=postgres'",
        bed.bed.pg.port()
    );
    let output = common::agent_psql(&bed.bed, &conninfo, Some(&token), "select current_user");
    assert!(
        !output.status.success(),
        "must be refused: {}",
        text(&output)
    );
    assert!(
        text(&output)
            .contains("FATAL:  setting role at startup is not allowed with token authentication"),
        "{}",
        text(&output)
    );
    // The token itself was never asked for.
    let log = bed.bed.log_when("the refused close", |log| {
        log.contains("role switch at startup with token authentication")
    });
    assert!(!log.contains("token.accepted"), "{log}");
}
