//! PostgreSQL 15's regression suite (`installcheck-parallel`) as a whole workload of real
//! clients: its wall time directly, through Tollgate recording only, and through Tollgate with
//! a permissive policy and catalog access (every statement decided, DDL re-reading the
//! catalog). Each round runs the three in turn, so a round's ratios share the machine's state.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context;
use xtask::{
    client_suites::{direct, permissive_policy, regress, start_cluster, Launcher, Suites},
    testbed::{write_catalog_credentials, AgentCgroup, GatewayConfig, GatewayProcess, TempDir},
};

use super::{median, verdict};

/// The same bound as the test's: through with a policy within 1.5x direct.
const POLICY_RATIO_FLOOR: f64 = 1.5;
const RUN_LIMIT: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Side {
    seconds: Vec<f64>,
    passed: Vec<usize>,
    tests: usize,
}

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let suites = Suites::open()?;
    let agents = AgentCgroup::create("tollgate-bench-regress")?;
    let dir = TempDir::new("tollgate-bench-regress")?;
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, permissive_policy(&agents.path))?;
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials)?;
    let config = |port: u16, with_policy: bool| {
        let mut config = GatewayConfig::new("benchregress");
        config.cgroups = vec![agents.path.clone()];
        config.targets = vec![(
            "clinic".to_owned(),
            vec![format!("127.0.0.1:{port}"), format!("[::1]:{port}")],
        )];
        if with_policy {
            config.enforce_policy("clinic", &policy, &credentials);
        }
        config
    };

    let agent = |program: &str| agents.command(program);
    let mut sides: [Side; 3] = Default::default();
    for _ in 0..rounds {
        // A new cluster per run: each starts from the same state (a run cut short leaves
        // roles and large objects behind).
        let pg = start_cluster()?;
        run(&suites, &direct, pg.port(), &mut sides[0]).context("direct")?;
        for (side, with_policy) in [(1, false), (2, true)] {
            let pg = start_cluster()?;
            let _gateway = GatewayProcess::start(binary, &config(pg.port(), with_policy))?;
            run(&suites, &agent, pg.port(), &mut sides[side]).context("through Tollgate")?;
        }
    }
    Ok(report(&mut sides, rounds))
}

fn run(suites: &Suites, launch: Launcher, port: u16, side: &mut Side) -> anyhow::Result<()> {
    let output = TempDir::new("tollgate-bench-regress-out")?;
    output.chown_to("postgres")?;
    let run = regress::run(suites, launch, port, output.path(), RUN_LIMIT)?;
    if run.timed_out {
        anyhow::bail!(
            "pg_regress did not finish within {RUN_LIMIT:?}:\n{}",
            run.output
        );
    }
    side.seconds.push(run.elapsed.as_secs_f64());
    side.passed.push(run.passed());
    side.tests = run.tests.len();
    Ok(())
}

fn report(sides: &mut [Side; 3], rounds: u32) -> String {
    let direct = median(&mut sides[0].seconds);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## PostgreSQL regression suite (installcheck-parallel), {rounds} round(s): median wall time\n"
    );
    let _ = writeln!(
        out,
        "pg_regress and its psql sessions (up to 20 at once) against a throwaway PostgreSQL 15, \
         as agents through Tollgate or directly. The policy is permissive (every statement kind \
         allowed, nothing classified) with catalog access, so every statement is decided and \
         DDL makes the gateway re-read the catalog.\n"
    );
    let _ = writeln!(
        out,
        "| setup | time (s) | ratio to direct | tests passed per round |\n|---|---|---|---|"
    );
    let names = [
        "direct",
        "Tollgate, recording",
        "Tollgate, permissive policy + catalog",
    ];
    let mut policy_ratio = f64::NAN;
    for (index, (side, name)) in sides.iter_mut().zip(names).enumerate() {
        let seconds = median(&mut side.seconds);
        let ratio = seconds / direct;
        if index == 2 {
            policy_ratio = ratio;
        }
        let passed: Vec<String> = side
            .passed
            .iter()
            .map(|p| format!("{p}/{}", side.tests))
            .collect();
        let _ = writeln!(
            out,
            "| {name} | {seconds:.1} | {ratio:.2} | {} |",
            passed.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\nThrough Tollgate with the policy within {POLICY_RATIO_FLOOR}x direct: **{}**\n",
        verdict(policy_ratio <= POLICY_RATIO_FLOOR)
    );
    out
}
