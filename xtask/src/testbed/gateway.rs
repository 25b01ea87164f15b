//! A `tollgate run` process with a generated config, its JSON log, and cleanup of whatever it
//! leaves in the kernel (nft table, bpffs pins) even after `kill -9`.

use std::{
    fmt::Write as _,
    io::{Read, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;

use super::{free_port, TempDir};

/// Settings for a test or demo gateway. Names are unique per run so nothing collides with a
/// Tollgate installed on the host.
/// How long a statement waits for approval in a test gateway that says nothing else.
pub const HELD_TIMEOUT_S: u64 = 1;

#[derive(Clone)]
pub struct GatewayConfig {
    pub listen_port: u16,
    pub nft_table: String,
    pub mark: u32,
    pub cgroups: Vec<String>,
    pub uids: Vec<u32>,
    pub remote_sources: Vec<String>,
    pub bind: Option<Vec<String>>,
    /// `gateway.redirect`: "nftables" (the default) or "ebpf".
    pub redirect: Option<&'static str>,
    /// `tollgate run --keep-on-exit`.
    pub keep_on_exit: bool,
    /// PostgreSQL targets: (name, destinations).
    pub targets: Vec<(String, Vec<String>)>,
    /// `upstream` of a target (by name): (target name, host:port).
    pub upstreams: Vec<(String, String)>,
    /// Extra `key = value` lines for a target (by name), e.g. `upstream_tls = "require"`.
    pub target_lines: Vec<(String, String)>,
    /// Object-store targets, relayed byte for byte: (name, destinations).
    pub object_stores: Vec<(String, Vec<String>)>,
    /// Extra `key = value` lines for the `[gateway]` section (e.g. `startup_timeout_ms = 500`).
    pub extra_gateway: Vec<String>,
    /// `key = value` lines for an `[audit]` section (e.g. `durability = "strict"`).
    pub extra_audit: Vec<String>,
    /// `key = value` lines for the `[approvals]` section. Without `timeout_s` here a held
    /// statement times out after [`HELD_TIMEOUT_S`], so a suite that does not approve
    /// never waits the default ten minutes.
    pub approvals: Vec<String>,
    /// Run the gateway inside this network namespace (`/run/netns/<name>`).
    pub netns: Option<String>,
    /// Writes `gateway.unix_socket_dir` (builds before the unix socket hook refuse the key:
    /// the baseline bench turns it off).
    pub unix_socket_dir: bool,
}

impl GatewayConfig {
    /// Puts the policy in `policy_file` in force; the catalog of `target` (for result
    /// masking) is read with `catalog_credentials`.
    pub fn enforce_policy(&mut self, target: &str, policy_file: &Path, catalog_credentials: &Path) {
        self.extra_gateway.push(format!(
            "policy_file = {:?}",
            policy_file.display().to_string()
        ));
        self.target_lines.push((
            target.to_owned(),
            format!(
                "catalog_credentials_file = {:?}",
                catalog_credentials.display().to_string()
            ),
        ));
    }

    pub fn new(tag: &str) -> Self {
        Self {
            listen_port: free_port(),
            nft_table: format!("tollgate_{tag}"),
            // Bit 0x4000 set: neither this mark nor a second side's (`mark ^ 0x8000`) can be
            // a gateway's default mark or bypass mark (0x7467_0001, 0x7467_0002).
            mark: 0x7467_4000 | (std::process::id() & 0x3fff),
            cgroups: Vec::new(),
            uids: Vec::new(),
            remote_sources: Vec::new(),
            bind: None,
            redirect: None,
            keep_on_exit: false,
            unix_socket_dir: true,
            targets: Vec::new(),
            upstreams: Vec::new(),
            target_lines: Vec::new(),
            object_stores: Vec::new(),
            extra_gateway: Vec::new(),
            extra_audit: Vec::new(),
            approvals: Vec::new(),
            netns: None,
        }
    }

    fn to_toml(&self, state_dir: &Path, bpffs_dir: &Path) -> String {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = String::new();
        let _ = writeln!(text, "[gateway]\nlisten_port = {}", self.listen_port);
        let _ = writeln!(
            text,
            "admin_socket = {:?}",
            state_dir.join("admin.sock").display().to_string()
        );
        let _ = writeln!(text, "bpffs_dir = {:?}", bpffs_dir.display().to_string());
        // The appliance TLS certificate is generated here, not under /var/lib/tollgate.
        let _ = writeln!(text, "state_dir = {:?}", state_dir.display().to_string());
        // Gateway sockets for protected unix sockets: per run, so concurrent suites never share.
        if self.unix_socket_dir {
            let _ = writeln!(
                text,
                "unix_socket_dir = {:?}",
                state_dir.join("unix").display().to_string()
            );
        }
        let _ = writeln!(
            text,
            "nft_table = {:?}\nmark = {}\ndrain_timeout_ms = 2000",
            self.nft_table, self.mark
        );
        if let Some(redirect) = self.redirect {
            let _ = writeln!(text, "redirect = {redirect:?}");
        }
        if let Some(bind) = &self.bind {
            let _ = writeln!(text, "bind = [{}]", list(bind));
        }
        for line in &self.extra_gateway {
            let _ = writeln!(text, "{line}");
        }
        let _ = writeln!(text, "\n[agents]\ncgroups = [{}]", list(&self.cgroups));
        let uids: Vec<String> = self.uids.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            text,
            "uids = [{}]\nremote_sources = [{}]",
            uids.join(", "),
            list(&self.remote_sources)
        );
        let _ = writeln!(text, "\n[approvals]\n{}", self.approvals.join("\n"));
        if !self
            .approvals
            .iter()
            .any(|line| line.starts_with("timeout_s"))
        {
            let _ = writeln!(text, "timeout_s = {HELD_TIMEOUT_S}");
        }
        if !self.extra_audit.is_empty() {
            let _ = writeln!(text, "\n[audit]\n{}", self.extra_audit.join("\n"));
        }
        let kinds = self.targets.iter().map(|t| ("postgres", t));
        let kinds = kinds.chain(self.object_stores.iter().map(|t| ("object_store", t)));
        for (kind, (name, destinations)) in kinds {
            let _ = writeln!(
                text,
                "\n[[targets]]\nname = {name:?}\nkind = {kind:?}\ndestinations = [{}]",
                list(destinations)
            );
            let upstream = self.upstreams.iter().find(|(target, _)| target == name);
            if let Some((_, upstream)) = upstream {
                let _ = writeln!(text, "upstream = {upstream:?}");
            }
            for (_, line) in self
                .target_lines
                .iter()
                .filter(|(target, _)| target == name)
            {
                let _ = writeln!(text, "{line}");
            }
        }
        text
    }
}

pub struct GatewayProcess {
    child: Option<Child>,
    binary: PathBuf,
    state: TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    nft_table: String,
    bpffs_dir: PathBuf,
    keep_on_exit: bool,
    netns: Option<String>,
}

impl GatewayProcess {
    /// Starts `binary run` and waits until its admin socket answers.
    pub fn start(binary: &Path, config: &GatewayConfig) -> anyhow::Result<Self> {
        let state = TempDir::new("tollgate-gw")?;
        let bpffs_dir = PathBuf::from(format!("/sys/fs/bpf/{}", config.nft_table));
        let config_path = state.path().join("tollgate.toml");
        std::fs::write(&config_path, config.to_toml(state.path(), &bpffs_dir))?;
        let log_path = state.path().join("gateway.log");
        let mut gateway = Self {
            child: None,
            binary: binary.to_owned(),
            state,
            config_path,
            log_path,
            nft_table: config.nft_table.clone(),
            bpffs_dir,
            keep_on_exit: config.keep_on_exit,
            netns: config.netns.clone(),
        };
        gateway.spawn()?;
        Ok(gateway)
    }

    /// (Re)starts the process with the same config and log file.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = self.in_netns(&self.binary);
        command
            .args(["run", "--log-format", "json", "--config"])
            .arg(&self.config_path);
        if self.keep_on_exit {
            command.arg("--keep-on-exit");
        }
        let child = command
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.status().is_some() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "tollgate exited during startup ({status}):\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "tollgate did not become ready within 30 s:\n{}",
            self.log_text()
        )
    }

    /// `program` in the gateway's network namespace (nsenter execs it: the pid stays).
    fn in_netns(&self, program: &Path) -> Command {
        match &self.netns {
            Some(name) => {
                let mut command = Command::new("nsenter");
                command.arg(format!("--net=/run/netns/{name}")).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.state.path().join("admin.sock")
    }

    pub fn bpffs_dir(&self) -> &Path {
        &self.bpffs_dir
    }

    pub fn nft_table(&self) -> &str {
        &self.nft_table
    }

    /// The running gateway's status document, if it answers.
    pub fn status(&self) -> Option<Value> {
        self.admin(&serde_json::json!({ "op": "status" }))
    }

    /// One request on the admin socket (a JSON object naming its `op`) and its answer.
    pub fn admin(&self, request: &Value) -> Option<Value> {
        let mut stream = UnixStream::connect(self.admin_socket()).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(format!("{request}\n").as_bytes()).ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        serde_json::from_str(&body).ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every JSON log line the gateway wrote.
    pub fn events(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The audit log's directory (the default one, `state_dir/audit`).
    pub fn audit_dir(&self) -> PathBuf {
        self.state.path().join("audit")
    }

    /// Every record of the audit log so far, parsed.
    pub fn audit_records(&self) -> Vec<Value> {
        audit_records_in(&self.audit_dir())
    }

    /// Each statement the audit log recorded, in order: its own fields (`protocol`, `sql`,
    /// `parameters`, `decision`, `rule`) with its request's `conn_id`, `db_user`,
    /// `database` and `token_subject`, and the `pid` the connection was attributed to.
    pub fn statement_records(&self) -> Vec<Value> {
        let records = self.audit_records();
        let pids: std::collections::HashMap<u64, Value> = records
            .iter()
            .filter(|r| r["kind"] == "connection_opened")
            .filter_map(|r| Some((r["conn_id"].as_u64()?, r["actor"]["pid"].clone())))
            .collect();
        records
            .iter()
            .filter(|r| r["kind"] == "request_decided")
            .flat_map(|request| {
                let pid = request["conn_id"]
                    .as_u64()
                    .and_then(|id| pids.get(&id).cloned())
                    .unwrap_or(Value::Null);
                let statements = request["statements"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                statements.into_iter().map(move |mut statement| {
                    for field in ["conn_id", "db_user", "database", "token_subject"] {
                        statement[field] = request[field].clone();
                    }
                    statement["pid"] = pid.clone();
                    statement
                })
            })
            .collect()
    }

    /// Waits until a statement record matching `predicate` is in the audit log.
    pub fn wait_for_statement(
        &self,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        poll_until(timeout, || {
            self.statement_records().into_iter().find(|s| predicate(s))
        })
    }

    /// Waits until an event matching `predicate` is logged.
    pub fn wait_for_event(
        &self,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        poll_until(timeout, || self.events().into_iter().find(|e| predicate(e)))
    }

    /// SIGTERM and wait: the clean-shutdown path.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("gateway not running")?;
        signal(child.id(), libc::SIGTERM);
        wait_with_deadline(&mut child, Duration::from_secs(15))
    }

    /// SIGKILL: the crash path (nothing gets cleaned up by the gateway).
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("gateway not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Whether the nft table exists now.
    pub fn nft_table_present(&self) -> bool {
        self.in_netns(Path::new("nft"))
            .args(["list", "table", "inet", &self.nft_table])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

/// Sends `signal` to a child the caller spawned and has not reaped.
pub fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: sending a signal to a child we spawned and have not reaped.
        #[expect(unsafe_code, reason = "kill(2) has no safe std wrapper")]
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn wait_with_deadline(
    child: &mut Child,
    timeout: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait()?;
            bail!("tollgate did not exit within {timeout:?} of SIGTERM (killed: {status})");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            let _ = wait_with_deadline(&mut child, Duration::from_secs(10));
        }
        // After a crash (or a failed test) the kernel state is still there: remove it.
        let _ = self
            .in_netns(Path::new("nft"))
            .args(["delete", "table", "inet", &self.nft_table])
            .output();
        let _ = std::fs::remove_dir_all(&self.bpffs_dir);
    }
}

/// Looks every 50 ms until `find` finds something or `timeout` has passed.
fn poll_until<T>(timeout: Duration, find: impl Fn() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = find() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every record of the audit log in `dir`, parsed, segment by segment. The zeros the gateway
/// reserves past the last record parse as nothing.
pub fn audit_records_in(dir: &Path) -> Vec<Value> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .flat_map(|bytes| {
            bytes
                .split(|&b| b == b'\n')
                .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}
