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
use xtask::testbed::{AgentCgroup, GatewayConfig, GatewayProcess};

use super::{median, verdict};

const PROBES: usize = 3000;
const NOBODY: u32 = 65534;
/// Floor from the issue: what a non-agent connect may cost with the programs attached.
const NON_AGENT_FLOOR_NS: f64 = 2000.0;

/// The hidden `connect-probe` command: times `count` connects (after a warm-up).
pub fn connect_probe(port: u16, count: usize) -> anyhow::Result<()> {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count + 200 {
        let start = Instant::now();
        let stream = TcpStream::connect(("127.0.0.1", port)).context("probe connect")?;
        let elapsed = start.elapsed().as_nanos() as f64;
        drop(stream);
        if i >= 200 {
            samples.push(elapsed);
        }
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "{} {}",
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10]
    );
    Ok(())
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

#[derive(Default)]
struct Samples {
    detached_non_agent: Vec<f64>,
    detached_agent: Vec<f64>,
    cgroup_mode_non_agent: Vec<f64>,
    cgroup_mode_agent: Vec<f64>,
    uid_mode_non_agent: Vec<f64>,
}

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let xtask = std::env::current_exe()?;
    let sink = Sink::start()?;
    let agents = AgentCgroup::create("tollgate-bench-agents")?;
    let non_agent = || Command::new(&xtask);
    let agent = || {
        let mut command = agents.command(&xtask.display().to_string());
        command.env_remove("RUST_LOG");
        command
    };
    let gateway_config = |uid_mode: bool| {
        let mut config = GatewayConfig::new("bench");
        config.cgroups = vec![agents.path.clone()];
        if uid_mode {
            config.uids = vec![NOBODY];
        }
        config.targets = vec![("sink".to_owned(), vec![format!("127.0.0.1:{}", sink.port)])];
        config
    };

    let mut samples = Samples::default();
    for _ in 0..rounds {
        samples
            .detached_non_agent
            .push(probe(non_agent(), sink.port)?);
        samples.detached_agent.push(probe(agent(), sink.port)?);
        {
            // Programs attached to the agent cgroup only.
            let _gateway = GatewayProcess::start(binary, &gateway_config(false))?;
            samples
                .cgroup_mode_non_agent
                .push(probe(non_agent(), sink.port)?);
            samples.cgroup_mode_agent.push(probe(agent(), sink.port)?);
        }
        {
            // uid selection attaches at the cgroup root: the programs run for every process.
            let _gateway = GatewayProcess::start(binary, &gateway_config(true))?;
            samples
                .uid_mode_non_agent
                .push(probe(non_agent(), sink.port)?);
        }
    }

    let base = median(&mut samples.detached_non_agent);
    let base_agent = median(&mut samples.detached_agent);
    let cgroup_non_agent = median(&mut samples.cgroup_mode_non_agent);
    let cgroup_agent = median(&mut samples.cgroup_mode_agent);
    let uid_non_agent = median(&mut samples.uid_mode_non_agent);
    let worst_overhead = (cgroup_non_agent - base).max(uid_non_agent - base);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## connect() latency (median of {PROBES} connects per run, median over rounds)\n"
    );
    let _ = writeln!(out, "| case | median µs | overhead vs detached µs |");
    let _ = writeln!(out, "|---|---:|---:|");
    let row = |out: &mut String, case: &str, value: f64, reference: f64| {
        let _ = writeln!(
            out,
            "| {case} | {:.2} | {:+.2} |",
            value / 1000.0,
            (value - reference) / 1000.0
        );
    };
    row(&mut out, "non-agent, programs detached", base, base);
    row(
        &mut out,
        "non-agent, attached to agent cgroups",
        cgroup_non_agent,
        base,
    );
    row(
        &mut out,
        "non-agent, attached at root (uid selection)",
        uid_non_agent,
        base,
    );
    row(
        &mut out,
        "agent, programs detached (direct)",
        base_agent,
        base_agent,
    );
    row(
        &mut out,
        "agent, attached (marked + redirected to gateway)",
        cgroup_agent,
        base_agent,
    );
    let _ = writeln!(
        out,
        "\nFloor: non-agent connect overhead < 2 µs: worst {:+.2} µs -> **{}**\n",
        worst_overhead / 1000.0,
        verdict(worst_overhead < NON_AGENT_FLOOR_NS)
    );
    Ok(out)
}
