//! The audit log's durability modes against each other: pgbench -S through two gateways of
//! this build side by side, one with `audit.durability = "batched"` (the default) and one
//! with `"strict"` (each request waits for its record's fsync; concurrent sessions share
//! one). Floor: strict at least 0.6× of batched.

use std::{fmt::Write as _, path::Path};

use xtask::testbed::{AgentCgroup, GatewayProcess};

use super::{
    pgbench::pgbench_cluster,
    quads::{number_of_quads, run_quads, side_config, CLIENTS, QUAD_RUN_SECONDS},
    verdict,
};

const STRICT_FLOOR: f64 = 0.6;

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let batched_agents = AgentCgroup::create("tollgate-bench-batched")?;
    let strict_agents = AgentCgroup::create("tollgate-bench-strict")?;
    let mut batched = side_config("benchbatched", &batched_agents, pg.port());
    batched
        .extra_audit
        .push("durability = \"batched\"".to_owned());
    let mut strict = side_config("benchstrict", &strict_agents, pg.port());
    strict
        .extra_audit
        .push("durability = \"strict\"".to_owned());
    // Each gateway recognises its own agents' connections by its mark.
    strict.mark ^= 0x8000;
    strict.unix_socket_dir = false;
    let batched_gateway = GatewayProcess::start(binary, &batched)?;
    let strict_gateway = GatewayProcess::start(binary, &strict)?;
    let quads = number_of_quads(rounds);
    let mut results = run_quads(
        &pg,
        [
            (&batched_agents, &batched_gateway),
            (&strict_agents, &strict_gateway),
        ],
        quads,
        CLIENTS,
    )?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Audit durability: strict against batched, pgbench -S, {CLIENTS} clients, {quads} \
         quads of {QUAD_RUN_SECONDS} s runs per mode\n\n\
         Two gateways of this build side by side, no policy; each quad runs batched, strict, \
         strict, batched. The ratio is the median over quads of strict's tps / batched's.\n\n\
         | mode | batched (tps) | strict (tps) | ratio (quartiles) | gateway CPU per \
         transaction, batched / strict |\n|---|---:|---:|---:|---:|"
    );
    let mut floors = String::new();
    for result in &mut results {
        let mode = result.mode;
        let (low, ratio, high) = result.ratio;
        let [batched, strict] = &mut result.sides;
        let _ = writeln!(
            out,
            "| {mode} | {:.0} | {:.0} | {ratio:.3}× ({low:.3}–{high:.3}) | {:.1} / {:.1} µs |",
            batched.median_tps(),
            strict.median_tps(),
            batched.cpu_per_transaction_us(),
            strict.cpu_per_transaction_us(),
        );
        let _ = writeln!(
            floors,
            "- {mode}: strict ≥ {STRICT_FLOOR}× batched: {ratio:.3}× **{}**",
            verdict(ratio >= STRICT_FLOOR)
        );
    }
    let _ = writeln!(out, "\nFloors:\n\n{floors}");
    Ok(out)
}
