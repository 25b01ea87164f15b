//! Shared by the privileged protocol and driver tests: a throwaway PostgreSQL, an agent cgroup
//! and a gateway protecting the cluster, plus the hidden `xtask` client commands.

#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod tokens;

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use xtask::testbed::{
    require_root, write_catalog_credentials, AgentCgroup, GatewayConfig, GatewayProcess, PgCluster,
};

pub const TOLLGATE: &str = env!("CARGO_BIN_EXE_tollgate");

/// `patients` classified (full_name, ssn); DDL on it denied, writes to it held for approval,
/// the agents' ordinary work allowed.
pub const PATIENTS_POLICY: &str = r#"
version = 1

[[identities]]
id = "agents"
cgroup = ["*tollgate-pg-*"]

[[classify]]
table = "public.patients"
columns = { full_name = "name", ssn = "ssn" }

[[rules]]
id = "deny-ddl-on-phi"
effect = "deny"
kinds = ["drop", "truncate", "alter"]
tables = ["public.patients"]

[[rules]]
id = "approve-phi-writes"
effect = "require_approval"
kinds = ["update", "delete"]
tables = ["public.patients"]

[[rules]]
id = "agents-work"
effect = "allow"
identities = ["agents"]
kinds = ["select", "insert", "update", "delete", "transaction", "set", "show"]
"#;

/// Tests share the kernel (cgroup hooks, nat hooks): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the one-at-a-time lock, for tests that build their bed by hand.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct PgBed {
    pub pg: PgCluster,
    pub agents: AgentCgroup,
    pub gateway: GatewayProcess,
    _serial: MutexGuard<'static, ()>,
}

/// A cluster on 127.0.0.1 and ::1, protected as target `clinic` for agents in a fresh cgroup.
pub fn pg_bed(test: &str, adjust: impl FnOnce(&mut GatewayConfig)) -> PgBed {
    pg_bed_with(test, "", adjust)
}

/// [`pg_bed`] with more server settings (`-c name=value ...`), e.g. TLS files.
pub fn pg_bed_with(
    test: &str,
    server_options: &str,
    adjust: impl FnOnce(&mut GatewayConfig),
) -> PgBed {
    pg_bed_listening(test, "127.0.0.1,::1", server_options, adjust)
}

/// The cluster listens on `listen_addresses` (comma-separated IPs) and target `clinic`
/// protects each of them.
pub fn pg_bed_listening(
    test: &str,
    listen_addresses: &str,
    server_options: &str,
    adjust: impl FnOnce(&mut GatewayConfig),
) -> PgBed {
    pg_bed_in(test, None, listen_addresses, server_options, |config, _| {
        adjust(config)
    })
}

/// [`pg_bed_listening`] with the server and the gateway in network namespace `netns` (when
/// given); `adjust` also sees the cluster (its port and socket directory).
pub fn pg_bed_in(
    test: &str,
    netns: Option<&str>,
    listen_addresses: &str,
    server_options: &str,
    adjust: impl FnOnce(&mut GatewayConfig, &PgCluster),
) -> PgBed {
    try_pg_bed_in(test, netns, listen_addresses, server_options, adjust)
        .unwrap_or_else(|error| panic!("tollgate starts: {error}"))
}

/// [`pg_bed_in`], or what tollgate said when it refused to start.
pub fn try_pg_bed_in(
    test: &str,
    netns: Option<&str>,
    listen_addresses: &str,
    server_options: &str,
    adjust: impl FnOnce(&mut GatewayConfig, &PgCluster),
) -> Result<PgBed, String> {
    require_root(test);
    let serial = serial();
    let pg = match netns {
        Some(name) => PgCluster::start_in_netns(name, listen_addresses),
        None => PgCluster::start_with_options(listen_addresses, 300, server_options),
    }
    .expect("throwaway PostgreSQL cluster");
    let agents =
        AgentCgroup::create(&format!("tollgate-pg-{}", std::process::id())).expect("agent cgroup");
    // Named per test binary: `protocol` and `drivers` may run at the same time (their own
    // nft table and bpffs dir; a second gateway on the same ones refuses to start).
    let mut config = GatewayConfig::new(&format!("pg_{}", env!("CARGO_CRATE_NAME")));
    config.cgroups = vec![agents.path.clone()];
    config.netns = netns.map(str::to_owned);
    let destinations = listen_addresses
        .split(',')
        .filter(|ip| *ip != "*")
        .map(|ip| match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{}", pg.port()),
            _ => format!("{ip}:{}", pg.port()),
        })
        .collect();
    config.targets = vec![("clinic".to_owned(), destinations)];
    adjust(&mut config, &pg);
    let gateway =
        GatewayProcess::start(Path::new(TOLLGATE), &config).map_err(|e| format!("{e:#}"))?;
    Ok(PgBed {
        pg,
        agents,
        gateway,
        _serial: serial,
    })
}

/// The `xtask` binary beside `tollgate` (built by `cargo xtask test` before the tests run).
pub fn xtask_binary() -> PathBuf {
    let path = Path::new(TOLLGATE).with_file_name("xtask");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p xtask` (cargo xtask test does)",
        path.display()
    );
    path
}

impl PgBed {
    /// The gateway's log once `ready` holds for it. Records are written by a background
    /// thread, and a close record follows what the client saw, so tests wait (bounded).
    pub fn log_when(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        for _ in 0..100 {
            let log = self.gateway.log_text();
            if ready(&log) {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "the gateway log never showed {what}:\n{}",
            self.gateway.log_text()
        );
    }
}

/// `psql` as an agent with a libpq connection string, `PGPASSWORD` when given, one statement.
pub fn agent_psql(
    bed: &PgBed,
    conninfo: &str,
    password: Option<&str>,
    sql: &str,
) -> std::process::Output {
    let mut command = bed.agents.command("psql");
    command.args([
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
        "-c",
        sql,
    ]);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.output().expect("psql")
}

/// Everything a client printed, for assertion messages.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Puts a permissive policy in force for the bed's agents (every statement allowed, unparsed
/// ones too, nothing classified) with catalog access for target `clinic`: the policy and
/// catalog paths run, and nothing should change what a client sees. Its files go in `dir`.
pub fn permissive_policy(config: &mut GatewayConfig, dir: &Path) {
    let agents = format!("{}*", config.cgroups[0]);
    let policy = dir.join("permissive.toml");
    std::fs::write(&policy, xtask::client_suites::permissive_policy(&agents))
        .expect("write the policy");
    let credentials = dir.join("catalog.toml");
    write_catalog_credentials(&credentials).expect("write the catalog credentials");
    config.enforce_policy("clinic", &policy, &credentials);
}

/// What a client printed on stdout, trimmed.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Panics with the client's stderr unless it succeeded.
pub fn assert_success(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `connection.open` record of `pid`: the proof a connection was intercepted.
pub fn open_event_for(gateway: &GatewayProcess, pid: u32) -> serde_json::Value {
    gateway
        .wait_for_event(std::time::Duration::from_secs(5), |e| {
            e["event"] == "connection.open" && e["pid"] == pid
        })
        .unwrap_or_else(|| {
            panic!(
                "no connection.open for pid {pid}: not intercepted; log:\n{}",
                gateway.log_text()
            )
        })
}

/// Connections the gateway has accepted so far.
pub fn accepted(gateway: &GatewayProcess) -> u64 {
    let status = gateway
        .status()
        .expect("gateway answers on its admin socket");
    status["connections"]["accepted"]
        .as_u64()
        .expect("accepted count")
}

/// Runs a client to completion, returning its pid (to find its records) and output.
pub fn run(mut command: std::process::Command) -> (u32, std::process::Output) {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn client");
    let pid = child.id();
    (pid, child.wait_with_output().expect("client output"))
}

/// Sends `signal` to a child the test started and has not reaped.
pub fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: kill(2) touches no memory of ours.
    #[expect(unsafe_code, reason = "kill(2) has no safe std wrapper")]
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// The gateway's generated (appliance) certificate, which it shows agents and approvers.
pub fn appliance_cert(bed: &PgBed) -> PathBuf {
    let config = std::fs::read_to_string(bed.gateway.config_path()).expect("config");
    let state_dir = config
        .lines()
        .find_map(|line| line.strip_prefix("state_dir = "))
        .expect("state_dir in the test config")
        .trim_matches('"');
    let cert = Path::new(state_dir).join("tls/appliance-cert.pem");
    assert!(
        cert.exists(),
        "no appliance certificate at {}",
        cert.display()
    );
    cert
}
