//! `cargo xtask test`: everything CI runs.

use anyhow::bail;

use std::process::Command;

use anyhow::Context;

use crate::{cargo, workspace_root};

/// The decoder fuzz targets (gateway/fuzz) and how long each runs in `cargo xtask test`.
const FUZZ_TARGETS: [&str; 4] = [
    "frontend_messages",
    "backend_messages",
    "startup_packet",
    "sasl_messages",
];
const FUZZ_SECONDS: u32 = 15;

pub fn run() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // Unprivileged tests; the end-to-end tests show as ignored here.
    cargo(&["test", "--workspace"])?;
    fuzz_briefly()?;
    if !crate::is_root() {
        bail!(
            "the privileged end-to-end tests need root (eBPF, nftables, cgroups): run `sudo -E cargo xtask test`"
        );
    }
    // The protocol and driver tests run the hidden `xtask pg-script` / `xtask pg-client`
    // commands as agents; build this binary's latest version first.
    cargo(&["build", "-p", "xtask"])?;
    // Every integration-test binary, one privileged test at a time (they share the kernel).
    cargo(&[
        "test",
        "-p",
        "tollgate",
        "--tests",
        "--",
        "--ignored",
        "--test-threads=1",
    ])
}

/// Each fuzz target for a few seconds: the decoders must never panic on any input. A crash
/// fails the run and leaves the input under gateway/fuzz/artifacts/.
fn fuzz_briefly() -> anyhow::Result<()> {
    for target in FUZZ_TARGETS {
        let status = Command::new("cargo")
            .args(["+nightly", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={FUZZ_SECONDS}"))
            .current_dir(workspace_root().join("gateway"))
            .status()
            .context("running cargo +nightly fuzz (installed by `cargo xtask setup`)")?;
        if !status.success() {
            bail!("fuzz target {target} failed ({status}); see gateway/fuzz/artifacts/{target}/");
        }
    }
    Ok(())
}
