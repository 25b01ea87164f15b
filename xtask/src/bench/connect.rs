//! connect() latency with the programs attached vs detached, for agent and non-agent processes.

use std::{fmt::Write as _, net::TcpStream, path::Path, process::Command, time::Instant};

use anyhow::{bail, Context};
use xtask::testbed::{
    conntrack_entries, run_capture, AgentCgroup, GatewayConfig, GatewayProcess, Sink,
};

use super::{median, verdict};

const PROBES: usize = 2000;
const WARMUP: usize = 200;
const NOBODY: u32 = 65534;
/// Floor from the issue: what a non-agent connect may cost with the programs attached.
const NON_AGENT_FLOOR_NS: f64 = 2000.0;
/// And what the programs alone may cost it when attached at the cgroup root.
const PROGRAM_FLOOR_NS: f64 = 1000.0;

/// The hidden `connect-probe` command: times `count` connects (after a warm-up).
pub fn connect_probe(port: u16, count: usize) -> anyhow::Result<()> {
    let mut samples = connect_samples(port, count)?;
    samples.sort_by(f64::total_cmp);
    println!(
        "{} {}",
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10]
    );
    Ok(())
}

/// `count` connect() times in ns, after a warm-up.
fn connect_samples(port: u16, count: usize) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + WARMUP {
        let start = Instant::now();
        let stream = TcpStream::connect(("127.0.0.1", port)).context("probe connect")?;
        let elapsed = start.elapsed().as_nanos() as f64;
        drop(stream);
        if i >= WARMUP {
            samples.push(elapsed);
        }
    }
    Ok(samples)
}

/// What the nftables table alone costs a non-agent connect, toggled in place: with cgroup
/// selection no program runs for a non-agent, so the table is all that is left. Many short
/// batches, each compared with the one right after it, so drift on this shared machine cancels.
fn table_overhead(gateway: &GatewayProcess, port: u16) -> anyhow::Result<f64> {
    const PAIRS: usize = 30;
    const BATCH: usize = 400;
    let table = gateway.nft_table().to_owned();
    let saved = run_capture(Command::new("nft").args(["list", "table", "inet", &table]))?;
    let saved_path = std::env::temp_dir().join(format!("tollgate-bench-{table}.nft"));
    std::fs::write(&saved_path, saved)?;
    let mut differences = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let mut with_table = connect_samples(port, BATCH)?;
        run_capture(Command::new("nft").args(["delete", "table", "inet", &table]))?;
        let mut without_table = connect_samples(port, BATCH)?;
        run_capture(Command::new("nft").arg("-f").arg(&saved_path))?;
        differences.push(median(&mut with_table) - median(&mut without_table));
    }
    let _ = std::fs::remove_file(&saved_path);
    Ok(median(&mut differences))
}

/// Connections made by a non-agent while the default gateway runs, for the conntrack count.
const UNTRACKED_CONNECTS: usize = 100_000;

/// Conntrack entries left by `UNTRACKED_CONNECTS` non-agent connections (a quarter each to the
/// protected and the unprotected sink, over IPv4 and IPv6) with the default redirect.
fn tracked_non_agent_connects(
    binary: &Path,
    config: &GatewayConfig,
    ports: [u16; 2],
) -> anyhow::Result<Vec<String>> {
    let _gateway = GatewayProcess::start(binary, config)?;
    let per_destination = UNTRACKED_CONNECTS / 4;
    for port in ports {
        for host in ["127.0.0.1", "::1"] {
            for _ in 0..per_destination {
                drop(TcpStream::connect((host, port)).context("non-agent connect")?);
            }
        }
    }
    let mut entries = Vec::new();
    for port in ports {
        for family in ["ipv4", "ipv6"] {
            entries.extend(conntrack_entries(family, port, None)?);
        }
    }
    Ok(entries)
}

fn probe(mut command: Command, port: u16) -> anyhow::Result<f64> {
    let output = command
        .args([
            "connect-probe",
            "--port",
            &port.to_string(),
            "--count",
            &PROBES.to_string(),
        ])
        .output()?;
    if !output.status.success() {
        bail!(
            "connect-probe failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("probe output")
}

/// One round's medians (ns) for each case.
#[derive(Default, Clone, Copy)]
struct Round {
    non_agent: f64,
    non_agent_unprotected: f64,
    agent: f64,
}

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let xtask = std::env::current_exe()?;
    let protected = Sink::start()?;
    let unprotected = Sink::start()?;
    let agents = AgentCgroup::create("tollgate-bench-agents")?;
    let non_agent = || Command::new(&xtask);
    let agent = || agents.command(&xtask.display().to_string());
    let config_for = |uid_mode: bool, redirect: &'static str| {
        let mut config = GatewayConfig::new("bench");
        config.cgroups = vec![agents.path.clone()];
        config.redirect = Some(redirect);
        if uid_mode {
            config.uids = vec![NOBODY];
        }
        config.targets = vec![(
            "sink".to_owned(),
            vec![format!("127.0.0.1:{}", protected.port)],
        )];
        config
    };
    let gateway_config = |uid_mode: bool| config_for(uid_mode, "nftables");
    let measure_round = |with_agent: bool| -> anyhow::Result<Round> {
        Ok(Round {
            non_agent: probe(non_agent(), protected.port)?,
            non_agent_unprotected: probe(non_agent(), unprotected.port)?,
            agent: if with_agent {
                probe(agent(), protected.port)?
            } else {
                f64::NAN
            },
        })
    };

    // First, while no earlier measurement has left connections in conntrack's memory (a closed
    // connection's entry stays for two minutes).
    let tracked = tracked_non_agent_connects(
        binary,
        &gateway_config(false),
        [protected.port, unprotected.port],
    )?;

    // Precise figures per redirect mode: the programs' exact kernel time per non-agent connect
    // (worst case: attached at the root, so they run for every process) and the table's cost
    // toggled in place (cgroup selection, so no program runs for the non-agent).
    let mut precise = Vec::new();
    for redirect in ["ebpf", "nftables"] {
        let programs = {
            let gateway = GatewayProcess::start(binary, &config_for(true, redirect))?;
            let to_protected = bpf_time_per_connect(binary, &gateway, || {
                probe(Command::new(&xtask), protected.port)
            })?;
            let to_unprotected = bpf_time_per_connect(binary, &gateway, || {
                probe(Command::new(&xtask), unprotected.port)
            })?;
            (to_protected, to_unprotected)
        };
        let table = {
            let gateway = GatewayProcess::start(binary, &config_for(false, redirect))?;
            (
                table_overhead(&gateway, protected.port)?,
                table_overhead(&gateway, unprotected.port)?,
            )
        };
        precise.push((redirect, table, programs));
    }

    // Paired per round: each attached figure is compared with the detached one measured just
    // before it, and the report takes the median of those differences.
    let mut detached = Vec::new();
    let mut cgroup_mode = Vec::new();
    let mut uid_mode = Vec::new();
    for _ in 0..rounds {
        let base = measure_round(true)?;
        let with_cgroups = {
            let _gateway = GatewayProcess::start(binary, &gateway_config(false))?;
            measure_round(true)?
        };
        let with_uids = {
            let _gateway = GatewayProcess::start(binary, &gateway_config(true))?;
            measure_round(false)?
        };
        detached.push(base);
        cgroup_mode.push(with_cgroups);
        uid_mode.push(with_uids);
    }

    let delta = |attached: &[Round], pick: fn(&Round) -> f64| {
        let mut values: Vec<f64> = attached
            .iter()
            .zip(&detached)
            .map(|(a, d)| pick(a) - pick(d))
            .collect();
        median(&mut values)
    };
    let level = |rounds: &[Round], pick: fn(&Round) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(pick).collect();
        median(&mut values)
    };
    let non_agent: fn(&Round) -> f64 = |r| r.non_agent;
    let unprotected_case: fn(&Round) -> f64 = |r| r.non_agent_unprotected;
    let agent_case: fn(&Round) -> f64 = |r| r.agent;

    let rows = [
        (
            "non-agent → protected destination, attached to agent cgroups",
            level(&cgroup_mode, non_agent),
            delta(&cgroup_mode, non_agent),
        ),
        (
            "non-agent → protected destination, attached at root (uid selection)",
            level(&uid_mode, non_agent),
            delta(&uid_mode, non_agent),
        ),
        (
            "non-agent → unprotected destination, attached to agent cgroups",
            level(&cgroup_mode, unprotected_case),
            delta(&cgroup_mode, unprotected_case),
        ),
        (
            "non-agent → unprotected destination, attached at root (uid selection)",
            level(&uid_mode, unprotected_case),
            delta(&uid_mode, unprotected_case),
        ),
        (
            "agent → protected destination (marked, redirected, accepted by the gateway)",
            level(&cgroup_mode, agent_case),
            delta(&cgroup_mode, agent_case),
        ),
    ];
    // Exact kernel time of the programs per non-agent connect, in the worst case (attached at
    // the root, so they run for every process), from the kernel's own bpf_stats.

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## connect() latency ({PROBES} connects per case per round, {rounds} rounds)\n"
    );
    let _ = writeln!(out, "Detached medians: non-agent {:.2} µs, non-agent to an unprotected port {:.2} µs, agent {:.2} µs.\n",
        level(&detached, non_agent) / 1000.0, level(&detached, unprotected_case) / 1000.0, level(&detached, agent_case) / 1000.0);
    let _ = writeln!(
        out,
        "| case (programs attached) | median µs | overhead vs detached, paired per round µs |"
    );
    let _ = writeln!(out, "|---|---:|---:|");
    for (case, value, overhead) in rows {
        let _ = writeln!(
            out,
            "| {case} | {:.2} | {:+.2} |",
            value / 1000.0,
            overhead / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "\nPrecise non-agent costs (µs per connect). Table: the nftables table toggled in place, \
         30 paired batches of 400 connects. Programs: kernel bpf_stats run time of all Tollgate \
         programs (both ends of the connection) with the programs at the cgroup root (uid \
         selection); with cgroup selection alone non-agents run none of them.\n"
    );
    let _ = writeln!(out, "| redirect | table → protected | table → unprotected | programs → protected | programs → unprotected | worst total | floor < 2 µs |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    let mut floors = String::new();
    for (redirect, table, programs) in &precise {
        let programs = (programs.0.total_ns, programs.1.total_ns);
        let worst = (table.0 + programs.0).max(table.1 + programs.1);
        let program_worst = programs.0.max(programs.1);
        if *redirect == "nftables" {
            let _ = writeln!(
                floors,
                "- non-agent connect overhead < 2 µs with the default (nftables) redirect, to \
                 protected and unprotected destinations, programs at the root: {:+.2} µs **{}**",
                worst / 1000.0,
                verdict(worst < NON_AGENT_FLOOR_NS)
            );
        }
        let _ = writeln!(
            floors,
            "- {redirect}: the programs' cost per non-agent connect (at the root) < 1 µs: \
             {:.2} µs **{}**",
            program_worst / 1000.0,
            verdict(program_worst < PROGRAM_FLOOR_NS)
        );
        let _ = writeln!(
            out,
            "| {redirect} | {:+.2} | {:+.2} | {:.2} | {:.2} | {:+.2} | **{}** |",
            table.0 / 1000.0,
            table.1 / 1000.0,
            programs.0 / 1000.0,
            programs.1 / 1000.0,
            worst / 1000.0,
            verdict(worst < NON_AGENT_FLOOR_NS)
        );
    }
    let _ = writeln!(
        out,
        "\nThe programs' cost by program (runs per non-agent connect × ns per run, both ends, \
         at the root):\n"
    );
    for (redirect, _, (to_protected, to_unprotected)) in &precise {
        for (destination, cost) in [("protected", to_protected), ("unprotected", to_unprotected)] {
            let programs: Vec<String> = cost
                .by_program
                .iter()
                .map(|(name, runs, ns)| format!("{name} {runs:.2} × {:.0} ns", ns / runs))
                .collect();
            let _ = writeln!(out, "- {redirect} → {destination}: {}", programs.join(", "));
        }
    }
    let _ = writeln!(
        floors,
        "- no conntrack entry for {UNTRACKED_CONNECTS} non-agent connections (protected and \
         unprotected, IPv4 and IPv6) with the default redirect: {} **{}**{}",
        tracked.len(),
        verdict(tracked.is_empty()),
        tracked
            .iter()
            .take(3)
            .map(|entry| format!("\n  - `{entry}`"))
            .collect::<String>()
    );
    let _ = writeln!(
        out,
        "\nThe nftables redirect's nat chain turns connection tracking on for the whole host; \
         Tollgate's raw chains keep every non-agent flow untracked (`gateway.untrack`). The eBPF \
         redirect needs no NAT. The per-round rows above are whole-process medians and carry the \
         machine's noise (±3 µs between runs).\n\nFloors:\n\n{floors}"
    );
    Ok(out)
}

/// Kernel time all pinned Tollgate programs spent per connect `run_probe` made, in total and
/// by program.
struct ProgramCost {
    total_ns: f64,
    /// Name, runs per connect, ns per connect.
    by_program: Vec<(String, f64, f64)>,
}

fn bpf_time_per_connect(
    binary: &Path,
    gateway: &GatewayProcess,
    run_probe: impl FnOnce() -> anyhow::Result<f64>,
) -> anyhow::Result<ProgramCost> {
    const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let previous = std::fs::read_to_string(STATS).unwrap_or_else(|_| "0".into());
    std::fs::write(STATS, "1")?;
    let before = program_stats(binary, gateway);
    let result = run_probe();
    let after = program_stats(binary, gateway);
    std::fs::write(STATS, previous.trim())?;
    result?;
    let (before, after) = (before?, after?);
    let connects = (PROBES + WARMUP) as f64;
    let by_program: Vec<(String, f64, f64)> = after
        .iter()
        .map(|(name, &(runs, ns))| {
            let (runs_before, ns_before) = before.get(name).copied().unwrap_or_default();
            (
                name.clone(),
                (runs - runs_before) as f64 / connects,
                (ns - ns_before) as f64 / connects,
            )
        })
        .filter(|(_, runs, _)| *runs > 0.0)
        .collect();
    let total_ns = by_program.iter().map(|(_, _, ns)| ns).sum();
    // Programs that ran for something else meanwhile (a unix socket connect on the host) count
    // in the total but are not listed as running per connect.
    let by_program = by_program
        .into_iter()
        .filter(|(_, runs, _)| *runs >= 0.01)
        .collect();
    Ok(ProgramCost {
        total_ns,
        by_program,
    })
}

/// Each pinned program's run count and run time (ns), from `tollgate status`.
fn program_stats(
    binary: &Path,
    gateway: &GatewayProcess,
) -> anyhow::Result<std::collections::BTreeMap<String, (u64, u64)>> {
    let output = Command::new(binary)
        .args(["status", "--json", "--config"])
        .arg(gateway.config_path())
        .output()?;
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("status --json")?;
    let programs = report["kernel"]["programs"]
        .as_array()
        .context("no programs in status")?;
    Ok(programs
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?.to_owned();
            Some((name, (p["run_count"].as_u64()?, p["run_time_ns"].as_u64()?)))
        })
        .collect())
}
