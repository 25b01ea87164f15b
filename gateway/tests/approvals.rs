//! Privileged end-to-end tests of just-in-time approvals: a real psql agent's statement waits
//! on its open connection while nothing reaches the server, and continues the moment an
//! approver runs `tollgate approvals approve` as another local user; a denial fails it with
//! the approver's reason; the agent's own uid and users who are not approvers are refused by
//! the admin socket; every step is in the audit log.

mod common;

use std::{
    os::unix::process::CommandExt,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{output_text, pg_bed_with, PgBed, TOLLGATE};
use serde_json::Value;
use xtask::testbed::{write_catalog_credentials, TempDir};

/// The approver: Debian's `nobody`. The agents run as root, which is an approver too, so
/// that the self-approval check is what refuses it.
const APPROVER_UID: u32 = 65534;
/// A local user who is not an approver: Debian's `daemon`.
const OTHER_UID: u32 = 1;

const POLICY: &str = r#"
version = 1

[[identities]]
id = "agents"
cgroup = ["*tollgate-pg-*"]

[[classify]]
table = "public.patients"
columns = { full_name = "name", ssn = "ssn" }

[[rules]]
id = "approve-phi-writes"
effect = "require_approval"
kinds = ["update", "delete"]
tables = ["public.patients"]

[[rules]]
id = "agents-work"
effect = "allow"
identities = ["agents"]
"#;

fn approvals_bed(test: &str, dir: &TempDir) -> PgBed {
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, POLICY).expect("write policy");
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials).expect("catalog credentials");
    let bed = pg_bed_with(test, "-c log_statement=all", |config| {
        config.enforce_policy("clinic", &policy_file, &credentials);
        config.approvals = vec![
            "approver_users = [\"nobody\", \"root\"]".to_owned(),
            "timeout_s = 120".to_owned(),
        ];
    });
    bed.pg
        .psql_direct(
            "CREATE TABLE patients (id int PRIMARY KEY, full_name text, ssn text, zip text);
             INSERT INTO patients VALUES (1, 'Ada Lovelace', '123-45-6789', '02139');",
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
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let output = approvals_as(bed, APPROVER_UID, &["list", "--json"]);
        assert!(
            output.status.success(),
            "approvals list: {}",
            output_text(&output)
        );
        let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        if let Some(pending) = answer["pending"].as_array().and_then(|p| p.first()) {
            return pending.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no request ever waited: {answer}"
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
    let log = bed.pg.server_log().expect("server log");
    assert!(
        !log.contains("DELETE FROM patients"),
        "it reached the server:\n{log}"
    );
    let after = approvals_as(&bed, APPROVER_UID, &["approve", &id]);
    assert!(
        output_text(&after).contains("no request"),
        "a decided request cannot be decided again: {}",
        output_text(&after)
    );
}
