//! `cargo xtask`: setup, demo, test and bench for Tollgate.

mod bench;
mod demo;
mod pg_client;
mod pg_script;
mod setup;
mod tcp_probe;
mod tests;

use std::process::Command;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set up, demonstrate, test and benchmark Tollgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the project needs (idempotent): Debian packages (PostgreSQL, nftables,
    /// pgbouncer, socat, ...), the nightly toolchain's rust-src, bpf-linker 0.10.3, and the
    /// clients' own test suites built once under target/client-suites/.
    Setup,
    /// Run the appliance on a throwaway PostgreSQL with synthetic patients and show an
    /// unmodified psql intercepted as an agent while a non-agent goes direct. Cleans up on exit
    /// or Ctrl-C.
    Demo {
        /// Keep the appliance running after the scenario until Ctrl-C, to try agents by hand.
        #[arg(long)]
        keep_running: bool,
    },
    /// Run every test: formatting, clippy, unit tests, then the privileged end-to-end tests
    /// (root, real eBPF, nftables, PostgreSQL and clients).
    Test,
    /// Benchmarks (extra `[gateway]` lines to try, `;`-separated, in XTASK_BENCH_GATEWAY, go
    /// into every pgbench gateway; connect() latency with programs attached/detached; pgbench direct vs
    /// Tollgate vs pgbouncer; the `profile` section: CPU, sleeps, preemptions and system calls
    /// per transaction of the gateway and of pgbouncer, with perf summaries; `busy_poll`: pgbench
    /// at 1, 2, 4 and 10 clients with `gateway.busy_poll_us` off and on; the policy's decision, pgbench and masking costs; PostgreSQL's
    /// regression suite direct vs through; the audit log's appends, verify and SIEM export,
    /// the `audit` section, and strict against batched durability, `durability`; the SQL
    /// analyzer's unparsed fraction on that suite's statements, the `parser` section, which
    /// with `audit` needs no root). Writes
    /// target/bench/report.md.
    Bench {
        /// Seconds per setup and case in the pgbench section, run as two halves, and per
        /// run in the profile (the policy section alternates many 2 s runs instead;
        /// `--rounds` sets how many).
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Rounds of each measurement (ratios are taken within a round).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
        /// Run only these sections (default: all).
        #[arg(long, value_delimiter = ',', value_parser = ["parser", "audit", "connect", "pgbench", "profile", "busy_poll", "policy", "masking", "durability", "approvals", "sessions", "catalog", "regress", "baseline"])]
        only: Vec<String>,
        /// A `tollgate` binary built from an earlier commit (e.g. in a `git worktree`): adds
        /// the baseline section, pgbench -S through it and through this build side by side.
        #[arg(long)]
        baseline: Option<std::path::PathBuf>,
        /// The example policy as of the baseline build (its
        /// `policies/examples/clinic-policy.toml`): the baseline section then also compares
        /// both builds enforcing their own example policy.
        #[arg(long, requires = "baseline")]
        baseline_policy: Option<std::path::PathBuf>,
    },
    /// (internal) Run a PostgreSQL message script (see `pg_script.rs`) against 127.0.0.1:`port`
    /// and print the backend messages, normalised, one per line.
    #[command(hide = true)]
    PgScript {
        #[arg(long)]
        port: u16,
        /// Script file.
        script: std::path::PathBuf,
    },
    /// (internal) Exercise a real driver (tokio-postgres) against 127.0.0.1:`port`; exits
    /// non-zero naming the first check that failed.
    #[command(hide = true)]
    PgClient {
        #[arg(long)]
        port: u16,
        /// Which checks to run (all when omitted).
        checks: Vec<String>,
    },
    /// (internal) One TCP connection to `addr` by `via` (plain, fastopen or io-uring): sends a
    /// PostgreSQL startup packet and prints the answer's first byte.
    #[command(hide = true)]
    TcpProbe {
        #[arg(long, default_value = "plain")]
        via: String,
        addr: std::net::SocketAddr,
    },
    /// (internal) Time `count` TCP connects to 127.0.0.1:`port`; prints "median_ns p90_ns".
    #[command(hide = true)]
    ConnectProbe {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 3000)]
        count: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::run(),
        Task::Demo { keep_running } => {
            setup::run()?;
            demo::run(keep_running)
        }
        Task::Test => {
            setup::run()?;
            tests::run()
        }
        Task::Bench {
            seconds,
            rounds,
            only,
            baseline,
            baseline_policy,
        } => {
            setup::run()?;
            bench::run(
                seconds,
                rounds,
                &only,
                baseline.as_deref().map(|binary| bench::Baseline {
                    binary,
                    policy: baseline_policy.as_deref(),
                }),
            )
        }
        Task::ConnectProbe { port, count } => bench::connect_probe(port, count),
        Task::TcpProbe { via, addr } => tcp_probe::run(&via, addr),
        Task::PgScript { port, script } => pg_script::run(port, &script),
        Task::PgClient { port, checks } => pg_client::run(port, &checks),
    }
}

/// Runs `cargo <args>` in the workspace root, failing on a non-zero exit.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[expect(unsafe_code, reason = "geteuid(2) has no safe std wrapper")]
    let euid = unsafe { libc::geteuid() };
    euid == 0
}
