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
    cargo(&[
        "test",
        "-p",
        "tollgate",
        "--test",
        "e2e",
        "--",
        "--ignored",
        "--test-threads=1",
    ])
}
