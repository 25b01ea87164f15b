//! Listener coverage in a network namespace the test creates: a server listening on a wildcard,
//! or on a second address of a veth pair, is reached by agents on every local address, in
//! both families, v4-mapped, by name, with TCP Fast Open and through io_uring: each connection
//! is intercepted. A strict target refuses to start, or raises an alarm, naming the listener.

use std::{net::SocketAddr, process::Command, time::Duration};

use serde_json::Value;
use xtask::testbed::{
    require_root, AgentCgroup, GatewayConfig, GatewayProcess, IsolatedNet, PgCluster,
};

use crate::common::{
    accepted, assert_success, open_event_for, pg_bed_in, run, serial, stdout, xtask_binary, PgBed,
    TOLLGATE,
};

/// `xtask tcp-probe` as an agent inside the namespace: connects by `via` and prints the
/// first byte of the answer.
fn probe(
    bed: &PgBed,
    net: &IsolatedNet,
    via: &str,
    addr: SocketAddr,
) -> (u32, std::process::Output) {
    let mut command = bed
        .agents
        .command_in(net.name(), &xtask_binary().display().to_string());
    command.args(["tcp-probe", "--via", via, &addr.to_string()]);
    run(command)
}

/// Waits until the gateway's coverage lists `address` as extended.
fn wait_extended(bed: &PgBed, address: SocketAddr) -> Value {
    for _ in 0..100 {
        let status = bed.gateway.status().expect("status");
        let extended = status["coverage"]["extended"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if extended.iter().any(|r| r["address"] == address.to_string()) {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{address} never became covered: {}",
        bed.gateway.status().unwrap_or_default()
    );
}

fn wildcard_bed(test: &str, net: &IsolatedNet) -> PgBed {
    pg_bed_in(test, Some(net.name()), "*", "", |config, pg| {
        // What the shipped example does: name loopback only.
        config.targets[0].1 = vec![format!("127.0.0.1:{}", pg.port())];
    })
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn wildcard_listener_is_intercepted_on_every_local_address_and_path() {
    let test = "wildcard_listener_is_intercepted_on_every_local_address_and_path";
    require_root(test);
    let net = IsolatedNet::create().expect("network namespace");
    let bed = wildcard_bed(test, &net);
    let port = bed.pg.port();
    let at = |ip: &str| -> SocketAddr {
        format!("{ip}:{port}")
            .parse()
            .unwrap_or_else(|_| panic!("{ip}"))
    };
    let status = wait_extended(&bed, SocketAddr::new(net.b_v4.into(), port));
    let text = status["coverage"].to_string();
    for address in [
        net.a_v4.to_string(),
        format!("[{}]", net.a_v6),
        format!("[{}]", net.b_v6),
    ] {
        assert!(
            text.contains(&format!("{address}:{port}")),
            "{address} not covered: {text}"
        );
    }

    // (path, where the agent connects, the original destination the gateway must record)
    let cases: Vec<(&str, SocketAddr, String)> = vec![
        ("plain", at("127.0.0.1"), format!("127.0.0.1:{port}")),
        ("plain", at("127.0.0.2"), format!("127.0.0.2:{port}")),
        ("plain", at("[::1]"), format!("[::1]:{port}")),
        (
            "plain",
            at("[::ffff:127.0.0.1]"),
            format!("127.0.0.1:{port}"),
        ),
        (
            "plain",
            SocketAddr::new(net.a_v4.into(), port),
            format!("{}:{port}", net.a_v4),
        ),
        (
            "plain",
            SocketAddr::new(net.b_v4.into(), port),
            format!("{}:{port}", net.b_v4),
        ),
        (
            "plain",
            SocketAddr::new(net.a_v6.into(), port),
            format!("[{}]:{port}", net.a_v6),
        ),
        (
            "plain",
            SocketAddr::new(net.b_v6.into(), port),
            format!("[{}]:{port}", net.b_v6),
        ),
        (
            "plain",
            at(&format!("[::ffff:{}]", net.b_v4)),
            format!("{}:{port}", net.b_v4),
        ),
        (
            "fastopen",
            SocketAddr::new(net.b_v4.into(), port),
            format!("{}:{port}", net.b_v4),
        ),
        (
            "fastopen",
            SocketAddr::new(net.a_v6.into(), port),
            format!("[{}]:{port}", net.a_v6),
        ),
        (
            "io-uring",
            SocketAddr::new(net.a_v4.into(), port),
            format!("{}:{port}", net.a_v4),
        ),
        (
            "io-uring",
            SocketAddr::new(net.b_v6.into(), port),
            format!("[{}]:{port}", net.b_v6),
        ),
    ];
    for (via, addr, orig_dst) in &cases {
        let (pid, output) = probe(&bed, &net, via, *addr);
        assert_success(&output, &format!("agent {via} to {addr}"));
        assert_eq!(stdout(&output), "R", "{via} {addr}");
        let open = open_event_for(&bed.gateway, pid);
        assert_eq!(open["orig_dst"], orig_dst.as_str(), "{via} {addr}: {open}");
        assert_eq!(open["target"], "clinic", "{via} {addr}: {open}");
    }

    // By name: psql resolves `localhost` itself.
    let mut psql = bed.agents.command_in(net.name(), "psql");
    psql.args([
        "-X",
        "-At",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-h",
        "localhost",
    ])
    .args(["-p", &port.to_string(), "-c", "select 'by name'"]);
    let (pid, output) = run(psql);
    assert_success(&output, "agent psql -h localhost");
    assert_eq!(stdout(&output), "by name");
    open_event_for(&bed.gateway, pid);

    // A non-agent on the same address goes direct.
    let before = accepted(&bed.gateway);
    let mut direct = net.command(&xtask_binary().display().to_string());
    direct.args([
        "tcp-probe",
        &SocketAddr::new(net.b_v4.into(), port).to_string(),
    ]);
    let (_, output) = run(direct);
    assert_success(&output, "non-agent to the veth address");
    assert_eq!(
        accepted(&bed.gateway),
        before,
        "a non-agent must not reach the gateway"
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn listener_on_a_second_veth_address_is_intercepted() {
    second_veth_address_is_intercepted("listener_on_a_second_veth_address_is_intercepted", None);
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn listener_on_a_second_veth_address_is_intercepted_with_the_ebpf_redirect() {
    second_veth_address_is_intercepted(
        "listener_on_a_second_veth_address_is_intercepted_with_the_ebpf_redirect",
        Some("ebpf"),
    );
}

/// The server listens on loopback and on the second veth address only; the target names
/// loopback. Each connect path to the second address is intercepted.
fn second_veth_address_is_intercepted(test: &str, redirect: Option<&'static str>) {
    require_root(test);
    let net = IsolatedNet::create().expect("network namespace");
    let listen = format!("127.0.0.1,{}", net.b_v4);
    let bed = pg_bed_in(test, Some(net.name()), &listen, "", |config, pg| {
        config.targets[0].1 = vec![format!("127.0.0.1:{}", pg.port())];
        config.redirect = redirect;
    });
    let second = SocketAddr::new(net.b_v4.into(), bed.pg.port());
    let status = wait_extended(&bed, second);
    // Only where the server listens: the other veth address has no listener.
    let first = SocketAddr::new(net.a_v4.into(), bed.pg.port()).to_string();
    assert!(!status["coverage"].to_string().contains(&first), "{status}");
    let mapped: SocketAddr = format!("[::ffff:{}]:{}", net.b_v4, bed.pg.port())
        .parse()
        .expect("v4-mapped");
    for (via, addr) in [
        ("plain", second),
        ("plain", mapped),
        ("fastopen", second),
        ("io-uring", second),
    ] {
        let (pid, output) = probe(&bed, &net, via, addr);
        assert_success(&output, &format!("agent {via} to {addr}"));
        assert_eq!(stdout(&output), "R", "{via} {addr}");
        let open = open_event_for(&bed.gateway, pid);
        assert_eq!(open["orig_dst"], second.to_string(), "{via} {addr}: {open}");
    }
}

/// A strict gateway for a server on `listen` in `net`: the start result and the gateway.
fn strict_gateway(
    net: &IsolatedNet,
    pg: &PgCluster,
    agents: &AgentCgroup,
) -> anyhow::Result<GatewayProcess> {
    let mut config = GatewayConfig::new("pg_local_paths_strict");
    config.netns = Some(net.name().to_owned());
    config.cgroups = vec![agents.path.clone()];
    config.targets = vec![(
        "clinic".to_owned(),
        vec![format!("127.0.0.1:{}", pg.port())],
    )];
    config
        .target_lines
        .push(("clinic".to_owned(), "coverage = \"strict\"".to_owned()));
    // TCP listeners only: a strict target's unix socket also needs the BPF LSM, which
    // `unix::strict_target_needs_its_unix_socket_closed_by_every_name` covers.
    config
        .target_lines
        .push(("clinic".to_owned(), "unix_sockets = []".to_owned()));
    GatewayProcess::start(std::path::Path::new(TOLLGATE), &config)
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn strict_coverage_refuses_to_start_naming_the_uncovered_listener() {
    require_root("strict_coverage_refuses_to_start_naming_the_uncovered_listener");
    let _serial = serial();
    let net = IsolatedNet::create().expect("network namespace");
    let pg = PgCluster::start_in_netns(net.name(), "*").expect("cluster");
    let agents = AgentCgroup::create(&format!("tollgate-strict-{}", std::process::id()))
        .expect("agent cgroup");
    let error = match strict_gateway(&net, &pg, &agents) {
        Ok(_) => panic!("a strict target with a wildcard listener must not start"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("coverage = \\\"strict\\\"") || error.contains("coverage = \"strict\""),
        "{error}"
    );
    assert!(
        error.contains(&format!("listener 0.0.0.0:{}", pg.port())),
        "the error names the listener: {error}"
    );
    assert!(
        error.contains(&format!("{}:{}", net.b_v4, pg.port())),
        "and where it answers: {error}"
    );
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn strict_coverage_raises_an_alarm_when_a_new_listener_appears() {
    require_root("strict_coverage_raises_an_alarm_when_a_new_listener_appears");
    let _serial = serial();
    let net = IsolatedNet::create().expect("network namespace");
    let pg = PgCluster::start_in_netns(net.name(), "127.0.0.1").expect("cluster");
    let agents = AgentCgroup::create(&format!("tollgate-strict-{}", std::process::id()))
        .expect("agent cgroup");
    let gateway = strict_gateway(&net, &pg, &agents).expect("strict gateway starts");
    // Something starts listening on the protected port at the second veth address.
    let address = SocketAddr::new(net.b_v4.into(), pg.port());
    let mut listener = net.command("python3");
    listener.args([
        "-c",
        &format!(
            "import socket,time\ns=socket.socket()\ns.bind(('{}',{}))\ns.listen()\ntime.sleep(30)",
            net.b_v4,
            pg.port()
        ),
    ]);
    let mut listener = KillOnDrop(listener.spawn().expect("python3 listener"));
    let alarm = gateway
        .wait_for_event(Duration::from_secs(10), |e| {
            e["event"] == "coverage.uncovered"
        })
        .unwrap_or_else(|| panic!("no alarm; log:\n{}", gateway.log_text()));
    assert_eq!(alarm["address"], address.to_string(), "{alarm}");
    assert_eq!(alarm["level"], "ERROR", "{alarm}");
    let status = gateway.status().expect("status");
    assert_eq!(
        status["coverage"]["uncovered"][0]["listener"],
        address.to_string(),
        "{status}"
    );
    let text = Command::new(TOLLGATE)
        .args(["status", "--config"])
        .arg(gateway.config_path())
        .output()
        .expect("tollgate status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("ALARM: NOT PROTECTED: {address}")),
        "{text}"
    );
    let _ = listener.0.kill();
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
