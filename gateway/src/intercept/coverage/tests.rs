//! The coverage plan, table-driven over host snapshots.

use std::path::Path;

use super::*;

fn config(extra: &str) -> Config {
    let text = format!(
        "[agents]\ncgroups = [\"/a\"]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\n\
         destinations = [\"127.0.0.1:5432\"]\n{extra}"
    );
    crate::config::parse(Path::new("test.toml"), &text).expect("valid config")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn host(listeners: &[&str]) -> HostSnapshot {
    HostSnapshot {
        listeners: listeners.iter().map(|l| addr(l)).collect(),
        local_addrs: ["127.0.0.1", "::1", "10.0.0.5", "fd00::5", "fe80::1"]
            .iter()
            .map(|i| ip(i))
            .collect(),
    }
}

fn addresses(reaches: &[Reach]) -> Vec<String> {
    let mut out: Vec<String> = reaches.iter().map(|r| r.address.to_string()).collect();
    out.sort();
    out
}

#[test]
fn a_wildcard_listener_extends_a_loopback_destination_to_every_local_address() {
    let plan = plan(&config(""), &host(&["0.0.0.0:5432", "[::]:5432"]));
    assert_eq!(addresses(&plan.named), ["127.0.0.1:5432"]);
    assert_eq!(
        addresses(&plan.extended),
        [
            "10.0.0.5:5432",
            "[::1]:5432",
            "[fd00::5]:5432",
            "[fe80::1]:5432"
        ]
    );
    assert!(plan.uncovered.is_empty());
}

#[test]
fn a_listener_on_a_second_address_is_extended_and_other_ports_are_not() {
    let plan = plan(
        &config(""),
        &host(&["127.0.0.1:5432", "10.0.0.5:5432", "0.0.0.0:22", "[::]:6432"]),
    );
    assert_eq!(addresses(&plan.extended), ["10.0.0.5:5432"]);
    assert_eq!(plan.extended[0].listener, addr("10.0.0.5:5432"));
}

#[test]
fn strict_coverage_names_the_uncovered_listener_instead() {
    let plan = plan(
        &config("coverage = \"strict\"\n"),
        &host(&["127.0.0.1:5432", "10.0.0.5:5432"]),
    );
    assert!(plan.extended.is_empty());
    assert_eq!(addresses(&plan.uncovered), ["10.0.0.5:5432"]);
}

#[test]
fn a_target_without_a_local_destination_extends_nothing() {
    let config = crate::config::parse(
        Path::new("t.toml"),
        "[agents]\ncgroups = [\"/a\"]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\n\
         destinations = [\"192.0.2.7:5432\"]\n",
    )
    .expect("config");
    let plan = plan(&config, &host(&["0.0.0.0:5432"]));
    assert_eq!(plan, Plan::default());
}

#[test]
fn an_address_named_by_another_target_stays_that_targets() {
    let config = crate::config::parse(
        Path::new("t.toml"),
        "[agents]\ncgroups = [\"/a\"]\n[[targets]]\nname = \"one\"\nkind = \"postgres\"\n\
         destinations = [\"127.0.0.1:5432\"]\n[[targets]]\nname = \"two\"\nkind = \"postgres\"\n\
         destinations = [\"10.0.0.5:5432\"]\nunix_sockets = []\n",
    )
    .expect("config");
    let plan = plan(&config, &host(&["0.0.0.0:5432"]));
    let two: Vec<&Reach> = plan.named.iter().filter(|r| r.target == "two").collect();
    assert_eq!(two.len(), 1);
    assert!(plan
        .extended
        .iter()
        .all(|r| r.address != addr("10.0.0.5:5432")));
}

#[test]
fn the_view_finds_extended_and_loopback_net_addresses() {
    let config = config("");
    let view = CoverageView::default();
    view.set(plan(&config, &host(&["0.0.0.0:5432"])));
    let name = |dst: &str| view.target_for(&config, addr(dst)).map(|t| t.name.clone());
    assert_eq!(name("10.0.0.5:5432").as_deref(), Some("db"));
    assert_eq!(name("127.0.0.2:5432").as_deref(), Some("db"));
    assert_eq!(name("[::ffff:10.0.0.5]:5432").as_deref(), Some("db"));
    assert_eq!(name("10.0.0.5:5433"), None);
    assert_eq!(name("192.0.2.1:5432"), None);
}
