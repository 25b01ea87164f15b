//! pgbench -S -M extended -c10 -j2: direct vs through Tollgate vs through pgbouncer (session
//! mode), interleaved within each round so the ratios share the machine's conditions.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use anyhow::{bail, Context};
use xtask::testbed::{free_port, AgentCgroup, GatewayConfig, GatewayProcess, PgCluster, TempDir};

use super::{median, verdict};

const CLIENTS: &str = "10";
const THREADS: &str = "2";
const RELAY_FLOOR: f64 = 0.9;

pub fn measure(binary: &Path, seconds: u32, rounds: u32) -> anyhow::Result<String> {
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
    let bouncer = PgBouncer::start(pg.port())?;
    let agents = AgentCgroup::create("tollgate-bench-pgbench")?;
    let config = |redirect: &'static str| {
        let mut config = GatewayConfig::new("benchpg");
        config.cgroups = vec![agents.path.clone()];
        config.redirect = Some(redirect);
        config.targets = vec![("bench".to_owned(), vec![format!("127.0.0.1:{}", pg.port())])];
        config
    };
    // One gateway at a time (both would mark the same agents); each round runs every case.
    let through_tollgate = |redirect: &'static str| -> anyhow::Result<f64> {
        let _gateway = GatewayProcess::start(binary, &config(redirect))?;
        pgbench(agents.command("pgbench"), pg.port(), seconds)
    };

    let mut nft_ratios = Vec::new();
    let mut ebpf_ratios = Vec::new();
    let mut bouncer_ratios = Vec::new();
    let mut rows = String::new();
    for round in 1..=rounds {
        let d = pgbench(Command::new("pgbench"), pg.port(), seconds)?;
        let n = through_tollgate("nftables")?;
        let e = through_tollgate("ebpf")?;
        let b = pgbench(Command::new("pgbench"), bouncer.port, seconds)?;
        let _ = writeln!(
            rows,
            "| {round} | {d:.0} | {n:.0} ({:.3}×) | {e:.0} ({:.3}×) | {b:.0} ({:.3}×) |",
            n / d,
            e / d,
            b / d
        );
        nft_ratios.push(n / d);
        ebpf_ratios.push(e / d);
        bouncer_ratios.push(b / d);
    }
    let nft_ratio = median(&mut nft_ratios);
    let ebpf_ratio = median(&mut ebpf_ratios);
    let bouncer_ratio = median(&mut bouncer_ratios);
    let tollgate_ratio = nft_ratio.max(ebpf_ratio);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## pgbench -S -M extended -c{CLIENTS} -j{THREADS}, {seconds} s (tps)\n"
    );
    let _ = writeln!(
        out,
        "| round | direct | Tollgate, nftables redirect | Tollgate, eBPF redirect | pgbouncer (session) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    out.push_str(&rows);
    let _ = writeln!(
        out,
        "\nMedian ratios: nftables redirect {nft_ratio:.3}×, eBPF redirect {ebpf_ratio:.3}×, \
         pgbouncer {bouncer_ratio:.3}×.\n\nFloors (best redirect): relay ≥ 0.9× direct: \
         {tollgate_ratio:.3}× -> **{}**; no worse than pgbouncer's ratio -> **{}**\n",
        verdict(tollgate_ratio >= RELAY_FLOOR),
        verdict(tollgate_ratio >= bouncer_ratio)
    );
    Ok(out)
}

fn pgbench(mut command: Command, port: u16, seconds: u32) -> anyhow::Result<f64> {
    let output = command
        .args([
            "-S",
            "-M",
            "extended",
            "-c",
            CLIENTS,
            "-j",
            THREADS,
            "-T",
            &seconds.to_string(),
            "-n",
        ])
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
    text.lines()
        .find(|l| l.starts_with("tps = ") && l.contains("without initial connection time"))
        .or_else(|| text.lines().find(|l| l.starts_with("tps = ")))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{text}"))
}

/// pgbouncer in session mode in front of the cluster, run as the postgres user.
struct PgBouncer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl PgBouncer {
    fn start(pg_port: u16) -> anyhow::Result<Self> {
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
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
