//! Privileged driver tests: real clients (psql, pgbench, tokio-postgres, psycopg 3) run as
//! agents in the agent cgroup, with exactly the host and port they would use without Tollgate.
//! Each run is checked from the gateway's log too: its connections are attributed to the
//! client process and its statements recorded. The tokio-postgres and psycopg checks also run
//! directly as a control, so a fault of the gateway is told apart from a broken check.
//! `#[ignore]`d for plain `cargo test`; `cargo xtask test` runs them as root.

mod common;
#[path = "drivers/support.rs"]
mod support;

use std::{path::Path, process::Command, time::Duration};

use common::{pg_bed, xtask_binary, PgBed};
use serde_json::Value;
use support::{assert_not_intercepted, assert_success, run_bounded, stdout, Recorded};
use xtask::testbed::TempDir;

const CLIENT_LIMIT: Duration = Duration::from_secs(120);
const PSYCOPG_CHECKS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/psycopg_checks.py"
);
/// Debian's interpreter, the one `python3-psycopg` (installed by `cargo xtask setup`) is for;
/// another `python3` earlier on PATH (pyenv, a venv) would not have it.
const PYTHON: &str = "/usr/bin/python3";

fn orig_dst(bed: &PgBed) -> String {
    format!("127.0.0.1:{}", bed.pg.port())
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn psql_copy_and_gexec_as_agent() {
    let bed = pg_bed("psql_copy_and_gexec_as_agent", |_| {});
    let dir = TempDir::new("tollgate-psql").expect("temp dir");
    let input = dir.path().join("in.tsv");
    let output = dir.path().join("out.tsv");
    let mut file_rows = String::new();
    for id in 1..=100 {
        file_rows.push_str(&format!("{id}\tfile row {id}\\twith tab\n"));
    }
    std::fs::write(&input, &file_rows).expect("write in.tsv");
    let script = format!(
        r"CREATE TABLE drv_notes (id int PRIMARY KEY, note text);
\copy drv_notes FROM '{input}'
\copy drv_notes FROM STDIN
101	from the script é
102	\N
\.
\copy drv_notes FROM pstdin WITH (FORMAT csv)
\copy (SELECT id, note FROM drv_notes ORDER BY id) TO '{output}'
\copy (SELECT count(*) FROM drv_notes) TO STDOUT
SELECT format('CREATE TABLE drv_gexec_%s (id int, label text)', i) FROM generate_series(1, 3) AS i \gexec
SELECT format('INSERT INTO %I VALUES (%s, %L)', 'drv_gexec_' || i, i, 'row ' || i) FROM generate_series(1, 3) AS i \gexec
",
        input = input.display(),
        output = output.display(),
    );
    let script_path = dir.path().join("script.sql");
    std::fs::write(&script_path, script).expect("write script.sql");
    let csv: String = (201..=250)
        .map(|id| format!("{id},\"csv {id}, quoted \"\"note\"\"\"\n"))
        .collect();

    let mut command = bed.agents.command("psql");
    command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d"]);
    command.args([
        "postgres",
        "-h",
        "127.0.0.1",
        "-p",
        &bed.pg.port().to_string(),
    ]);
    command.arg("-f").arg(&script_path);
    let (pid, result) = run_bounded(command, Some(csv.into_bytes()), CLIENT_LIMIT, "agent psql");
    assert_success(&result, "agent psql with \\copy and \\gexec");
    assert_eq!(stdout(&result), "152\n", "\\copy ... TO STDOUT");

    let mut expected = String::new();
    for id in 1..=100 {
        expected.push_str(&format!("{id}\tfile row {id}\\twith tab\n"));
    }
    expected.push_str("101\tfrom the script é\n102\t\\N\n");
    for id in 201..=250 {
        expected.push_str(&format!("{id}\tcsv {id}, quoted \"note\"\n"));
    }
    let written = std::fs::read_to_string(&output).expect("\\copy wrote out.tsv");
    assert_eq!(written, expected, "\\copy TO a file");
    let gexec = bed
        .pg
        .psql_direct(
            "SELECT string_agg(id || ':' || label, ',' ORDER BY id) FROM (SELECT * FROM \
             drv_gexec_1 UNION ALL SELECT * FROM drv_gexec_2 UNION ALL SELECT * FROM drv_gexec_3) t",
        )
        .expect("tables made by \\gexec");
    assert_eq!(gexec.trim(), "1:row 1,2:row 2,3:row 3");

    let recorded = Recorded::of(&bed.gateway, pid, 1);
    recorded.assert_attributed("psql", &bed.agents.path, &orig_dst(&bed));
    assert_eq!(recorded.opens.len(), 1, "psql uses one connection");
    let copies_in = recorded.statements_with(&["COPY", "drv_notes", "FROM STDIN"]);
    assert_eq!(copies_in.len(), 3, "three \\copy FROM recorded");
    assert_eq!(recorded.statements_with(&["TO STDOUT"]).len(), 2);
    for table in ["drv_gexec_1", "drv_gexec_2", "drv_gexec_3"] {
        recorded.assert_statement(&["CREATE TABLE", table]);
        recorded.assert_statement(&["INSERT INTO", table, "VALUES (?, ?)"]);
    }
    for statement in &recorded.statements {
        assert_eq!(statement["pid"], pid, "{statement}");
    }
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn pgbench_protocol_modes_as_agent() {
    const CLIENTS: u64 = 4;
    const TRANSACTIONS: u64 = 200;
    let bed = pg_bed("pgbench_protocol_modes_as_agent", |_| {});
    let port = bed.pg.port().to_string();
    let connection = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
    // Initialised directly (not an agent): the tables are the fixture.
    let mut init = Command::new("pgbench");
    init.args(["-i", "-q", "-s", "1"])
        .args(connection)
        .arg("postgres");
    let (init_pid, init_output) = run_bounded(init, None, CLIENT_LIMIT, "pgbench -i");
    assert_success(&init_output, "pgbench -i (direct)");
    assert_not_intercepted(&bed.gateway, init_pid);

    let total = CLIENTS * TRANSACTIONS;
    for mode in ["simple", "extended", "prepared"] {
        let mut command = bed.agents.command("pgbench");
        command.args(["-M", mode, "-t", &TRANSACTIONS.to_string()]);
        command.args(["-c", &CLIENTS.to_string(), "-j", "2"]);
        command.args(connection).arg("postgres");
        let (pid, output) = run_bounded(command, None, CLIENT_LIMIT, "agent pgbench");
        assert_success(&output, &format!("agent pgbench -M {mode}"));
        let report = stdout(&output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            report.contains(&format!(
                "number of transactions actually processed: {total}/{total}"
            )),
            "-M {mode}:\n{report}\n{stderr}"
        );
        assert!(
            report.contains("number of failed transactions: 0 "),
            "-M {mode}:\n{report}"
        );
        assert!(
            !stderr.contains("aborted") && !stderr.contains("error"),
            "-M {mode}: {stderr}"
        );

        // The clients' connections, and pgbench's own one for the vacuum before the run.
        let recorded = Recorded::of(&bed.gateway, pid, CLIENTS as usize);
        recorded.assert_attributed("pgbench", &bed.agents.path, &orig_dst(&bed));
        let protocol = if mode == "simple" {
            "simple"
        } else {
            "extended"
        };
        // Named statements are also recorded once when prepared (protocol "prepare").
        let (prepares, updates): (Vec<&Value>, Vec<&Value>) = recorded
            .statements_with(&["UPDATE pgbench_accounts SET abalance"])
            .into_iter()
            .partition(|record| record["protocol"] == "prepare");
        let expected_prepares = if mode == "prepared" {
            CLIENTS as usize
        } else {
            0
        };
        assert_eq!(
            prepares.len(),
            expected_prepares,
            "-M {mode}: prepare records"
        );
        assert_eq!(
            updates.len() as u64,
            total,
            "-M {mode}: one record per executed UPDATE"
        );
        for update in &updates {
            assert_eq!(update["protocol"], protocol, "-M {mode}: {update}");
            assert_eq!(update["pid"], pid, "-M {mode}: {update}");
            if mode != "simple" {
                // The statement text is known also for a reused named statement.
                assert!(
                    update["sql"].as_str().is_some_and(|s| s.contains("$1")),
                    "-M {mode}: {update}"
                );
                assert!(
                    update["parameters"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("text:")),
                    "-M {mode}: {update}"
                );
            }
        }
        let inserts = recorded.statements_with(&["INSERT INTO pgbench_history"]);
        let executed = inserts.iter().filter(|r| r["protocol"] != "prepare");
        assert_eq!(executed.count() as u64, total, "-M {mode}");
    }
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn tokio_postgres_checks_as_agent() {
    const CHECKS: [&str; 6] = [
        "prepared",
        "binary-types",
        "copy",
        "cancel",
        "transaction",
        "pid",
    ];
    let bed = pg_bed("tokio_postgres_checks_as_agent", |_| {});
    let xtask = xtask_binary();
    let port = bed.pg.port().to_string();
    let args = ["pg-client", "--port", &port];

    let mut direct = Command::new(&xtask);
    direct.args(args);
    let (direct_pid, control) = run_bounded(direct, None, CLIENT_LIMIT, "pg-client (direct)");
    assert_success(
        &control,
        "the control run of `xtask pg-client` without the gateway (the check itself is broken)",
    );
    assert_not_intercepted(&bed.gateway, direct_pid);

    let program = xtask.to_str().expect("UTF-8 path of the xtask binary");
    let mut agent = bed.agents.command(program);
    agent.args(args);
    let (pid, output) = run_bounded(agent, None, CLIENT_LIMIT, "pg-client (agent)");
    assert_success(
        &output,
        "`xtask pg-client` as an agent through the gateway (it passed directly)",
    );
    let report = stdout(&output);
    for check in CHECKS {
        assert!(
            report.contains(&format!("ok {check} ")),
            "{check}: {report}"
        );
    }

    // prepared 1, binary-types 1, copy 1, cancel 1 + 2 cancel requests, transaction 2, pid 3.
    let recorded = Recorded::of(&bed.gateway, pid, 11);
    recorded.assert_attributed("xtask", &bed.agents.path, &orig_dst(&bed));
    assert_eq!(recorded.cancels.len(), 2, "both cancels forwarded");
    let (prepares, prepared): (Vec<&Value>, Vec<&Value>) = recorded
        .statements_with(&["SELECT $1::int4 + $2::int4, $3::text || ?"])
        .into_iter()
        .partition(|record| record["protocol"] == "prepare");
    assert!(
        !prepares.is_empty(),
        "the named statement is recorded when prepared"
    );
    assert!(
        prepared.len() >= 151,
        "every execution of the prepared statement recorded: {}",
        prepared.len()
    );
    for execution in prepared {
        assert_eq!(execution["protocol"], "extended", "{execution}");
        assert!(
            execution["parameters"]
                .as_str()
                .is_some_and(|p| p.starts_with("binary:4B,binary:4B,binary:")),
            "{execution}"
        );
    }
    recorded.assert_statement(&["COPY pc_copy", "FROM STDIN (FORMAT binary)"]);
    recorded.assert_statement(&["COPY (SELECT id, name, payload FROM pc_copy"]);
    recorded.assert_statement(&["pg_sleep("]);
    recorded.assert_statement(&["pg_terminate_backend(pg_backend_pid())"]);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn psycopg_checks_as_agent() {
    const CHECKS: [&str; 6] = [
        "pipeline",
        "prepared",
        "copy",
        "cursor",
        "listen-notify",
        "cancel",
    ];
    let bed = pg_bed("psycopg_checks_as_agent", |_| {});
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: run `cargo xtask setup`"
    );
    let port = bed.pg.port().to_string();
    let args = [PSYCOPG_CHECKS, "127.0.0.1", &port];

    let mut direct = Command::new(PYTHON);
    direct.args(args);
    let (direct_pid, control) = run_bounded(direct, None, CLIENT_LIMIT, "psycopg (direct)");
    assert_success(
        &control,
        "the control run of psycopg_checks.py without the gateway (the check itself is broken, \
         or python3-psycopg is missing: `cargo xtask setup`)",
    );
    assert_not_intercepted(&bed.gateway, direct_pid);

    let mut agent = bed.agents.command(PYTHON);
    agent.args(args);
    let (pid, output) = run_bounded(agent, None, CLIENT_LIMIT, "psycopg (agent)");
    assert_success(
        &output,
        "psycopg_checks.py as an agent through the gateway (it passed directly)",
    );
    let report = stdout(&output);
    for check in CHECKS {
        assert!(
            report.contains(&format!("ok {check} ")),
            "{check}: {report}"
        );
    }

    // pipeline, prepared, copy, cursor 1 each; listen-notify 2; cancel 1 + the cancel request.
    let recorded = Recorded::of(&bed.gateway, pid, 8);
    recorded.assert_attributed("python3", &bed.agents.path, &orig_dst(&bed));
    assert_eq!(recorded.cancels.len(), 1, "the cancel forwarded");
    recorded.assert_statement(&["INSERT INTO pp_items VALUES ($1, $2)"]);
    recorded.assert_statement(&["COPY pc_copy (id, name, note) FROM STDIN (FORMAT BINARY)"]);
    recorded.assert_statement(&["DECLARE", "pc_cursor", "CURSOR"]);
    recorded.assert_statement(&["FETCH FORWARD"]);
    recorded.assert_statement(&["LISTEN pc_channel"]);
    recorded.assert_statement(&["NOTIFY pc_channel, ?"]);
    recorded.assert_statement(&["pg_sleep("]);
}
