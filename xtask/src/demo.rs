//! `cargo xtask demo`: the appliance on an embedded default, with synthetic patient data and an
//! unmodified psql as the agent. Everything it creates is removed on exit or Ctrl-C.

use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;
use xtask::testbed::{
    example_policy, free_port,
    tokens::{write_jwks, SigningKey},
    write_catalog_credentials, AgentCgroup, GatewayConfig, GatewayProcess, PgCluster, TempDir,
};

use crate::{cargo, workspace_root};

const DEMO_SQL: &str = include_str!("demo_data.sql");
const AGENT_QUERY: &str = "select count(*) as patients, count(distinct zip) as zip_codes \
     from patients where birth_date > '1900-01-01'";
/// What the agent tries under the example policy, and what the demo shows for each.
const POLICY_TRIES: [(&str, &str); 3] = [
    (
        "select mrn, full_name, ssn, birth_date, zip, diagnosis from patients where id <= 3",
        "PHI masked by category: tokenized MRN and name, last 4 of the SSN, birth year, ZIP3",
    ),
    (
        "select p::text from patients p where id = 1",
        "a whole-row reference is masked too (the column name says nothing)",
    ),
    (
        "drop table patients",
        "a guardrail: denied, never reaches the server",
    ),
];
/// A bulk read of PHI: the example policy holds it until a person approves it.
const HELD_READ: &str = "select full_name, ssn from patients";
/// The demo's approver: a local user other than the agent's (root).
const APPROVER: &str = "nobody";

pub fn run(keep_running: bool) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("the demo attaches eBPF programs and nftables rules: run `sudo -E cargo xtask demo`");
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, interrupted.clone())?;
    let check = || {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted: cleaning up")
        } else {
            Ok(())
        }
    };

    step("building tollgate (release)");
    cargo(&["build", "--release", "-p", "tollgate"])?;
    let binary = workspace_root().join("target/release/tollgate");
    check()?;

    step("starting a throwaway PostgreSQL with 1,000 synthetic patients");
    let pg = PgCluster::start("127.0.0.1,::1")?;
    pg.psql_direct("create database clinic")?;
    load_demo_data(&pg)?;
    println!(
        "   PostgreSQL listens on 127.0.0.1:{0} and [::1]:{0}",
        pg.port()
    );
    check()?;

    step("creating the agent cgroup and starting Tollgate with the example policy");
    let agents = AgentCgroup::create("tollgate-demo-agents")?;
    let state = TempDir::new("tollgate-demo")?;
    let policy_file = state.path().join("clinic-policy.toml");
    std::fs::write(
        &policy_file,
        example_policy(
            &format!("{}*", agents.path),
            &state.path().join("tokenization.key"),
        )?,
    )?;
    let credentials = state.path().join("catalog.toml");
    write_catalog_credentials(&credentials)?;
    let mut config = GatewayConfig::new("demo");
    config.enforce_policy("clinic-db", &policy_file, &credentials);
    let approver_page = ApproverPage::new(&state)?;
    config.approvals = vec![
        format!("approver_users = [{APPROVER:?}]"),
        "timeout_s = 300".to_owned(),
    ];
    config.approvals.extend(approver_page.config_lines());
    config.cgroups = vec![agents.path.clone()];
    config.targets = vec![(
        "clinic-db".to_owned(),
        vec![
            format!("127.0.0.1:{}", pg.port()),
            format!("[::1]:{}", pg.port()),
        ],
    )];
    let gateway = GatewayProcess::start(&binary, &config)?;
    println!(
        "   agent cgroup: {} (every process in it, and its children, is an agent)",
        agents.path
    );
    println!("   config: {}", gateway.config_path().display());
    show_status(&binary, &gateway)?;
    check()?;

    step("agent: unmodified psql inside the agent cgroup, same host and port as always");
    println!(
        "   $ psql -h 127.0.0.1 -p {} -U postgres -d clinic -c \"{AGENT_QUERY}\"",
        pg.port()
    );
    let (pid, output) = run_client(psql(agents.command("psql"), pg.port(), AGENT_QUERY))?;
    print_indented(&output);
    let open = gateway
        .wait_for_event(Duration::from_secs(5), |e| {
            e["event"] == "connection.open" && e["pid"] == pid
        })
        .context("the gateway did not record the agent connection")?;
    println!("   Tollgate attributed the connection to:");
    for field in [
        "pid",
        "exe",
        "uid",
        "gid",
        "cgroup",
        "comm",
        "cmdline",
        "parent_exe",
        "orig_dst",
        "target",
    ] {
        println!("     {field:<11} {}", plain(&open[field]));
    }
    let conn_id = open["conn_id"].clone();
    let statement = gateway
        .wait_for_statement(Duration::from_secs(5), |s| s["conn_id"] == conn_id)
        .context("the gateway did not record the agent's statement")?;
    println!("   and recorded its statement in the audit log (every literal replaced by ?):");
    for field in ["db_user", "database", "protocol", "sql"] {
        println!("     {field:<11} {}", plain(&statement[field]));
    }
    check()?;

    step("policy: policies/examples/clinic-policy.toml decides every statement of the agent");
    for (sql, what) in POLICY_TRIES {
        println!("   $ psql ... -c \"{sql}\"    # {what}");
        // A refusal is part of the show: print it rather than fail.
        let output = psql(agents.command("psql"), pg.port(), sql).output()?;
        print_indented(&output);
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("   | {line}");
        }
    }
    check()?;

    step("approval: a bulk read of PHI waits on the agent's open connection for a person");
    show_approval(&binary, &gateway, agents.command("psql"), pg.port())?;
    check()?;

    step("non-agent: the same psql command outside the agent cgroup");
    let accepted_before = accepted(&gateway);
    let (_, output) = run_client(psql(Command::new("psql"), pg.port(), AGENT_QUERY))?;
    print_indented(&output);
    let accepted_after = accepted(&gateway);
    if accepted_after != accepted_before {
        bail!("the non-agent connection went through the gateway ({accepted_before} -> {accepted_after})");
    }
    println!("   went direct: the gateway's accepted count is unchanged ({accepted_after})");

    if keep_running {
        step("Tollgate keeps running; press Ctrl-C to stop and clean up. Try an agent:");
        println!(
            "   sudo sh -c 'echo $$ > {}; exec psql -h 127.0.0.1 -p {} -U postgres -d clinic'",
            agents.procs_file().display(),
            pg.port()
        );
        println!(
            "   tollgate status --config {}",
            gateway.config_path().display()
        );
        println!("   A statement that waits (e.g. `{HELD_READ};`) can be decided");
        println!(
            "   - as {APPROVER}: sudo -u {APPROVER} {} approvals list --config {}",
            binary.display(),
            gateway.config_path().display()
        );
        println!(
            "   - on the approvers' page {} (the certificate is the gateway's own, self-signed),",
            approver_page.url()
        );
        println!("     signed in with this access token (8 hours, subject demo-approver):");
        println!("     {}", approver_page.token());
        while !interrupted.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    step("cleaning up: stopping Tollgate (removes its nft table and pins), PostgreSQL and the cgroup");
    drop(gateway);
    drop(agents);
    drop(pg);
    drop(state);
    println!("   done");
    Ok(())
}

/// The held read: the agent waits, the approver looks (no literal, the process, the
/// estimate), approves, and the agent's psql carries on with its rows masked.
fn show_approval(
    binary: &Path,
    gateway: &GatewayProcess,
    agent: Command,
    port: u16,
) -> anyhow::Result<()> {
    println!("   $ psql ... -c \"{HELD_READ}\"    # waits; the agent is told why");
    let mut agent = psql(agent, port, HELD_READ)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Err(error) = approve_as_demo_approver(binary, gateway) {
        // The agent must not outlive the demo in its cgroup.
        let _ = agent.kill();
        let _ = agent.wait();
        return Err(error);
    }
    let output = agent.wait_with_output()?;
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("   | {line}");
    }
    let rows = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = rows.lines().collect();
    for line in lines.iter().take(5) {
        println!("   | {line}");
    }
    println!("   | ...");
    for line in lines.iter().skip(5).rev().take(2).rev() {
        println!("   | {line}");
    }
    if !output.status.success() {
        bail!("the approved read failed");
    }
    Ok(())
}

/// The demo's approver finds the waiting request, looks at it and approves it.
fn approve_as_demo_approver(binary: &Path, gateway: &GatewayProcess) -> anyhow::Result<()> {
    let approver_uid = uid_of(APPROVER)?;
    let approvals = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        let mut command = Command::new(binary);
        command.arg("approvals").args(args).arg("--config");
        command.arg(gateway.config_path());
        command.uid(approver_uid).gid(approver_uid);
        let output = command.output()?;
        if !output.status.success() {
            bail!(
                "tollgate approvals {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let listed: Value = serde_json::from_slice(&approvals(&["list", "--json"])?.stdout)?;
        if let Some(id) = listed["pending"][0]["id"].as_u64() {
            break id.to_string();
        }
        if Instant::now() > deadline {
            bail!("the bulk read never waited for approval: {listed}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("   $ sudo -u {APPROVER} tollgate approvals show {id}");
    print_indented(&approvals(&["show", &id])?);
    println!("   $ sudo -u {APPROVER} tollgate approvals approve {id} --reason \"demo: study 12\"");
    print_indented(&approvals(&["approve", &id, "--reason", "demo: study 12"])?);
    Ok(())
}

/// A local user's uid, as `id -u` says.
fn uid_of(user: &str) -> anyhow::Result<u32> {
    let output = Command::new("id").args(["-u", user]).output()?;
    if !output.status.success() {
        bail!("no local user {user} to approve as");
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

/// The approvers' web page of the demo: an identity provider of its own (a key and its
/// JWKS in the demo's directory) and a token for a person to paste.
struct ApproverPage {
    key: SigningKey,
    jwks: std::path::PathBuf,
    port: u16,
}

impl ApproverPage {
    const ISSUER: &str = "https://idp.demo.tollgate.test";
    const AUDIENCE: &str = "tollgate-approvals";
    const GROUP: &str = "phi-approvers";

    fn new(state: &TempDir) -> anyhow::Result<Self> {
        let key = SigningKey::new("demo-1");
        let jwks = state.path().join("approvers.jwks");
        write_jwks(&jwks, &[&key])?;
        Ok(Self {
            key,
            jwks,
            port: free_port(),
        })
    }

    fn config_lines(&self) -> Vec<String> {
        vec![
            format!("http_listen = \"127.0.0.1:{}\"", self.port),
            format!("approver_token_groups = [{:?}]", Self::GROUP),
            format!("token_issuer = {:?}", Self::ISSUER),
            format!("token_audience = {:?}", Self::AUDIENCE),
            format!("token_jwks_file = {:?}", self.jwks.display().to_string()),
        ]
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    fn token(&self) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        self.key.sign(&serde_json::json!({
            "iss": Self::ISSUER, "aud": Self::AUDIENCE, "sub": "demo-approver",
            "groups": [Self::GROUP], "exp": now + 8 * 3600,
        }))
    }
}

/// psql against the demo database, as the user would type it.
fn psql(mut command: Command, port: u16, sql: &str) -> Command {
    command.args(["-X", "-h", "127.0.0.1", "-p", &port.to_string()]);
    command.args(["-U", "postgres", "-d", "clinic", "-c", sql]);
    command
}

fn step(text: &str) {
    println!("\n== {text}");
}

fn load_demo_data(pg: &PgCluster) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "clinic",
            "-h",
        ])
        .arg(pg.socket_dir())
        .args(["-p", &pg.port().to_string(), "-c", DEMO_SQL])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("loading the synthetic patients failed");
    }
    Ok(())
}

fn run_client(mut command: Command) -> anyhow::Result<(u32, std::process::Output)> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("client failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok((pid, output))
}

fn print_indented(output: &std::process::Output) {
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("   | {line}");
    }
}

fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn accepted(gateway: &GatewayProcess) -> u64 {
    gateway
        .status()
        .and_then(|s| s["connections"]["accepted"].as_u64())
        .unwrap_or(0)
}

fn show_status(binary: &std::path::Path, gateway: &GatewayProcess) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .args(["status", "--config"])
        .arg(gateway.config_path())
        .output()?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("   {line}");
    }
    Ok(())
}
