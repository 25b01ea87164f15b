//! Privileged end-to-end tests of just-in-time approvals: a real psql agent's statement waits
//! on its open connection while nothing reaches the server, and continues the moment an
//! approver runs `tollgate approvals approve` as another local user; a denial fails it with
//! the approver's reason; the agent's own uid and users who are not approvers are refused by
//! the admin socket; every step is in the audit log.

mod common;
#[path = "approvals/web.rs"]
mod web;

use std::{
    os::unix::process::CommandExt,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{output_text, pg_bed_with, PgBed, PATIENTS_POLICY, TOLLGATE};
use serde_json::Value;
use xtask::testbed::{write_catalog_credentials, TempDir};

/// The approver: Debian's `nobody`. The agents run as root, which is an approver too, so
/// that the self-approval check is what refuses it.
const APPROVER_UID: u32 = 65534;
/// A local user who is not an approver: Debian's `daemon`.
const OTHER_UID: u32 = 1;

/// Reads of `patients` wait too, on top of the shared policy's held writes: what an approved
/// read returns must still be masked.
const HELD_READS: &str = r#"
[[rules]]
id = "approve-phi-reads"
effect = "require_approval"
kinds = ["select"]
tables = ["public.patients"]
"#;

fn approvals_bed(test: &str, dir: &TempDir) -> PgBed {
    let approvers = ["approver_users = [\"nobody\", \"root\"]"];
    approvals_bed_with(test, dir, PATIENTS_POLICY, &approvers)
}

/// [`approvals_bed`] with these `[approvals]` lines (a 120 s timeout unless they say).
fn approvals_bed_with(test: &str, dir: &TempDir, policy: &str, approvals: &[&str]) -> PgBed {
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy).expect("write policy");
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials).expect("catalog credentials");
    let bed = pg_bed_with(test, "-c log_statement=all", |config| {
        config.enforce_policy("clinic", &policy_file, &credentials);
        config.approvals = approvals.iter().map(|line| line.to_string()).collect();
        if !approvals.iter().any(|line| line.starts_with("timeout_s")) {
            config.approvals.push("timeout_s = 120".to_owned());
        }
    });
    bed.pg
        .psql_direct(
            "CREATE TABLE patients (id int PRIMARY KEY, full_name text, ssn text, zip text);
             INSERT INTO patients VALUES (1, 'Ada Lovelace', '123-45-6789', '02139');
             INSERT INTO patients VALUES (2, 'Alan Turing', '987-65-4321', '10001');",
        )
        .expect("schema");
    bed
}

/// psql as an agent, started and left running (its statement may wait).
fn spawn_agent(bed: &PgBed, sql: &str) -> Child {
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        bed.pg.port()
    );
    let mut command = bed.agents.command("psql");
    command
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "VERBOSITY=verbose",
            "-d",
            &conninfo,
            "-c",
            sql,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("spawn psql")
}

/// `tollgate approvals ARGS --config ...` as `uid`.
fn approvals_as(bed: &PgBed, uid: u32, args: &[&str]) -> Output {
    let mut command = Command::new(TOLLGATE);
    command
        .arg("approvals")
        .args(args)
        .arg("--config")
        .arg(bed.gateway.config_path());
    if uid != 0 {
        command.uid(uid).gid(uid);
    }
    command.output().expect("tollgate approvals")
}

/// The one request waiting, as the approver lists it (bounded wait).
fn the_waiting_request(bed: &PgBed) -> Value {
    waiting_requests(bed, 1).remove(0)
}

/// Once `count` requests wait: all of them, oldest first (bounded wait).
fn waiting_requests(bed: &PgBed, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = listed(bed);
        if pending.len() >= count {
            return pending;
        }
        assert!(
            Instant::now() < deadline,
            "{count} requests never waited: {} did, ids {:?}; decided: {:?}",
            pending.len(),
            pending.iter().map(|p| &p["id"]).collect::<Vec<_>>(),
            decisions(bed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn listed(bed: &PgBed) -> Vec<Value> {
    let output = approvals_as(bed, APPROVER_UID, &["list", "--json"]);
    assert!(
        output.status.success(),
        "approvals list: {}",
        output_text(&output)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    answer["pending"].as_array().cloned().unwrap_or_default()
}

fn id_of(pending: &Value) -> String {
    pending["id"].as_u64().expect("an id").to_string()
}

/// The approval_decided records, as (approval id, outcome).
fn decisions(bed: &PgBed) -> Vec<(u64, String)> {
    (bed.gateway.audit_records().iter())
        .filter(|r| r["kind"] == "approval_decided")
        .map(|r| {
            let outcome = r["outcome"].as_str().unwrap_or_default().to_owned();
            (r["approval"].as_u64().unwrap_or_default(), outcome)
        })
        .collect()
}

/// Waits (bounded) until the audit log has decided `id` with `outcome`.
fn wait_for_decision(bed: &PgBed, id: &str, outcome: &str) {
    let id: u64 = id.parse().expect("an id");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !decisions(bed).contains(&(id, outcome.to_owned())) {
        assert!(
            Instant::now() < deadline,
            "approval {id} never recorded as {outcome}: {:?}",
            decisions(bed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finished(child: Child) -> Output {
    child.wait_with_output().expect("psql output")
}

fn zip(bed: &PgBed) -> String {
    bed.pg
        .psql_direct("SELECT zip FROM patients WHERE id = 1")
        .expect("query")
        .trim()
        .to_owned()
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_held_statement_waits_for_an_approver_and_then_runs() {
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let bed = approvals_bed("a_held_statement_waits_for_an_approver", &dir);
    let agent = spawn_agent(&bed, "UPDATE patients SET zip = '99999' WHERE id = 1");
    let agent_pid = agent.id();
    let pending = the_waiting_request(&bed);
    let id = pending["id"].as_u64().expect("an id").to_string();
    // What the approver sees: who, what (no literal), the rule.
    assert_eq!(pending["rule"], "approve-phi-writes");
    assert_eq!(
        pending["statement"],
        "UPDATE patients SET zip = ? WHERE id = ?"
    );
    assert_eq!(pending["tables"], serde_json::json!(["patients"]));
    assert_eq!(pending["requester"]["actor"]["pid"], agent_pid);
    assert_eq!(pending["requester"]["actor"]["uid"], 0);
    // The planner's estimate, asked without the values: one row by primary key.
    assert_eq!(pending["row_estimate"], 1, "{pending}");
    let shown = approvals_as(&bed, APPROVER_UID, &["show", &id]);
    let shown_text = output_text(&shown);
    assert!(shown.status.success(), "{shown_text}");
    assert!(
        !shown_text.contains("99999"),
        "no literal is shown: {shown_text}"
    );
    assert!(
        shown_text.contains("psql"),
        "the process is named: {shown_text}"
    );
    // Nothing has reached the server yet.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(zip(&bed), "02139", "nothing ran before approval");
    let log = bed.pg.server_log().expect("server log");
    assert!(
        !log.contains("'99999'"),
        "the held statement reached the server:\n{log}"
    );

    // Refused: a user who is not an approver, and the agent's own uid.
    let other = approvals_as(&bed, OTHER_UID, &["approve", &id]);
    assert!(!other.status.success());
    assert!(
        output_text(&other).contains("is not an approver"),
        "{}",
        output_text(&other)
    );
    let own = approvals_as(&bed, 0, &["approve", &id]);
    assert!(!own.status.success());
    assert!(
        output_text(&own).contains("cannot approve it"),
        "self-approval: {}",
        output_text(&own)
    );

    let approved = approvals_as(
        &bed,
        APPROVER_UID,
        &["approve", &id, "--reason", "ticket 42"],
    );
    assert!(approved.status.success(), "{}", output_text(&approved));
    let output = finished(agent);
    assert!(
        output.status.success(),
        "the agent continues: {}",
        output_text(&output)
    );
    assert!(output_text(&output).contains("waits for a person's approval"));
    assert_eq!(zip(&bed), "99999", "the approved statement ran");

    let records = bed.gateway.audit_records();
    let requested = records
        .iter()
        .find(|r| r["kind"] == "approval_requested")
        .expect("the hold is recorded");
    assert_eq!(
        requested["statement"],
        "UPDATE patients SET zip = ? WHERE id = ?"
    );
    let outcomes: Vec<(&Value, &Value)> = records
        .iter()
        .filter(|r| r["kind"] == "approval_decided")
        .map(|r| (&r["outcome"], &r["approver"]))
        .collect();
    assert_eq!(
        outcomes,
        [(&Value::from("approved"), &Value::from("nobody"))]
    );

    // The session's timeline says it waited, and who let it run.
    let sessions = tollgate(&bed, &["sessions", "list", "--json"]);
    let sessions: Value = serde_json::from_slice(&sessions.stdout).expect("JSON");
    let session = (sessions.as_array().into_iter().flatten())
        .find(|s| s["actor"]["pid"] == agent_pid)
        .expect("the agent's session");
    let id = session["id"].to_string();
    let shown = output_text(&tollgate(&bed, &["sessions", "show", &id]));
    assert!(
        shown.contains("held for approval") && shown.contains("approved by nobody: ticket 42"),
        "{shown}"
    );
}

fn tollgate(bed: &PgBed, args: &[&str]) -> Output {
    let output = Command::new(TOLLGATE)
        .args(args)
        .arg("--config")
        .arg(bed.gateway.config_path())
        .output()
        .expect("tollgate");
    assert!(
        output.status.success(),
        "tollgate {args:?}: {}",
        output_text(&output)
    );
    output
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_denied_statement_fails_with_the_reason_and_never_runs() {
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let bed = approvals_bed("a_denied_statement_fails_with_the_reason", &dir);
    let agent = spawn_agent(&bed, "DELETE FROM patients WHERE id = 1");
    let pending = the_waiting_request(&bed);
    let id = pending["id"].as_u64().expect("an id").to_string();
    let no_reason = approvals_as(&bed, APPROVER_UID, &["deny", &id, "--reason", " "]);
    assert!(!no_reason.status.success(), "a denial needs a reason");
    let denied = approvals_as(
        &bed,
        APPROVER_UID,
        &["deny", &id, "--reason", "not in scope"],
    );
    assert!(denied.status.success(), "{}", output_text(&denied));
    let output = finished(agent);
    let text = output_text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("ERROR:  42501:") && text.contains("denied by nobody: not in scope"),
        "{text}"
    );
    assert_eq!(zip(&bed), "02139", "nothing was deleted");
    // The server saw the statement only as the estimate's parameterised shape, never run.
    let log = bed.pg.server_log().expect("server log");
    let shape = "PREPARE tollgate_estimate AS DELETE FROM patients WHERE id = $1";
    assert!(
        (log.lines())
            .filter(|line| line.contains("DELETE FROM patients"))
            .all(|line| line.contains(shape)),
        "it reached the server:\n{log}"
    );
    let after = approvals_as(&bed, APPROVER_UID, &["approve", &id]);
    assert!(
        output_text(&after).contains("no request"),
        "a decided request cannot be decided again: {}",
        output_text(&after)
    );
}

/// tokio-postgres and psycopg (extended protocol, parameters bound) wait and continue too.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn drivers_wait_for_approval_and_continue() {
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let bed = approvals_bed("drivers_wait_for_approval_and_continue", &dir);
    let port = bed.pg.port().to_string();
    let xtask = common::xtask_binary();
    let mut tokio_agent = bed.agents.command(&xtask.display().to_string());
    tokio_agent
        .args(["pg-client", "--port", &port, "held-update"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let tokio_agent = tokio_agent.spawn().expect("xtask pg-client");
    let script = format!(
        "import psycopg\n\
         with psycopg.connect('host=127.0.0.1 port={port} user=postgres dbname=postgres') as c:\n\
         \x20   cur = c.execute('UPDATE patients SET zip = %s WHERE id = %s', ('88888', 2))\n\
         \x20   print('updated', cur.rowcount)\n"
    );
    let mut psycopg_agent = bed.agents.command("/usr/bin/python3");
    psycopg_agent
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let psycopg_agent = psycopg_agent.spawn().expect("python3 (psycopg)");
    let pending = waiting_requests(&bed, 2);
    for request in &pending {
        assert_eq!(
            request["statement"],
            "UPDATE patients SET zip = $1 WHERE id = $2"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(zip(&bed), "02139", "nothing ran before approval");
    for request in &pending {
        let approved = approvals_as(&bed, APPROVER_UID, &["approve", &id_of(request)]);
        assert!(approved.status.success(), "{}", output_text(&approved));
    }
    let tokio_output = finished(tokio_agent);
    assert!(
        tokio_output.status.success(),
        "tokio-postgres: {}",
        output_text(&tokio_output)
    );
    assert!(stdout_text(&tokio_output).contains("ok held-update"));
    let psycopg_output = finished(psycopg_agent);
    assert!(
        psycopg_output.status.success(),
        "psycopg: {}",
        output_text(&psycopg_output)
    );
    assert_eq!(stdout_text(&psycopg_output).trim(), "updated 1");
    let zips = bed
        .pg
        .psql_direct("SELECT string_agg(zip, ',' ORDER BY id) FROM patients")
        .expect("query");
    assert_eq!(zips.trim(), "77777,88888");
}

fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Ctrl-C in psql (a CancelRequest on a new connection) withdraws the waiting statement; a
/// client killed while it waits withdraws it too. Both are recorded.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_cancelled_or_abandoned_statement_is_withdrawn() {
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let bed = approvals_bed("a_cancelled_or_abandoned_statement_is_withdrawn", &dir);
    let agent = spawn_agent(&bed, "UPDATE patients SET zip = '11111' WHERE id = 1");
    let id = id_of(&the_waiting_request(&bed));
    // psql sends a CancelRequest on SIGINT while a statement runs.
    common::signal(agent.id(), libc::SIGINT);
    let output = finished(agent);
    let text = output_text(&output);
    assert!(
        text.contains("57014") && text.contains("canceling statement due to user request"),
        "{text}"
    );
    wait_for_decision(&bed, &id, "withdrawn");
    assert!(listed(&bed).is_empty(), "nothing waits after the cancel");

    let agent = spawn_agent(&bed, "UPDATE patients SET zip = '22222' WHERE id = 1");
    let id = id_of(&the_waiting_request(&bed));
    common::signal(agent.id(), libc::SIGKILL);
    let _ = finished(agent);
    wait_for_decision(&bed, &id, "withdrawn");
    assert!(
        listed(&bed).is_empty(),
        "nothing waits after the client died"
    );
    assert_eq!(zip(&bed), "02139", "neither ran");
}

/// `required = 2`: one approver is not enough, the same one twice counts once, a second one
/// lets it run. `--for` grants the same statement shape (other literals) without waiting,
/// each use recorded, until the grant expires.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn two_approvers_and_a_grant_that_expires() {
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let bed = approvals_bed_with(
        "two_approvers_and_a_grant_that_expires",
        &dir,
        PATIENTS_POLICY,
        &["approver_users = [\"nobody\", \"daemon\"]", "required = 2"],
    );
    let agent = spawn_agent(&bed, "UPDATE patients SET zip = '33333' WHERE id = 1");
    let id = id_of(&the_waiting_request(&bed));
    let first = approvals_as(&bed, APPROVER_UID, &["approve", &id]);
    assert!(
        output_text(&first).contains("1 of 2"),
        "{}",
        output_text(&first)
    );
    let again = approvals_as(&bed, APPROVER_UID, &["approve", &id]);
    assert!(!again.status.success(), "the same approver counts once");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(zip(&bed), "02139", "one approval of two runs nothing");
    let second = approvals_as(&bed, OTHER_UID, &["approve", &id, "--for", "4s"]);
    assert!(second.status.success(), "{}", output_text(&second));
    assert!(
        output_text(&second).contains("grant"),
        "{}",
        output_text(&second)
    );
    let output = finished(agent);
    assert!(output.status.success(), "{}", output_text(&output));
    assert_eq!(zip(&bed), "33333");

    // The same shape with other values runs at once under the grant.
    let granted = finished(spawn_agent(
        &bed,
        "UPDATE patients SET zip = '44444' WHERE id = 2",
    ));
    assert!(granted.status.success(), "{}", output_text(&granted));
    assert!(!output_text(&granted).contains("waits for a person's approval"));
    let grants = approvals_as(&bed, APPROVER_UID, &["grants"]);
    assert!(
        output_text(&grants).contains("UPDATE patients SET zip = ? WHERE id = ?"),
        "{}",
        output_text(&grants)
    );
    let uses = (bed.gateway.audit_records().iter())
        .filter(|r| r["kind"] == "grant_used")
        .count();
    assert_eq!(uses, 1, "the grant's use is recorded");

    // Once expired, the shape waits again.
    std::thread::sleep(Duration::from_secs(4));
    let agent = spawn_agent(&bed, "UPDATE patients SET zip = '55555' WHERE id = 2");
    let id = id_of(&the_waiting_request(&bed));
    let denied = approvals_as(&bed, APPROVER_UID, &["deny", &id, "--reason", "expired"]);
    assert!(denied.status.success(), "{}", output_text(&denied));
    assert!(!finished(agent).status.success());
    let zips = bed
        .pg
        .psql_direct("SELECT string_agg(zip, ',' ORDER BY id) FROM patients")
        .expect("query");
    assert_eq!(zips.trim(), "33333,44444", "the denied one did not run");
}

/// A hundred agents wait at once; each is listed and approved, and each then completes.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_hundred_requests_wait_at_once() {
    const AGENTS: usize = 100;
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let bed = approvals_bed("a_hundred_requests_wait_at_once", &dir);
    let agents: Vec<Child> = (0..AGENTS)
        .map(|n| {
            let sql = format!("UPDATE patients SET zip = '{n:05}' WHERE id = 1");
            spawn_agent(&bed, &sql)
        })
        .collect();
    let pending = waiting_requests(&bed, AGENTS);
    assert_eq!(pending.len(), AGENTS);
    for request in &pending {
        let approved = approvals_as(&bed, APPROVER_UID, &["approve", &id_of(request)]);
        assert!(approved.status.success(), "{}", output_text(&approved));
    }
    for agent in agents {
        let output = finished(agent);
        assert!(output.status.success(), "{}", output_text(&output));
    }
    assert!(listed(&bed).is_empty());
}

/// A gateway killed while a statement waits: the client gets an error (its connection closes
/// with the gateway), the statement never runs, and the next start records it as abandoned.
/// A clean stop fails what waits at once, saying why.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_restart_fails_what_waits_and_records_why() {
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let mut bed = approvals_bed("a_restart_fails_what_waits", &dir);
    let agent = spawn_agent(&bed, "UPDATE patients SET zip = '66666' WHERE id = 1");
    let id = id_of(&the_waiting_request(&bed));
    bed.gateway.kill9().expect("kill -9 the gateway");
    let output = finished(agent);
    assert!(
        !output.status.success(),
        "the client gets an error: {}",
        output_text(&output)
    );
    bed.gateway.spawn().expect("the gateway starts again");
    wait_for_decision(&bed, &id, "abandoned");
    assert!(listed(&bed).is_empty(), "nothing is resumed");
    assert_eq!(zip(&bed), "02139", "it never ran");

    let agent = spawn_agent(&bed, "UPDATE patients SET zip = '77777' WHERE id = 1");
    let next = id_of(&the_waiting_request(&bed));
    assert!(
        next.parse::<u64>().expect("id") > id.parse::<u64>().expect("id"),
        "ids are not reused"
    );
    bed.gateway.stop().expect("stop the gateway");
    let text = output_text(&finished(agent));
    assert!(
        text.contains("57P01") && text.contains("abandoned"),
        "{text}"
    );
    wait_for_decision(&bed, &next, "abandoned");
    assert_eq!(zip(&bed), "02139");
}

/// A webhook receiver on loopback: answers the first `failures` posts with 500, then 200,
/// and keeps every body it was sent.
struct Receiver {
    port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn start(failures: usize) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, stopping) = (bodies.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut answered = 0;
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then the body its Content-Length announces.
                let body = loop {
                    let Ok(read) = stream.read(&mut chunk) else {
                        break None;
                    };
                    if read == 0 {
                        break None;
                    }
                    request.extend_from_slice(&chunk[..read]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break Some(
                            String::from_utf8_lossy(&request[end + 4..end + 4 + length])
                                .into_owned(),
                        );
                    }
                };
                let Some(body) = body else { continue };
                kept.lock().expect("bodies").push(body);
                answered += 1;
                let status = if answered <= failures {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
                    .as_bytes(),
                );
            }
        });
        Self { port, bodies, stop }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("bodies").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The webhook is told when a request starts waiting, retried after a failure, with a
/// Slack-compatible `text` and no literal value.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_webhook_is_told_what_waits_and_retried() {
    let receiver = Receiver::start(1);
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let url = format!(
        "webhook_url = \"http://127.0.0.1:{}/hooks/approvals\"",
        receiver.port
    );
    let bed = approvals_bed_with(
        "a_webhook_is_told_what_waits_and_retried",
        &dir,
        PATIENTS_POLICY,
        &["approver_users = [\"nobody\"]", &url],
    );
    let agent = spawn_agent(&bed, "UPDATE patients SET zip = '12345' WHERE id = 1");
    let id = id_of(&the_waiting_request(&bed));
    let deadline = Instant::now() + Duration::from_secs(15);
    while receiver.bodies().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the webhook was not retried: {:?}",
            receiver.bodies()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let bodies = receiver.bodies();
    assert_eq!(bodies[0], bodies[1], "the retry sends the same notice");
    let notice: Value = serde_json::from_str(&bodies[1]).expect("JSON");
    let text = notice["text"].as_str().expect("a Slack-compatible text");
    assert!(
        text.contains(&format!("request {id} waits"))
            && text.contains("tollgate approvals approve"),
        "{text}"
    );
    assert_eq!(
        notice["approval"]["statement"],
        "UPDATE patients SET zip = ? WHERE id = ?"
    );
    assert!(
        !bodies[1].contains("12345"),
        "no literal value: {}",
        bodies[1]
    );
    let approved = approvals_as(&bed, APPROVER_UID, &["approve", &id]);
    assert!(approved.status.success(), "{}", output_text(&approved));
    assert!(finished(agent).status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.bodies().len(), 2, "delivered once it succeeded");
}

/// An approved read runs with its PHI masked as an allowed one's would be: approval lets the
/// statement run, it does not unmask what it returns (values, and values computed from them).
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn an_approved_read_returns_its_phi_masked() {
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let policy = format!("{PATIENTS_POLICY}{HELD_READS}");
    let approvers = ["approver_users = [\"nobody\"]"];
    let bed = approvals_bed_with(
        "an_approved_read_returns_its_phi_masked",
        &dir,
        &policy,
        &approvers,
    );
    let agent = spawn_agent(
        &bed,
        "SELECT id, full_name, ssn, upper(ssn) FROM patients ORDER BY id",
    );
    let pending = the_waiting_request(&bed);
    assert_eq!(pending["rule"], "approve-phi-reads");
    let approved = approvals_as(&bed, APPROVER_UID, &["approve", &id_of(&pending)]);
    assert!(approved.status.success(), "{}", output_text(&approved));
    let output = finished(agent);
    let text = output_text(&output);
    assert!(output.status.success(), "{text}");
    let printed = stdout_text(&output);
    let rows: Vec<&str> = printed.lines().map(str::trim).collect();
    assert_eq!(rows.len(), 2, "both rows come back: {text}");
    assert!(
        rows[0].starts_with("1|") && rows[1].starts_with("2|"),
        "{text}"
    );
    for value in [
        "Ada Lovelace",
        "123-45-6789",
        "Alan Turing",
        "987-65-4321",
        "123-45",
    ] {
        assert!(!text.contains(value), "{value} reached the agent: {text}");
    }
}

/// A `rows_over` rule holds what the planner expects to be large (here, a thousand patients
/// after ANALYZE) and lets small reads run at once; either way, the PHI comes back masked.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_read_the_planner_expects_to_be_large_waits_and_a_small_one_runs() {
    const LARGE_READS: &str = r#"
[[rules]]
id = "approve-large-phi-reads"
effect = "require_approval"
kinds = ["select"]
tables = ["public.patients"]
rows_over = 100
"#;
    let dir = TempDir::new("tollgate-approvals").expect("temp dir");
    let policy = format!("{PATIENTS_POLICY}{LARGE_READS}");
    let approvers = ["approver_users = [\"nobody\"]"];
    let bed = approvals_bed_with("a_read_the_planner_expects", &dir, &policy, &approvers);
    bed.pg
        .psql_direct(
            "INSERT INTO patients SELECT g, 'Patient ' || g, lpad(g::text, 9, '7'), '02139'
               FROM generate_series(3, 1000) AS g;
             ANALYZE patients;",
        )
        .expect("a thousand patients");

    let small = finished(spawn_agent(
        &bed,
        "SELECT full_name, ssn FROM patients WHERE id = 1",
    ));
    let text = output_text(&small);
    assert!(small.status.success(), "{text}");
    assert!(
        !text.contains("waits for a person's approval"),
        "one row by key runs at once: {text}"
    );
    assert!(
        !text.contains("Ada Lovelace") && !text.contains("123-45-6789"),
        "masked: {text}"
    );
    assert!(listed(&bed).is_empty());
    // Bound parameters (psycopg, extended protocol) are planned alike.
    let script = format!(
        "import psycopg\n\
         with psycopg.connect('host=127.0.0.1 port={} user=postgres dbname=postgres') as c:\n\
         \x20   print(c.execute('SELECT ssn FROM patients WHERE id = %s', (2,)).fetchone()[0])\n",
        bed.pg.port()
    );
    let mut psycopg = bed.agents.command("/usr/bin/python3");
    let psycopg = psycopg.args(["-c", &script]).output().expect("psycopg");
    let text = output_text(&psycopg);
    assert!(psycopg.status.success(), "{text}");
    assert!(!text.contains("987-65-4321"), "masked: {text}");
    assert!(listed(&bed).is_empty(), "a small bound read never waited");
    // What the generic plan underestimates (a range it cannot see) runs, cut at the limit.
    let underestimated = finished(spawn_agent(
        &bed,
        "SELECT ssn FROM patients WHERE id BETWEEN 1 AND 1000",
    ));
    let text = output_text(&underestimated);
    assert!(underestimated.status.success(), "{text:.300}");
    assert_eq!(
        stdout_text(&underestimated).lines().count(),
        100,
        "{text:.300}"
    );
    assert!(
        text.contains("truncated to 100 rows by policy rule \"approve-large-phi-reads\""),
        "the agent is told: {text:.600}"
    );
    assert!(listed(&bed).is_empty());

    let agent = spawn_agent(&bed, "SELECT full_name, ssn FROM patients WHERE id > 10");
    let pending = the_waiting_request(&bed);
    assert_eq!(pending["rule"], "approve-large-phi-reads");
    // The generic plan knows no value: a range over the key is a third of the table.
    assert_eq!(pending["row_estimate"], 333, "{pending}");
    let approved = approvals_as(&bed, APPROVER_UID, &["approve", &id_of(&pending)]);
    assert!(approved.status.success(), "{}", output_text(&approved));
    let output = finished(agent);
    let text = output_text(&output);
    assert!(output.status.success(), "{text}");
    assert_eq!(
        stdout_text(&output).lines().count(),
        990,
        "every row: {text:.300}"
    );
    assert!(
        !text.contains("Patient 11") && !text.contains("777777711"),
        "masked: {text:.300}"
    );
}
