//! connect() latency with the programs attached vs detached, for agent and non-agent processes.

use std::{
    fmt::Write as _,
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{bail, Context};
use xtask::testbed::{run_capture, AgentCgroup, GatewayConfig, GatewayProcess};

use super::{median, verdict};

const PROBES: usize = 2000;
const WARMUP: usize = 200;
const NOBODY: u32 = 65534;
/// Floor from the issue: what a non-agent connect may cost with the programs attached.
const NON_AGENT_FLOOR_NS: f64 = 2000.0;

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

/// Accepts and drops connections until stopped (bounded by the probes' own counts).
struct Sink {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Sink {
    fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
                if flag.load(Ordering::Relaxed) {
                    return;
                }
            }
        });
        Ok(Self { port, stop })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
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
    let gateway_config = |uid_mode: bool| {
        let mut config = GatewayConfig::new("bench");
        config.cgroups = vec![agents.path.clone()];
        if uid_mode {
            config.uids = vec![NOBODY];
        }
        config.targets = vec![(
            "sink".to_owned(),
            vec![format!("127.0.0.1:{}", protected.port)],
        )];
        config
    };
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
    let bpf_cost = {
        let gateway = GatewayProcess::start(binary, &gateway_config(true))?;
        let protected_cost = bpf_time_per_connect(binary, &gateway, || {
            probe(Command::new(&xtask), protected.port)
        })?;
        let unprotected_cost = bpf_time_per_connect(binary, &gateway, || {
            probe(Command::new(&xtask), unprotected.port)
        })?;
        (protected_cost, unprotected_cost)
    };
    let table_cost = {
        let gateway = GatewayProcess::start(binary, &gateway_config(false))?;
        (
            table_overhead(&gateway, protected.port)?,
            table_overhead(&gateway, unprotected.port)?,
        )
    };

    // The floor uses the two precise measurements: the table's cost toggled in place plus the
    // programs' exact kernel time (worst case: attached at the root).
    let worst_non_agent = (table_cost.0 + bpf_cost.0).max(table_cost.1 + bpf_cost.1);

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
        "\nKernel time of Tollgate's programs per non-agent connect with the programs at the cgroup \
         root (kernel bpf_stats, all four programs, both ends of the connection): {:.0} ns to a \
         protected destination, {:.0} ns to an unprotected one. With cgroup selection only, \
         non-agents run none of them; the rest of the differences above is connection tracking, \
         which the nat chain turns on for the host (Tollgate exempts loopback traffic of \
         protected ports), and noise.",
        bpf_cost.0, bpf_cost.1
    );
    let _ = writeln!(
        out,
        "\nThe nftables table alone, toggled in place (30 paired batches of 400 connects, cgroup \
         selection, so no program runs for the non-agent): {:+.2} µs per connect to a protected \
         destination, {:+.2} µs to an unprotected one.",
        table_cost.0 / 1000.0,
        table_cost.1 / 1000.0
    );
    let _ = writeln!(
        out,
        "\nFloor: non-agent connect overhead < 2 µs: worst case (table + programs at the root) \
         {:+.2} µs -> **{}**. The per-round rows above are whole-process medians and carry the \
         machine's noise (±3 µs between runs).\n",
        worst_non_agent / 1000.0,
        verdict(worst_non_agent < NON_AGENT_FLOOR_NS)
    );
    Ok(out)
}

/// Kernel time (ns) all pinned Tollgate programs spent, divided by the connects `run_probe` made.
fn bpf_time_per_connect(
    binary: &Path,
    gateway: &GatewayProcess,
    run_probe: impl FnOnce() -> anyhow::Result<f64>,
) -> anyhow::Result<f64> {
    const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let previous = std::fs::read_to_string(STATS).unwrap_or_else(|_| "0".into());
    std::fs::write(STATS, "1")?;
    let before = total_run_time(binary, gateway);
    let result = run_probe();
    let after = total_run_time(binary, gateway);
    std::fs::write(STATS, previous.trim())?;
    result?;
    let connects = (PROBES + WARMUP) as f64;
    Ok((after? - before?) as f64 / connects)
}

fn total_run_time(binary: &Path, gateway: &GatewayProcess) -> anyhow::Result<u64> {
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
        .filter_map(|p| p["run_time_ns"].as_u64())
        .sum())
}
