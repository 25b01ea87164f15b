//! Privileged end-to-end test that guardrails cost ordinary agent work nothing: counts and
//! group-bys on columns that are not PHI, filters on PHI returning what is not, joins on PHI
//! keys, temporary tables of columns that are not PHI, cursors and psql's `\d` commands give
//! the same answers through Tollgate as directly, under the example policy and under a
//! permissive one.

mod common;
#[path = "evasion/patients.rs"]
#[allow(
    dead_code,
    reason = "shared with the evasion tests, which use all of it"
)]
mod patients;

use std::process::Command;

use common::{pg_bed_with, PgBed};
use patients::Patients;
use xtask::testbed::{
    example_policy, permissive_example_policy, write_catalog_credentials, TempDir,
};

/// Each is one psql session: ` ;; ` separates its `-c` commands (each a request of its own;
/// several statements in one `-c` print the last one's rows).
const WORK: &[&str] = &[
    "SELECT count(*) FROM patients",
    "SELECT patient_id, count(*) FROM visits GROUP BY patient_id ORDER BY 1",
    // Matches about 60 % of random SSNs, so 20 patients never leave it empty.
    "SELECT id FROM patients WHERE ssn LIKE '1%' OR ssn LIKE '5%' OR ssn >= '7' ORDER BY id",
    "SELECT count(*) FROM patients p JOIN visits v ON v.patient_id = p.id WHERE p.age > 30",
    "SELECT count(*) FROM patients a JOIN patients b ON a.mrn = b.mrn",
    "SELECT patient_id % 3 AS bucket, count(*) FROM visits GROUP BY 1 ORDER BY 1",
    "CREATE TEMP TABLE ids AS SELECT id FROM patients WHERE id < 5 ;; SELECT count(*), max(id) FROM ids",
    "BEGIN; DECLARE c CURSOR FOR SELECT id FROM patients ORDER BY id; FETCH 3 FROM c",
    "\\d patients",
    "\\dt",
    "\\dv",
];

fn psql(command: &mut Command, bed: &PgBed, sql: &str) -> String {
    let output = command
        .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &bed.pg.port().to_string(), "-d", "postgres"])
        .args(sql.split(" ;; ").flat_map(|command| ["-c", command]))
        .output()
        .expect("psql");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn same_as_directly(policy: impl FnOnce(&TempDir) -> String) {
    let dir = TempDir::new("tollgate-utility").expect("temp dir");
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy(&dir)).expect("write policy");
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials).expect("catalog credentials");
    let bed = pg_bed_with("utility", "", |config| {
        config.enforce_policy("clinic", &policy_file, &credentials)
    });
    bed.pg
        .psql_direct(&Patients::random(20).setup_sql())
        .expect("schema and patients");
    let mut differences = Vec::new();
    for sql in WORK {
        let direct = psql(&mut Command::new("psql"), &bed, sql);
        let through = psql(&mut bed.agents.command("psql"), &bed, sql);
        assert!(!direct.trim().is_empty(), "{sql}: nothing directly");
        if direct != through {
            differences.push(format!("{sql}\n--- direct\n{direct}--- through\n{through}"));
        }
    }
    if !differences.is_empty() {
        // What the gateway refused, for the reader of a failure.
        let refused: Vec<String> = (bed.gateway.statement_records().iter())
            .filter(|s| s["decision"] != "allow")
            .map(|s| s.to_string())
            .collect();
        panic!(
            "{} of {} differ:\n{}\nrefused by the gateway:\n{}",
            differences.len(),
            WORK.len(),
            differences.join("\n"),
            refused.join("\n")
        );
    }
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn ordinary_work_is_answered_as_directly_under_the_example_policy() {
    same_as_directly(|dir| {
        example_policy("*tollgate-pg-*", &dir.path().join("token.key")).expect("example policy")
    });
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn ordinary_work_is_answered_as_directly_under_a_permissive_policy() {
    same_as_directly(|dir| {
        permissive_example_policy("*tollgate-pg-*", &dir.path().join("token.key"))
            .expect("permissive policy")
    });
}
