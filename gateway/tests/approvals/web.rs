//! Remote approvers: the HTTPS API with OIDC tokens, its server-sent events, and the web page
//! driven in headless Chromium (screenshots kept under `target/test-output/approvals-web/`).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    sync::Arc,
};

use serde_json::json;
use xtask::testbed::{free_port, Browser};

use super::*;
use crate::common::{
    appliance_cert,
    tokens::{write_jwks, SigningKey},
};

const ISSUER: &str = "https://idp.clinic.test";
const AUDIENCE: &str = "tollgate-approvals";
const APPROVER_GROUP: &str = "phi-approvers";

struct WebBed {
    bed: PgBed,
    key: SigningKey,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl WebBed {
    fn start(test: &str, dir: &TempDir) -> Self {
        let key = SigningKey::new("approvers-1");
        let jwks = dir.path().join("approvers.jwks");
        write_jwks(&jwks, &[&key]);
        let port = free_port();
        let lines = [
            "approver_users = [\"nobody\"]".to_owned(),
            format!("http_listen = \"127.0.0.1:{port}\""),
            format!("approver_token_groups = [{APPROVER_GROUP:?}]"),
            format!("token_issuer = {ISSUER:?}"),
            format!("token_audience = {AUDIENCE:?}"),
            format!("token_jwks_file = {:?}", jwks.display().to_string()),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let bed = approvals_bed_with(test, dir, PATIENTS_POLICY, &lines);
        let tls = client_tls(&appliance_cert(&bed));
        Self {
            bed,
            key,
            port,
            tls,
        }
    }

    /// A token the identity provider would issue to `subject` in `groups`.
    fn token(&self, subject: &str, groups: &[&str]) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        self.key.sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "exp": now + 600, "groups": groups,
        }))
    }

    /// One HTTPS request: the status, the head and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut stream = self.connect();
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("send");
        stream.write_all(body.as_bytes()).expect("send body");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// The event stream, read line by line.
    fn events(&self, token: &str) -> Events {
        let mut stream = self.connect();
        let head = format!(
            "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "events: {status}");
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            reader.read_line(&mut line).expect("header");
            if line.to_ascii_lowercase().starts_with("content-type:") {
                assert!(line.contains("text/event-stream"), "{line}");
            }
        }
        Events { reader }
    }

    fn connect(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the API");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let connection =
            rustls::ClientConnection::new(self.tls.clone(), name.to_owned()).expect("TLS");
        rustls::StreamOwned::new(connection, tcp)
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

struct Events {
    reader: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

impl Events {
    /// The next event (keep-alive comments skipped): its name and data.
    fn next(&mut self) -> (String, Value) {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).expect("an event in time");
            assert!(read > 0, "the event stream ended");
            let line = line.trim_end_matches('\n');
            if line.is_empty() && !data.is_empty() {
                return (name, serde_json::from_str(&data).expect("JSON data"));
            }
            if let Some(value) = line.strip_prefix("event: ") {
                name = value.to_owned();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push_str(value);
            }
        }
    }
}

/// Trusts the gateway's generated certificate, and nothing else.
fn client_tls(cert: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert).expect("certificate") {
        roots.add(cert.expect("PEM")).expect("a trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Kept in the test output for a person to look at.
fn shot(browser: &mut Browser, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-output/approvals-web")
        .join(name);
    browser.screenshot(&path).expect("screenshot");
}

/// Types a reason (if any) into request `id`'s card and clicks `action` (approve or deny).
fn decide_on_page(browser: &mut Browser, id: u64, action: &str, reason: Option<&str>) {
    if let Some(reason) = reason {
        browser
            .type_into(&format!("#reason-{id}"), reason)
            .expect("type the reason");
    }
    browser.click(&format!("#{action}-{id}")).expect(action);
}

/// Waits (bounded) until request `id` is on the page, pushed there (the page never reloads
/// and never polls); its card's selector.
fn wait_for_card(browser: &mut Browser, id: u64) -> String {
    let card = format!("#request-{id}");
    browser
        .wait_for(
            &format!("document.querySelector('{card}')"),
            Duration::from_secs(10),
        )
        .expect("the request is pushed to the page");
    card
}

/// The audit log's decision on approval `id`.
fn decision_record(bed: &PgBed, id: u64) -> Value {
    (bed.gateway.audit_records().into_iter())
        .find(|r| r["kind"] == "approval_decided" && r["approval"] == id)
        .expect("the decision is recorded")
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn remote_approvers_sign_in_with_a_token_and_see_requests_pushed() {
    let dir = TempDir::new("tollgate-approvals-http").expect("temp dir");
    let web = WebBed::start("remote_approvers_sign_in_with_a_token", &dir);
    let grey = web.token("dr-grey", &[APPROVER_GROUP, "clinicians"]);

    // The page needs no token and allows no script but its own; the API needs one.
    let page = web.request("GET", "/", None, None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Tollgate"), "{}", page.body);
    assert!(page.head.contains("script-src 'self'"), "{}", page.head);
    let anonymous = web.request("GET", "/api/approvals", None, None);
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous.head.contains("WWW-Authenticate: Bearer"),
        "{}",
        anonymous.head
    );
    let now = jsonwebtoken::get_current_timestamp();
    let expired = web.key.sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "dr-grey", "exp": now - 600, "groups": [APPROVER_GROUP],
    }));
    let refused = web.request("GET", "/api/approvals", Some(&expired), None);
    assert_eq!(refused.status, 401);
    assert!(refused.json()["error"]
        .as_str()
        .unwrap_or_default()
        .contains("expired"));
    let forged = SigningKey::new("approvers-1").sign(&json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 600, "groups": [APPROVER_GROUP],
    }));
    assert_eq!(
        web.request("GET", "/api/approvals", Some(&forged), None)
            .status,
        401
    );
    let clerk = web.token("clerk-1", &["billing"]);
    let not_approver = web.request("GET", "/api/approvals", Some(&clerk), None);
    assert_eq!(not_approver.status, 403);
    assert!(
        not_approver.body.contains("clerk-1 is not an approver"),
        "{}",
        not_approver.body
    );

    // A stream opened before anything waits is told the moment something does.
    let mut events = web.events(&grey);
    let (name, snapshot) = events.next();
    assert_eq!(
        (name.as_str(), &snapshot["pending"]),
        ("snapshot", &json!([]))
    );
    let agent = spawn_agent(&web.bed, "UPDATE patients SET zip = '55555' WHERE id = 2");
    let (name, waiting) = events.next();
    assert_eq!(name, "waiting", "{waiting}");
    assert_eq!(
        waiting["statement"],
        "UPDATE patients SET zip = ? WHERE id = ?"
    );
    assert_eq!(waiting["requester"]["actor"]["pid"], agent.id());
    let id = waiting["id"].as_u64().expect("id");
    let shown = web.request("GET", &format!("/api/approvals/{id}"), Some(&grey), None);
    assert_eq!(shown.status, 200);
    assert!(!shown.body.contains("55555"), "no literal: {}", shown.body);

    // The clerk may not decide; a hash of another request is refused; then dr-grey approves.
    let by_clerk = web.request(
        "POST",
        &format!("/api/approvals/{id}/approve"),
        Some(&clerk),
        None,
    );
    assert_eq!(by_clerk.status, 403);
    let wrong_hash = json!({ "hash": "00".repeat(32) });
    let mismatch = web.request(
        "POST",
        &format!("/api/approvals/{id}/approve"),
        Some(&grey),
        Some(&wrong_hash),
    );
    assert_eq!(mismatch.status, 409, "{}", mismatch.body);
    assert!(mismatch.body.contains("hash differs"), "{}", mismatch.body);
    let approve = json!({ "reason": "ticket 7", "hash": waiting["request_hash"] });
    let approved = web.request(
        "POST",
        &format!("/api/approvals/{id}/approve"),
        Some(&grey),
        Some(&approve),
    );
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.json()["approved"], id);
    let again = web.request(
        "POST",
        &format!("/api/approvals/{id}/approve"),
        Some(&grey),
        Some(&approve),
    );
    assert_eq!(again.status, 404, "decided already: {}", again.body);
    let (name, gone) = events.next();
    assert_eq!((name.as_str(), &gone["id"]), ("gone", &json!(id)));
    let output = finished(agent);
    assert!(output.status.success(), "{}", output_text(&output));
    let decided = decision_record(&web.bed, id);
    assert_eq!(decided["outcome"], "approved");
    assert_eq!(decided["approver_subject"], "dr-grey");
    assert_eq!(decided["reason"], "ticket 7");

    // A denial over the API reaches the agent with its reason.
    let agent = spawn_agent(&web.bed, "DELETE FROM patients WHERE id = 2");
    let (_, waiting) = events.next();
    let id = waiting["id"].as_u64().expect("id");
    let no_reason = web.request(
        "POST",
        &format!("/api/approvals/{id}/deny"),
        Some(&grey),
        None,
    );
    assert_eq!(
        no_reason.status, 400,
        "a denial needs a reason: {}",
        no_reason.body
    );
    let deny = json!({ "reason": "not in scope of ticket 7" });
    let denied = web.request(
        "POST",
        &format!("/api/approvals/{id}/deny"),
        Some(&grey),
        Some(&deny),
    );
    assert_eq!(denied.status, 200, "{}", denied.body);
    let output = finished(agent);
    assert!(!output.status.success());
    let text = output_text(&output);
    assert!(
        text.contains("42501") && text.contains("not in scope of ticket 7"),
        "{text}"
    );
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF, PostgreSQL and Chromium (run with `cargo xtask test`)"]
fn the_web_page_approves_and_denies_in_a_browser() {
    let dir = TempDir::new("tollgate-approvals-web").expect("temp dir");
    let web = WebBed::start("the_web_page_approves_and_denies", &dir);
    let mut browser = Browser::start().expect("headless chromium");
    browser.open(&web.url()).expect("the page loads");
    shot(&mut browser, "1-sign-in.png");

    browser
        .type_into("#token", &web.token("dr-grey", &[APPROVER_GROUP]))
        .expect("type the token");
    browser.click("#sign-in-button").expect("sign in");
    browser
        .wait_for(
            "document.getElementById('live').textContent === 'live'",
            Duration::from_secs(10),
        )
        .expect("the page is live");
    assert_eq!(
        browser
            .eval("document.getElementById('who').textContent")
            .expect("who"),
        json!("signed in as dr-grey")
    );

    // A request that starts waiting now appears without a reload. The statement carries
    // markup in an identifier: it must be shown as text, never run.
    let agent = spawn_agent(
        &web.bed,
        "UPDATE patients SET zip = '11111' WHERE id = 1 RETURNING id AS \"<img src=x onerror=document.title='owned'>\"",
    );
    let id = the_waiting_request(&web.bed)["id"].as_u64().expect("id");
    let card = wait_for_card(&mut browser, id);
    let statement = browser
        .eval(&format!(
            "document.querySelector('{card} .statement').textContent"
        ))
        .expect("statement");
    assert!(
        statement
            .as_str()
            .unwrap_or_default()
            .contains("<img src=x"),
        "{statement}"
    );
    assert!(
        !statement.to_string().contains("11111"),
        "no literal: {statement}"
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('img').length")
            .expect("imgs"),
        json!(0)
    );
    assert_ne!(
        browser.eval("document.title").expect("title"),
        json!("owned")
    );
    let facts = browser
        .eval(&format!(
            "document.querySelector('{card} .facts').textContent"
        ))
        .expect("facts");
    assert!(
        facts.as_str().unwrap_or_default().contains("psql"),
        "the process: {facts}"
    );
    shot(&mut browser, "2-waiting.png");

    decide_on_page(&mut browser, id, "approve", Some("ticket 11"));
    let output = finished(agent);
    assert!(
        output.status.success(),
        "approved from the page: {}",
        output_text(&output)
    );
    assert_eq!(zip(&web.bed), "11111");
    browser
        .wait_for(
            &format!("!document.querySelector('{card}')"),
            Duration::from_secs(10),
        )
        .expect("the decided request leaves the page");
    shot(&mut browser, "3-approved.png");

    // Deny: without a reason the page says so and nothing is sent; with one, the agent is told.
    let agent = spawn_agent(&web.bed, "DELETE FROM patients WHERE id = 1");
    let id = the_waiting_request(&web.bed)["id"].as_u64().expect("id");
    let card = wait_for_card(&mut browser, id);
    decide_on_page(&mut browser, id, "deny", None);
    browser
        .wait_for(
            &format!("document.querySelector('{card} .card-error').textContent.includes('needs a reason')"),
            Duration::from_secs(5),
        )
        .expect("a denial without a reason is refused on the page");
    assert_eq!(listed(&web.bed).len(), 1, "still waiting");
    shot(&mut browser, "4-deny-needs-reason.png");
    decide_on_page(&mut browser, id, "deny", Some("no deletes of patients"));
    let output = finished(agent);
    let text = output_text(&output);
    assert!(
        !output.status.success() && text.contains("no deletes of patients"),
        "{text}"
    );
    browser
        .wait_for(
            "document.getElementById('empty').hidden === false",
            Duration::from_secs(10),
        )
        .expect("nothing waits any more");
    shot(&mut browser, "5-denied.png");
    wait_for_decision(&web.bed, &id.to_string(), "denied");
    let decided = decision_record(&web.bed, id);
    assert_eq!(decided["approver_subject"], "dr-grey");
}
