//! Privileged end-to-end tests of derived classification, against a real PostgreSQL with
//! random synthetic patients: under a policy that lets agents create, write and run anything,
//! PHI an agent copies into other tables (every way of copying it) comes back masked, in later
//! sessions, through chains of copies and after a gateway restart; an admin sees the copies
//! and can forget them; and the example policy holds the copying itself for approval.

mod common;
#[path = "evasion/patients.rs"]
mod patients;
#[path = "protocol/support.rs"]
#[allow(
    dead_code,
    reason = "shared with the protocol tests, which use all of it"
)]
mod support;

use std::process::Command;

use common::{pg_bed_with, PgBed, TOLLGATE};
use patients::{Forbidden, Patients};
use xtask::testbed::{
    example_policy, permissive_example_policy, write_catalog_credentials, TempDir,
};

fn bed(dir: &TempDir, policy: String) -> PgBed {
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy).expect("write policy");
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials).expect("catalog credentials");
    pg_bed_with("derived", "", |config| {
        config.enforce_policy("clinic", &policy_file, &credentials)
    })
}

/// The example policy, opened up: agents may create, write and run anything.
fn permissive(dir: &TempDir) -> String {
    permissive_example_policy("*tollgate-pg-*", &dir.path().join("token.key"))
        .expect("permissive policy")
}

/// A bed under `policy` whose server holds `count` random patients (the seed is printed:
/// rerun a failure with TOLLGATE_EVASION_SEED).
fn bed_with_patients(dir: &TempDir, policy: String, count: usize) -> (PgBed, Patients) {
    let bed = bed(dir, policy);
    let patients = Patients::random(count);
    println!("patients seed: {}", patients.seed);
    bed.pg
        .psql_direct(&patients.setup_sql())
        .expect("schema and patients");
    (bed, patients)
}

/// Runs `sql` (one Query) as the agent; what it received.
fn agent(bed: &PgBed, sql: &str) -> String {
    let script = format!("Q {}\nrecv 1\n", sql.replace('\n', "\\n"));
    script_output(bed, &script)
}

fn script_output(bed: &PgBed, script: &str) -> String {
    let run = support::run_agent(bed, script);
    format!("{}\n{}", run.stdout, run.stderr)
}

fn assert_masked_rows(output: &str, forbidden: &Forbidden, what: &str) {
    if let Some(value) = forbidden.leaked_in(output) {
        panic!("{what}: PHI value {value:?} reached the agent:\n{output}");
    }
    assert!(
        !output.contains("E ERROR") && !output.contains("E FATAL"),
        "{what}: {output}"
    );
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("D ") || l.starts_with("d ")),
        "{what}: expected rows:\n{output}"
    );
}

fn classified(bed: &PgBed, args: &[&str]) -> String {
    let output = Command::new(TOLLGATE)
        .arg("classified")
        .args(args)
        .arg("--config")
        .arg(bed.gateway.config_path())
        .output()
        .expect("tollgate classified");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "tollgate classified {args:?}: {text}"
    );
    text
}

/// Every way an agent may copy PHI into a table of its own, and the reads that follow.
const COPIES: &[&str] = &[
    "CREATE TABLE copy_ctas AS SELECT id, ssn, full_name FROM patients WHERE id > 0",
    "CREATE TABLE copy_ins (id int, x text, y text); \
     INSERT INTO copy_ins SELECT id, mrn, upper(email) FROM patients WHERE id > 0",
    "CREATE TABLE copy_upd (id int, note text); \
     INSERT INTO copy_upd SELECT id, 'clean' FROM patients WHERE id > 0; \
     UPDATE copy_upd c SET note = p.phone FROM patients p WHERE p.id = c.id",
    "SELECT street, birth_date INTO copy_into FROM patients WHERE id > 0",
    "CREATE TABLE copy_cte (x text); \
     WITH m AS (INSERT INTO copy_cte SELECT ssn FROM patients WHERE id > 0 RETURNING 1) \
     SELECT count(*) FROM m",
    "CREATE TABLE copy_merge (id int PRIMARY KEY, x text); \
     INSERT INTO copy_merge SELECT id, 'clean' FROM patients WHERE id > 0; \
     MERGE INTO copy_merge c USING patients p ON c.id = p.id \
     WHEN MATCHED THEN UPDATE SET x = p.mrn",
    // Columns the server names itself: after the type of a cast, after a scalar subquery's
    // one column (which only the server knows here: the copy is classified as a whole).
    "CREATE TABLE copy_named AS SELECT id, (ssn || '')::text, lower(mrn)::varchar(40) \
     FROM patients WHERE id > 0",
    "CREATE TABLE copy_sub AS SELECT id, (SELECT * FROM (SELECT p.ssn) s) FROM patients p \
     WHERE id > 0",
    // A chain: a copy of a copy.
    "CREATE TABLE copy_chain AS SELECT ssn AS s, full_name AS n FROM copy_ctas",
    "CREATE TABLE copy_chain2 (v text); INSERT INTO copy_chain2 SELECT s FROM copy_chain",
];

const READS: &[&str] = &[
    "SELECT * FROM copy_ctas",
    "SELECT ssn, full_name FROM copy_ctas WHERE id > 0",
    "SELECT c.ssn || '!' FROM copy_ctas c",
    "SELECT row_to_json(c) FROM copy_ctas c",
    "SELECT x, y FROM copy_ins",
    "SELECT text, lower FROM copy_named",
    "SELECT ssn FROM copy_sub",
    "SELECT note FROM copy_upd",
    "SELECT * FROM copy_into",
    "SELECT x FROM copy_cte",
    "SELECT x FROM copy_merge",
    "SELECT s, n FROM copy_chain",
    "SELECT v FROM copy_chain2",
    "COPY copy_ins TO STDOUT",
    "COPY (SELECT * FROM copy_ctas) TO STDOUT WITH (FORMAT csv)",
];

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn phi_copied_by_an_agent_stays_masked_in_every_later_read() {
    let dir = TempDir::new("tollgate-derived").expect("temp dir");
    let (mut bed, patients) = bed_with_patients(&dir, permissive(&dir), 10);
    let forbidden = patients.forbidden_values();

    for sql in COPIES {
        let output = agent(&bed, sql);
        assert!(!output.contains("E ERROR"), "{sql}: {output}");
        assert!(forbidden.leaked_in(&output).is_none(), "{sql}: {output}");
    }
    for sql in READS {
        assert_masked_rows(&agent(&bed, sql), &forbidden, sql);
    }

    // A temporary table, read in its own session: simple and extended protocol, and a copy
    // read back by a later statement of the same Query.
    let session = "Q CREATE TEMP TABLE tmp AS SELECT ssn FROM patients WHERE id > 0\nrecv 1\n\
                   P - INSERT INTO tmp SELECT mrn FROM patients WHERE id > 0\nB - -\nE -\nS\nrecv 1\n\
                   Q SELECT ssn FROM tmp\nrecv 1\n\
                   P - SELECT * FROM tmp\nB - -\nE -\nS\nrecv 1\n\
                   Q CREATE TEMP TABLE t2 (v text); INSERT INTO t2 SELECT email FROM patients WHERE id > 0; SELECT v FROM t2\nrecv 1\n";
    assert_masked_rows(
        &script_output(&bed, session),
        &forbidden,
        "temporary tables",
    );

    // Not everything is PHI: a copy of clean columns reads as directly.
    agent(
        &bed,
        "CREATE TABLE copy_clean AS SELECT id FROM patients WHERE id > 0",
    );
    let through = agent(&bed, "SELECT id FROM copy_clean ORDER BY id");
    let direct = bed
        .pg
        .psql_direct("SELECT string_agg(id::text, ',' ORDER BY id) FROM copy_clean")
        .expect("direct read");
    let ids: Vec<&str> = through
        .lines()
        .filter_map(|l| l.strip_prefix("D "))
        .collect();
    assert_eq!(ids.join(","), direct.trim(), "a clean copy is not masked");

    // The admin sees each copy with its provenance.
    let listed = classified(&bed, &["list"]);
    // (A table created earlier in the same request is not in the catalog yet: every column
    // of it is classified.)
    for table in [
        "copy_ctas.ssn",
        "copy_ins.(every column)",
        "copy_upd.note",
        "copy_named.text",
        "copy_named.lower",
        "copy_sub.(every column)",
        "copy_chain2.(every column)",
    ] {
        assert!(listed.contains(table), "{table} listed:\n{listed}");
    }
    assert!(
        listed.contains("public.patients") && listed.contains("CREATE TABLE"),
        "{listed}"
    );
    assert!(!listed.contains("copy_clean"), "{listed}");

    // Derived classification survives a restart of the gateway.
    bed.gateway.stop().expect("stop the gateway");
    bed.gateway.spawn().expect("start the gateway again");
    for sql in READS {
        assert_masked_rows(
            &agent(&bed, sql),
            &forbidden,
            &format!("after restart: {sql}"),
        );
    }

    // Forgotten by the admin: the copy reads raw again (which shows the masking above came
    // from the copy being classified, not from anything else).
    classified(&bed, &["forget", "public.copy_ctas"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let raw = agent(&bed, "SELECT ssn FROM copy_ctas WHERE id > 0");
    assert!(
        forbidden.leaked_in(&raw).is_some(),
        "forgotten: the copy is no longer masked:\n{raw}"
    );
    // Its copies stay classified.
    assert_masked_rows(
        &agent(&bed, "SELECT s FROM copy_chain"),
        &forbidden,
        "chain",
    );
}

#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn the_example_policy_holds_phi_copies_for_approval() {
    let dir = TempDir::new("tollgate-derived").expect("temp dir");
    let policy =
        example_policy("*tollgate-pg-*", &dir.path().join("token.key")).expect("example policy");
    let (bed, _patients) = bed_with_patients(&dir, policy, 3);
    for sql in [
        "CREATE TABLE copy AS SELECT ssn FROM patients WHERE id > 0",
        "INSERT INTO visits SELECT id + 100, id, ssn FROM patients WHERE id > 0",
    ] {
        let output = agent(&bed, sql);
        assert!(
            output.contains("N NOTICE 00000 Tollgate: this statement waits")
                && output.contains("\"approve-phi-copies\"")
                && output.contains("E ERROR 57014"),
            "{sql}: {output}"
        );
    }
}

/// A write a `rows_over` rule matches waits, whatever the planner expects (the rows a write
/// touches cannot be cut on the way back), and derives nothing unless it runs: held and never
/// approved, neither copy is classified.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn a_write_a_rows_over_rule_matches_waits_and_derives_nothing() {
    let dir = TempDir::new("tollgate-derived").expect("temp dir");
    let rule = "\n[[rules]]\nid = \"approve-big-copies\"\neffect = \"require_approval\"\n\
                kinds = [\"create\", \"insert\"]\nrows_over = 1000\n";
    let (bed, _patients) = bed_with_patients(&dir, permissive(&dir) + rule, 3);
    bed.pg
        .psql_direct("CREATE TABLE small_copy (ssn text)")
        .expect("a table to copy into");
    for sql in [
        "CREATE TABLE big_copy AS SELECT ssn FROM patients WHERE id > 0",
        "INSERT INTO small_copy SELECT ssn FROM patients WHERE id = 1",
    ] {
        let held = agent(&bed, sql);
        assert!(
            held.contains("rule \"approve-big-copies\"") && held.contains("E ERROR 57014"),
            "{sql} waits: {held}"
        );
    }
    // A copy that ran would be listed (see phi_copied_by_an_agent_stays_masked...).
    let listed = classified(&bed, &["list"]);
    assert!(
        !listed.contains("big_copy") && !listed.contains("small_copy"),
        "a copy that never ran is not classified: {listed}"
    );
    let empty = bed
        .pg
        .psql_direct("SELECT count(*) FROM small_copy")
        .expect("count");
    assert_eq!(empty.trim(), "0", "nothing ran");
}

/// Settings are not PHI until an agent puts some there: then that setting (and, after code
/// Tollgate cannot read, every setting) reads back masked, also in the server's own report.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn settings_read_as_directly_until_phi_is_put_into_them() {
    let dir = TempDir::new("tollgate-derived").expect("temp dir");
    let (bed, patients) = bed_with_patients(&dir, permissive(&dir), 3);
    let forbidden = patients.forbidden_values();
    let script = "Q SET application_name = 'report-tool'\nrecv 1\n\
                  Q SHOW search_path\nrecv 1\n\
                  Q SELECT current_setting('application_name')\nrecv 1\n\
                  Q SELECT set_config('my.kept', ssn, false) FROM patients WHERE id = 1\nrecv 1\n\
                  Q SHOW my.kept\nrecv 1\n\
                  Q SHOW search_path\nrecv 1\n\
                  Q SELECT set_config('application_name', full_name, false) FROM patients WHERE id = 1\nrecv 1\n";
    let output = script_output(&bed, script);
    assert!(forbidden.leaked_in(&output).is_none(), "{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert!(
        lines.contains(&"S application_name=report-tool"),
        "{output}"
    );
    assert!(
        lines.contains(&"D report-tool"),
        "current_setting as directly: {output}"
    );
    let search_paths = lines
        .iter()
        .filter(|l| **l == "D \"$user\", public")
        .count();
    assert_eq!(
        search_paths, 2,
        "SHOW of an untouched setting as directly: {output}"
    );
    assert!(
        lines.contains(&"D REDACTED"),
        "SHOW my.kept masked: {output}"
    );
    assert!(
        lines.contains(&"S application_name=[masked by Tollgate]"),
        "the server's report of a setting filled with PHI is masked: {output}"
    );
}

/// Code Tollgate cannot read may store PHI in a setting every later session inherits (`ALTER
/// ROLE ... SET` from a `DO` block). From then on, later sessions (also after a restart) read
/// inherited settings masked, in `SHOW`, `current_setting` and the server's startup report,
/// except what the client itself set at startup; the admin sees the mark and lifts it.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn phi_put_into_inherited_settings_by_opaque_code_stays_masked_in_later_sessions() {
    let dir = TempDir::new("tollgate-derived").expect("temp dir");
    let (mut bed, patients) = bed_with_patients(&dir, permissive(&dir), 3);
    let forbidden = patients.forbidden_values();
    let ssn = "(SELECT ssn FROM patients WHERE id = 1)";
    let hide = format!(
        "DO $$ BEGIN \
         EXECUTE format('ALTER ROLE postgres SET my.inherited = %L', {ssn}); \
         EXECUTE format('ALTER ROLE postgres SET application_name = %L', {ssn}); \
         EXECUTE format('ALTER ROLE postgres SET timezone = %L', \
                        '<' || replace({ssn}, '-', '') || '>5'); \
         END $$"
    );
    let done = agent(&bed, &hide);
    assert!(done.contains("C DO"), "the DO block ran: {done}");

    let read_back = "Q SHOW my.inherited\nrecv 1\n\
                     Q SELECT current_setting('my.inherited')\nrecv 1\n\
                     Q SHOW search_path\nrecv 1\n";
    let digits = forbidden_digits(&patients_ssn(&bed));
    let assert_masked = |output: &str, when: &str| {
        assert!(forbidden.leaked_in(output).is_none(), "{when}: {output}");
        assert!(
            !output.contains(&digits),
            "{when}: the SSN's digits in TimeZone: {output}"
        );
        let lines: Vec<&str> = output.lines().collect();
        for report in [
            "S application_name=[masked by Tollgate]",
            "S TimeZone=[masked by Tollgate]",
        ] {
            assert!(
                lines.contains(&report),
                "{when}: {report} expected: {output}"
            );
        }
        assert!(
            !lines.contains(&"D \"$user\", public"),
            "{when}: every inherited setting reads masked: {output}"
        );
    };
    assert_masked(&script_output(&bed, read_back), "a later session");
    // The client's own startup value overrides the inherited one and is its own.
    let own = script_output(
        &bed,
        &format!("param application_name=report-tool\n{read_back}"),
    );
    assert!(
        own.lines().any(|l| l == "S application_name=report-tool"),
        "the client's own setting as directly: {own}"
    );

    bed.gateway.stop().expect("stop the gateway");
    bed.gateway.spawn().expect("start the gateway again");
    assert_masked(&script_output(&bed, read_back), "after a restart");

    let listed = classified(&bed, &["list"]);
    assert!(
        listed.contains("every setting a session inherits") && listed.contains("DO"),
        "the admin sees the mark: {listed}"
    );
    // The admin clears the role's settings, then lifts the mark.
    bed.pg
        .psql_direct("ALTER ROLE postgres RESET ALL;")
        .expect("reset the role's settings");
    let forgot = classified(&bed, &["forget", "--settings"]);
    assert!(forgot.contains("clinic"), "{forgot}");
    let after = retry_until(|| {
        let output = script_output(&bed, "Q SHOW search_path\nrecv 1\n");
        output
            .lines()
            .any(|l| l == "D \"$user\", public")
            .then_some(output)
    });
    assert!(
        after.is_some(),
        "inherited settings read as directly once forgotten"
    );
}

/// The first patient's SSN, read directly.
fn patients_ssn(bed: &PgBed) -> String {
    bed.pg
        .psql_direct("SELECT ssn FROM patients WHERE id = 1")
        .expect("read the SSN directly")
        .trim()
        .to_owned()
}

fn forbidden_digits(ssn: &str) -> String {
    ssn.chars().filter(char::is_ascii_digit).collect()
}

/// `attempt` every 200 ms for up to 5 s (the gateway re-reads the store within a second).
fn retry_until<T>(mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..25 {
        if let Some(found) = attempt() {
            return Some(found);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    None
}

/// A property: PHI copied through a random chain of tables (every way of copying, with
/// transforms that keep the value readable) never comes back raw from any table of the chain.
/// The chain follows the patients' seed, so a failure reruns with TOLLGATE_EVASION_SEED.
#[test]
#[ignore = "privileged: needs root, cgroup v2, BPF and PostgreSQL (run with `cargo xtask test`)"]
fn random_chains_of_copies_never_give_phi_back_raw() {
    let dir = TempDir::new("tollgate-derived").expect("temp dir");
    let (bed, patients) = bed_with_patients(&dir, permissive(&dir), 6);
    let forbidden = patients.forbidden_values();
    let mut rng = patients.seed | 1;
    let mut next = |n: usize| {
        // xorshift64
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    const TRANSFORMS: [&str; 5] = [
        "{}",
        "upper({})",
        "{} || ''",
        "substr({}, 1, 200)",
        "concat({}, '')",
    ];
    // (table, its text columns holding copies)
    let mut tables: Vec<(String, String)> = ["ssn", "full_name", "mrn", "email", "phone"]
        .iter()
        .map(|c| ("patients".to_owned(), (*c).to_owned()))
        .collect();
    let mut made = Vec::new();
    for step in 0..14 {
        let (source, column) = tables[next(tables.len())].clone();
        let value = TRANSFORMS[next(TRANSFORMS.len())].replace("{}", &column);
        let table = format!("chain_{step}");
        let target = format!("v{step}");
        let sql = match next(5) {
            0 => format!("CREATE TABLE {table} AS SELECT {value} AS {target} FROM {source}"),
            1 => format!("SELECT {value} AS {target} INTO {table} FROM {source}"),
            2 => format!(
                "CREATE TABLE {table} ({target} text) ;; INSERT INTO {table} ({target}) SELECT {value} FROM {source}"
            ),
            3 => format!(
                "CREATE TABLE {table} (k int, {target} text) ;; INSERT INTO {table} SELECT g, 'clean' FROM generate_series(1, 3) g ;; UPDATE {table} SET {target} = s.x FROM (SELECT {value} AS x FROM {source} LIMIT 1) s"
            ),
            _ => format!(
                "CREATE TABLE {table} ({target} text) ;; WITH m AS (INSERT INTO {table} SELECT {value} FROM {source} RETURNING 1) SELECT count(*) FROM m"
            ),
        };
        for part in sql.split(" ;; ") {
            let output = agent(&bed, part);
            assert!(!output.contains("E ERROR"), "step {step}: {part}: {output}");
            assert!(
                forbidden.leaked_in(&output).is_none(),
                "step {step}: {part}: {output}"
            );
        }
        tables.push((table.clone(), target.clone()));
        made.push((table, target));
    }
    for (table, column) in &made {
        let sql = format!("SELECT {column} FROM {table}");
        assert_masked_rows(&agent(&bed, &sql), &forbidden, &sql);
    }
}
