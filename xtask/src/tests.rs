//! `cargo xtask test`: everything CI runs.

use anyhow::bail;

use crate::cargo;

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
