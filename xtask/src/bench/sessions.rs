//! Sessions: the gateway's memory per idle PostgreSQL session (RSS growth with 1,000 idle
//! sessions open), and connection setup time with psycopg: directly with a SCRAM password vs
//! through Tollgate with TLS and an access token (the gateway then logs in with SCRAM itself).

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context};
use xtask::testbed::{AgentCgroup, GatewayConfig, GatewayProcess, PgCluster};

use super::verdict;

mod token;

const IDLE_SESSIONS: usize = 1000;
/// Debian's interpreter, the one `python3-psycopg` is installed for.
const PYTHON: &str = "/usr/bin/python3";
const IDLE_FLOOR_BYTES: f64 = 64.0 * 1024.0;
const SETUP_SAMPLES: usize = 200;
const SETUP_FLOOR_MS: f64 = 2.0;

/// Python client: `idle N` opens N sessions, prints "ready", holds them until stdin closes;
/// `psycopg N PORT CONNINFO` times N sequential psycopg connects and closes and prints the
/// median and p90 in microseconds.
const CLIENT: &str = r#"
import socket, struct, sys, time, resource
mode, count, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
body = struct.pack('!i', 196608) + b'user\0postgres\0database\0postgres\0\0'
startup = struct.pack('!i', len(body) + 4) + body
def session():
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    s.sendall(startup)
    buf = b''
    while True:
        while len(buf) >= 5:
            tag, length = buf[0:1], struct.unpack('!i', buf[1:5])[0]
            if len(buf) < 1 + length:
                break
            if tag == b'E':
                raise SystemExit('server error: %r' % buf[:200])
            buf = buf[1 + length:]
            if tag == b'Z':
                return s
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit('closed during startup')
        buf += chunk
if mode == 'psycopg':
    import psycopg
    conninfo = sys.argv[4]
    times = []
    for _ in range(count):
        start = time.perf_counter()
        psycopg.connect(conninfo).close()
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    print('%.1f %.1f' % (times[len(times) // 2], times[len(times) * 9 // 10]))
elif mode == 'idle':
    held = [session() for _ in range(count)]
    print('ready', flush=True)
    sys.stdin.read()
"#;

pub fn measure(binary: &Path) -> anyhow::Result<String> {
    let pg = PgCluster::start_with_max_connections("127.0.0.1", IDLE_SESSIONS as u32 + 100)?;
    let agents = AgentCgroup::create("tollgate-bench-sessions")?;
    let port = pg.port().to_string();

    let token = token::TokenSetup::new(&pg)?;
    let mut config = GatewayConfig::new("benchsess");
    config.cgroups = vec![agents.path.clone()];
    config.targets = vec![("bench".to_owned(), vec![format!("127.0.0.1:{port}")])];
    config.target_lines = token.target_lines("bench");
    let (direct, through) = {
        let _gateway = GatewayProcess::start(binary, &config)?;
        let direct_conninfo = format!(
            "host=127.0.0.1 port={port} dbname=postgres user={} password={} sslmode=disable",
            token::DB_USER,
            token::DB_PASSWORD
        );
        let direct = setup_times(Command::new(PYTHON), &port, &direct_conninfo)?;
        let gateway_conninfo = format!(
            "host=127.0.0.1 port={port} dbname=postgres user=bench-agent password={} sslmode=require",
            token.token()?
        );
        let through = setup_times(agents.command(PYTHON), &port, &gateway_conninfo)?;
        (direct, through)
    };
    let added_ms = (through.0 - direct.0) / 1000.0;

    config.target_lines.clear();
    let gateway = GatewayProcess::start(binary, &config)?;
    let gateway_pid = gateway.pid().context("gateway pid")?;
    let before = rss_bytes(gateway_pid)?;
    let mut idle = agents
        .command("python3")
        .args(["-c", CLIENT, "idle", &IDLE_SESSIONS.to_string(), &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("idle-session client")?;
    let mut line = String::new();
    BufReader::new(idle.stdout.take().context("client stdout")?).read_line(&mut line)?;
    let after = rss_bytes(gateway_pid);
    drop(idle.stdin.take().map(|mut stdin| stdin.write_all(b"")));
    let _ = idle.wait();
    if line.trim() != "ready" {
        bail!("the idle-session client did not open {IDLE_SESSIONS} sessions");
    }
    let per_session = (after? as f64 - before as f64) / IDLE_SESSIONS as f64;

    let mut out = String::new();
    let _ = writeln!(out, "## Sessions\n");
    let _ = writeln!(
        out,
        "Connection setup with psycopg (connect and close), {SETUP_SAMPLES} sequential sessions: \
         direct with a SCRAM-SHA-256 password: median {:.0} µs (p90 {:.0}); through Tollgate \
         with TLS and an ES256 access token, the gateway logging in upstream with SCRAM: median \
         {:.0} µs (p90 {:.0}); added {added_ms:.2} ms at the median (floor ≤ {SETUP_FLOOR_MS} ms: \
         **{}**).\n",
        direct.0,
        direct.1,
        through.0,
        through.1,
        verdict(added_ms <= SETUP_FLOOR_MS)
    );
    let _ = writeln!(
        out,
        "Idle sessions (passthrough, plain TCP): gateway RSS {:.1} MiB before, {:.1} MiB with \
         {IDLE_SESSIONS} idle sessions: {:.1} KiB per session (floor ≤ 64 KiB: **{}**).\n",
        before as f64 / 1048576.0,
        (before as f64 + per_session * IDLE_SESSIONS as f64) / 1048576.0,
        per_session / 1024.0,
        verdict(per_session <= IDLE_FLOOR_BYTES)
    );
    Ok(out)
}

fn setup_times(mut command: Command, port: &str, conninfo: &str) -> anyhow::Result<(f64, f64)> {
    let output = command
        .args([
            "-c",
            CLIENT,
            "psycopg",
            &SETUP_SAMPLES.to_string(),
            port,
            conninfo,
        ])
        .output()
        .context("setup-time client")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text
        .split_whitespace()
        .filter_map(|v| v.parse::<f64>().ok());
    match (output.status.success(), numbers.next(), numbers.next()) {
        (true, Some(median), Some(p90)) => Ok((median, p90)),
        _ => bail!(
            "setup-time client failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("VmRSS in /proc/PID/status")
}
