//! Privileged end-to-end tests: real eBPF programs, real nftables rules, a real PostgreSQL and
//! unmodified `psql` run as agents. They are `#[ignore]`d for plain `cargo test` (which shows
//! them as ignored with the reason) and run by `cargo xtask test` as root. Run without root they
//! fail, saying how to run them.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    process::Command,
    time::Duration,
};

mod common;

use common::{
    accepted, assert_success, open_event_for, pg_bed as bed, pg_bed_listening, run, stdout,
    PgBed as Bed, TOLLGATE,
};
use serde_json::Value;
use xtask::testbed::{require_root, AgentCgroup, GatewayConfig, GatewayProcess, RemoteHost};

const NOBODY: u32 = 65534;

/// Unmodified psql, same host and port as without Tollgate.
fn psql(command: &mut Command, host: &str, port: u16, sql: &str) -> Command {
    command.args([
        "-X",
        "-A",
        "-t",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-c",
        sql,
    ]);
    std::mem::replace(command, Command::new("true"))
}

/// While the gateway is down: agents are refused (never let through), non-agents unaffected.
fn assert_agent_refused_non_agent_direct(bed: &Bed) {
    let port = bed.pg.port();
    let (_, refused) = run(psql(
        &mut bed.agents.command("psql"),
        "127.0.0.1",
        port,
        "select 1",
    ));
    assert!(
        !refused.status.success(),
        "an agent must not bypass a dead gateway"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    let (_, direct) = run(psql(
        &mut Command::new("psql"),
        "127.0.0.1",
        port,
        "select 7",
    ));
    assert_success(&direct, "non-agent while the gateway is down");
}

fn kernel_status(gateway: &GatewayProcess) -> Value {
    let output = Command::new(TOLLGATE)
        .args(["status", "--json", "--config"])
        .arg(gateway.config_path())
        .output()
        .expect("tollgate status");
    let report: Value = serde_json::from_slice(&output.stdout).expect("status --json prints JSON");
    report["kernel"].clone()
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn agent_connection_is_intercepted_and_attributed() {
    let bed = bed("agent_connection_is_intercepted_and_attributed", |_| {});
    // A child cgroup of the configured one: descendants are agents too.
    let job = bed.agents.child("job-1").expect("child cgroup");
    let (pid, output) = run(psql(
        &mut job.command("psql"),
        "127.0.0.1",
        bed.pg.port(),
        "select 'via ' || 'tollgate'",
    ));
    assert_success(&output, "agent psql");
    assert_eq!(stdout(&output), "via tollgate");

    let open = open_event_for(&bed.gateway, pid);
    assert_eq!(open["identity"], "process");
    assert_eq!(open["uid"], 0);
    assert_eq!(open["comm"], "psql");
    assert!(
        open["exe"]
            .as_str()
            .is_some_and(|exe| exe.ends_with("/psql")),
        "exe: {open}"
    );
    assert_eq!(open["cgroup"], job.path.as_str());
    assert_eq!(open["orig_dst"], format!("127.0.0.1:{}", bed.pg.port()));
    assert_eq!(open["target"], "clinic");
    // The command line is recorded, with the inline SQL (which can quote PHI) redacted.
    let cmdline = open["cmdline"].as_str().unwrap_or_default();
    assert!(
        cmdline.contains("psql") && cmdline.contains("-c <redacted>"),
        "{open}"
    );
    assert!(!cmdline.contains("tollgate'"), "{open}");

    let conn_id = open["conn_id"].clone();
    let close = bed
        .gateway
        .wait_for_event(Duration::from_secs(5), |e| {
            e["event"] == "connection.close" && e["conn_id"] == conn_id
        })
        .expect("one close record per connection");
    assert_eq!(close["outcome"], "closed");
    assert!(
        close["bytes_from_agent"].as_u64().is_some_and(|b| b > 0),
        "{close}"
    );
    assert!(
        close["bytes_to_agent"].as_u64().is_some_and(|b| b > 0),
        "{close}"
    );
    drop(job);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn non_agent_connection_goes_direct() {
    let bed = bed("non_agent_connection_goes_direct", |_| {});
    let (_, output) = run(psql(
        &mut Command::new("psql"),
        "127.0.0.1",
        bed.pg.port(),
        "select 42",
    ));
    assert_success(&output, "non-agent psql");
    assert_eq!(stdout(&output), "42");
    assert_eq!(
        accepted(&bed.gateway),
        0,
        "a non-agent connection must not reach the gateway"
    );
    assert_eq!(
        kernel_status(&bed.gateway)["counters"]["marked_connects"],
        0
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn ipv6_v4_mapped_and_unspecified_connections_are_intercepted() {
    let bed = bed(
        "ipv6_v4_mapped_and_unspecified_connections_are_intercepted",
        |_| {},
    );
    let port = bed.pg.port();
    // The kernel connects the unspecified addresses to loopback: they must not slip past.
    for (host, expected_dst) in [
        ("::1", format!("[::1]:{port}")),
        ("::ffff:127.0.0.1", format!("127.0.0.1:{port}")),
        ("0.0.0.0", format!("127.0.0.1:{port}")),
        ("::", format!("[::1]:{port}")),
    ] {
        let (pid, output) = run(psql(
            &mut bed.agents.command("psql"),
            host,
            port,
            "select 1",
        ));
        assert_success(&output, &format!("agent psql -h {host}"));
        let open = open_event_for(&bed.gateway, pid);
        assert_eq!(open["orig_dst"], expected_dst.as_str(), "{host}: {open}");
    }
    assert_eq!(accepted(&bed.gateway), 4);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn killed_gateway_fails_closed_and_restart_recovers() {
    let mut bed = bed("killed_gateway_fails_closed_and_restart_recovers", |_| {});
    let port = bed.pg.port();
    let agent_select = |bed: &Bed| {
        run(psql(
            &mut bed.agents.command("psql"),
            "127.0.0.1",
            port,
            "select 1",
        ))
        .1
    };

    assert_success(&agent_select(&bed), "agent before the crash");
    bed.gateway.kill9().expect("kill -9 the gateway");

    assert_agent_refused_non_agent_direct(&bed);
    assert!(
        bed.gateway.nft_table_present(),
        "the nft table must survive a crash"
    );
    let kernel = kernel_status(&bed.gateway);
    assert_eq!(
        kernel["links"].as_array().map(Vec::len),
        // connect4/6, sock_ops, sock_release, and connect_unix for the server's default socket.
        Some(5),
        "pinned links survive: {kernel}"
    );

    // Startup replaces the stale generation.
    bed.gateway.spawn().expect("restart");
    assert_success(&agent_select(&bed), "agent after restart");
    assert_eq!(
        kernel_status(&bed.gateway)["generations"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Clean shutdown removes the table and the pins: agents then connect directly.
    let status = bed.gateway.stop().expect("SIGTERM");
    assert!(
        status.success(),
        "clean exit: {status}\n{}",
        bed.gateway.log_text()
    );
    assert!(!bed.gateway.nft_table_present());
    assert_eq!(
        kernel_status(&bed.gateway)["generations"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_success(
        &agent_select(&bed),
        "agent after a clean shutdown goes direct",
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn ten_thousand_connections_leave_no_stale_map_entries() {
    const CONNECTIONS: usize = 10_000;
    let echo = TcpListener::bind("127.0.0.1:0").expect("echo listener");
    let echo_addr = echo.local_addr().expect("echo addr");
    let server = std::thread::spawn(move || {
        for stream in echo.incoming().take(CONNECTIONS) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut byte = [0u8; 1];
            if stream.read_exact(&mut byte).is_ok() {
                let _ = stream.write_all(&byte);
            }
        }
    });
    let bed = bed(
        "ten_thousand_connections_leave_no_stale_map_entries",
        |config| {
            // A raw echo protocol: an object-store target is relayed byte for byte.
            config
                .object_stores
                .push(("echo".to_owned(), vec![echo_addr.to_string()]));
        },
    );
    let script = format!(
        "import socket\nfor i in range({CONNECTIONS}):\n    s = socket.create_connection(('127.0.0.1', {}), timeout=5)\n    s.sendall(b'x')\n    assert s.recv(1) == b'x', i\n    s.close()\n",
        echo_addr.port()
    );
    let (_, output) = run({
        let mut command = bed.agents.command("python3");
        command.args(["-c", &script]);
        command
    });
    assert_success(&output, "10,000 agent connections");
    server.join().expect("echo server");

    let mut kernel = Value::Null;
    for _ in 0..100 {
        kernel = kernel_status(&bed.gateway);
        if kernel["map_entries"]["flows"] == 0 && kernel["map_entries"]["connects"] == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        kernel["map_entries"]["flows"], 0,
        "stale flow entries: {kernel}"
    );
    assert_eq!(
        kernel["map_entries"]["connects"], 0,
        "stale connect entries: {kernel}"
    );
    assert_eq!(
        kernel["counters"]["flows_tracked"], CONNECTIONS as u64,
        "{kernel}"
    );
    assert_eq!(
        kernel["counters"]["flows_closed"], CONNECTIONS as u64,
        "{kernel}"
    );
    assert_eq!(accepted(&bed.gateway), CONNECTIONS as u64);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn unknown_peer_is_refused() {
    let bed = bed("unknown_peer_is_refused", |_| {});
    let listen_port = bed.gateway.status().expect("status")["listen"][0]
        .as_str()
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|port| port.parse::<u16>().ok())
        .expect("listen port");
    let mut stream =
        TcpStream::connect(("127.0.0.1", listen_port)).expect("connect to the listener directly");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = stream.write_all(b"\0\0\0\x08\x04\xd2\x16\x2f");
    let mut buffer = [0u8; 64];
    let read = stream.read(&mut buffer).unwrap_or(0);
    assert_eq!(read, 0, "an unattributed peer gets nothing back");
    let close = bed
        .gateway
        .wait_for_event(Duration::from_secs(5), |e| {
            e["event"] == "connection.close" && e["outcome"] == "refused"
        })
        .unwrap_or_else(|| panic!("no refusal record; log:\n{}", bed.gateway.log_text()));
    // A non-agent's flow is untracked, so the kernel has no original destination to give;
    // where connection tracking does know the flow (gateway.untrack = "loopback", or a host
    // that keeps tracking), no attribution matches the peer.
    assert!(
        close["reason"]
            .as_str()
            .is_some_and(|r| r.contains("attribution")
                || r.contains("no original destination (not redirected)")),
        "{close}"
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn uid_selected_agent_is_intercepted() {
    let bed = bed("uid_selected_agent_is_intercepted", |config| {
        config.cgroups.clear();
        config.uids = vec![NOBODY];
    });
    let mut as_nobody = Command::new("psql");
    as_nobody
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .env("HOME", "/tmp");
    let (pid, output) = run(psql(
        &mut as_nobody,
        "127.0.0.1",
        bed.pg.port(),
        "select current_user",
    ));
    assert_success(&output, "psql as nobody");
    let open = open_event_for(&bed.gateway, pid);
    assert_eq!(open["uid"], NOBODY);

    // root is not a selected uid: programs attached at the root cgroup leave it alone.
    let (_, root_output) = run(psql(
        &mut Command::new("psql"),
        "127.0.0.1",
        bed.pg.port(),
        "select 1",
    ));
    assert_success(&root_output, "root psql");
    assert_eq!(accepted(&bed.gateway), 1);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn two_instances_protecting_one_database_both_intercept_their_agents() {
    let bed = bed(
        "two_instances_protecting_one_database_both_intercept_their_agents",
        |_| {},
    );
    // A second appliance on the host: its own agents, table, mark and port, same database.
    let other_agents = AgentCgroup::create(&format!("tollgate-pg2-{}", std::process::id()))
        .expect("second agent cgroup");
    let mut config = GatewayConfig::new(&format!("pg2_{}", env!("CARGO_CRATE_NAME")));
    config.cgroups = vec![other_agents.path.clone()];
    config.mark ^= 0x8000;
    config.targets = vec![(
        "clinic".to_owned(),
        vec![format!("127.0.0.1:{}", bed.pg.port())],
    )];
    let other = GatewayProcess::start(std::path::Path::new(TOLLGATE), &config)
        .expect("second tollgate starts");
    // Each instance's loopback rules skip conntrack for unmarked traffic to the database; the
    // other instance's marked agent packets must keep it, or its redirect never applies.
    for (agents, gateway) in [(&bed.agents, &bed.gateway), (&other_agents, &other)] {
        let (pid, output) = run(psql(
            &mut agents.command("psql"),
            "127.0.0.1",
            bed.pg.port(),
            "select 1",
        ));
        assert_success(&output, "agent psql");
        open_event_for(gateway, pid);
    }
    assert_eq!(accepted(&bed.gateway), 1);
    assert_eq!(accepted(&other), 1);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn run_without_privileges_is_refused_clearly() {
    require_root("run_without_privileges_is_refused_clearly");
    let dir = xtask::testbed::TempDir::new("tollgate-unpriv").expect("temp dir");
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        "[agents]\ncgroups = [\"/agents\"]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n",
    )
    .expect("config");
    dir.chown_to("nobody").expect("chown");
    let output = Command::new(TOLLGATE)
        .args(["run", "--config"])
        .arg(&config)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run tollgate as nobody");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs root privileges"), "{stderr}");
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn remote_agent_network_is_redirected_in_prerouting() {
    require_root("remote_agent_network_is_redirected_in_prerouting");
    let remote = RemoteHost::create().expect("network namespace with a veth link");
    let listen = format!("127.0.0.1,::1,{}", remote.host_addr);
    let remote_sources = vec![format!("{}/24", remote.host_addr)];
    let bed = pg_bed_listening(
        "remote_agent_network_is_redirected_in_prerouting",
        &listen,
        "",
        |config| config.remote_sources = remote_sources,
    );
    let (pg, gateway) = (&bed.pg, &bed.gateway);

    let host = remote.host_addr.to_string();
    let (_, output) = run(psql(
        &mut remote.command("psql"),
        &host,
        pg.port(),
        "select 'from afar'",
    ));
    assert_success(&output, "psql from the remote agent network");
    assert_eq!(stdout(&output), "from afar");
    let open = gateway
        .wait_for_event(Duration::from_secs(5), |e| {
            e["event"] == "connection.open" && e["identity"] == "remote"
        })
        .unwrap_or_else(|| panic!("no remote connection.open; log:\n{}", gateway.log_text()));
    assert_eq!(open["source"], remote.remote_addr.to_string());
    assert_eq!(
        open["orig_dst"],
        format!("{}:{}", remote.host_addr, pg.port())
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn ebpf_redirect_intercepts_v4_v6_and_mapped_without_nat() {
    let bed = bed(
        "ebpf_redirect_intercepts_v4_v6_and_mapped_without_nat",
        |config| {
            config.redirect = Some("ebpf");
        },
    );
    let port = bed.pg.port();
    for (host, expected_dst) in [
        ("127.0.0.1", format!("127.0.0.1:{port}")),
        ("::1", format!("[::1]:{port}")),
        ("::ffff:127.0.0.1", format!("127.0.0.1:{port}")),
        ("0.0.0.0", format!("127.0.0.1:{port}")),
    ] {
        let (pid, output) = run(psql(
            &mut bed.agents.command("psql"),
            host,
            port,
            "select 'ebpf'",
        ));
        assert_success(
            &output,
            &format!("agent psql -h {host} with the eBPF redirect"),
        );
        assert_eq!(stdout(&output), "ebpf");
        let open = open_event_for(&bed.gateway, pid);
        assert_eq!(open["orig_dst"], expected_dst.as_str(), "{host}: {open}");
        assert_eq!(open["cgroup"], bed.agents.path.as_str());
    }
    // No NAT chain: the table holds nothing that turns on connection tracking.
    let table = Command::new("nft")
        .args(["list", "table", "inet", bed.gateway.nft_table()])
        .output()
        .expect("nft list");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        !table.contains("redirect") && !table.contains("nat"),
        "{table}"
    );

    // The agent still sees the destination it asked for, in either family.
    for (host, expected) in [
        ("127.0.0.1", format!("('127.0.0.1', {port})")),
        ("::1", format!("('::1', {port}, 0, 0)")),
    ] {
        let script = format!(
            "import socket; s = socket.create_connection(('{host}', {port})); print(s.getpeername())"
        );
        let (_, output) = run({
            let mut command = bed.agents.command("python3");
            command.args(["-c", &script]);
            command
        });
        assert_success(&output, &format!("getpeername as an agent to {host}"));
        assert_eq!(stdout(&output), expected);
    }
    let (_, direct) = run(psql(
        &mut Command::new("psql"),
        "127.0.0.1",
        port,
        "select 1",
    ));
    assert_success(&direct, "non-agent with the eBPF redirect");
    assert_eq!(
        accepted(&bed.gateway),
        6,
        "four psql agents and two python agents; the non-agent went direct"
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn ebpf_redirect_fails_closed_when_the_gateway_dies() {
    let mut bed = bed(
        "ebpf_redirect_fails_closed_when_the_gateway_dies",
        |config| {
            config.redirect = Some("ebpf");
        },
    );
    let port = bed.pg.port();
    bed.gateway.kill9().expect("kill -9 the gateway");
    assert_agent_refused_non_agent_direct(&bed);
    bed.gateway.spawn().expect("restart");
    let (_, again) = run(psql(
        &mut bed.agents.command("psql"),
        "127.0.0.1",
        port,
        "select 1",
    ));
    assert_success(&again, "agent after restart");
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn recreated_agent_cgroup_is_followed() {
    let bed = bed("recreated_agent_cgroup_is_followed", |_| {});
    // What systemd does to a service's cgroup on restart: remove it, create it again (new id).
    std::fs::remove_dir(&bed.agents.dir).expect("remove the empty agent cgroup");
    std::fs::create_dir(&bed.agents.dir).expect("create it again");
    bed.gateway
        .wait_for_event(Duration::from_secs(5), |e| {
            e["event"] == "agent_cgroup.recreated"
        })
        .unwrap_or_else(|| {
            panic!(
                "the gateway did not follow the new cgroup; log:\n{}",
                bed.gateway.log_text()
            )
        });
    let (pid, output) = run(psql(
        &mut bed.agents.command("psql"),
        "127.0.0.1",
        bed.pg.port(),
        "select 1",
    ));
    assert_success(&output, "agent in the re-created cgroup");
    open_event_for(&bed.gateway, pid);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn keep_on_exit_stays_closed_until_uninstall() {
    let mut bed = bed("keep_on_exit_stays_closed_until_uninstall", |config| {
        config.keep_on_exit = true;
    });
    let port = bed.pg.port();
    let status = bed.gateway.stop().expect("SIGTERM");
    assert!(
        status.success(),
        "clean exit: {status}\n{}",
        bed.gateway.log_text()
    );
    assert!(
        bed.gateway.nft_table_present(),
        "--keep-on-exit leaves the table"
    );
    // Agents stay refused after a --keep-on-exit stop.
    assert_agent_refused_non_agent_direct(&bed);

    let uninstall = Command::new(TOLLGATE)
        .args(["uninstall", "--config"])
        .arg(bed.gateway.config_path())
        .output()
        .expect("tollgate uninstall");
    assert!(
        uninstall.status.success(),
        "{}",
        String::from_utf8_lossy(&uninstall.stderr)
    );
    let report = String::from_utf8_lossy(&uninstall.stdout);
    assert!(
        report.contains("removed nftables table") && report.contains("removed pinned programs"),
        "{report}"
    );
    assert!(!bed.gateway.nft_table_present());
    let (_, direct) = run(psql(
        &mut bed.agents.command("psql"),
        "127.0.0.1",
        port,
        "select 1",
    ));
    assert_success(&direct, "agent after uninstall connects directly");
}
