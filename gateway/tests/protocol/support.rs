//! Running message scripts (`xtask pg-script`) directly and as an agent, with bounded waits,
//! and reading what the gateway recorded about them.

use std::{
    io::Read,
    process::{Child, Command, ExitStatus, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;
use xtask::testbed::TempDir;

use crate::common::{xtask_binary, PgBed};

/// Longer than any script's own read timeout: a run that still goes on after this is a hang.
const RUN_LIMIT: Duration = Duration::from_secs(40);

/// How long the gateway gets to write a record after the client has finished.
pub const EVENT_WAIT: Duration = Duration::from_secs(5);

/// A finished script run.
#[derive(Debug)]
pub struct Run {
    pub pid: u32,
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
    pub elapsed: Duration,
}

impl Run {
    /// The output lines, panicking with everything known when the run failed.
    pub fn ok(&self, what: &str) -> &str {
        assert!(
            self.status.success(),
            "{what}: pg-script failed ({}):\n{}\n--- stdout ---\n{}",
            self.status,
            self.stderr,
            self.stdout
        );
        &self.stdout
    }
}

/// A script run in progress (the script file lives as long as the run).
pub struct Running {
    child: Child,
    started: Instant,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
    _dir: TempDir,
}

impl Running {
    /// Waits for the run to end; a run past [`RUN_LIMIT`] is killed and the test fails.
    pub fn finish(mut self) -> Run {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for pg-script") {
                break status;
            }
            if self.started.elapsed() > RUN_LIMIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stdout = self.stdout.join().unwrap_or_default();
                panic!("pg-script still running after {RUN_LIMIT:?} (a hang); output so far:\n{stdout}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            pid: self.child.id(),
            elapsed: self.started.elapsed(),
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
            status,
        }
    }
}

/// Starts the script straight against the cluster (this process is not an agent).
pub fn spawn_direct(bed: &PgBed, script: &str) -> Running {
    let binary = xtask_binary();
    spawn(Command::new(binary), bed.pg.port(), script)
}

/// Starts the script as an agent: same address and port, intercepted by the gateway.
pub fn spawn_agent(bed: &PgBed, script: &str) -> Running {
    let binary = xtask_binary();
    let program = binary.to_str().expect("xtask path is UTF-8");
    spawn(bed.agents.command(program), bed.pg.port(), script)
}

pub fn run_direct(bed: &PgBed, script: &str) -> Run {
    spawn_direct(bed, script).finish()
}

pub fn run_agent(bed: &PgBed, script: &str) -> Run {
    spawn_agent(bed, script).finish()
}

fn spawn(mut command: Command, port: u16, script: &str) -> Running {
    let dir = TempDir::new("tollgate-script").expect("temp dir for the script");
    let path = dir.path().join("script.pgs");
    std::fs::write(&path, script).expect("write the script");
    let mut child = command
        .args(["pg-script", "--port", &port.to_string()])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask pg-script");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    Running {
        child,
        started: Instant::now(),
        stdout,
        stderr,
        _dir: dir,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Runs the script directly and through the gateway; the outputs must be identical.
/// Returns the output and the run through the gateway.
pub fn same_both_ways(bed: &PgBed, script: &str) -> (String, Run) {
    let direct = run_direct(bed, script);
    let direct = direct.ok("direct run").to_owned();
    let agent = run_agent(bed, script);
    let through = agent.ok("run through the gateway");
    if direct != through {
        panic!(
            "the gateway changed the conversation\n{}\n--- gateway log ---\n{}",
            diff(&direct, through),
            bed.gateway.log_text()
        );
    }
    (direct, agent)
}

/// Line-by-line comparison: `=` same, `-` direct only, `+` through the gateway only.
fn diff(direct: &str, through: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (direct.lines().collect(), through.lines().collect());
    let mut out = String::new();
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => out.push_str(&format!("= {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("- {x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!("+ {y}\n"));
                }
            }
        }
    }
    out
}

/// Every expected line is in the output, in this order (other lines may come between).
pub fn assert_lines_in_order(output: &str, expected: &[&str]) {
    let mut lines = output.lines();
    for wanted in expected {
        assert!(
            lines.any(|line| line == *wanted),
            "expected line `{wanted}` (in this order: {expected:#?}) in:\n{output}"
        );
    }
}

/// The lines after the startup (from the first line after the first `Z`).
pub fn after_startup(output: &str) -> Vec<&str> {
    output
        .lines()
        .skip_while(|line| !line.starts_with("Z "))
        .skip(1)
        .collect()
}

/// The `connection.close` records of every connection `pid` opened (the cancel connection of
/// a script comes from the same process), waiting until there are `count`.
pub fn close_events(bed: &PgBed, pid: u32, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let events = bed.gateway.events();
        let conn_ids: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"] == "connection.open" && e["pid"] == pid)
            .map(|e| &e["conn_id"])
            .collect();
        let closes: Vec<Value> = events
            .iter()
            .filter(|e| e["event"] == "connection.close" && conn_ids.contains(&&e["conn_id"]))
            .cloned()
            .collect();
        if closes.len() >= count {
            return closes;
        }
        if Instant::now() > deadline {
            panic!(
                "expected {count} connection.close records for pid {pid}, found {}; log:\n{}",
                closes.len(),
                bed.gateway.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one `connection.close` record of `pid`'s connection, which must have `outcome`.
pub fn assert_closed_with(bed: &PgBed, pid: u32, outcome: &str) -> Value {
    let closes = close_events(bed, pid, 1);
    let close = closes[0].clone();
    assert_eq!(
        close["outcome"], outcome,
        "connection.close of pid {pid}: {close}"
    );
    close
}

/// Polls `check` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `value` appears neither in the gateway's operational log nor in its audit log.
pub fn assert_in_no_log(bed: &PgBed, value: &str, what: &str) {
    for (name, text) in [
        ("gateway log", bed.gateway.log_text()),
        (
            "audit log",
            Value::from(bed.gateway.audit_records()).to_string(),
        ),
    ] {
        assert!(!text.contains(value), "{what} reached the {name}");
    }
}
