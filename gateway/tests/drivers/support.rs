//! Helpers for the driver tests: bounded client runs and what the gateway recorded about one
//! client process.

use std::{
    collections::HashSet,
    io::{Read, Write},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use xtask::testbed::GatewayProcess;

/// Runs `command` to completion within `limit` (killed and a panic past it), feeding `stdin`.
/// Returns the client's pid and output.
pub fn run_bounded(
    mut command: Command,
    stdin: Option<Vec<u8>>,
    limit: Duration,
    what: &str,
) -> (u32, Output) {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("spawning {what}: {error}"));
    let pid = child.id();
    if let (Some(mut pipe), Some(data)) = (child.stdin.take(), stdin) {
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the client") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {limit:?} (killed)\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout.join().unwrap_or_default()),
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    (pid, output)
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buffer);
        }
        buffer
    })
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The last lines of the gateway's log, for failure messages (driver runs log thousands).
pub fn log_tail(gateway: &GatewayProcess) -> String {
    let text = gateway.log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What the gateway recorded about the connections of one client process.
pub struct Recorded {
    pub opens: Vec<Value>,
    pub closes: Vec<Value>,
    pub statements: Vec<Value>,
    pub cancels: Vec<Value>,
}

impl Recorded {
    /// Waits until at least `min_connections` connections of `pid` opened and all of them
    /// closed (so every statement record is written), then gathers the records.
    pub fn of(gateway: &GatewayProcess, pid: u32, min_connections: usize) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = gateway.events();
            let opens: Vec<Value> = events
                .iter()
                .filter(|e| e["event"] == "connection.open" && e["pid"] == pid)
                .cloned()
                .collect();
            let ids: HashSet<u64> = opens.iter().filter_map(|e| e["conn_id"].as_u64()).collect();
            let of_these = |name: &str| -> Vec<Value> {
                events
                    .iter()
                    .filter(|e| {
                        e["event"] == name
                            && e["conn_id"].as_u64().is_some_and(|i| ids.contains(&i))
                    })
                    .cloned()
                    .collect()
            };
            let closes = of_these("connection.close");
            if opens.len() >= min_connections && closes.len() == opens.len() {
                return Self {
                    statements: gateway
                        .statement_records()
                        .into_iter()
                        .filter(|s| s["conn_id"].as_u64().is_some_and(|i| ids.contains(&i)))
                        .collect(),
                    cancels: of_these("cancel.forwarded"),
                    opens,
                    closes,
                };
            }
            assert!(
                Instant::now() < deadline,
                "pid {pid}: {} connections opened ({} closed), expected at least {min_connections} \
                 all closed; log tail:\n{}",
                opens.len(),
                closes.len(),
                log_tail(gateway)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every connection is attributed to the process: its pid, an exe whose file name starts
    /// with `exe_name` (`python3` for `python3.11`), the agent cgroup, the target, and the
    /// destination the client dialled.
    pub fn assert_attributed(&self, exe_name: &str, cgroup: &str, orig_dst: &str) {
        for open in &self.opens {
            assert_eq!(open["identity"], "process", "{open}");
            let file_name = open["exe"]
                .as_str()
                .and_then(|exe| exe.rsplit('/').next())
                .unwrap_or_default();
            assert!(
                file_name.starts_with(exe_name),
                "the exe's name should start with {exe_name}: {open}"
            );
            assert_eq!(open["cgroup"], cgroup, "{open}");
            assert_eq!(open["target"], "clinic", "{open}");
            assert_eq!(open["orig_dst"], orig_dst, "{open}");
        }
        for close in &self.closes {
            let outcome = close["outcome"].as_str().unwrap_or_default();
            assert!(
                outcome == "closed" || outcome == "cancel_forwarded",
                "a connection ended badly: {close}"
            );
        }
    }

    /// Statement records whose (redacted) SQL contains every one of `parts`.
    pub fn statements_with(&self, parts: &[&str]) -> Vec<&Value> {
        self.statements
            .iter()
            .filter(|s| {
                s["sql"]
                    .as_str()
                    .is_some_and(|sql| parts.iter().all(|p| sql.contains(p)))
            })
            .collect()
    }

    /// At least one statement record contains every one of `parts`.
    pub fn assert_statement(&self, parts: &[&str]) {
        assert!(
            !self.statements_with(parts).is_empty(),
            "no statement record containing {parts:?} among {} records; first ones:\n{}",
            self.statements.len(),
            self.statements
                .iter()
                .take(30)
                .map(|s| format!("{} {}", s["protocol"], s["sql"]))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A control run outside the agent cgroup must not reach the gateway.
pub fn assert_not_intercepted(gateway: &GatewayProcess, pid: u32) {
    let intercepted = gateway
        .events()
        .iter()
        .any(|e| e["event"] == "connection.open" && e["pid"] == pid);
    assert!(
        !intercepted,
        "the direct control run (pid {pid}) went through the gateway"
    );
}
