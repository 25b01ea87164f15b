//! The policy's cost on the request path: the decision on a cached statement (criterion), and
//! pgbench -S with the example policy against the same gateway with hooks only.

use std::{fmt::Write as _, path::Path};

use anyhow::Context;
use xtask::testbed::{
    example_policy, write_catalog_credentials, AgentCgroup, GatewayConfig, GatewayProcess, TempDir,
};

use super::{
    pgbench::pgbench_cluster,
    quads::{number_of_quads, run_quads, side_config, CLIENTS, QUAD_RUN_SECONDS},
    verdict,
};
use crate::{cargo, workspace_root};

const DECISION_FLOOR_NS: f64 = 5_000.0;
const DECISIONS: [&str; 3] = ["phi-read", "pgbench-select", "pgbench-select-literal"];
const POLICY_TOLERANCE: f64 = 0.05;

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let mut out = String::new();
    out.push_str(&decision()?);
    let pg = pgbench_cluster()?;
    // Two gateways side by side, each intercepting its own agents, so runs with and without
    // the policy alternate closely and share the machine's conditions.
    let hooks_agents = AgentCgroup::create("tollgate-bench-hooks")?;
    let policy_agents = AgentCgroup::create("tollgate-bench-policy")?;
    let dir = TempDir::new("tollgate-bench-policy")?;
    let config = |tag: &str, agents: &AgentCgroup| side_config(tag, agents, pg.port());
    let hooks_config = config("benchhooks", &hooks_agents);
    let mut policy_config = config("benchpolicy", &policy_agents);
    example_policy_config(&mut policy_config, &policy_agents, &dir)?;
    // Each gateway recognises its own agents' connections by its mark.
    policy_config.mark ^= 0x8000;
    let hooks_gateway = GatewayProcess::start(binary, &hooks_config)?;
    let policy_gateway = GatewayProcess::start(binary, &policy_config)?;

    let quads = number_of_quads(rounds);
    let gateways = [
        (&hooks_agents, &hooks_gateway),
        (&policy_agents, &policy_gateway),
    ];
    let mut results = run_quads(&pg, gateways, quads, CLIENTS)?;
    let _ = writeln!(
        out,
        "## pgbench -S with the example policy, {CLIENTS} clients, {quads} quads of \
         {QUAD_RUN_SECONDS} s runs per mode\n\n\
         Two gateways side by side (nftables redirect, recording hooks on), one without a \
         policy and one with policies/examples/clinic-policy.toml in force (every statement \
         analysed, decided and its results tracked). Each quad runs hooks, policy, policy, \
         hooks; the ratio is the median over quads of policy tps / hooks tps, with the \
         quartiles. Gateway CPU per transaction is the gateway process's user + system time \
         over the transactions pgbench completed (connection set-up included).\n\n\
         | mode | hooks only (tps) | example policy (tps) | ratio (quartiles) | gateway CPU per \
         transaction, hooks / policy |\n|---|---:|---:|---:|---:|"
    );
    let mut floors = String::new();
    for result in &mut results {
        let mode = result.mode;
        let (low, ratio, high) = result.ratio;
        let [hooks, policed] = &mut result.sides;
        let _ = writeln!(
            out,
            "| {mode} | {:.0} | {:.0} | {ratio:.3}× ({low:.3}–{high:.3}) | {:.1} / {:.1} µs |",
            hooks.median_tps(),
            policed.median_tps(),
            hooks.cpu_per_transaction_us(),
            policed.cpu_per_transaction_us(),
        );
        let _ = writeln!(
            floors,
            "- {mode}: within {:.0}% of hooks only: {ratio:.3}× **{}**",
            POLICY_TOLERANCE * 100.0,
            verdict(ratio >= 1.0 - POLICY_TOLERANCE)
        );
    }
    let _ = writeln!(out, "\nFloors:\n\n{floors}");

    Ok(out)
}

/// Puts the example policy in force on target `clinic` for `agents` (its files in `dir`).
pub(super) fn example_policy_config(
    config: &mut GatewayConfig,
    agents: &AgentCgroup,
    dir: &TempDir,
) -> anyhow::Result<()> {
    let glob = format!("{}*", agents.path);
    let key_file = dir.path().join("tokenization.key");
    let example = dir.path().join("example.toml");
    std::fs::write(&example, example_policy(&glob, &key_file)?)?;
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials)?;
    config.enforce_policy("clinic", &example, &credentials);
    Ok(())
}

/// The criterion benchmark of the decision, read back from its estimates.
fn decision() -> anyhow::Result<String> {
    cargo(&[
        "bench",
        "-p",
        "tollgate",
        "--bench",
        "decision",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
    ])?;
    let mut out = String::from(
        "## Policy decision on a cached statement (criterion)\n\nAnalysis lookup by text (by \
         literal shape for `pgbench-select-literal`, a new text each time as pgbench -M simple \
         sends), provenance through a catalog snapshot, evaluation of the example policy.\n\n\
         | statement | mean | floor |\n|---|---:|---|\n",
    );
    for name in DECISIONS {
        let path = workspace_root().join(format!(
            "target/criterion/decision_{name}/new/estimates.json"
        ));
        let estimates: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?;
        let mean = estimates["mean"]["point_estimate"]
            .as_f64()
            .context("no mean in the criterion estimates")?;
        let _ = writeln!(
            out,
            "| {name} | {:.2} µs | < {:.0} µs **{}** |",
            mean / 1000.0,
            DECISION_FLOOR_NS / 1000.0,
            verdict(mean < DECISION_FLOOR_NS)
        );
    }
    out.push('\n');
    Ok(out)
}
