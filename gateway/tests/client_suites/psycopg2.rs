//! psycopg2's own test suite (pytest over its unittest classes) against Debian's
//! `python3-psycopg2`, run in passes: a test still running at the per-test timeout ends its
//! pass (pytest-timeout's thread method exits the process, since a wait inside libpq cannot be
//! interrupted), is recorded as hung, and the next pass runs the tests not yet finished.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use xtask::{
    client_suites::{bounded::run_bounded, Launcher, Suites, PYTHON},
    testbed::PgCluster,
};

pub const DATABASE: &str = "psycopg2_test";
pub const PER_TEST_TIMEOUT_S: u32 = 20;
/// Passes after hangs; each hang costs the per-test timeout.
const MAX_PASSES: usize = 8;
const PLUGIN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client_suites");
/// Where Debian installs the driver under test.
const DEBIAN_MODULES: &str = "/usr/lib/python3/dist-packages/";

pub struct Outcome {
    /// passed, failed, error, skipped, xfailed, xpassed, or hung.
    pub kind: String,
    pub message: String,
}

pub struct SuiteRun {
    pub outcomes: BTreeMap<String, Outcome>,
    pub elapsed: Duration,
    pub passes: usize,
    /// Every test ran to an outcome (false when the budget or the passes ran out).
    pub complete: bool,
    pub notes: Vec<String>,
}

impl SuiteRun {
    pub fn with(&self, kind: &str) -> BTreeSet<&str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| o.kind == kind)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for outcome in self.outcomes.values() {
            *counts.entry(&outcome.kind).or_insert(0) += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        format!(
            "{} in {:.1} s ({} pass{}{})",
            counts.join(", "),
            self.elapsed.as_secs_f64(),
            self.passes,
            if self.passes == 1 { "" } else { "es" },
            if self.complete { "" } else { ", INCOMPLETE" }
        )
    }
}

/// The suite must test Debian's package, not a source tree that happens to be importable.
pub fn assert_debian_driver(suites: &Suites) {
    let output = Command::new(PYTHON)
        .args(["-c", "import psycopg2; print(psycopg2.__file__)"])
        .current_dir(suites.psycopg2_dir())
        .env_remove("PYTHONPATH")
        .output()
        .expect("running python3");
    let file = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && file.starts_with(DEBIAN_MODULES),
        "psycopg2 should come from Debian's python3-psycopg2 ({DEBIAN_MODULES}), found {file:?} \
         {}: run `cargo xtask setup`",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh test database (hstore on, for the hstore adapter tests), made over the unix socket.
pub fn fresh_database(pg: &PgCluster) {
    pg.psql_direct(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .expect("drop the test database");
    pg.psql_direct(&format!("CREATE DATABASE {DATABASE}"))
        .expect("create the test database");
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
        .arg(pg.socket_dir())
        .args(["-p", &pg.port().to_string(), "-d", DATABASE])
        .args(["-c", "CREATE EXTENSION hstore"])
        .output()
        .expect("psql");
    assert!(
        output.status.success(),
        "CREATE EXTENSION hstore (postgresql-contrib, `cargo xtask setup`): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the suite against 127.0.0.1:`port`, its processes started by `launch`, within `budget`.
pub fn run(
    suites: &Suites,
    launch: Launcher,
    port: u16,
    scratch: &Path,
    budget: Duration,
) -> SuiteRun {
    let started = Instant::now();
    let report = scratch.join("report.jsonl");
    let skip = scratch.join("skip.txt");
    let mut run = SuiteRun {
        outcomes: BTreeMap::new(),
        elapsed: Duration::ZERO,
        passes: 0,
        complete: false,
        notes: Vec::new(),
    };
    while run.passes < MAX_PASSES {
        let remaining = budget.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            run.notes
                .push(format!("the run's budget of {budget:?} ran out"));
            break;
        }
        run.passes += 1;
        let done: Vec<&str> = run.outcomes.keys().map(String::as_str).collect();
        std::fs::write(&skip, done.join("\n")).expect("write the skip list");
        let _ = std::fs::remove_file(&report);
        let command = pytest(suites, launch, port, &report, &skip);
        let pass = run_bounded(command, remaining).expect("spawning pytest");
        let (order, finished) = read_report(&report);
        let hung = order
            .iter()
            .rev()
            .find(|id| !finished.contains_key(*id))
            .cloned();
        run.outcomes.extend(finished);
        if let Some(id) = hung {
            let message = if pass.timed_out() {
                format!("still running when the run's budget of {budget:?} ran out")
            } else {
                format!("no result within {PER_TEST_TIMEOUT_S} s (pytest-timeout ended the pass)")
            };
            run.outcomes.insert(
                id,
                Outcome {
                    kind: "hung".to_owned(),
                    message,
                },
            );
            continue;
        }
        // A pass after a hang of the last test has nothing left to run.
        run.complete = !run.outcomes.is_empty();
        if !run.complete {
            run.notes.push(format!(
                "pytest ran no test ({}):\n{}\n{}",
                pass.ending(),
                pass.stdout,
                pass.stderr
            ));
        }
        break;
    }
    run.elapsed = started.elapsed();
    run
}

fn pytest(suites: &Suites, launch: Launcher, port: u16, report: &Path, skip: &Path) -> Command {
    let dir = suites.psycopg2_dir();
    let mut command = launch(PYTHON);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(["-p", "tollgate_suite_report", "-c", "/dev/null"])
        .arg(format!("--rootdir={}", dir.display()))
        .arg(format!("--timeout={PER_TEST_TIMEOUT_S}"))
        .args(["--timeout-method=thread", "tests"])
        .current_dir(&dir)
        // Only the plugin's directory: `import psycopg2` must find Debian's package.
        .env("PYTHONPATH", PLUGIN_DIR)
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TOLLGATE_SUITE_REPORT", report)
        .env("TOLLGATE_SUITE_SKIP", skip)
        .env("PSYCOPG2_TESTDB", DATABASE)
        .env("PSYCOPG2_TESTDB_HOST", "127.0.0.1")
        .env("PSYCOPG2_TESTDB_PORT", port.to_string())
        .env("PSYCOPG2_TESTDB_USER", "postgres");
    for variable in [
        "PSYCOPG2_TESTDB_PASSWORD",
        "PSYCOPG2_TEST_GREEN",
        "PSYCOPG2_TEST_REPL_DSN",
        "PSYCOPG2_TEST_FAST",
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGOPTIONS",
    ] {
        command.env_remove(variable);
    }
    command
}

/// The ids in the order they started, and the outcomes of those that finished.
fn read_report(path: &Path) -> (Vec<String>, BTreeMap<String, Outcome>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut order = Vec::new();
    let mut finished = BTreeMap::new();
    for record in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        if record["event"] == "start" {
            order.push(id);
        } else {
            let outcome = Outcome {
                kind: record["outcome"].as_str().unwrap_or("?").to_owned(),
                message: record["message"].as_str().unwrap_or_default().to_owned(),
            };
            finished.insert(id, outcome);
        }
    }
    (order, finished)
}
