//! Where the time goes: pgbench -S at 10 clients in each protocol mode, through the gateway
//! (the example policy in force: every statement analysed, decided, recorded and its results
//! tracked) and through pgbouncer (session mode) in the same run. Per transaction, for each
//! proxy process: CPU (user, system), sleeps (voluntary context switches: each one ended by a
//! wake-up), preemptions (involuntary switches), system calls; then a `perf` sample of where
//! each proxy's CPU goes.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::Context;
use xtask::testbed::{signal, AgentCgroup, GatewayProcess, TempDir};

use super::{
    cpu_times,
    pgbench::{pgbench_cluster, pgbench_run, PgBouncer},
    policy::example_policy_config,
    quads::{side_config, MODES},
    verdict,
};

const CLIENTS: u32 = 10;
/// Lines of each perf summary.
const TOP_SYMBOLS: usize = 12;

/// A proxy's counters, summed over its threads.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    user_s: f64,
    system_s: f64,
    voluntary: u64,
    involuntary: u64,
    syscalls: u64,
    transactions: u64,
    /// pgbench's tps, summed over runs.
    tps: f64,
    runs: u32,
}

impl Counters {
    fn read(pid: u32) -> anyhow::Result<Self> {
        let (user_s, system_s) = cpu_times(pid)?;
        let mut counters = Self {
            user_s,
            system_s,
            ..Self::default()
        };
        // Context switches are counted per thread (finished threads' are lost, but the
        // proxies' threads live as long as they do).
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let status = std::fs::read_to_string(task?.path().join("status"))?;
            for line in status.lines() {
                let value = |prefix: &str| {
                    line.strip_prefix(prefix)
                        .and_then(|v| v.trim().parse::<u64>().ok())
                };
                if let Some(v) = value("voluntary_ctxt_switches:") {
                    counters.voluntary += v;
                }
                if let Some(v) = value("nonvoluntary_ctxt_switches:") {
                    counters.involuntary += v;
                }
            }
        }
        Ok(counters)
    }

    fn since(self, before: Self) -> Self {
        Self {
            user_s: self.user_s - before.user_s,
            system_s: self.system_s - before.system_s,
            voluntary: self.voluntary - before.voluntary,
            involuntary: self.involuntary - before.involuntary,
            syscalls: self.syscalls,
            transactions: self.transactions,
            tps: self.tps,
            runs: self.runs,
        }
    }

    fn add(&mut self, other: Self) {
        self.user_s += other.user_s;
        self.system_s += other.system_s;
        self.voluntary += other.voluntary;
        self.involuntary += other.involuntary;
        self.syscalls += other.syscalls;
        self.transactions += other.transactions;
        self.tps += other.tps;
        self.runs += other.runs;
    }

    fn per_transaction(&self, value: f64) -> f64 {
        value / self.transactions.max(1) as f64
    }

    fn cpu_us(&self) -> f64 {
        self.per_transaction((self.user_s + self.system_s) * 1e6)
    }
}

/// One proxy under measurement.
struct Proxy<'a> {
    name: &'static str,
    pid: u32,
    /// How pgbench is started so that its connections go through this proxy.
    pgbench: Box<dyn Fn() -> Command + 'a>,
    port: u16,
}

pub fn measure(binary: &Path, seconds: u32, rounds: u32) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let bouncer = PgBouncer::start(pg.port())?;
    let agents = AgentCgroup::create("tollgate-bench-profile")?;
    let dir = TempDir::new("tollgate-bench-profile")?;
    let mut config = side_config("benchprofile", &agents, pg.port());
    example_policy_config(&mut config, &agents, &dir)?;
    let gateway = GatewayProcess::start(binary, &config)?;
    let proxies = [
        Proxy {
            name: "Tollgate",
            pid: gateway.pid().context("the gateway is not running")?,
            pgbench: Box::new(|| agents.command("pgbench")),
            port: pg.port(),
        },
        Proxy {
            name: "pgbouncer",
            pid: bouncer.pid(),
            pgbench: Box::new(|| Command::new("pgbench")),
            port: bouncer.port,
        },
    ];

    let mut totals = vec![[Counters::default(); 2]; MODES.len()];
    for _ in 0..rounds {
        for (mode_totals, mode) in totals.iter_mut().zip(MODES) {
            for (total, proxy) in mode_totals.iter_mut().zip(&proxies) {
                total.add(counted_run(proxy, mode, seconds)?);
            }
        }
    }
    let mut samples = Vec::new();
    for mode in MODES {
        for proxy in &proxies {
            samples.push((mode, proxy.name, sampled_run(proxy, mode, seconds, &dir)?));
        }
    }
    drop(gateway);
    Ok(report(&totals, &samples, seconds, rounds))
}

/// One pgbench run with the proxy's counters read around it and its system calls counted.
fn counted_run(proxy: &Proxy<'_>, mode: &str, seconds: u32) -> anyhow::Result<Counters> {
    let syscalls = PerfStat::start(proxy.pid)?;
    let before = Counters::read(proxy.pid)?;
    let run = pgbench_run((proxy.pgbench)(), proxy.port, mode, CLIENTS, seconds)?;
    let after = Counters::read(proxy.pid)?;
    let mut counters = after.since(before);
    counters.syscalls = syscalls.finish()?;
    counters.transactions = run.transactions;
    counters.tps = run.tps;
    counters.runs = 1;
    Ok(counters)
}

/// `perf` attached to a process until stopped (or dropped: never left running).
struct Perf(Option<Child>);

impl Perf {
    /// `perf <args> -p PID -o OUTPUT`.
    fn attach(args: &[&str], pid: u32, output: &Path) -> anyhow::Result<Self> {
        let child = Command::new("perf")
            .args(args)
            .args(["-p", &pid.to_string(), "-o"])
            .arg(output)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf (`cargo xtask setup` installs linux-perf)")?;
        // perf attaches in a few milliseconds; what it misses is the run's first instants.
        std::thread::sleep(std::time::Duration::from_millis(100));
        Ok(Self(Some(child)))
    }

    /// perf writes what it has on SIGINT.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.0.take() {
            signal(child.id(), libc::SIGINT);
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// `perf stat` counting a process's system calls until finished.
struct PerfStat {
    perf: Perf,
    output: PathBuf,
    _dir: TempDir,
}

impl PerfStat {
    fn start(pid: u32) -> anyhow::Result<Self> {
        let dir = TempDir::new("tollgate-perf-stat")?;
        let output = dir.path().join("stat.csv");
        let args = ["stat", "-x", ",", "-e", "raw_syscalls:sys_enter"];
        Ok(Self {
            perf: Perf::attach(&args, pid, &output)?,
            output,
            _dir: dir,
        })
    }

    fn finish(mut self) -> anyhow::Result<u64> {
        self.perf.stop()?;
        let text = std::fs::read_to_string(&self.output)?;
        text.lines()
            .find(|line| line.contains("raw_syscalls:sys_enter"))
            .and_then(|line| line.split(',').next()?.trim().parse().ok())
            .with_context(|| format!("no system call count from perf stat:\n{text}"))
    }
}

/// A pgbench run with the proxy's stacks sampled; the summary of where its CPU went.
fn sampled_run(
    proxy: &Proxy<'_>,
    mode: &str,
    seconds: u32,
    dir: &TempDir,
) -> anyhow::Result<String> {
    let data = dir.path().join(format!("{}-{mode}.data", proxy.name));
    let mut record = Perf::attach(&["record", "-q", "-F", "999"], proxy.pid, &data)?;
    let run = pgbench_run((proxy.pgbench)(), proxy.port, mode, CLIENTS, seconds);
    record.stop()?;
    run?;
    let report = Command::new("perf")
        .args(["report", "--stdio", "-q", "--sort", "dso,sym", "-i"])
        .arg(&data)
        .output()
        .context("perf report")?;
    let text = String::from_utf8_lossy(&report.stdout);
    Ok(text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .take(TOP_SYMBOLS)
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n"))
}

fn report(
    totals: &[[Counters; 2]],
    samples: &[(&str, &str, String)],
    seconds: u32,
    rounds: u32,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Profile: pgbench -S, {CLIENTS} clients, {rounds} run(s) of {seconds} s per mode and \
         proxy\n\nThe gateway runs the example policy (policies/examples/clinic-policy.toml: \
         every statement analysed, decided and recorded, every result tracked) behind the \
         default nftables redirect; pgbouncer runs in session mode. Figures per transaction \
         pgbench completed, for the proxy process and all its threads: CPU (user + system), \
         sleeps (voluntary context switches; each ends with a wake-up), preemptions \
         (involuntary switches), system calls (perf's raw_syscalls:sys_enter).\n\n\
         | mode | proxy | tps | CPU µs (user + system) | sleeps | preemptions | system calls |\n\
         |---|---|---:|---:|---:|---:|---:|"
    );
    let mut floors = String::new();
    for (mode, pair) in MODES.iter().zip(totals) {
        for (name, counters) in ["Tollgate", "pgbouncer"].iter().zip(pair) {
            let _ = writeln!(
                out,
                "| {mode} | {name} | {:.0} | {:.1} ({:.1} + {:.1}) | {:.2} | {:.2} | {:.2} |",
                counters.tps / f64::from(counters.runs.max(1)),
                counters.cpu_us(),
                counters.per_transaction(counters.user_s * 1e6),
                counters.per_transaction(counters.system_s * 1e6),
                counters.per_transaction(counters.voluntary as f64),
                counters.per_transaction(counters.involuntary as f64),
                counters.per_transaction(counters.syscalls as f64),
            );
        }
        let (gateway, bouncer) = (pair[0].cpu_us(), pair[1].cpu_us());
        let _ = writeln!(
            floors,
            "- {mode}: gateway CPU per transaction ≤ pgbouncer's: {gateway:.1} / {bouncer:.1} µs \
             = {:.2}× **{}**",
            gateway / bouncer,
            verdict(gateway <= bouncer)
        );
    }
    let _ = writeln!(out, "\nFloors:\n\n{floors}");
    let _ = writeln!(
        out,
        "Where the CPU goes (perf record -F 999 of the proxy, one {seconds} s run per mode; \
         overhead, object, symbol):\n"
    );
    for (mode, proxy, summary) in samples {
        let _ = writeln!(out, "{proxy}, {mode}:\n\n```\n{summary}\n```\n");
    }
    out
}
