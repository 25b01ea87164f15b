//! Privileged evasion suite: the example clinic policy (policies/examples/clinic-policy.toml)
//! in force over a real PostgreSQL with synthetic patients, and a real agent trying every way
//! we know to get PHI out or to run what the policy denies. Each case asserts that no raw PHI
//! value reaches the client, and a denied case also that its text never reached the server
//! (every statement the server runs is in its log).
//!
//! The patients are random on every run (the seed is printed), which makes the suite also a
//! property test: whatever the values, none of them comes out.

#[path = "evasion/cases.rs"]
mod cases;
mod common;
#[path = "evasion/patients.rs"]
mod patients;
#[path = "protocol/support.rs"]
#[allow(
    dead_code,
    reason = "shared with the protocol tests, which use all of it"
)]
mod support;

use cases::{Expect, CASES};
use common::{pg_bed_with, PgBed};
use patients::Patients;
use xtask::testbed::{
    example_policy, permissive_example_policy, write_catalog_credentials, TempDir,
};

/// The example policy with the test's agents as `coding-agents`, a scratch key, and one more
/// classified table for the RETURNING and constraint cases.
fn policy(dir: &TempDir) -> String {
    example_policy("*tollgate-pg-*", &dir.path().join("tokenization.key"))
        .expect("the example policy")
        + "\n[[classify]]\ntable = \"public.intake\"\ncolumns = { ssn = \"ssn\" }\n"
}

fn evasion_bed(dir: &TempDir) -> PgBed {
    bed_with_policy(dir, policy(dir))
}

fn bed_with_policy(dir: &TempDir, policy: String) -> PgBed {
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy).expect("write policy");
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials).expect("catalog credentials");
    pg_bed_with("evasion", "-c log_statement=all", |config| {
        config.enforce_policy("clinic", &policy_file, &credentials)
    })
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn no_evasion_gets_phi_out_or_a_denied_statement_in() {
    assert!(CASES.len() >= 60, "the suite keeps at least 60 cases");
    let dir = TempDir::new("tollgate-evasion").expect("temp dir");
    let bed = evasion_bed(&dir);
    let forbidden = patients_in(&bed).forbidden_values();
    let mut failures = Vec::new();
    for case in CASES {
        let script = case.script();
        let run = support::run_agent(&bed, &script);
        let output = format!("{}\n{}", run.stdout, run.stderr);
        if let Some(value) = forbidden.leaked_in(&output) {
            failures.push(format!(
                "{}: PHI value {value:?} reached the client:\n{output}",
                case.id
            ));
            continue;
        }
        if let Err(problem) = case.expect.check(&output) {
            failures.push(format!("{}: {problem}\n{output}", case.id));
        }
    }
    let log = bed.pg.server_log().expect("server log");
    for case in CASES {
        let refused = matches!(case.expect, Expect::Denied(_) | Expect::Held(_));
        if refused && log.contains(&case.marker()) {
            failures.push(format!(
                "{}: the denied statement reached the server",
                case.id
            ));
        }
    }
    let records: Vec<String> = (bed.gateway.audit_records().iter())
        .map(|record| record.to_string())
        .collect();
    let logs = [
        (
            "gateway's log",
            bed.gateway.log_text().lines().map(str::to_owned).collect(),
        ),
        ("audit log", records),
    ];
    for (name, lines) in logs {
        for line in lines {
            if let Some(value) = forbidden.leaked_long_in(&line) {
                failures.push(format!("PHI value {value:?} reached the {name}: {line}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

/// 25 random patients in the bed's database (the seed printed, to rerun with).
fn patients_in(bed: &PgBed) -> Patients {
    let patients = Patients::random(25);
    println!(
        "patients seed: {} (rerun with TOLLGATE_EVASION_SEED)",
        patients.seed
    );
    bed.pg
        .psql_direct(&patients.setup_sql())
        .expect("schema and patients");
    patients
}

/// Cases that would destroy the data the others read (under the example policy they are
/// refused; here nothing is).
const DESTRUCTIVE: &[&str] = &[
    "multi-denied",
    "extended-denied",
    "drop",
    "truncate",
    "alter",
    "cte-write",
    "explain-analyze-write",
    "alter-system",
    "set-role",
    "copy-program",
    "copy-file",
];

/// The same cases under a policy that allows everything (create, write, `DO`, unparsed SQL)
/// but classifies and masks as the example does: whatever runs, no PHI value comes out. A
/// case refused by the example proves nothing about masking; here each one runs.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn no_evasion_gets_phi_out_under_a_permissive_policy() {
    let dir = TempDir::new("tollgate-evasion").expect("temp dir");
    let permissive = permissive_example_policy("*tollgate-pg-*", &dir.path().join("key"))
        .expect("permissive policy")
        + "\n[[classify]]\ntable = \"public.intake\"\ncolumns = { ssn = \"ssn\" }\n";
    let bed = bed_with_policy(&dir, permissive);
    let forbidden = patients_in(&bed).forbidden_values();
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in CASES.iter().filter(|c| !DESTRUCTIVE.contains(&c.id)) {
        ran += 1;
        let run = support::run_agent(&bed, &case.script());
        let output = format!("{}\n{}", run.stdout, run.stderr);
        if let Some(value) = forbidden.leaked_in(&output) {
            failures.push(format!(
                "{}: PHI value {value:?} reached the client:\n{output}",
                case.id
            ));
        }
    }
    assert!(ran >= 60, "most cases run here too ({ran})");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases leaked under the permissive policy:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Another session (not an agent, not through the gateway) replaces a view the agent has
/// read, so that it exposes PHI. Once the gateway's catalog probe window has passed (see
/// gateway/src/postgres/catalog.rs), no way of reading the view gets a value out.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_view_replaced_by_another_session_to_expose_phi_stays_masked() {
    let dir = TempDir::new("tollgate-evasion").expect("temp dir");
    let bed = evasion_bed(&dir);
    let patients = Patients::random(5);
    bed.pg
        .psql_direct(&patients.setup_sql())
        .expect("schema and patients");
    bed.pg
        .psql_direct("CREATE VIEW clinic_ids AS SELECT id, id::text AS label FROM patients")
        .expect("a harmless view");
    let harmless = support::run_agent(
        &bed,
        "Q SELECT label FROM clinic_ids WHERE id > 0\nrecv 1\n",
    );
    assert!(harmless.stdout.contains("D "), "{}", harmless.stdout);
    bed.pg
        .psql_direct(
            "CREATE OR REPLACE VIEW clinic_ids AS SELECT id, ssn || ' ' || full_name AS label FROM patients",
        )
        .expect("the view replaced");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let forbidden = patients.forbidden_values();
    for sql in [
        "SELECT label FROM clinic_ids WHERE id > 0",
        "SELECT * FROM clinic_ids WHERE id > 0",
        "SELECT upper(label) FROM clinic_ids WHERE id > 0",
        "SELECT row_to_json(c) FROM clinic_ids c WHERE id > 0",
        "SELECT label::int FROM clinic_ids WHERE id > 0",
    ] {
        let run = support::run_agent(&bed, &format!("Q {sql}\nrecv 1\n"));
        let output = format!("{}\n{}", run.stdout, run.stderr);
        assert!(
            forbidden.leaked_in(&output).is_none(),
            "{sql}: PHI reached the client:\n{output}"
        );
    }
}
