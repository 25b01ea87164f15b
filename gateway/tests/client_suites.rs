//! Privileged: the clients' own test suites pass through Tollgate as they pass directly.
//! Each suite runs against a throwaway cluster three times: directly (the control), then as
//! agents in the agent cgroup through the gateway, once recording only and once with a
//! permissive policy and catalog access. The clients keep the address they use directly
//! (127.0.0.1 and the cluster's port); the kernel sends them to the gateway. Whatever passes
//! directly must pass through: a difference is Tollgate's.
//!
//! - psycopg2's suite (pytest, Debian's `python3-psycopg2`), with a per-test timeout;
//! - PostgreSQL 15's regression suite (`installcheck-parallel`); its times are printed, and
//!   the floor on them (with the policy, within 1.5x the direct time) is a benchmark
//!   (`cargo xtask bench --only regress`), not a timed test;
//! - `libpq_pipeline`: every test passes, and its protocol traces equal the direct run's.
//!
//! `cargo xtask setup` builds the suites once (target/client-suites/); `#[ignore]`d for plain
//! `cargo test`, `cargo xtask test` runs them as root.

#[path = "client_suites/bed.rs"]
mod bed;
#[path = "client_suites/pipeline.rs"]
mod pipeline;
#[path = "client_suites/psycopg2.rs"]
mod psycopg2;

use std::time::Duration;

use bed::{agent_connections, Mode, SuiteBed, MODES};
use xtask::{
    client_suites::{direct, regress},
    testbed::TempDir,
};

/// Direct runs take about 30 s each on 2 cores; these bounds only catch a broken control.
const DIRECT_LIMIT: Duration = Duration::from_secs(300);
/// A through run may take this factor of the direct time, plus a margin, before it is cut off.
const THROUGH_FACTOR: u32 = 3;
const THROUGH_MARGIN: Duration = Duration::from_secs(30);
/// The control runs must have run the suites, not skipped them (psycopg2: about 720 pass).
const MIN_PSYCOPG2_PASSES: usize = 600;
const MIN_REGRESS_TESTS: usize = 200;

fn through_limit(direct: Duration) -> Duration {
    direct * THROUGH_FACTOR + THROUGH_MARGIN
}

/// Prints what the gateway saw of the run's agents; a run none of whose connections reached
/// the gateway did not test Tollgate at all.
fn check_went_through(
    bed: &SuiteBed,
    gateway: &xtask::testbed::GatewayProcess,
    mode: Mode,
) -> Result<(), String> {
    let seen = agent_connections(gateway, &bed.agents.path);
    println!(
        "  {}: {} agent connections, closed as {:?}",
        mode.name(),
        seen.opened,
        seen.outcomes
    );
    for (error, count) in &seen.errors {
        println!("    {count} x {error}");
    }
    if seen.opened == 0 {
        return Err(format!(
            "{}: no agent connection reached the gateway",
            mode.name()
        ));
    }
    Ok(())
}

/// The tests grouped by how they ended through (many fail for one reason), ids under each.
fn by_reason(through: &psycopg2::SuiteRun, tests: &[&str]) -> String {
    let mut groups: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for id in tests {
        let reason = match through.outcomes.get(*id) {
            Some(outcome) => format!("{}: {}", outcome.kind, outcome.message),
            None => "did not run".to_owned(),
        };
        groups.entry(reason).or_default().push(id);
    }
    let mut text = String::new();
    for (reason, ids) in groups {
        text.push_str(&format!("  {} x {reason}\n", ids.len()));
        for id in ids {
            text.push_str(&format!("    {id}\n"));
        }
    }
    text
}

#[test]
#[ignore = "privileged: needs root, BPF, PostgreSQL and `cargo xtask setup` (run with `cargo xtask test`)"]
fn psycopg2_suite_passes_through_tollgate_as_directly() {
    let mut bed = SuiteBed::start("psycopg2_suite_passes_through_tollgate_as_directly");
    psycopg2::assert_debian_driver(&bed.suites);
    let scratch = TempDir::new("tollgate-suites-pytest").expect("temp dir");
    psycopg2::fresh_database(&bed.pg);
    let control = psycopg2::run(
        &bed.suites,
        &direct,
        bed.port(),
        scratch.path(),
        DIRECT_LIMIT,
    );
    println!("psycopg2 suite, direct: {}", control.summary());
    let passed = control.with("passed");
    for id in control
        .with("failed")
        .iter()
        .chain(&control.with("error"))
        .chain(&control.with("hung"))
    {
        println!(
            "  fails directly too: {id}: {}",
            control.outcomes[*id].message
        );
    }
    assert!(
        control.complete && passed.len() >= MIN_PSYCOPG2_PASSES,
        "the direct control run of psycopg2's suite is broken ({}; at least {MIN_PSYCOPG2_PASSES} \
         should pass): {}",
        control.summary(),
        control.notes.join("\n")
    );

    let mut failures = Vec::new();
    for mode in MODES {
        bed.fresh_cluster();
        psycopg2::fresh_database(&bed.pg);
        let gateway = bed.gateway(mode);
        let agent = bed.agent();
        let budget = through_limit(control.elapsed);
        let through = psycopg2::run(&bed.suites, &agent, bed.port(), scratch.path(), budget);
        println!("psycopg2 suite, {}: {}", mode.name(), through.summary());
        if let Err(problem) = check_went_through(&bed, &gateway, mode) {
            failures.push(problem);
        }
        drop(gateway);
        let through_passed = through.with("passed");
        let lost: Vec<&str> = passed.difference(&through_passed).copied().collect();
        let gained: Vec<&&str> = through_passed.difference(&passed).collect();
        if !gained.is_empty() {
            println!("  passed through but not directly: {gained:?}");
        }
        if !lost.is_empty() || through_passed.len() != passed.len() || !through.complete {
            failures.push(format!(
                "psycopg2 suite, {}: {} passed vs {} directly; {} of the tests that pass \
                 directly did not:\n{}{}",
                mode.name(),
                through_passed.len(),
                passed.len(),
                lost.len(),
                by_reason(&through, &lost),
                through.notes.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
#[ignore = "privileged: needs root, BPF, PostgreSQL and `cargo xtask setup` (run with `cargo xtask test`)"]
fn regression_suite_passes_through_tollgate_as_directly() {
    let mut bed = SuiteBed::start("regression_suite_passes_through_tollgate_as_directly");
    let output = bed.postgres_dir("regress-direct");
    let control = regress::run(
        &bed.suites,
        &direct,
        bed.port(),
        output.path(),
        DIRECT_LIMIT,
    )
    .expect("pg_regress directly");
    let direct_seconds = control.elapsed.as_secs_f64();
    println!(
        "regression suite, direct: {}/{} passed in {direct_seconds:.1} s",
        control.passed(),
        control.tests.len()
    );
    for (test, status) in &control.failures {
        println!("  fails directly too: {test}: {status}");
    }
    assert!(
        !control.timed_out && control.tests.len() >= MIN_REGRESS_TESTS,
        "the direct control run of pg_regress is broken:\n{}",
        control.output
    );

    let mut failures = Vec::new();
    for mode in MODES {
        bed.fresh_cluster();
        let output = bed.postgres_dir("regress-through");
        let gateway = bed.gateway(mode);
        let agent = bed.agent();
        let limit = through_limit(control.elapsed);
        let through = regress::run(&bed.suites, &agent, bed.port(), output.path(), limit)
            .expect("pg_regress through Tollgate");
        let seconds = through.elapsed.as_secs_f64();
        println!(
            "regression suite, {}: {}/{} passed in {seconds:.1} s ({:.2}x direct){}",
            mode.name(),
            through.passed(),
            through.tests.len(),
            seconds / direct_seconds,
            if through.timed_out { ", CUT OFF" } else { "" }
        );
        if let Err(problem) = check_went_through(&bed, &gateway, mode) {
            failures.push(problem);
        }
        drop(gateway);
        let lost: Vec<String> = control
            .tests
            .iter()
            .filter(|(test, passed)| **passed && through.tests.get(*test) != Some(&true))
            .map(|(test, _)| match through.failures.get(test) {
                Some(status) => format!("  {test}: {status}\n{}", through.diff_of(test, 25)),
                None => format!("  {test}: did not run"),
            })
            .collect();
        if through.timed_out {
            failures.push(format!(
                "regression suite, {}: not finished within {limit:?} (direct: {direct_seconds:.1} s)",
                mode.name()
            ));
        }
        if !lost.is_empty() {
            failures.push(format!(
                "regression suite, {}: {} of the {} tests that pass directly did not:\n{}",
                mode.name(),
                lost.len(),
                control.passed(),
                lost.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
#[ignore = "privileged: needs root, BPF, PostgreSQL and `cargo xtask setup` (run with `cargo xtask test`)"]
fn libpq_pipeline_passes_through_tollgate_as_directly() {
    let mut bed = SuiteBed::start("libpq_pipeline_passes_through_tollgate_as_directly");
    let tests = pipeline::tests(&bed.suites);
    assert!(
        tests.len() >= 10,
        "libpq_pipeline lists too few tests: {tests:?}"
    );
    let traces = TempDir::new("tollgate-suites-traces").expect("temp dir");
    let mut controls = Vec::new();
    for test in &tests {
        let run = pipeline::run(&bed.suites, &direct, bed.port(), test, traces.path());
        // PostgreSQL's own TAP test asserts these: a miss here is the harness's, not Tollgate's.
        assert!(
            run.passed,
            "libpq_pipeline {test} fails directly: {}",
            run.detail
        );
        if let (Some(expected), Some(trace)) =
            (pipeline::expected_trace(&bed.suites, test), &run.trace)
        {
            if let Some((line, want, got)) = pipeline::first_difference(&expected, trace) {
                panic!(
                    "libpq_pipeline {test}: the direct trace differs from the tree's expected \
                     trace at line {line}: expected {want:?}, got {got:?}"
                );
            }
        }
        controls.push(run);
    }

    let mut failures = Vec::new();
    for mode in MODES {
        bed.fresh_cluster();
        let gateway = bed.gateway(mode);
        let agent = bed.agent();
        println!("libpq_pipeline, {}:", mode.name());
        for (test, control) in tests.iter().zip(&controls) {
            let run = pipeline::run(&bed.suites, &agent, bed.port(), test, traces.path());
            let mut verdict = if run.passed {
                "ok".to_owned()
            } else {
                format!("FAILED ({})", run.detail)
            };
            if !run.passed {
                failures.push(format!(
                    "libpq_pipeline {test}, {}: failed through, passes directly: {}",
                    mode.name(),
                    run.detail
                ));
            }
            if let (Some(want), Some(got)) = (&control.trace, &run.trace) {
                if let Some((line, direct_line, through_line)) =
                    pipeline::first_difference(want, got)
                {
                    let difference = format!(
                        "trace differs at line {line}: direct {direct_line:?}, through {through_line:?}"
                    );
                    verdict.push_str(&format!("; {difference}"));
                    failures.push(format!(
                        "libpq_pipeline {test}, {}: {difference}",
                        mode.name()
                    ));
                }
            }
            println!(
                "  {test}: {verdict} ({:.2} s; direct {:.2} s)",
                run.seconds, control.seconds
            );
        }
        if let Err(problem) = check_went_through(&bed, &gateway, mode) {
            failures.push(problem);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
