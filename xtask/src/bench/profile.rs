//! Where the time goes: pgbench -S at 10 clients in each protocol mode, through the gateway
//! (the example policy in force: every statement analysed, decided, recorded and its results
//! tracked), through a gateway without a policy (statements still recorded), and through
//! pgbouncer (session mode), and straight to the server, in the same run. Per transaction: for
//! each proxy process, CPU (user, system), sleeps (voluntary context switches: each one ended by
//! a wake-up), preemptions (involuntary switches), system calls and page faults; around it,
//! pgbench's CPU, the server's CPU, page faults, system calls and switches (equal counts behind
//! two proxies mean the server did the same work behind both, whatever its CPU), and the whole
//! host's TCP segments, CPU, idle share and context switches. Then a `perf` sample of where each
//! proxy's CPU and the server's go.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::Context;
use xtask::testbed::{signal, AgentCgroup, GatewayProcess, TempDir};

use super::{
    clock_ticks,
    pgbench::{pgbench_cluster, pgbench_run, PgBouncer},
    policy::example_policy_config,
    quads::{side_config, MODES},
    verdict, ProcStat,
};

const CLIENTS: u32 = 10;
const GATEWAY: &str = "Tollgate";
const RELAY: &str = "Tollgate, no policy";
const BOUNCER: &str = "pgbouncer";
/// pgbench straight to the server: what the server spends per transaction with no proxy.
const DIRECT: &str = "direct";
const PROXIES: usize = 4;
/// Lines of each perf summary.
const TOP_SYMBOLS: usize = 12;

/// One run's counters: the proxy's (summed over its threads), pgbench's, the server's and the
/// host's.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    user_s: f64,
    system_s: f64,
    voluntary: u64,
    involuntary: u64,
    syscalls: u64,
    /// Minor page faults (faults served without I/O).
    faults: u64,
    /// TCP segments sent on the whole host (every leg: pgbench, proxy, server), from
    /// `/proc/net/snmp`: a proxy that splits or acknowledges more pays for it in the kernel.
    segments: u64,
    /// pgbench's CPU.
    client_s: f64,
    /// The PostgreSQL server's CPU and page faults.
    server: ProcessUsage,
    /// The server's system calls and context switches (perf stat): equal counts behind two
    /// proxies mean the server did the same work behind both.
    server_syscalls: u64,
    server_switches: u64,
    /// The whole host's CPU (every core, every process, interrupts): busy and idle.
    host: HostCpu,
    transactions: u64,
    /// pgbench's tps, summed over runs.
    tps: f64,
    runs: u32,
}

impl Counters {
    /// The host's figures, and the proxy's when there is one.
    fn read(pid: Option<u32>) -> anyhow::Result<Self> {
        let host = Self {
            segments: tcp_segments_sent()?,
            host: HostCpu::read()?,
            ..Self::default()
        };
        let Some(pid) = pid else {
            return Ok(host);
        };
        let stat = ProcStat::read(pid)?;
        let mut counters = Self {
            // utime, stime: all the process's threads, finished ones included.
            user_s: stat.seconds(14)?,
            system_s: stat.seconds(15)?,
            faults: stat.own()?.faults,
            ..host
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
            segments: self.segments - before.segments,
            faults: self.faults - before.faults,
            client_s: 0.0,
            server: ProcessUsage::default(),
            server_syscalls: 0,
            server_switches: 0,
            host: self.host.since(before.host),
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
        self.segments += other.segments;
        self.faults += other.faults;
        self.client_s += other.client_s;
        self.server = self.server.add(other.server);
        self.server_syscalls += other.server_syscalls;
        self.server_switches += other.server_switches;
        self.host = self.host.add(other.host);
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

/// The host's CPU time from the first line of `/proc/stat` (all cores).
#[derive(Debug, Default, Clone, Copy)]
struct HostCpu {
    /// user, nice, system, irq, softirq.
    busy_s: f64,
    /// idle, iowait.
    idle_s: f64,
    /// Context switches on every core (`ctxt`): each sleep and preemption of any task.
    switches: u64,
}

impl HostCpu {
    fn read() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat.lines().next().context("empty /proc/stat")?;
        let switches = stat
            .lines()
            .find_map(|line| line.strip_prefix("ctxt "))
            .and_then(|v| v.trim().parse().ok())
            .context("no ctxt in /proc/stat")?;
        let ticks = line
            .split_whitespace()
            .skip(1)
            .map(str::parse::<f64>)
            .collect::<Result<Vec<_>, _>>()
            .context("a CPU time in /proc/stat")?;
        let sum = |fields: &[usize]| -> anyhow::Result<f64> {
            let mut total = 0.0;
            for &i in fields {
                total += ticks.get(i).context("a short cpu line in /proc/stat")?;
            }
            Ok(total / clock_ticks())
        };
        Ok(Self {
            busy_s: sum(&[0, 1, 2, 5, 6])?,
            idle_s: sum(&[3, 4])?,
            switches,
        })
    }

    fn add(self, other: Self) -> Self {
        Self {
            busy_s: self.busy_s + other.busy_s,
            idle_s: self.idle_s + other.idle_s,
            switches: self.switches + other.switches,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            busy_s: self.busy_s - before.busy_s,
            idle_s: self.idle_s - before.idle_s,
            switches: self.switches - before.switches,
        }
    }

    fn idle_percent(&self) -> f64 {
        100.0 * self.idle_s / (self.busy_s + self.idle_s).max(f64::MIN_POSITIVE)
    }
}

/// The CPU of a process's children that it has waited for (`cutime` + `cstime`).
fn children_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    Ok(ProcStat::read(pid)?.reaped()?.cpu_s)
}

/// CPU and minor page faults of one process or several.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct ProcessUsage {
    cpu_s: f64,
    /// A new backend faults in each shared buffer it first touches.
    faults: u64,
}

impl ProcessUsage {
    /// What the server's processes used: the postmaster (it forks a backend for each new
    /// session), its live children (pgbouncer keeps its backends) and those it has reaped (a
    /// gateway's backends end with their sessions).
    fn of_server(postmaster: u32) -> anyhow::Result<Self> {
        // A child reaped while /proc is walked would be in neither sum: walk again until the
        // postmaster's reaped sums are the same on both sides of the walk.
        for _ in 0..10 {
            let before = ProcStat::read(postmaster)?;
            let children = live_children(postmaster)?;
            let after = ProcStat::read(postmaster)?;
            let reaped = after.reaped()?;
            if before.reaped()? == reaped {
                return Ok(after.own()?.add(reaped).add(children));
            }
        }
        anyhow::bail!("the server's processes kept ending while they were counted")
    }

    fn add(self, other: Self) -> Self {
        Self {
            cpu_s: self.cpu_s + other.cpu_s,
            faults: self.faults + other.faults,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            cpu_s: self.cpu_s - before.cpu_s,
            faults: self.faults - before.faults,
        }
    }
}

/// The summed usage of a process's live children.
fn live_children(parent: u32) -> anyhow::Result<ProcessUsage> {
    let mut usage = ProcessUsage::default();
    // A process that ends during the listing is in its parent's reaped sums once reaped
    // (see `ProcessUsage::of_server`).
    for (_, stat) in children(parent)? {
        usage = usage.add(stat.own()?);
    }
    Ok(usage)
}

impl ProcStat {
    /// The process's own CPU (utime + stime) and minor faults.
    fn own(&self) -> anyhow::Result<ProcessUsage> {
        Ok(ProcessUsage {
            cpu_s: self.seconds(14)? + self.seconds(15)?,
            faults: self.number(10)?,
        })
    }

    /// Its reaped children's CPU (cutime + cstime) and minor faults (cminflt).
    fn reaped(&self) -> anyhow::Result<ProcessUsage> {
        Ok(ProcessUsage {
            cpu_s: self.seconds(16)? + self.seconds(17)?,
            faults: self.number(11)?,
        })
    }
}

/// The host's `Tcp: OutSegs` counter.
fn tcp_segments_sent() -> anyhow::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp")?;
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (names, values) = (tcp.next(), tcp.next());
    let names = names.context("no Tcp header in /proc/net/snmp")?;
    let values = values.context("no Tcp values in /proc/net/snmp")?;
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "OutSegs")
        .and_then(|(_, value)| value.parse().ok())
        .context("no OutSegs in /proc/net/snmp")
}

/// One proxy under measurement (or none: pgbench straight to the server).
struct Proxy<'a> {
    name: &'static str,
    pid: Option<u32>,
    /// How pgbench is started so that its connections go through this proxy.
    pgbench: Box<dyn Fn() -> Command + 'a>,
    port: u16,
}

pub fn measure(binary: &Path, seconds: u32, rounds: u32) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let postmaster = pg.postmaster_pid()?;
    let bouncer = PgBouncer::start(pg.port())?;
    let agents = AgentCgroup::create("tollgate-bench-profile")?;
    let relay_agents = AgentCgroup::create("tollgate-bench-profile-relay")?;
    let dir = TempDir::new("tollgate-bench-profile")?;
    let mut config = side_config("benchprofile", &agents, pg.port());
    example_policy_config(&mut config, &agents, &dir)?;
    let gateway = GatewayProcess::start(binary, &config)?;
    // What forwarding and recording cost without inspection: the same redirect, no policy
    // (statements are still recorded). Its own mark: each gateway recognises its agents by it.
    let mut relay_config = side_config("benchprofilerelay", &relay_agents, pg.port());
    relay_config.mark ^= 0x8000;
    let relay = GatewayProcess::start(binary, &relay_config)?;
    let proxies = [
        Proxy {
            name: GATEWAY,
            pid: Some(gateway.pid().context("the gateway is not running")?),
            pgbench: Box::new(|| agents.command("pgbench")),
            port: pg.port(),
        },
        Proxy {
            name: RELAY,
            pid: Some(
                relay
                    .pid()
                    .context("the gateway without a policy is not running")?,
            ),
            pgbench: Box::new(|| relay_agents.command("pgbench")),
            port: pg.port(),
        },
        Proxy {
            name: BOUNCER,
            pid: Some(bouncer.pid()),
            pgbench: Box::new(|| Command::new("pgbench")),
            port: bouncer.port,
        },
        Proxy {
            name: DIRECT,
            pid: None,
            pgbench: Box::new(|| Command::new("pgbench")),
            port: pg.port(),
        },
    ];

    let mut totals = vec![[Counters::default(); PROXIES]; MODES.len()];
    for _ in 0..rounds {
        for (mode_totals, mode) in totals.iter_mut().zip(MODES) {
            for (total, proxy) in mode_totals.iter_mut().zip(&proxies) {
                total.add(counted_run(proxy, mode, seconds, postmaster)?);
            }
        }
    }
    let mut samples = Vec::new();
    for mode in MODES {
        for proxy in &proxies {
            let sample = sampled_run(proxy, mode, seconds, &dir, postmaster)?;
            samples.push((mode, proxy.name, sample));
        }
    }
    drop((gateway, relay));
    Ok(report(&totals, &proxies, &samples, seconds, rounds))
}

/// One pgbench run with the proxy's, pgbench's, the server's and the host's counters read
/// around it, and the proxy's and the server's system calls counted.
fn counted_run(
    proxy: &Proxy<'_>,
    mode: &str,
    seconds: u32,
    postmaster: u32,
) -> anyhow::Result<Counters> {
    let proxy_stat = proxy
        .pid
        .map(|pid| PerfStat::start(|| Ok(pid.to_string()), [SYSCALLS]))
        .transpose()?;
    let server_stat = PerfStat::start(|| server_pids(postmaster), [SYSCALLS, SWITCHES])?;
    let before = Counters::read(proxy.pid)?;
    let pgbench_before = children_cpu_seconds(std::process::id())?;
    let server_before = ProcessUsage::of_server(postmaster)?;
    let run = pgbench_run((proxy.pgbench)(), proxy.port, mode, CLIENTS, seconds)?;
    // pgbench is reaped; the perf processes (children too) are not yet.
    let client_s = children_cpu_seconds(std::process::id())? - pgbench_before;
    let after = Counters::read(proxy.pid)?;
    let mut counters = after.since(before);
    if let Some(proxy_stat) = proxy_stat {
        [counters.syscalls] = proxy_stat.finish()?;
    }
    // The backends pgbench's sessions had through a gateway end after it; what they spend
    // ending is counted with the server (the host's figures stop at pgbench's end).
    std::thread::sleep(std::time::Duration::from_millis(300));
    [counters.server_syscalls, counters.server_switches] = server_stat.finish()?;
    counters.client_s = client_s;
    counters.server = ProcessUsage::of_server(postmaster)?.since(server_before);
    counters.transactions = run.transactions;
    counters.tps = run.tps;
    counters.runs = 1;
    Ok(counters)
}

/// `perf` attached to a process until stopped (or dropped: never left running).
struct Perf(Option<Child>);

impl Perf {
    /// `perf <args> -p PIDS -o OUTPUT` (PIDS comma-separated; children they fork later are
    /// followed). perf gives up when a listed process has ended before it attaches (a server
    /// backend or an autovacuum worker may): the pids are listed again and perf started anew.
    fn attach(
        args: &[&str],
        pids: impl Fn() -> anyhow::Result<String>,
        output: &Path,
    ) -> anyhow::Result<Self> {
        let errors = output.with_extension("stderr");
        for _ in 0..3 {
            let mut child = Command::new("perf")
                .args(args)
                .args(["-p", &pids()?, "-o"])
                .arg(output)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&errors)?)
                .spawn()
                .context("starting perf (`cargo xtask setup` installs linux-perf)")?;
            // perf attaches in a few milliseconds; what it misses is the run's first instants.
            std::thread::sleep(std::time::Duration::from_millis(100));
            if child.try_wait()?.is_none() {
                return Ok(Self(Some(child)));
            }
        }
        anyhow::bail!(
            "perf {} exited as it started, three times: {}",
            args.join(" "),
            std::fs::read_to_string(&errors).unwrap_or_default().trim()
        )
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

const SYSCALLS: &str = "raw_syscalls:sys_enter";
const SWITCHES: &str = "context-switches";

/// `perf stat` counting events of processes (and the children they fork) until finished.
struct PerfStat<const N: usize> {
    perf: Perf,
    events: [&'static str; N],
    output: PathBuf,
    _dir: TempDir,
}

impl<const N: usize> PerfStat<N> {
    fn start(
        pids: impl Fn() -> anyhow::Result<String>,
        events: [&'static str; N],
    ) -> anyhow::Result<Self> {
        let dir = TempDir::new("tollgate-perf-stat")?;
        let output = dir.path().join("stat.csv");
        let events_arg = events.join(",");
        let args = ["stat", "-x", ",", "-e", &events_arg];
        Ok(Self {
            perf: Perf::attach(&args, pids, &output)?,
            events,
            output,
            _dir: dir,
        })
    }

    /// The counts, in the order the events were asked for (`perf stat -x ,` lines start
    /// count, unit, event).
    fn finish(mut self) -> anyhow::Result<[u64; N]> {
        self.perf.stop()?;
        let text = std::fs::read_to_string(&self.output)?;
        let mut counts = [0; N];
        for (count, event) in counts.iter_mut().zip(self.events) {
            *count = text
                .lines()
                .find(|line| line.split(',').nth(2) == Some(event))
                .and_then(|line| line.split(',').next()?.trim().parse().ok())
                .with_context(|| format!("no {event} count from perf stat:\n{text}"))?;
        }
        Ok(counts)
    }
}

/// The server's processes as a perf pid list: the postmaster (perf follows the backends it
/// forks from now on) and the backends it already has.
fn server_pids(postmaster: u32) -> anyhow::Result<String> {
    let mut pids = vec![postmaster];
    pids.extend(children(postmaster)?.into_iter().map(|(pid, _)| pid));
    Ok(pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(","))
}

/// Where the proxy's CPU and the server's went in one run, from perf recordings.
struct Sample {
    /// None without a proxy (direct).
    proxy: Option<String>,
    server: String,
}

/// A pgbench run with the proxy's and the server's stacks sampled (the server's: the
/// postmaster, the backends it has and those it forks during the run).
fn sampled_run(
    proxy: &Proxy<'_>,
    mode: &str,
    seconds: u32,
    dir: &TempDir,
    postmaster: u32,
) -> anyhow::Result<Sample> {
    let proxy_data = dir.path().join(format!("{}-{mode}.data", proxy.name));
    let server_data = dir
        .path()
        .join(format!("{}-{mode}-server.data", proxy.name));
    let record = ["record", "-q", "-F", "999"];
    let mut proxy_record = proxy
        .pid
        .map(|pid| Perf::attach(&record, || Ok(pid.to_string()), &proxy_data))
        .transpose()?;
    let mut server_record = Perf::attach(&record, || server_pids(postmaster), &server_data)?;
    let run = pgbench_run((proxy.pgbench)(), proxy.port, mode, CLIENTS, seconds);
    server_record.stop()?;
    if let Some(record) = &mut proxy_record {
        record.stop()?;
    }
    run?;
    Ok(Sample {
        proxy: proxy_record
            .map(|_| perf_summary(&proxy_data))
            .transpose()?,
        server: perf_summary(&server_data)?,
    })
}

/// The top of `perf report` by object and symbol.
fn perf_summary(data: &Path) -> anyhow::Result<String> {
    let report = Command::new("perf")
        .args(["report", "--stdio", "-q", "--sort", "dso,sym", "-i"])
        .arg(data)
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

/// A process's live children, with the stat each was recognised by.
fn children(parent: u32) -> anyhow::Result<Vec<(u32, ProcStat)>> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        match ProcStat::read(pid) {
            Ok(stat) if stat.number(4).ok() == Some(u64::from(parent)) => {
                children.push((pid, stat))
            }
            _ => {}
        }
    }
    Ok(children)
}

fn report(
    totals: &[[Counters; PROXIES]],
    proxies: &[Proxy<'_>; PROXIES],
    samples: &[(&str, &str, Sample)],
    seconds: u32,
    rounds: u32,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Profile: pgbench -S, {CLIENTS} clients, {rounds} run(s) of {seconds} s per mode and \
         proxy\n\nThe gateway runs the example policy (policies/examples/clinic-policy.toml: \
         every statement analysed, decided and recorded, every result tracked) behind the \
         default nftables redirect; beside it, a second gateway with the same redirect and no \
         policy (what forwarding and recording cost without inspection); pgbouncer runs in \
         session mode; `direct` is pgbench straight to the server. Figures per transaction \
         pgbench completed, for the proxy process and all its threads: CPU (user + system), \
         sleeps (voluntary context switches; each ends with a wake-up), preemptions \
         (involuntary switches), system calls (perf's raw_syscalls:sys_enter), minor page \
         faults; TCP segments sent on the whole host (every leg, acknowledgements included); \
         pgbench's CPU; the PostgreSQL server's CPU, page faults, system calls and context \
         switches (postmaster and backends: equal counts behind two proxies mean the server \
         did the same work behind both); then the whole host's busy CPU (every process, interrupts), its \
         idle share and its context switches: when the host idles under this load, sessions \
         are waiting on the proxy, not working.\n\n\
         | mode | proxy | tps | CPU µs (user + system) | sleeps | preemptions | system calls | \
         page faults | segments | pgbench CPU µs | server CPU µs | server page faults | server \
         system calls | server switches | host CPU µs | host idle | host switches |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut floors = String::new();
    for (mode, row) in MODES.iter().zip(totals) {
        for (proxy, counters) in proxies.iter().zip(row) {
            let name = proxy.name;
            let per = |value: f64| counters.per_transaction(value);
            let proxy = if proxy.pid.is_none() {
                "– | – | – | – | –".to_owned()
            } else {
                format!(
                    "{:.1} ({:.1} + {:.1}) | {:.2} | {:.2} | {:.2} | {:.3}",
                    counters.cpu_us(),
                    per(counters.user_s * 1e6),
                    per(counters.system_s * 1e6),
                    per(counters.voluntary as f64),
                    per(counters.involuntary as f64),
                    per(counters.syscalls as f64),
                    per(counters.faults as f64),
                )
            };
            let _ = writeln!(
                out,
                "| {mode} | {name} | {:.0} | {proxy} | {:.2} | {:.1} | {:.1} | {:.2} | {:.2} | \
                 {:.2} | {:.1} | {:.0}% | {:.2} |",
                counters.tps / f64::from(counters.runs.max(1)),
                per(counters.segments as f64),
                per(counters.client_s * 1e6),
                per(counters.server.cpu_s * 1e6),
                per(counters.server.faults as f64),
                per(counters.server_syscalls as f64),
                per(counters.server_switches as f64),
                per(counters.host.busy_s * 1e6),
                counters.host.idle_percent(),
                per(counters.host.switches as f64),
            );
        }
        let [gateway, _, bouncer, _] = row.map(|counters| counters.cpu_us());
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
        "Where the CPU goes (perf record -F 999 of the proxy, and of the server's processes \
         beside it, one {seconds} s run per mode; overhead, object, symbol):\n"
    );
    for (mode, proxy, sample) in samples {
        if let Some(summary) = &sample.proxy {
            let _ = writeln!(out, "{proxy}, {mode}:\n\n```\n{summary}\n```\n");
        }
        let _ = writeln!(
            out,
            "The server, {proxy}, {mode}:\n\n```\n{}\n```\n",
            sample.server
        );
    }
    out
}
