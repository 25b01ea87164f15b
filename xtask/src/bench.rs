//! `cargo xtask bench`: timing goals live here, never in tests. Ratios are measured within one
//! run (this machine is shared and noisy). Writes target/bench/report.md.

mod approvals;
mod audit;
mod baseline;
mod busy_poll;
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
    if wanted("busy_poll") {
        report.push_str(&busy_poll::measure(&binary, rounds).context("busy polling")?);
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
    let stat = ProcStat::read(pid)?;
    // utime and stime are fields 14 and 15 of the line.
    Ok((stat.seconds(14)?, stat.seconds(15)?))
}

/// The fields of `/proc/<pid>/stat`.
struct ProcStat {
    /// The fields after the command name (in parentheses, it may hold spaces): the line's
    /// third field first.
    after_name: Vec<String>,
}

impl ProcStat {
    fn read(pid: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let (_, after_name) = stat
            .rsplit_once(')')
            .with_context(|| format!("unexpected /proc/{pid}/stat"))?;
        Ok(Self {
            after_name: after_name.split_whitespace().map(str::to_owned).collect(),
        })
    }

    /// Field `number` of the line (as proc(5) numbers them, from 1).
    fn number(&self, number: usize) -> anyhow::Result<u64> {
        let value = number
            .checked_sub(3)
            .and_then(|index| self.after_name.get(index))
            .with_context(|| format!("no field {number} after the name in /proc/<pid>/stat"))?;
        Ok(value.parse()?)
    }

    /// A field in clock ticks, in seconds.
    fn seconds(&self, number: usize) -> anyhow::Result<f64> {
        Ok(self.number(number)? as f64 / clock_ticks())
    }
}

/// Clock ticks per second, the unit of `/proc`'s CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    #[expect(unsafe_code, reason = "sysconf(3) has no safe std wrapper")]
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    per_second as f64
}

#[cfg(test)]
mod tests {
    use super::ProcStat;

    #[test]
    fn proc_stat_fields_are_numbered_as_in_proc5() {
        let stat = ProcStat::read(std::process::id()).expect("own /proc/<pid>/stat");
        // Field 4 is the parent's pid; field 1 (the pid) comes before the name.
        assert_eq!(
            stat.number(4).expect("ppid"),
            u64::from(std::os::unix::process::parent_id())
        );
        assert!(stat.number(60).is_err(), "past the last field is an error");
        assert!(stat.number(1).is_err(), "the pid is before the name");
    }
}
