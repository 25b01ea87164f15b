//! `cargo xtask bench`: timing goals live here, never in tests. Ratios are measured within one
//! run (this machine is shared and noisy). Writes target/bench/report.md.

mod approvals;
mod audit;
mod baseline;
mod catalog;
mod connect;
mod durability;
mod masking;
mod parser;
mod pgbench;
mod policy;
mod profile;
mod quads;
mod regress;
mod sessions;

use std::fmt::Write as _;

use anyhow::{bail, Context};

use crate::{cargo, workspace_root};

pub use connect::connect_probe;

pub use baseline::Baseline;

pub fn run(
    seconds: u32,
    rounds: u32,
    only: &[String],
    baseline: Option<Baseline<'_>>,
) -> anyhow::Result<()> {
    let wanted = |section: &str| only.is_empty() || only.iter().any(|s| s == section);
    // Every section but the parser's and the audit log's runs the gateway (eBPF programs, a
    // server).
    let gateway = only.is_empty() || only.iter().any(|s| s != "parser" && s != "audit");
    if gateway && !crate::is_root() {
        bail!("benchmarks attach eBPF programs: run `sudo -E cargo xtask bench`");
    }
    if gateway {
        cargo(&["build", "--release", "-p", "tollgate", "-p", "xtask"])?;
    }
    let binary = workspace_root().join("target/release/tollgate");

    let mut report = String::new();
    let _ = writeln!(report, "# Tollgate benchmark report\n");
    let _ = writeln!(
        report,
        "- host: {} cores, kernel {}",
        num_cpus(),
        kernel_release()
    );
    let _ = writeln!(report, "- rounds: {rounds}; pgbench: {seconds} s per run\n");

    if wanted("parser") {
        report.push_str(&parser::measure().context("SQL analyzer on the regression suite")?);
    }
    if wanted("audit") {
        report.push_str(&audit::measure().context("audit log")?);
    }
    if wanted("connect") {
        report.push_str(&connect::measure(&binary, rounds * 4).context("connect() latency")?);
    }
    if wanted("pgbench") {
        report.push_str(&pgbench::measure(&binary, seconds, rounds).context("pgbench")?);
    }
    if wanted("profile") {
        report.push_str(&profile::measure(&binary, seconds, rounds).context("profile")?);
    }
    if wanted("policy") {
        report.push_str(&policy::measure(&binary, rounds).context("policy")?);
    }
    if wanted("masking") {
        report.push_str(&masking::measure(&binary, rounds).context("masking")?);
    }
    if wanted("durability") {
        report.push_str(&durability::measure(&binary, rounds).context("audit durability")?);
    }
    if wanted("approvals") {
        report.push_str(&approvals::measure(&binary, rounds).context("approvals")?);
    }
    if wanted("sessions") {
        report.push_str(&sessions::measure(&binary).context("sessions")?);
    }
    match baseline {
        Some(baseline) => {
            report.push_str(&baseline::measure(&binary, baseline, rounds).context("baseline")?)
        }
        None if only.iter().any(|s| s == "baseline") => {
            bail!("the baseline section compares with another build: give --baseline PATH")
        }
        None => {}
    }
    if wanted("catalog") {
        report.push_str(&catalog::measure(&binary, rounds).context("catalog")?);
    }
    if wanted("regress") {
        report.push_str(&regress::measure(&binary, rounds).context("regression suite")?);
    }

    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("report.md");
    std::fs::write(&path, &report)?;
    println!("{report}");
    println!("report written to {}", path.display());
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

fn median(values: &mut [f64]) -> f64 {
    quartiles(values).1
}

/// The lower quartile, median and upper quartile.
fn quartiles(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: usize| {
        values
            .get(values.len() * q / 4)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(1), at(2), at(3))
}

/// User + system CPU time a running process has used, its finished threads included.
fn process_cpu_seconds(process: &xtask::testbed::GatewayProcess) -> anyhow::Result<f64> {
    let (user, system) = cpu_times(process.pid().context("the gateway is not running")?)?;
    Ok(user + system)
}

/// A process's user and system CPU seconds (all its threads, finished ones included).
fn cpu_times(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (in parentheses) may hold spaces: count fields after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("unexpected /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, the 12th and 13th after the name.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse::<f64>()?)
    };
    // SAFETY: sysconf only reads a system constant.
    #[expect(unsafe_code, reason = "sysconf(3) has no safe std wrapper")]
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? / per_second, ticks(12)? / per_second))
}
