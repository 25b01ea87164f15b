//! Approvals' cost: pgbench -S with the example policy's approval rules in force (they match
//! nothing pgbench runs) against the same policy without them, two gateways side by side; and
//! the time from an approver's `approve` to the held statement's answer at the agent, which
//! must be a push (under 50 ms), not a poll.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use xtask::testbed::{
    example_policy, write_catalog_credentials, AgentCgroup, GatewayProcess, TempDir,
};

use super::{
    median,
    pgbench::pgbench_cluster,
    quads::{number_of_quads, run_quads, side_config, CLIENTS, QUAD_RUN_SECONDS},
    verdict,
};

const RULES_TOLERANCE: f64 = 0.03;
const LATENCY_FLOOR_MS: f64 = 50.0;
const LATENCY_SAMPLES: usize = 30;
/// The agent in the latency runs: not root, so root may approve its requests.
const AGENT_UID: &str = "65534";

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let mut out = rules_cost(binary, rounds)?;
    out.push_str(&approve_to_answer(binary)?);
    Ok(out)
}

/// The example policy without its `require_approval` rules.
fn without_approval_rules(policy: &str) -> String {
    let mut blocks = policy.split("\n[[rules]]");
    let mut kept = blocks.next().unwrap_or_default().to_owned();
    for block in blocks {
        if !block.contains("effect = \"require_approval\"") {
            kept.push_str("\n[[rules]]");
            kept.push_str(block);
        }
    }
    kept
}

fn rules_cost(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let plain_agents = AgentCgroup::create("tollgate-bench-noapprovals")?;
    let approval_agents = AgentCgroup::create("tollgate-bench-approvals")?;
    let dir = TempDir::new("tollgate-bench-approvals")?;
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials)?;
    let policy_for = |agents: &AgentCgroup, name: &str, strip: bool| -> anyhow::Result<_> {
        let glob = format!("{}*", agents.path);
        let policy = example_policy(&glob, &dir.path().join("tokenization.key"))?;
        let policy = match strip {
            true => without_approval_rules(&policy),
            false => policy,
        };
        let file = dir.path().join(name);
        std::fs::write(&file, policy)?;
        Ok(file)
    };
    let plain_policy = policy_for(&plain_agents, "plain.toml", true)?;
    let approval_policy = policy_for(&approval_agents, "approvals.toml", false)?;
    let mut plain = side_config("benchnoappr", &plain_agents, pg.port());
    plain.enforce_policy("clinic", &plain_policy, &credentials);
    let mut held = side_config("benchappr", &approval_agents, pg.port());
    held.enforce_policy("clinic", &approval_policy, &credentials);
    // Each gateway recognises its own agents' connections by its mark.
    held.mark ^= 0x8000;
    held.unix_socket_dir = false;
    let plain_gateway = GatewayProcess::start(binary, &plain)?;
    let held_gateway = GatewayProcess::start(binary, &held)?;
    let quads = number_of_quads(rounds);
    let mut results = run_quads(
        &pg,
        [
            (&plain_agents, &plain_gateway),
            (&approval_agents, &held_gateway),
        ],
        quads,
        CLIENTS,
    )?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Approval rules loaded, pgbench -S, {CLIENTS} clients, {quads} quads of \
         {QUAD_RUN_SECONDS} s runs per mode\n\n\
         Two gateways of this build side by side, both with the example policy; one without \
         its `require_approval` rules. None of them matches what pgbench runs, so nothing waits: \
         the figure is what checking them costs. Each quad runs without, with, with, without; \
         the ratio is the median over quads of with / without.\n\n\
         | mode | without (tps) | with approval rules (tps) | ratio (quartiles) | gateway CPU \
         per transaction, without / with |\n|---|---:|---:|---:|---:|"
    );
    let mut floors = String::new();
    for result in &mut results {
        let mode = result.mode;
        let (low, ratio, high) = result.ratio;
        let [without, with] = &mut result.sides;
        let _ = writeln!(
            out,
            "| {mode} | {:.0} | {:.0} | {ratio:.3}× ({low:.3}–{high:.3}) | {:.1} / {:.1} µs |",
            without.median_tps(),
            with.median_tps(),
            without.cpu_per_transaction_us(),
            with.cpu_per_transaction_us(),
        );
        let _ = writeln!(
            floors,
            "- {mode}: within {:.0}% without them: {ratio:.3}× **{}**",
            RULES_TOLERANCE * 100.0,
            verdict(ratio >= 1.0 - RULES_TOLERANCE)
        );
    }
    let _ = writeln!(out, "\nFloors:\n\n{floors}");
    Ok(out)
}

/// From `approve` (over the admin socket) to the agent's answer, one held UPDATE at a time.
fn approve_to_answer(binary: &Path) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let agents = AgentCgroup::create("tollgate-bench-approve")?;
    let dir = TempDir::new("tollgate-bench-approve")?;
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials)?;
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[[identities]]\nid = \"agents\"\ncgroup = [\"{}*\"]\n\n\
             [[rules]]\nid = \"approve-branch-writes\"\neffect = \"require_approval\"\n\
             kinds = [\"update\"]\ntables = [\"public.pgbench_branches\"]\n\n\
             [[rules]]\nid = \"agents-work\"\neffect = \"allow\"\nidentities = [\"agents\"]\n",
            agents.path
        ),
    )?;
    let mut config = side_config("benchapprove", &agents, pg.port());
    config.enforce_policy("clinic", &policy, &credentials);
    config.approvals = vec!["approver_users = [\"root\"]".to_owned()];
    let gateway = GatewayProcess::start(binary, &config)?;
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let sql = format!("UPDATE pgbench_branches SET bbalance = bbalance + {n} WHERE bid = 1");
        let agent = spawn_agent(&agents, pg.port(), &sql)?;
        let id = wait_for_pending(&gateway)?;
        let started = Instant::now();
        let answer = admin(&gateway, &json!({ "op": "approvals.approve", "id": id }))?;
        if answer["ok"] != json!(true) {
            bail!("approve {id}: {answer}");
        }
        let output = agent.wait_with_output()?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            bail!(
                "the approved UPDATE failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        latencies.push(elapsed.as_secs_f64() * 1000.0);
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    let median_ms = median(&mut latencies);
    Ok(format!(
        "## From approve to the held statement's answer, {LATENCY_SAMPLES} samples\n\n\
         An agent's UPDATE waits for approval; the approver's `approve` goes over the admin \
         socket, and the clock stops when the agent (psql) has its answer and has exited, which \
         bounds the time to reach the server from above.\n\n\
         | median | p90 | max |\n|---:|---:|---:|\n| {median_ms:.1} ms | {p90:.1} ms | {:.1} ms |\n\n\
         Floors:\n\n- median under {LATENCY_FLOOR_MS:.0} ms: {median_ms:.1} ms **{}**\n\n",
        sorted.last().copied().unwrap_or_default(),
        verdict(median_ms < LATENCY_FLOOR_MS)
    ))
}

/// psql as an agent (uid nobody, so root may approve it), left running while it waits.
fn spawn_agent(agents: &AgentCgroup, port: u16, sql: &str) -> anyhow::Result<Child> {
    let mut command = agents.command("setpriv");
    command
        .args([
            &format!("--reuid={AGENT_UID}"),
            &format!("--regid={AGENT_UID}"),
            "--clear-groups",
            "psql",
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Ok(command.spawn()?)
}

/// The id of the one request waiting (bounded wait).
fn wait_for_pending(gateway: &GatewayProcess) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = admin(gateway, &json!({ "op": "approvals.list" }))?;
        if let Some(id) = answer["pending"][0]["id"].as_u64() {
            return Ok(id);
        }
        if Instant::now() > deadline {
            bail!("no request waited for approval: {answer}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn admin(gateway: &GatewayProcess, request: &Value) -> anyhow::Result<Value> {
    gateway
        .admin(request)
        .context("the gateway did not answer on its admin socket")
}
