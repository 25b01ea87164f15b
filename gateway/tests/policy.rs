//! Privileged end-to-end tests of the policy on the request path, against a real PostgreSQL
//! with synthetic patients and real clients as agents: denials name their rule and never reach
//! the server, sessions stay usable with PostgreSQL's own transaction state, identities no rule
//! names get nothing, and policy edits take effect without a restart.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{agent_psql, output_text, pg_bed_with, PgBed, PATIENTS_POLICY as POLICY};
use xtask::testbed::{write_catalog_credentials, TempDir};

struct PolicyBed {
    bed: PgBed,
    dir: TempDir,
}

impl PolicyBed {
    fn policy_file(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }
}

/// A cluster with `patients` (classified) and `clinics`, the gateway enforcing `policy`.
fn policy_bed(test: &str, policy: &str) -> PolicyBed {
    let dir = TempDir::new("tollgate-policy").expect("temp dir");
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy).expect("write policy");
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials).expect("catalog credentials");
    // Every statement the server runs is logged: denied ones must not be there.
    let bed = pg_bed_with(test, "-c log_statement=all", |config| {
        config.enforce_policy("clinic", &policy_file, &credentials)
    });
    bed.pg
        .psql_direct(
            "CREATE TABLE patients (id int PRIMARY KEY, full_name text, ssn text, zip text);
             INSERT INTO patients VALUES (1, 'Ada Lovelace', '123-45-6789', '02139');
             CREATE TABLE clinics (id int PRIMARY KEY, city text);
             INSERT INTO clinics VALUES (1, 'Boston');",
        )
        .expect("schema");
    PolicyBed { bed, dir }
}

fn conninfo(bed: &PgBed) -> String {
    format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        bed.pg.port()
    )
}

/// psql as an agent running a script (several commands, errors do not stop it).
fn agent_script(bed: &PgBed, script: &str) -> std::process::Output {
    let mut command = bed.agents.command("psql");
    command.args([
        "-X",
        "-A",
        "-t",
        "-v",
        "VERBOSITY=verbose",
        "-d",
        &conninfo(bed),
    ]);
    command.args(["-c", script]);
    command.output().expect("psql")
}

fn server_log(bed: &PgBed) -> String {
    bed.pg.server_log().expect("the test cluster's server log")
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn denied_statements_name_their_rule_and_never_reach_the_server() {
    let policy = policy_bed("denied_statements_name_their_rule", POLICY);
    let bed = &policy.bed;
    for (sql, rule) in [
        ("DROP TABLE patients", "deny-ddl-on-phi"),
        ("TRUNCATE public.patients", "deny-ddl-on-phi"),
        ("GRANT ALL ON patients TO PUBLIC", "default-deny"),
        ("SELEC ssn FROM patients", "default-deny"),
    ] {
        let output = agent_script(bed, sql);
        let text = output_text(&output);
        assert!(!output.status.success(), "{sql} must fail: {text}");
        assert!(
            text.contains("ERROR:  42501:") && text.contains(&format!("\"{rule}\"")),
            "{sql}: expected a 42501 naming {rule}: {text}"
        );
    }
    // Held for approval, never given (the test gateway waits 1 s): it times out unrun.
    let output = agent_script(bed, "UPDATE patients SET zip = '00000'");
    let text = output_text(&output);
    assert!(
        text.contains("waits for a person's approval") && text.contains("\"approve-phi-writes\""),
        "the agent is told it waits: {text}"
    );
    assert!(text.contains("ERROR:  57014:"), "it times out: {text}");
    let log = server_log(bed);
    // The held UPDATE reached the server only as the approvers' row estimate asked for it:
    // prepared without its value, and never run (the zip below is unchanged).
    assert!(
        log.contains("PREPARE tollgate_estimate AS UPDATE patients SET zip = $1"),
        "the estimate is asked without the value:\n{log}"
    );
    for forbidden in [
        "DROP TABLE",
        "TRUNCATE",
        "'00000'",
        "GRANT ALL",
        "SELEC ssn",
    ] {
        assert!(
            !log.contains(forbidden),
            "a denied statement reached the server ({forbidden}):\n{log}"
        );
    }
    assert_eq!(
        bed.pg
            .psql_direct("SELECT zip FROM patients")
            .expect("query")
            .trim(),
        "02139",
        "nothing was changed"
    );
    bed.gateway
        .wait_for_statement(Duration::from_secs(5), |s| {
            s["decision"] == "deny" && s["rule"] == "deny-ddl-on-phi"
        })
        .unwrap_or_else(|| {
            panic!(
                "no denial in the audit log: {:?}",
                bed.gateway.statement_records()
            )
        });
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_denial_leaves_the_session_usable_with_postgres_transaction_state() {
    let policy = policy_bed("a_denial_leaves_the_session_usable", POLICY);
    let bed = &policy.bed;
    // Outside a transaction: the next statement runs.
    let output = agent_script(bed, "DROP TABLE patients; ");
    assert!(!output.status.success());
    let script = "SELECT city FROM clinics;\nDROP TABLE patients;\nSELECT 'after';\n";
    let mut command = bed.agents.command("psql");
    command.args(["-X", "-A", "-t", "-d", &conninfo(bed), "-f", "-"]);
    let output = run_with_stdin(command, script);
    let text = output_text(&output);
    assert!(text.contains("Boston") && text.contains("after"), "{text}");
    // Inside one: aborted, as PostgreSQL does after an error, until ROLLBACK.
    let script = "BEGIN;\nSELECT city FROM clinics;\nDROP TABLE patients;\nSELECT 'inside';\nROLLBACK;\nSELECT 'recovered';\n";
    let mut command = bed.agents.command("psql");
    command.args(["-X", "-A", "-t", "-d", &conninfo(bed), "-f", "-"]);
    let output = run_with_stdin(command, script);
    let text = output_text(&output);
    assert!(
        text.contains("current transaction is aborted"),
        "the transaction is aborted after the denial: {text}"
    );
    assert!(!text.contains("inside\n"), "{text}");
    assert!(text.contains("recovered"), "{text}");
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn extended_protocol_denials_skip_to_sync_and_the_session_goes_on() {
    let policy = policy_bed("extended_protocol_denials", POLICY);
    let bed = &policy.bed;
    let script = r#"
import psycopg, sys
conn = psycopg.connect(sys.argv[1], autocommit=True)
try:
    conn.execute("TRUNCATE patients WHERE %s", [1])
except psycopg.Error as e:
    print("denied", e.sqlstate, str(e).strip())
try:
    conn.execute("DROP TABLE patients")
except psycopg.Error as e:
    print("denied", e.sqlstate, str(e).strip())
print("rows", conn.execute("SELECT city FROM clinics WHERE id = %s", [1]).fetchall())
"#;
    let mut command = bed.agents.command("/usr/bin/python3");
    command.args(["-c", script, &conninfo(bed)]);
    let output = command.output().expect("python3");
    let text = output_text(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("denied 42501") && text.contains("deny-ddl-on-phi"),
        "{text}"
    );
    assert!(text.contains("rows [('Boston',)]"), "{text}");
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn an_identity_no_rule_names_gets_nothing() {
    let policy = policy_bed(
        "an_identity_no_rule_names_gets_nothing",
        &POLICY.replace("cgroup = [\"*tollgate-pg-*\"]", "uid = [54321]"),
    );
    let bed = &policy.bed;
    let output = agent_psql(bed, &conninfo(bed), None, "SELECT 1");
    let text = output_text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("no policy rule grants this agent access to target clinic"),
        "{text}"
    );
    assert!(!server_log(bed).contains("SELECT 1"));
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn classified_values_are_masked_and_the_rest_flows() {
    let policy = policy_bed("classified_values_are_masked", POLICY);
    let bed = &policy.bed;
    let clear = agent_psql(
        bed,
        &conninfo(bed),
        None,
        "SELECT id, zip FROM patients; SELECT city FROM clinics",
    );
    assert!(clear.status.success(), "{}", output_text(&clear));
    let text = output_text(&clear);
    assert!(
        text.contains("1|02139") && text.contains("Boston"),
        "{text}"
    );
    for (sql, expected) in [
        ("SELECT ssn FROM patients", "REDACTED"),
        (
            "SELECT upper(full_name) AS harmless FROM patients",
            "REDACTED",
        ),
        ("SELECT * FROM patients", "1|REDACTED|REDACTED|02139"),
        ("SELECT row_to_json(p) FROM patients p", "\"REDACTED\""),
        ("SELECT p::text FROM patients p", "REDACTED"),
    ] {
        let output = agent_psql(bed, &conninfo(bed), None, sql);
        let text = output_text(&output);
        assert!(output.status.success(), "{sql}: {text}");
        assert!(
            !text.contains("123-45-6789") && !text.contains("Ada"),
            "{sql} leaked: {text}"
        );
        assert!(
            text.contains(expected),
            "{sql}: expected {expected}: {text}"
        );
    }
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn policy_edits_apply_without_restart_and_bad_edits_are_refused() {
    let policy = policy_bed("policy_edits_apply_without_restart", POLICY);
    let bed = &policy.bed;
    let query = "SELECT city FROM clinics";
    assert!(agent_psql(bed, &conninfo(bed), None, query)
        .status
        .success());
    // A bad edit: the old policy stays in force.
    std::fs::write(
        policy.policy_file(),
        POLICY.replace("effect = \"allow\"", "effect = \"permit\""),
    )
    .expect("edit");
    let log = bed.log_when("the rejected policy", |log| log.contains("policy.rejected"));
    assert!(
        log.contains("effect \\\"permit\\\"") || log.contains("effect \"permit\""),
        "{log}"
    );
    assert!(agent_psql(bed, &conninfo(bed), None, query)
        .status
        .success());
    // A good edit that takes `select` away: applied, and live sessions follow.
    std::fs::write(
        policy.policy_file(),
        POLICY.replace("kinds = [\"select\", ", "kinds = ["),
    )
    .expect("edit");
    bed.log_when("the reloaded policy", |log| log.contains("policy.reloaded"));
    let output = agent_psql(bed, &conninfo(bed), None, query);
    let text = output_text(&output);
    assert!(
        !output.status.success() && text.contains("default-deny"),
        "{text}"
    );
}

/// The gateway's catalog is probed for changes at least this often while in use (see
/// gateway/src/postgres/catalog.rs), with a margin.
const CATALOG_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

/// A view the agent has read (so the gateway cached it as harmless), replaced by another
/// session to expose SSNs: once the probe window has passed, what comes out is masked.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn another_sessions_view_change_is_noticed_and_masked() {
    let policy = policy_bed("another_sessions_view_change", POLICY);
    let bed = &policy.bed;
    bed.pg
        .psql_direct("CREATE VIEW directory AS SELECT id, zip AS code FROM patients")
        .expect("view");
    let read = |sql: &str| {
        let output = agent_psql(bed, &conninfo(bed), None, sql);
        let text = output_text(&output);
        assert!(output.status.success(), "{sql}: {text}");
        text
    };
    let text = read("SELECT code FROM directory");
    assert!(text.contains("02139"), "harmless, in the clear: {text}");
    bed.pg
        .psql_direct("CREATE OR REPLACE VIEW directory AS SELECT id, ssn AS code FROM patients")
        .expect("replace the view");
    std::thread::sleep(CATALOG_WINDOW);
    for sql in [
        "SELECT code FROM directory",
        "SELECT * FROM directory",
        "SELECT upper(code) AS c FROM directory",
        "SELECT d::text FROM directory d",
    ] {
        let text = read(sql);
        assert!(!text.contains("123-45-6789"), "{sql} leaked: {text}");
        assert!(
            text.contains("REDACTED"),
            "{sql}: expected REDACTED: {text}"
        );
    }
}

/// The agent's own CREATE OR REPLACE VIEW is not yet visible to the gateway's catalog
/// connection (the same request, or an open transaction): the view is unknown meanwhile, and
/// masked; once rolled back it is read again, in the clear.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_sessions_own_view_change_is_masked_before_the_catalog_can_see_it() {
    let with_create = POLICY.replace(r#"kinds = ["select", "#, r#"kinds = ["create", "select", "#);
    let policy = policy_bed("own_view_change", &with_create);
    let bed = &policy.bed;
    bed.pg
        .psql_direct("CREATE VIEW directory AS SELECT id, zip AS code FROM patients")
        .expect("view");
    let replace = "CREATE OR REPLACE VIEW directory AS SELECT id, ssn AS code FROM patients";
    let clear = agent_psql(bed, &conninfo(bed), None, "SELECT code FROM directory");
    assert!(
        output_text(&clear).contains("02139"),
        "{}",
        output_text(&clear)
    );
    // One request: the SELECT is decided before the server has run the replacement.
    let output = agent_script(
        bed,
        &format!("BEGIN; {replace}; SELECT code FROM directory; ROLLBACK"),
    );
    let text = output_text(&output);
    assert!(
        !text.contains("123-45-6789") && text.contains("REDACTED"),
        "{text}"
    );
    // One request per statement, in a transaction the catalog connection cannot see into.
    let script = format!("BEGIN;\n{replace};\nSELECT code FROM directory;\nROLLBACK;\n");
    let mut command = bed.agents.command("psql");
    command.args(["-X", "-A", "-t", "-d", &conninfo(bed), "-f", "-"]);
    let output = run_with_stdin(command, &script);
    let text = output_text(&output);
    assert!(
        !text.contains("123-45-6789") && text.contains("REDACTED"),
        "{text}"
    );
    let clear = agent_psql(bed, &conninfo(bed), None, "SELECT code FROM directory");
    assert!(
        output_text(&clear).contains("02139"),
        "{}",
        output_text(&clear)
    );
}

fn run_with_stdin(mut command: std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}
