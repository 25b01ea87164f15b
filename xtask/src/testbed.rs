//! A real test bed on this host: a throwaway PostgreSQL cluster, agent cgroups, a running
//! `tollgate` and helpers to start unmodified clients as agents. Everything it creates is removed
//! on Drop, also when a test fails.

mod browser;
mod cgroup;
mod gateway;
mod netns;
mod pg;
mod policy;
mod sink;
pub mod tokens;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

pub use browser::Browser;
pub use cgroup::{cgroup2_root, AgentCgroup};
pub use gateway::{audit_records_in, signal, GatewayConfig, GatewayProcess};
pub use netns::{conntrack_entries, IsolatedNet, RemoteHost};
pub use pg::PgCluster;
pub use policy::{
    example_policy, example_policy_from, permissive_example_policy, write_catalog_credentials,
};
pub use sink::Sink;

/// Privileged end-to-end work needs root; without it, fail loudly with how to run it.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    #[expect(unsafe_code, reason = "geteuid(2) has no safe std wrapper")]
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "{what} is a privileged end-to-end test: it attaches eBPF programs, installs nftables rules \
         and creates cgroups. Run it as root on a BPF-capable kernel: `sudo cargo xtask test`"
    );
}

/// A TCP port that is free on 127.0.0.1 and ::1 right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(v4) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = v4.local_addr() else { continue };
        if TcpListener::bind(("::1", addr.port())).is_ok() {
            return addr.port();
        }
    }
    panic!("no free TCP port on loopback after 50 tries");
}

/// A fresh directory under /tmp that `user` can write, removed on Drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Gives the directory to a system user (PostgreSQL refuses to run as root).
    pub fn chown_to(&self, user: &str) -> std::io::Result<()> {
        let status = Command::new("chown")
            .args(["-R", user])
            .arg(&self.0)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "chown {user} {} failed",
                self.0.display()
            )))
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command to completion, returning stdout, or an error with its stderr.
pub fn run_capture(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .map_err(|e| anyhow::anyhow!("{command:?}: {e}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
