//! `libpq_pipeline` (src/test/modules/libpq_pipeline of the same tree): every test it lists,
//! run as PostgreSQL's own TAP test runs it (`-r 700`, and a protocol trace with `-t` for the
//! tests that have expected traces), with the tree's libpq.

use std::{path::Path, process::Command, time::Duration};

use xtask::client_suites::{bounded::run_bounded, Launcher, Suites};

/// The tests whose traces PostgreSQL's TAP test compares (t/001_libpq_pipeline.pl).
const TRACED: [&str; 9] = [
    "simple_pipeline",
    "nosync",
    "multi_pipelines",
    "prepared",
    "singlerow",
    "pipeline_abort",
    "pipeline_idle",
    "transaction",
    "disallowed_in_pipeline",
];
/// Each test takes well under a second directly; a hang ends at this bound.
pub const TEST_LIMIT: Duration = Duration::from_secs(30);

pub struct PipelineRun {
    pub passed: bool,
    /// Exit status and output, for messages.
    pub detail: String,
    pub seconds: f64,
    /// The protocol trace, for the traced tests.
    pub trace: Option<String>,
}

/// The tests `libpq_pipeline tests` lists.
pub fn tests(suites: &Suites) -> Vec<String> {
    let output = Command::new(suites.libpq_pipeline())
        .arg("tests")
        .env("LD_LIBRARY_PATH", suites.libpq_dir())
        .output()
        .expect("libpq_pipeline tests");
    assert!(
        output.status.success(),
        "libpq_pipeline tests: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The expected trace in the tree, for the traced tests.
pub fn expected_trace(suites: &Suites, test: &str) -> Option<String> {
    TRACED.contains(&test).then(|| {
        let path = suites.libpq_pipeline_traces().join(format!("{test}.trace"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// Runs one test against the database `postgres` at 127.0.0.1:`port`, started by `launch`, its
/// trace under `trace_dir`. Each run of the list needs a fresh cluster: the tests leave tables
/// behind, and a `DROP TABLE IF EXISTS` that finds one answers without the notice the trace
/// expects.
pub fn run(
    suites: &Suites,
    launch: Launcher,
    port: u16,
    test: &str,
    trace_dir: &Path,
) -> PipelineRun {
    let traced = TRACED.contains(&test);
    let trace_path = trace_dir.join(format!("{test}.trace"));
    let program = suites.libpq_pipeline();
    let mut command = launch(program.to_str().expect("UTF-8 path"));
    command.args(["-r", "700"]);
    if traced {
        command.arg("-t").arg(&trace_path);
    }
    command
        .arg(test)
        .arg(format!(
            "host=127.0.0.1 port={port} dbname=postgres user=postgres"
        ))
        .env("LD_LIBRARY_PATH", suites.libpq_dir());
    let finished = run_bounded(command, TEST_LIMIT).expect("spawning libpq_pipeline");
    PipelineRun {
        passed: finished.success(),
        detail: format!(
            "{}: {}{}",
            finished.ending(),
            tail(&finished.stdout),
            tail(&finished.stderr)
        ),
        seconds: finished.elapsed.as_secs_f64(),
        trace: traced.then(|| std::fs::read_to_string(&trace_path).unwrap_or_default()),
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Where two traces first differ: the line number and each side's line (`<end>` past its end).
pub fn first_difference(left: &str, right: &str) -> Option<(usize, String, String)> {
    let (mut left, mut right) = (left.lines(), right.lines());
    let mut number = 0;
    loop {
        number += 1;
        match (left.next(), right.next()) {
            (None, None) => return None,
            (l, r) if l == r => continue,
            (l, r) => {
                return Some((
                    number,
                    l.unwrap_or("<end>").to_owned(),
                    r.unwrap_or("<end>").to_owned(),
                ))
            }
        }
    }
}
