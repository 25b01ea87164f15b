//! pgbench -S in every protocol mode at 1 and 10 clients: direct vs through Tollgate (the
//! example policy in force; both redirects) vs through pgbouncer (session mode). Each round
//! runs every case, so a round's ratios share the machine's conditions.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use anyhow::{bail, Context};
use xtask::testbed::{free_port, AgentCgroup, GatewayProcess, PgCluster, TempDir};

use super::{median, policy::example_policy_config, quads::side_config, verdict};

const MODES: [&str; 3] = ["simple", "extended", "prepared"];
const CLIENTS: [u32; 2] = [1, 10];

/// One (mode, clients) case: tps per setup, per round.
#[derive(Default)]
struct Case {
    direct: Vec<f64>,
    nftables: Vec<f64>,
    ebpf: Vec<f64>,
    bouncer: Vec<f64>,
}

pub fn measure(binary: &Path, seconds: u32, rounds: u32) -> anyhow::Result<String> {
    let pg = pgbench_cluster()?;
    let bouncer = PgBouncer::start(pg.port())?;
    let agents = AgentCgroup::create("tollgate-bench-pgbench")?;
    let dir = TempDir::new("tollgate-bench-pgbench")?;
    let mut base = side_config("benchpg", &agents, pg.port());
    example_policy_config(&mut base, &agents, &dir)?;
    let config = |redirect: &'static str| {
        let mut config = base.clone();
        config.redirect = Some(redirect);
        config
    };
    let cases: Vec<(&str, u32)> = MODES
        .iter()
        .flat_map(|mode| CLIENTS.iter().map(move |clients| (*mode, *clients)))
        .collect();
    let mut results: Vec<Case> = cases.iter().map(|_| Case::default()).collect();
    for _ in 0..rounds {
        for (case, &(mode, clients)) in results.iter_mut().zip(&cases) {
            let direct = Command::new("pgbench");
            case.direct
                .push(pgbench(direct, pg.port(), mode, clients, seconds)?);
            let via_bouncer = Command::new("pgbench");
            case.bouncer
                .push(pgbench(via_bouncer, bouncer.port, mode, clients, seconds)?);
        }
        // One gateway at a time (both would mark the same agents).
        for redirect in ["nftables", "ebpf"] {
            let _gateway = GatewayProcess::start(binary, &config(redirect))?;
            for (case, &(mode, clients)) in results.iter_mut().zip(&cases) {
                let tps = pgbench(agents.command("pgbench"), pg.port(), mode, clients, seconds)?;
                match redirect {
                    "nftables" => case.nftables.push(tps),
                    _ => case.ebpf.push(tps),
                }
            }
        }
    }
    Ok(report(&cases, &mut results, seconds, rounds))
}

fn report(cases: &[(&str, u32)], results: &mut [Case], seconds: u32, rounds: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## pgbench -S, scale 10, {seconds} s per run, {rounds} round(s): tps and ratio to direct\n"
    );
    let _ = writeln!(
        out,
        "Tollgate runs the example policy (every statement analysed, decided and recorded in the \
         audit log, every result tracked). Every path is plain text (`PGSSLMODE=disable`). \
         Ratios are medians of per-round ratios.\n"
    );
    let _ = writeln!(
        out,
        "| mode | clients | direct | Tollgate nftables | Tollgate eBPF | pgbouncer (session) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut floors = String::new();
    for (case, &(mode, clients)) in results.iter_mut().zip(cases) {
        let ratio = |tps: &[f64], direct: &[f64]| {
            let mut ratios: Vec<f64> = tps.iter().zip(direct).map(|(t, d)| t / d).collect();
            median(&mut ratios)
        };
        let nft = ratio(&case.nftables, &case.direct);
        let ebpf = ratio(&case.ebpf, &case.direct);
        let bouncer = ratio(&case.bouncer, &case.direct);
        let _ = writeln!(
            out,
            "| {mode} | {clients} | {:.0} | {:.0} ({nft:.3}×) | {:.0} ({ebpf:.3}×) | {:.0} ({bouncer:.3}×) |",
            median(&mut case.direct),
            median(&mut case.nftables),
            median(&mut case.ebpf),
            median(&mut case.bouncer),
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
