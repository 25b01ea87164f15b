//! PostgreSQL 15's regression suite as `make installcheck-parallel` runs it (`parallel_schedule`,
//! up to 20 tests at once) against a running server at 127.0.0.1:`port`, and its result per test.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::Context;

use super::{as_postgres, bounded::run_bounded, Launcher, Suites, PG_BINDIR};

/// One run's result.
pub struct RegressRun {
    /// Test name -> passed; only the tests that ran (a run cut off at its bound lacks some).
    pub tests: BTreeMap<String, bool>,
    /// Why each failed test failed, as pg_regress said (`FAILED`, `failed (ignored)`, ...).
    pub failures: BTreeMap<String, String>,
    pub elapsed: Duration,
    pub timed_out: bool,
    /// pg_regress's own output, for messages.
    pub output: String,
    /// `regression.diffs`: the differences of the failed tests.
    pub diffs: String,
}

impl RegressRun {
    pub fn passed(&self) -> usize {
        self.tests.values().filter(|passed| **passed).count()
    }

    /// The first `lines` lines of a failed test's difference to its expected output.
    pub fn diff_of(&self, test: &str, lines: usize) -> String {
        let results = format!("/results/{test}.out");
        let mut inside = false;
        let section: Vec<&str> = self
            .diffs
            .lines()
            .filter(|line| {
                if line.starts_with("diff ") {
                    inside = line.ends_with(&results);
                }
                inside
            })
            .take(lines)
            .collect();
        if section.is_empty() {
            return String::from("(no difference recorded)");
        }
        section.join("\n")
    }
}

/// Runs the suite, `pg_regress` and its `psql`s started by `launch` as the `postgres` user,
/// results under `output_dir` (which that user must be able to write: the server writes
/// there too). The database `regression` is dropped and created by pg_regress itself.
pub fn run(
    suites: &Suites,
    launch: Launcher,
    port: u16,
    output_dir: &Path,
    limit: Duration,
) -> anyhow::Result<RegressRun> {
    let regress = suites.regress_dir();
    let mut command = as_postgres(launch, &suites.pg_regress());
    command
        .arg(format!("--inputdir={}", regress.display()))
        .arg(format!("--bindir={PG_BINDIR}"))
        .arg(format!("--dlpath={}", regress.display()))
        .arg("--max-concurrent-tests=20")
        .arg(format!(
            "--schedule={}",
            regress.join("parallel_schedule").display()
        ))
        .args([
            "--host=127.0.0.1",
            &format!("--port={port}"),
            "--user=postgres",
        ])
        .arg(format!("--outputdir={}", output_dir.display()))
        // The postgres user cannot enter root's home; nothing is read from it.
        .env("HOME", output_dir)
        .current_dir(output_dir);
    let finished = run_bounded(command, limit).context("running pg_regress")?;
    let (tests, failures) = parse(&finished.stdout);
    Ok(RegressRun {
        tests,
        failures,
        elapsed: finished.elapsed,
        timed_out: finished.timed_out(),
        output: format!("{}{}", finished.stdout, finished.stderr),
        diffs: std::fs::read_to_string(output_dir.join("regression.diffs")).unwrap_or_default(),
    })
}

type Outcomes = (BTreeMap<String, bool>, BTreeMap<String, String>);

/// pg_regress prints `test NAME ... ok  12 ms` for a test run alone and `     NAME ... FAILED`
/// for one in a parallel group.
fn parse(output: &str) -> Outcomes {
    let mut tests = BTreeMap::new();
    let mut failures = BTreeMap::new();
    for line in output.lines() {
        let Some((name, status)) = line.split_once(" ... ") else {
            continue;
        };
        let name = name.trim();
        let name = name.strip_prefix("test ").unwrap_or(name).trim();
        let status = status.trim();
        let passed = status.split_whitespace().next() == Some("ok");
        if !passed {
            failures.insert(name.to_owned(), status.to_owned());
        }
        tests.insert(name.to_owned(), passed);
    }
    (tests, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_parallel_lines() {
        let output = "test tablespace                   ... ok          171 ms\n\
                      parallel group (2 tests):  copy misc\n\
                      \x20    copy                         ... FAILED       73 ms\n\
                      \x20    misc                         ... ok          902 ms\n\
                      \x20    random                       ... failed (ignored) 3 ms\n";
        let (tests, failures) = parse(output);
        assert_eq!(tests.len(), 4);
        assert!(tests["tablespace"]);
        assert!(!tests["copy"]);
        assert!(tests["misc"]);
        assert!(!tests["random"]);
        assert_eq!(failures["copy"], "FAILED       73 ms");
    }

    #[test]
    fn finds_the_difference_of_one_test() {
        let run = RegressRun {
            tests: BTreeMap::new(),
            failures: BTreeMap::new(),
            elapsed: Duration::ZERO,
            timed_out: false,
            output: String::new(),
            diffs: "diff -U3 /x/expected/copy.out /y/results/copy.out\n--- a\n+++ b\n-x\n+y\n\
                    diff -U3 /x/expected/misc.out /y/results/misc.out\n--- a\n+++ b\n-m\n"
                .to_owned(),
        };
        assert_eq!(
            run.diff_of("copy", 10),
            "diff -U3 /x/expected/copy.out /y/results/copy.out\n--- a\n+++ b\n-x\n+y"
        );
        assert!(run.diff_of("misc", 10).ends_with("-m"));
        assert_eq!(run.diff_of("other", 10), "(no difference recorded)");
    }
}
