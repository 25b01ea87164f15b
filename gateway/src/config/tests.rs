//! Table-driven tests of `parse`: a full valid file, defaults, and one bad file per check, each
//! asserting the file, the 1-based line and the field the error names.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

mod approvals;
mod audit;
mod bad_auth_files;
mod bad_files;
mod bad_tls_files;
mod local;

const FULL: &str = r#"# A file that sets every field.
[gateway]
listen_port = 16000
bind = ["127.0.0.1", "::1"]
admin_socket = "/run/tollgate-test/admin.sock"
bpffs_dir = "/sys/fs/bpf/tollgate-test"
nft_table = "tollgate_test"
mark = 0x100
upstream_connect_timeout_ms = 1500
drain_timeout_ms = 2500

[agents]
cgroups = ["/tollgate-agents/", "/agents/job1"]
uids = [1001, 1002]
remote_sources = ["10.20.0.0/16", "192.168.1.7", "10.1.2.3/8"]

[[targets]]
name = "clinic-db"
kind = "postgres"
destinations = ["127.0.0.1:5432", "[::1]:5432"]
upstream = "127.0.0.1:5433"

[[targets]]
name = "pooler"
kind = "object_store"
destinations = ["*:6432"]
"#;

fn parse_ok(text: &str) -> Config {
    match parse(Path::new("test.toml"), text) {
        Ok(config) => config,
        Err(error) => panic!("expected a valid config, got: {error}\n---\n{text}"),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("`{text}` is a socket address"))
}

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("`{text}` is an IP address"))
}

fn net(text: &str) -> IpNet {
    text.parse()
        .unwrap_or_else(|_| panic!("`{text}` is a CIDR"))
}

#[test]
fn full_config_parses_into_validated_values() {
    let config = parse_ok(FULL);

    let gateway = &config.gateway;
    assert_eq!(gateway.listen_port, 16000);
    assert_eq!(gateway.bind, vec![ip("127.0.0.1"), ip("::1")]);
    assert_eq!(
        gateway.admin_socket,
        PathBuf::from("/run/tollgate-test/admin.sock")
    );
    assert_eq!(
        gateway.bpffs_dir,
        PathBuf::from("/sys/fs/bpf/tollgate-test")
    );
    assert_eq!(gateway.nft_table, "tollgate_test");
    assert_eq!(gateway.mark, 0x100);
    assert_eq!(
        gateway.upstream_connect_timeout,
        Duration::from_millis(1500)
    );
    assert_eq!(gateway.drain_timeout, Duration::from_millis(2500));

    let agents = &config.agents;
    assert_eq!(
        agents.cgroups,
        vec!["/tollgate-agents".to_owned(), "/agents/job1".to_owned()],
        "a trailing slash is dropped so paths compare with /proc/PID/cgroup"
    );
    assert_eq!(agents.uids, vec![1001, 1002]);
    assert_eq!(
        agents.remote_sources,
        vec![
            net("10.20.0.0/16"),
            net("192.168.1.7/32"),
            net("10.0.0.0/8")
        ],
        "a bare address is a /32 and host bits are cleared"
    );

    assert_eq!(config.targets.len(), 2);
    let clinic = &config.targets[0];
    assert_eq!(clinic.name, "clinic-db");
    assert_eq!(clinic.kind, TargetKind::Postgres);
    assert_eq!(
        clinic.destinations,
        vec![
            Destination::Exact(addr("127.0.0.1:5432")),
            Destination::Exact(addr("[::1]:5432")),
        ]
    );
    assert_eq!(clinic.upstream, Some(addr("127.0.0.1:5433")));
    let pooler = &config.targets[1];
    assert_eq!(pooler.name, "pooler");
    assert_eq!(pooler.kind, TargetKind::ObjectStore);
    assert_eq!(pooler.destinations, vec![Destination::AnyAddress(6432)]);
    assert_eq!(pooler.upstream, None);
}

#[test]
fn omitted_gateway_fields_take_their_defaults() {
    let config = parse_ok(
        r#"
[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]
"#,
    );
    let gateway = &config.gateway;
    assert_eq!(gateway.listen_port, validate::DEFAULT_LISTEN_PORT);
    assert_eq!(gateway.listen_port, validate::DEFAULT_LISTEN_PORT);
    assert_eq!(
        gateway.bind,
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        ],
        "local agents only: loopback"
    );
    assert_eq!(
        gateway.admin_socket,
        PathBuf::from("/run/tollgate/admin.sock")
    );
    assert_eq!(gateway.bpffs_dir, PathBuf::from("/sys/fs/bpf/tollgate"));
    assert_eq!(gateway.nft_table, "tollgate");
    assert_eq!(gateway.mark, gateway_common::DEFAULT_MARK);
    assert_eq!(gateway.untrack, crate::config::UntrackScope::Auto);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(
        gateway.workers,
        cores.div_ceil(2),
        "one worker per two cores"
    );
    assert_eq!(
        gateway.busy_poll,
        Duration::from_micros(200),
        "busy polling for one round trip"
    );
    assert_eq!(gateway.upstream_connect_timeout, Duration::from_secs(5));
    assert_eq!(gateway.drain_timeout, Duration::from_secs(10));
    assert!(config.agents.cgroups.is_empty());
    assert!(config.agents.remote_sources.is_empty());
    assert_eq!(config.targets[0].upstream, None);
}

#[test]
fn busy_polling_is_read_in_microseconds() {
    let config = parse_ok(&format!(
        "[gateway]\nbusy_poll_us = 50\n{}",
        bad_files::REST
    ));
    assert_eq!(config.gateway.busy_poll, Duration::from_micros(50));
    let off = parse_ok(&format!("[gateway]\nbusy_poll_us = 0\n{}", bad_files::REST));
    assert_eq!(off.gateway.busy_poll, Duration::ZERO, "0 turns it off");
}

#[test]
fn remote_sources_without_bind_listen_on_the_wildcard() {
    let config = parse_ok(
        r#"
[agents]
remote_sources = ["10.20.0.0/16"]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["*:5432"]
"#,
    );
    assert_eq!(
        config.gateway.bind,
        vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        ]
    );

    // An explicit bind still wins.
    let config = parse_ok(
        r#"
[gateway]
bind = ["10.20.0.1"]

[agents]
remote_sources = ["10.20.0.0/16"]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["*:5432"]
"#,
    );
    assert_eq!(config.gateway.bind, vec![ip("10.20.0.1")]);
}

#[test]
fn localhost_destinations_resolve_to_every_address() {
    let config = parse_ok(
        r#"
[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["localhost:5432"]
upstream = "localhost:5433"
"#,
    );
    let target = &config.targets[0];
    assert!(
        target
            .destinations
            .contains(&Destination::Exact(addr("127.0.0.1:5432"))),
        "localhost resolves to 127.0.0.1 (from /etc/hosts): {:?}",
        target.destinations
    );
    let upstream = target.upstream.expect("upstream resolved");
    assert!(upstream.ip().is_loopback() && upstream.port() == 5433);
}

fn targets_config() -> Config {
    parse_ok(
        r#"
[agents]
uids = [1000]

[[targets]]
name = "any-5432"
kind = "postgres"
destinations = ["*:5432"]

[[targets]]
name = "exact"
kind = "postgres"
destinations = ["10.0.0.5:5432", "[2001:db8::5]:5432"]

[[targets]]
name = "store"
kind = "object_store"
destinations = ["127.0.0.1:9000"]
"#,
    )
}

#[test]
fn target_for_prefers_exact_and_maps_v4_in_v6() {
    let config = targets_config();
    let cases: &[(&str, Option<&str>)] = &[
        // Exact wins even though the `*:5432` target is listed first.
        ("10.0.0.5:5432", Some("exact")),
        ("[2001:db8::5]:5432", Some("exact")),
        // An IPv4-mapped IPv6 destination is the IPv4 one.
        ("[::ffff:10.0.0.5]:5432", Some("exact")),
        ("[::ffff:127.0.0.1]:9000", Some("store")),
        // Another address on 5432 falls back to the port-only target.
        ("10.0.0.6:5432", Some("any-5432")),
        ("[::1]:5432", Some("any-5432")),
        // Unprotected.
        ("10.0.0.5:5433", None),
        ("127.0.0.2:9000", None),
        ("[::1]:9000", None),
    ];
    for (dst, expected) in cases {
        let found = config.target_for(addr(dst)).map(|t| t.name.as_str());
        assert_eq!(found, *expected, "target_for({dst})");
    }
}

#[test]
fn destination_matching_and_display() {
    let exact = Destination::Exact(addr("[::ffff:10.0.0.5]:5432"));
    assert!(exact.matches(addr("10.0.0.5:5432")));
    assert!(!exact.matches(addr("10.0.0.5:5433")));
    let any = Destination::AnyAddress(6432);
    assert!(any.matches(addr("[::1]:6432")));
    assert!(!any.matches(addr("[::1]:6433")));
    assert_eq!(any.to_string(), "*:6432");
    assert_eq!(any.port(), 6432);
    assert_eq!(
        Destination::Exact(addr("[::1]:5432")).to_string(),
        "[::1]:5432"
    );
}

#[test]
fn describe_mentions_every_target() {
    let config = parse_ok(FULL);
    let text = describe(&config);
    for expected in [
        "listener: port 16000",
        "inet tollgate_test (mark 0x100)",
        "uids [1001, 1002]",
        "10.20.0.0/16",
        "target clinic-db (postgres): 127.0.0.1:5432, [::1]:5432 -> 127.0.0.1:5433",
        "target pooler (object_store): *:6432 -> the original destination",
    ] {
        assert!(
            text.contains(expected),
            "describe lacks `{expected}`:\n{text}"
        );
    }
    assert_eq!(
        text.lines().filter(|l| l.starts_with("target ")).count(),
        2,
        "{text}"
    );
}

#[test]
fn load_names_a_missing_file() {
    let path = std::env::temp_dir().join(format!(
        "tollgate-config-missing-{}.toml",
        std::process::id()
    ));
    let error = load(&path).expect_err("missing file");
    assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    assert!(error
        .to_string()
        .starts_with(&format!("{}: cannot read", path.display())));
}
