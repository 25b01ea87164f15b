//! `cargo xtask setup`: installs what is missing, and only that (safe to run again).

mod client_suites;

use std::process::Command;

use anyhow::{bail, Context};

/// Debian packages: the database and clients the tests and demo use, nftables for the redirect,
/// pgbouncer and socat as benchmark baselines, iproute2 for network namespaces, psycopg 3 for
/// the driver tests (pipeline mode, COPY, server-side cursors, LISTEN/NOTIFY, cancel).
const APT_PACKAGES: &[&str] = &[
    "postgresql",
    "postgresql-contrib",
    "postgresql-client",
    "nftables",
    "pgbouncer",
    "socat",
    "iproute2",
    "python3",
    "python3-psycopg",
    "util-linux",
    "procps",
    // Test certificate authorities for the TLS tests.
    "openssl",
    // The clients' own test suites (setup/client_suites.rs): building PostgreSQL's pg_regress
    // and libpq_pipeline from Debian's source, and running psycopg2's suite with pytest, a
    // per-test timeout bounding a hang.
    "dpkg-dev",
    "gcc",
    "make",
    "libc6-dev",
    "bison",
    "flex",
    "perl",
    "python3-pip",
    "python3-psycopg2",
    "python3-pytest",
    "python3-pytest-timeout",
    // The SIEM export tests: a real syslog receiver over TLS (RFC 5425), and OCSF events
    // validated against the schema file the tests ship.
    "rsyslog",
    "rsyslog-gnutls",
    "python3-jsonschema",
    // The approver web page's test drives a headless browser over the DevTools protocol.
    "chromium",
    // The untracking tests list connection tracking entries; the bench's profile section
    // counts system calls and samples stacks.
    "conntrack",
    "linux-perf",
];

const BPF_LINKER_VERSION: &str = "0.10.3";
/// Runs the decoder fuzz targets briefly in `cargo xtask test`.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run() -> anyhow::Result<()> {
    apt_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    client_suites::ensure()?;
    Ok(())
}

fn cargo_fuzz() -> anyhow::Result<()> {
    let version = Command::new("cargo").args(["fuzz", "--version"]).output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} (about 40 s)");
    run_checked(Command::new("cargo").args([
        "install",
        &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
        "--locked",
    ]))
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !crate::is_root() {
        bail!("missing Debian packages {missing:?}; run `sudo cargo xtask setup` to install them");
    }
    eprintln!("setup: installing {}", missing.join(" "));
    run_checked(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("rustup is needed to build the eBPF programs")?;
    let listing = String::from_utf8_lossy(&installed.stdout);
    if installed.status.success() && listing.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    if !installed.status.success() {
        eprintln!("setup: installing the nightly toolchain");
        run_checked(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    eprintln!("setup: adding rust-src to nightly (eBPF builds core from source)");
    run_checked(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    // 0.11+ wants a system LLVM 23; 0.10.3 uses rustc's own LLVM (see ../shared/TOOLCHAIN.md).
    eprintln!("setup: installing bpf-linker {BPF_LINKER_VERSION} (about 80 s)");
    run_checked(Command::new("cargo").args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
        "--force",
    ]))
}

fn run_checked(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
