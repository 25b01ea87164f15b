//! A change's cost against the build before it: pgbench -S through a baseline build of
//! `tollgate` (`--baseline PATH`, e.g. built from the previous commit in a worktree) and
//! through this one, side by side in quads, recording hooks only; with `--baseline-policy`
//! also each build enforcing its own example policy. The ratio this/baseline is the figure:
//! "no worse than before" means at least 1 within the machine's noise.

use std::{fmt::Write as _, path::Path};

use xtask::testbed::{
    example_policy, example_policy_from, write_catalog_credentials, AgentCgroup, GatewayConfig,
    GatewayProcess, TempDir,
};

use super::{
    pgbench::pgbench_cluster,
    quads::{number_of_quads, run_quads, side_config, CLIENTS, QUAD_RUN_SECONDS},
    verdict,
};

/// Below this ratio the change is taken to cost throughput (the quads' spread on this
/// machine is a few percent).
const NO_WORSE: f64 = 0.97;

/// The build to compare with.
#[derive(Clone, Copy)]
pub struct Baseline<'a> {
    pub binary: &'a Path,
    /// The example policy as of that build.
    pub policy: Option<&'a Path>,
}

pub fn measure(binary: &Path, baseline: Baseline<'_>, rounds: u32) -> anyhow::Result<String> {
    let mut out = compare(binary, baseline.binary, rounds, None)?;
    if let Some(old_policy) = baseline.policy {
        out.push_str(&compare(binary, baseline.binary, rounds, Some(old_policy))?);
    }
    Ok(out)
}

/// One comparison: hooks only, or (`old_policy`) each build under its own example policy.
fn compare(
    binary: &Path,
    baseline: &Path,
    rounds: u32,
    old_policy: Option<&Path>,
) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let baseline_agents = AgentCgroup::create("tollgate-bench-baseline")?;
    let current_agents = AgentCgroup::create("tollgate-bench-current")?;
    let dir = TempDir::new("tollgate-bench-baseline")?;
    let config = |tag: &str, agents: &AgentCgroup| side_config(tag, agents, pg.port());
    let mut baseline_config = config("benchbase", &baseline_agents);
    baseline_config.unix_socket_dir = false;
    let mut current_config = config("benchcurrent", &current_agents);
    // Each gateway recognises its own agents' connections by its mark.
    current_config.mark ^= 0x8000;
    if let Some(old_policy) = old_policy {
        let credentials = dir.path().join("catalog.toml");
        write_catalog_credentials(&credentials)?;
        let key_file = dir.path().join("tokenization.key");
        let enforce = |config: &mut GatewayConfig, policy: String, name: &str| {
            let file = dir.path().join(name);
            std::fs::write(&file, policy)?;
            config.enforce_policy("clinic", &file, &credentials);
            anyhow::Ok(())
        };
        let glob = |agents: &AgentCgroup| format!("{}*", agents.path);
        let old = example_policy_from(old_policy, &glob(&baseline_agents), &key_file)?;
        enforce(&mut baseline_config, old, "baseline-policy.toml")?;
        let current = example_policy(&glob(&current_agents), &key_file)?;
        enforce(&mut current_config, current, "current-policy.toml")?;
    }
    let baseline_gateway = GatewayProcess::start(baseline, &baseline_config)?;
    let current_gateway = GatewayProcess::start(binary, &current_config)?;
    let quads = number_of_quads(rounds);
    let gateways = [
        (&baseline_agents, &baseline_gateway),
        (&current_agents, &current_gateway),
    ];
    let mut results = run_quads(&pg, gateways, quads, CLIENTS)?;
    let mut out = String::new();
    let what = match old_policy {
        None => "recording hooks, no policy".to_owned(),
        Some(old) => format!(
            "recording hooks, each build enforcing its own example policy (the baseline's: \
             `{}`)",
            old.display()
        ),
    };
    let _ = writeln!(
        out,
        "## pgbench -S against a baseline build{}, {CLIENTS} clients, {quads} quads of \
         {QUAD_RUN_SECONDS} s runs per mode\n\n\
         Baseline: `{}`. Two gateways side by side (nftables redirect, {what}); each quad \
         runs baseline, this build, this build, baseline. The ratio is the median over quads \
         of this build's tps / the baseline's, with the quartiles.\n\n\
         | mode | baseline (tps) | this build (tps) | ratio (quartiles) | gateway CPU per \
         transaction, baseline / this build |\n|---|---:|---:|---:|---:|",
        if old_policy.is_some() {
            ", with the example policy"
        } else {
            ""
        },
        baseline.display()
    );
    let mut floors = String::new();
    for result in &mut results {
        let mode = result.mode;
        let (low, ratio, high) = result.ratio;
        let [old, new] = &mut result.sides;
        let _ = writeln!(
            out,
            "| {mode} | {:.0} | {:.0} | {ratio:.3}× ({low:.3}–{high:.3}) | {:.1} / {:.1} µs |",
            old.median_tps(),
            new.median_tps(),
            old.cpu_per_transaction_us(),
            new.cpu_per_transaction_us(),
        );
        let _ = writeln!(
            floors,
            "- {mode}: no worse than the baseline (≥ {NO_WORSE}×): {ratio:.3}× **{}**",
            verdict(ratio >= NO_WORSE)
        );
    }
    let _ = writeln!(out, "\nFloors:\n\n{floors}");
    Ok(out)
}
