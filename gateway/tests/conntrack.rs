//! Privileged end-to-end tests of what Tollgate's table leaves to connection tracking: only
//! redirected flows are tracked. Non-agent flows (local over IPv4 and IPv6, and an
//! application host's inbound connections to the database) leave no conntrack entry, in both
//! redirect modes, while agents and remote agents are redirected as before; and a host whose
//! own firewall relies on connection tracking keeps it for everything but loopback flows of
//! protected ports. Entries are listed with Debian's `conntrack`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

mod common;

use common::{accepted, assert_success, open_event_for, pg_bed, pg_bed_listening, run, stdout};
use xtask::testbed::{conntrack_entries, require_root, RemoteHost, Sink};

/// Non-agent connections per destination: enough that a tracked one could not hide.
const CONNECTS: usize = 200;

/// `count` connects from this (non-agent) process, each closed at once; their local ports.
fn connect_many(ip: IpAddr, port: u16, count: usize) -> Vec<u16> {
    (0..count)
        .map(|_| {
            let stream =
                TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(5))
                    .unwrap_or_else(|error| panic!("non-agent connect to {ip}:{port}: {error}"));
            stream.local_addr().expect("local address").port()
        })
        .collect()
}

fn tracked(family: &str, port: u16, source: Option<&str>) -> Vec<String> {
    conntrack_entries(family, port, source).expect("conntrack lists its entries")
}

/// The entries among [`tracked`]'s of flows from these local ports: this test's own, not an
/// entry some earlier connection left on the host (a dead established flow is kept for days).
fn tracked_from(family: &str, port: u16, local_ports: &[u16]) -> Vec<String> {
    tracked(family, port, None)
        .into_iter()
        .filter(|entry| {
            entry
                .split_whitespace()
                .find_map(|field| field.strip_prefix("sport="))
                .and_then(|sport| sport.parse::<u16>().ok())
                .is_some_and(|sport| local_ports.contains(&sport))
        })
        .collect()
}

fn psql(mut command: Command, host: &str, port: u16, sql: &str) -> Command {
    command.args([
        "-X", "-A", "-t", "-U", "postgres", "-d", "postgres", "-h", host,
    ]);
    command.args(["-p", &port.to_string(), "-c", sql]);
    command
}

/// In `redirect` mode, with one remote agent source: non-agent flows untracked, agent flows
/// redirected (and, where NAT redirects them, tracked).
fn only_redirected_flows_are_tracked(test: &str, redirect: &'static str) {
    require_root(test);
    let remote = RemoteHost::create().expect("network namespace with a veth link");
    let host = remote.host_addr.to_string();
    let listen = format!("127.0.0.1,::1,{host}");
    let remote_sources = vec![format!("{}/32", remote.remote_addr)];
    let bed = pg_bed_listening(test, &listen, "", |config| {
        config.redirect = Some(redirect);
        config.remote_sources = remote_sources;
    });
    let (pg, gateway) = (&bed.pg, &bed.gateway);
    let untracked = &gateway.status().expect("status")["untracked"];
    assert_eq!(
        untracked["scope"], "non-agent",
        "with untrack = \"auto\" on a host where nothing else relies on connection tracking, \
         every non-agent flow is untracked; status says {untracked}"
    );

    // Local non-agent flows, to an unprotected port and to the protected database, over
    // IPv4 and IPv6.
    let sink = Sink::start().expect("a sink on 127.0.0.1 and ::1");
    let mut made = Vec::new();
    for (family, ip) in [
        ("ipv4", IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ("ipv6", IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ] {
        for port in [sink.port, pg.port()] {
            made.push((family, port, connect_many(ip, port, CONNECTS)));
        }
    }
    for (family, port, local_ports) in made {
        let entries = tracked_from(family, port, &local_ports);
        assert!(
            entries.is_empty(),
            "{redirect}: non-agent {family} flows to port {port} were tracked: {entries:?}"
        );
    }
    assert_eq!(accepted(gateway), 0, "non-agents must go direct");

    // An application host on the link (not a remote agent source) reaches the database
    // directly and untracked.
    let script = format!(
        "import socket\nfor _ in range({CONNECTS}):\n    socket.create_connection(('{host}', {}), \
         source_address=('{}', 0)).close()",
        pg.port(),
        remote.other_addr
    );
    let mut app = remote.command("python3");
    app.args(["-c", &script]);
    let (_, output) = run(app);
    assert_success(&output, "connections from the application host");
    let entries = tracked("ipv4", pg.port(), Some(&remote.other_addr.to_string()));
    assert!(
        entries.is_empty(),
        "{redirect}: the application host's inbound flows were tracked: {entries:?}"
    );
    assert_eq!(accepted(gateway), 0, "the application host must go direct");

    // Agents, local over both families and remote, are redirected.
    for agent_host in ["127.0.0.1", "::1"] {
        let command = psql(
            bed.agents.command("psql"),
            agent_host,
            pg.port(),
            "select 'agent'",
        );
        let (pid, output) = run(command);
        assert_success(&output, &format!("agent psql -h {agent_host}"));
        assert_eq!(stdout(&output), "agent");
        open_event_for(gateway, pid);
    }
    let command = psql(remote.command("psql"), &host, pg.port(), "select 'remote'");
    let (_, output) = run(command);
    assert_success(&output, "psql from the remote agent source");
    assert_eq!(stdout(&output), "remote");
    assert_eq!(accepted(gateway), 3);
    assert_eq!(
        tracked("ipv4", pg.port(), Some(&remote.remote_addr.to_string())).len(),
        1,
        "{redirect}: the remote agent's flow is redirected by NAT, so it is tracked"
    );
    if redirect == "nftables" {
        // One entry each: the agent's redirected flow. The gateway's own connection to the
        // server (bypass mark) is not tracked.
        for (family, local) in [("ipv4", "127.0.0.1"), ("ipv6", "::1")] {
            let entries = tracked(family, pg.port(), Some(local));
            assert_eq!(
                entries.len(),
                1,
                "the local {family} agent flow is redirected by NAT, so it is tracked: {entries:?}"
            );
        }
    }
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn with_the_nftables_redirect_only_redirected_flows_are_tracked() {
    only_redirected_flows_are_tracked(
        "with_the_nftables_redirect_only_redirected_flows_are_tracked",
        "nftables",
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn with_the_ebpf_redirect_only_redirected_flows_are_tracked() {
    only_redirected_flows_are_tracked(
        "with_the_ebpf_redirect_only_redirected_flows_are_tracked",
        "ebpf",
    );
}

/// A stateful firewall table of the host's own, removed on drop.
struct HostFirewall(&'static str);

impl HostFirewall {
    fn install(name: &'static str) -> Self {
        let ruleset = format!(
            "table inet {name} {{\n chain input {{\n  type filter hook input priority 0; policy \
             accept;\n  ct state established,related accept\n }}\n}}\n"
        );
        let output = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .expect("nft stdin")
                    .write_all(ruleset.as_bytes())?;
                child.wait_with_output()
            })
            .expect("nft runs");
        assert_success(&output, "installing the host firewall table");
        Self(name)
    }
}

impl Drop for HostFirewall {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", self.0])
            .output();
    }
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn a_host_firewall_that_reads_connection_state_keeps_it() {
    let test = "a_host_firewall_that_reads_connection_state_keeps_it";
    require_root(test);
    let _firewall = HostFirewall::install("tollgate_test_stateful_fw");
    let bed = pg_bed(test, |_| {});
    let untracked = &bed.gateway.status().expect("status")["untracked"];
    assert_eq!(untracked["scope"], "loopback", "{untracked}");
    assert_eq!(
        untracked["kept_for"],
        serde_json::json!(["nftables table inet tollgate_test_stateful_fw"]),
        "{untracked}"
    );
    // Flows the firewall may judge by their state stay tracked, as before Tollgate ran ...
    let sink = Sink::start().expect("a sink on 127.0.0.1 and ::1");
    let made = connect_many(IpAddr::V4(Ipv4Addr::LOCALHOST), sink.port, 5);
    assert_eq!(tracked_from("ipv4", sink.port, &made).len(), 5);
    // ... while a non-agent's loopback connections to the protected database still skip it,
    // and agents are redirected.
    let made = connect_many(IpAddr::V4(Ipv4Addr::LOCALHOST), bed.pg.port(), 5);
    assert!(tracked_from("ipv4", bed.pg.port(), &made).is_empty());
    let command = psql(
        bed.agents.command("psql"),
        "127.0.0.1",
        bed.pg.port(),
        "select 1",
    );
    let (pid, output) = run(command);
    assert_success(&output, "agent psql under a stateful host firewall");
    open_event_for(&bed.gateway, pid);
}

/// A clean stop lets redirected sessions finish: the table stops redirecting new connections
/// but keeps connection tracking translating the ones already redirected while they drain (the
/// table deleted at once would switch tracking off, and a live session would lose its
/// translation mid-stream). A new agent connection during the drain goes direct.
#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn a_clean_stop_keeps_redirected_sessions_translated_while_they_drain() {
    use std::io::{BufRead, BufReader, Write};

    let test = "a_clean_stop_keeps_redirected_sessions_translated_while_they_drain";
    require_root(test);
    let mut bed = pg_bed(test, |_| {});
    let port = bed.pg.port();
    // One session kept open: each line on stdin runs as a statement, its value printed.
    let script = format!(
        "import sys, psycopg\n\
         conn = psycopg.connect(host='127.0.0.1', port={port}, user='postgres', \
         dbname='postgres', autocommit=True)\n\
         for line in sys.stdin:\n    \
         print(conn.execute(line).fetchone()[0], flush=True)\n"
    );
    // Debian's python3, which has Debian's psycopg.
    let mut command = bed.agents.command("/usr/bin/python3");
    command.args(["-c", &script]);
    let mut agent = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agent session");
    let mut stdin = agent.stdin.take().expect("agent stdin");
    let mut lines = BufReader::new(agent.stdout.take().expect("agent stdout")).lines();
    let mut stderr = agent.stderr.take().expect("agent stderr");
    let mut ask = |sql: &str| {
        writeln!(stdin, "{sql}").expect("the agent takes a statement");
        match lines.next() {
            Some(line) => line.expect("its output is text"),
            None => {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
                panic!("the agent did not answer {sql}: {text}")
            }
        }
    };
    assert_eq!(ask("select 'before';"), "before");
    open_event_for(&bed.gateway, agent.id());

    common::signal(bed.gateway.pid().expect("gateway runs"), libc::SIGTERM);
    // Draining: the table no longer redirects (a new agent connection goes direct) ...
    let redirecting = || {
        Command::new("nft")
            .args(["list", "table", "inet", bed.gateway.nft_table()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("redirect"))
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while redirecting() {
        assert!(
            std::time::Instant::now() < deadline,
            "the drain never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (direct_pid, direct) = run(psql(
        bed.agents.command("psql"),
        "127.0.0.1",
        port,
        "select 'direct'",
    ));
    assert_success(&direct, "a new agent connection while the gateway drains");
    assert_eq!(stdout(&direct), "direct");
    // ... while the session already redirected goes on through the gateway.
    let table_then = Command::new("nft")
        .args(["list", "table", "inet", bed.gateway.nft_table()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let tracked_then = tracked("ipv4", port, Some("127.0.0.1"));
    let during = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ask("select 'during the drain';")
    }));
    assert!(
        during
            .as_deref()
            .is_ok_and(|answer| answer == "during the drain"),
        "the redirected session failed during the drain; table:\n{table_then}\ntracked: \
         {tracked_then:?}\ngateway log:\n{}",
        bed.gateway.log_text()
    );
    drop(stdin);
    let output = agent.wait_with_output().expect("psql exits");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = bed
        .gateway
        .stop()
        .expect("the gateway exits once its session is done");
    assert!(status.success(), "{status}");
    assert!(
        !bed.gateway.nft_table_present(),
        "the table is removed after the drain"
    );
    assert!(
        !bed.gateway
            .events()
            .iter()
            .any(|e| e["event"] == "connection.open" && e["pid"] == direct_pid),
        "the connection made during the drain did not reach the gateway"
    );
}
