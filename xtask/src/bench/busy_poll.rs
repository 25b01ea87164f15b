//! `gateway.busy_poll_us`: pgbench -S at 1, 2, 4 and 10 clients through two gateways side by
//! side, both with the example policy, one with busy polling off and one with the default
//! budget.
//! The figure is the tps ratio with/without. The gateway's CPU per transaction beside it is
//! the price.

use std::{fmt::Write as _, path::Path};

use super::{
    pgbench::pgbench_cluster,
    quads::{number_of_quads, run_quads, PolicySide, QUAD_RUN_SECONDS},
};

/// The budget measured, the gateway's default: long enough to cover a simple-protocol round
/// trip to the server on the 2-core VM (a 60 µs budget helped only the prepared mode there).
const BUDGET_US: u32 = 200;
/// One agent, a few, and enough to keep the two cores busy: polling stops while more than
/// one session waits for the server, which the middle counts exercise.
const CLIENTS: [u32; 4] = [1, 2, 4, 10];

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let off = PolicySide::start(binary, pg.port(), "poll-off", |config| {
        config.extra_gateway.push("busy_poll_us = 0".to_owned());
    })?;
    let on = PolicySide::start(binary, pg.port(), "poll-on", |config| {
        config
            .extra_gateway
            .push(format!("busy_poll_us = {BUDGET_US}"));
        // Each gateway recognises its own agents' connections by its mark.
        config.mark ^= 0x8000;
    })?;
    let gateways = [(&off.agents, &off.gateway), (&on.agents, &on.gateway)];
    let quads = number_of_quads(rounds);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Busy polling: pgbench -S, {quads} quads of {QUAD_RUN_SECONDS} s runs per mode and \
         client count\n\nTwo gateways side by side (nftables redirect, the example policy), one \
         with `busy_poll_us = 0` (off), one with `busy_poll_us = {BUDGET_US}` (on, the default); \
         each quad runs off, on, on, off. The ratio is the \
         median over quads of on / off, with the quartiles; the CPU is each gateway's per \
         transaction (a polling worker spends its waits working).\n\n\
         | clients | mode | off (tps) | on (tps) | ratio (quartiles) | gateway CPU per \
         transaction, off / on |\n|---:|---|---:|---:|---:|---:|"
    );
    for clients in CLIENTS {
        for mut result in run_quads(&pg, gateways, quads, clients)? {
            let (low, median, high) = result.ratio;
            let [off, on] = &mut result.sides;
            let _ = writeln!(
                out,
                "| {clients} | {} | {:.0} | {:.0} | {median:.3}× ({low:.3}–{high:.3}) | {:.1} / \
                 {:.1} µs |",
                result.mode,
                off.median_tps(),
                on.median_tps(),
                off.cpu_per_transaction_us(),
                on.cpu_per_transaction_us(),
            );
        }
    }
    out.push('\n');
    Ok(out)
}
