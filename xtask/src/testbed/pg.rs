//! A throwaway PostgreSQL cluster (initdb into a temp dir, own port), stopped and removed on Drop.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{bail, Context};

use super::{free_port, run_capture, TempDir};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgCluster {
    dir: TempDir,
    port: u16,
}

impl PgCluster {
    /// Starts a cluster listening on `listen_addresses` (e.g. "127.0.0.1,::1") with trust auth.
    pub fn start(listen_addresses: &str) -> anyhow::Result<Self> {
        Self::start_with_max_connections(listen_addresses, 300)
    }

    pub fn start_with_max_connections(
        listen_addresses: &str,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        Self::start_with_options(listen_addresses, max_connections, "")
    }

    /// `server_options` are more `-c name=value` server settings (e.g. TLS files).
    pub fn start_with_options(
        listen_addresses: &str,
        max_connections: u32,
        server_options: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_initdb(listen_addresses, max_connections, server_options, &[])
    }

    /// [`Self::start_with_options`] with more `initdb` arguments (e.g. `-E UTF8 --locale=C`,
    /// so the cluster does not depend on the caller's locale).
    pub fn start_with_initdb(
        listen_addresses: &str,
        max_connections: u32,
        server_options: &str,
        initdb_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_inner(
            None,
            listen_addresses,
            max_connections,
            server_options,
            initdb_args,
        )
    }

    /// [`Self::start`] with the server in network namespace `netns` (`/run/netns/<name>`).
    pub fn start_in_netns(netns: &str, listen_addresses: &str) -> anyhow::Result<Self> {
        Self::start_inner(Some(netns), listen_addresses, 300, "", &[])
    }

    fn start_inner(
        netns: Option<&str>,
        listen_addresses: &str,
        max_connections: u32,
        server_options: &str,
        initdb_args: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = TempDir::new("tollgate-pg")?;
        dir.chown_to("postgres")?;
        let port = free_port();
        let data = dir.path().join("data");
        run_capture(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{PG_BIN}/initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync"])
                .args(initdb_args)
                .arg("-D")
                .arg(&data),
        )
        .context("initdb (is the postgresql package installed? `cargo xtask setup`)")?;
        // Throwaway test cluster: trust every address, so remote-agent tests can reach it.
        let mut hba = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("pg_hba.conf"))?;
        std::io::Write::write_all(
            &mut hba,
            b"host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n",
        )?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses='{listen_addresses}' -c fsync=off -c max_connections={max_connections} \
             -c shared_buffers=128MB -c log_connections=off {server_options}",
            dir.path().display()
        );
        // The server inherits pg_ctl's network namespace.
        let mut pg_ctl = match netns {
            Some(name) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net=/run/netns/{name}"))
                    .arg("runuser");
                command
            }
            None => Command::new("runuser"),
        };
        run_capture(
            pg_ctl
                .args(["-u", "postgres", "--"])
                .arg(format!("{PG_BIN}/pg_ctl"))
                .args(["-w", "-t", "60", "-D"])
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(dir.path().join("server.log"))
                .arg("start"),
        )
        .context("pg_ctl start")?;
        let cluster = Self { dir, port };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..100 {
            if self.psql_direct("select 1").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("PostgreSQL on port {} did not become ready", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The server's main process (the first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))?;
        let first = text.lines().next().unwrap_or_default();
        Ok(first.trim().parse()?)
    }

    /// What the server has logged so far (with `log_statement=all`: every statement it ran).
    pub fn server_log(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("server.log"))?)
    }

    /// Runs SQL over the unix socket (never intercepted): for setup and checks.
    pub fn psql_direct(&self, sql: &str) -> anyhow::Result<String> {
        self.psql_in("postgres", sql)
    }

    /// [`Self::psql_direct`] in another database.
    pub fn psql_in(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        run_capture(
            Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    "postgres",
                    "-h",
                ])
                .arg(self.socket_dir())
                .args(["-p", &self.port.to_string(), "-d", database, "-c", sql]),
        )
    }

    /// Puts `lines` first in pg_hba.conf (so they win over the trust lines) and reloads.
    pub fn prepend_hba(&self, lines: &str) -> anyhow::Result<()> {
        let path = self.dir.path().join("data/pg_hba.conf");
        let current = std::fs::read_to_string(&path)?;
        std::fs::write(&path, format!("{lines}\n{current}"))?;
        self.psql_direct("select pg_reload_conf()")?;
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .output();
    }
}
