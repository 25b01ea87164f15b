//! pgbench -S in every protocol mode at 1 and 10 clients: direct vs through Tollgate (the
//! example policy in force; both redirects) vs through pgbouncer (session mode). The two
//! gateways run side by side, each with its own agents, so each case runs its four setups
//! back to back and then in reverse order: a drift of the machine's load over the case
//! weighs on every setup alike, and each ratio is taken within one case.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use anyhow::{bail, Context};
use xtask::testbed::{free_port, PgCluster, TempDir};

use super::{median, quads::PolicySide, verdict};

const MODES: [&str; 3] = ["simple", "extended", "prepared"];
const CLIENTS: [u32; 2] = [1, 10];
/// Direct, Tollgate with each redirect, pgbouncer: the order of a case's first half.
const SETUPS: usize = 4;
const DIRECT: usize = 0;
const NFTABLES: usize = 1;
const EBPF: usize = 2;
const BOUNCER: usize = 3;

/// One (mode, clients) case: per round, each setup's tps (the mean of its two runs).
#[derive(Default)]
struct Case {
    rounds: Vec<[f64; SETUPS]>,
}

impl Case {
    /// A setup's median tps over rounds.
    fn tps(&self, setup: usize) -> f64 {
        median(&mut self.rounds.iter().map(|tps| tps[setup]).collect::<Vec<_>>())
    }

    /// A setup's median ratio to direct over rounds.
    fn ratio(&self, setup: usize) -> f64 {
        median(
            &mut self
                .rounds
                .iter()
                .map(|tps| tps[setup] / tps[DIRECT])
                .collect::<Vec<_>>(),
        )
    }
}

pub fn measure(binary: &Path, seconds: u32, rounds: u32) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let bouncer = PgBouncer::start(pg.port())?;
    let nftables = PolicySide::start(binary, pg.port(), "pg-nftables", |config| {
        config.redirect = Some("nftables");
    })?;
    let ebpf = PolicySide::start(binary, pg.port(), "pg-ebpf", |config| {
        config.redirect = Some("ebpf");
        // Each gateway recognises its own agents' connections by its mark.
        config.mark ^= 0x8000;
    })?;
    // Each setup runs twice per case and round, for half the time each.
    let run_seconds = (seconds / 2).max(1);
    let cases: Vec<(&str, u32)> = MODES
        .iter()
        .flat_map(|mode| CLIENTS.iter().map(move |clients| (*mode, *clients)))
        .collect();
    let mut results: Vec<Case> = cases.iter().map(|_| Case::default()).collect();
    for _ in 0..rounds {
        for (case, &(mode, clients)) in results.iter_mut().zip(&cases) {
            let mut tps = [0.0; SETUPS];
            for setup in [
                DIRECT, NFTABLES, EBPF, BOUNCER, BOUNCER, EBPF, NFTABLES, DIRECT,
            ] {
                let (command, port) = match setup {
                    DIRECT => (Command::new("pgbench"), pg.port()),
                    NFTABLES => (nftables.agents.command("pgbench"), pg.port()),
                    EBPF => (ebpf.agents.command("pgbench"), pg.port()),
                    _ => (Command::new("pgbench"), bouncer.port),
                };
                tps[setup] += pgbench(command, port, mode, clients, run_seconds)? / 2.0;
            }
            case.rounds.push(tps);
        }
    }
    Ok(report(&cases, &results, run_seconds, rounds))
}

fn report(cases: &[(&str, u32)], results: &[Case], run_seconds: u32, rounds: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## pgbench -S, scale 10, {rounds} round(s): tps and ratio to direct\n"
    );
    let _ = writeln!(
        out,
        "Tollgate runs the example policy (every statement analysed, decided and recorded in the \
         audit log, every result tracked), with each redirect: two gateways side by side, each \
         with its own agents. Every path is plain text (`PGSSLMODE=disable`). Per round, each \
         case runs direct, nftables, eBPF, pgbouncer, then the same in reverse, {run_seconds} s \
         per run; a setup's tps is the mean of its two runs. Ratios are medians of per-round \
         ratios. Direct and pgbouncer connections pass both gateways' nftables tables \
         (untracked), as other connections of a host running Tollgate pass its one.\n"
    );
    let _ = writeln!(
        out,
        "| mode | clients | direct | Tollgate nftables | Tollgate eBPF | pgbouncer (session) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut floors = String::new();
    for (case, &(mode, clients)) in results.iter().zip(cases) {
        let (nft, ebpf, bouncer) = (case.ratio(NFTABLES), case.ratio(EBPF), case.ratio(BOUNCER));
        let _ = writeln!(
            out,
            "| {mode} | {clients} | {:.0} | {:.0} ({nft:.3}×) | {:.0} ({ebpf:.3}×) | {:.0} ({bouncer:.3}×) |",
            case.tps(DIRECT),
            case.tps(NFTABLES),
            case.tps(EBPF),
            case.tps(BOUNCER),
        );
        let _ = writeln!(
            floors,
            "- {mode}, {clients} client(s): ratio to direct ≥ pgbouncer's ({bouncer:.3}×): \
             nftables {nft:.3}× **{}**, eBPF {ebpf:.3}× **{}**",
            verdict(nft >= bouncer),
            verdict(ebpf >= bouncer),
        );
    }
    let _ = writeln!(out, "\nFloors:\n\n{floors}");
    out
}

/// A throwaway cluster with pgbench's tables at scale 10.
pub(super) fn pgbench_cluster() -> anyhow::Result<PgCluster> {
    let pg = PgCluster::start("127.0.0.1")?;
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", "-U", "postgres", "-h"])
        .arg(pg.socket_dir())
        .args(["-p", &pg.port().to_string(), "postgres"])
        .output()?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    Ok(pg)
}

pub(super) fn pgbench(
    command: Command,
    port: u16,
    mode: &str,
    clients: u32,
    seconds: u32,
) -> anyhow::Result<f64> {
    Ok(pgbench_run(command, port, mode, clients, seconds)?.tps)
}

/// What one pgbench run reports.
pub(super) struct PgbenchRun {
    /// Transactions per second, without the initial connection time.
    pub tps: f64,
    pub transactions: u64,
}

pub(super) fn pgbench_run(
    mut command: Command,
    port: u16,
    mode: &str,
    clients: u32,
    seconds: u32,
) -> anyhow::Result<PgbenchRun> {
    let threads = clients.min(2);
    let output = command
        .args(["-S", "-M", mode, "-n", "-T", &seconds.to_string()])
        // Plain text on every path: the test cluster and pgbouncer offer no TLS, while the
        // gateway would (libpq's default sslmode is prefer).
        .env("PGSSLMODE", "disable")
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args([
            "-U",
            "postgres",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "postgres",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = ") && l.contains("without initial connection time"))
        .or_else(|| text.lines().find(|l| l.starts_with("tps = ")))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{text}"))?;
    let transactions = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no transaction count in pgbench output:\n{text}"))?;
    Ok(PgbenchRun { tps, transactions })
}

/// pgbouncer in session mode in front of the cluster, run as the postgres user.
pub(super) struct PgBouncer {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl PgBouncer {
    pub fn start(pg_port: u16) -> anyhow::Result<Self> {
        let dir = TempDir::new("tollgate-pgbouncer")?;
        let port = free_port();
        let ini: PathBuf = dir.path().join("pgbouncer.ini");
        std::fs::write(dir.path().join("userlist.txt"), "\"postgres\" \"\"\n")?;
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={pg_port}\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
                 pool_mode = session\nmax_client_conn = 200\ndefault_pool_size = 20\nlogfile = {}\n",
                dir.path().join("userlist.txt").display(),
                dir.path().join("pgbouncer.log").display()
            ),
        )?;
        dir.chown_to("postgres")?;
        // pgbouncer refuses to run as root; -u drops to postgres in the same process, so the
        // pid we hold is pgbouncer's own.
        let child = Command::new("pgbouncer")
            .args(["-q", "-u", "postgres"])
            .arg(&ini)
            .spawn()
            .context("starting pgbouncer (`cargo xtask setup` installs it)")?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Self {
                    child,
                    port,
                    _dir: dir,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("pgbouncer did not start listening on {port}")
    }

    /// pgbouncer's own process (it drops to the postgres user in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
