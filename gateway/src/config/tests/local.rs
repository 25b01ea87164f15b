//! Unix sockets and listener coverage: defaults, explicit values, and each bad value.

use std::path::{Path, PathBuf};

use super::bad_files::{assert_all_reported, Bad};
use crate::config::{parse, Config, Coverage};

fn parse_ok(text: &str) -> Config {
    parse(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

fn target(lines: &str) -> String {
    format!("[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\n{lines}")
}

#[test]
fn a_local_destination_protects_the_servers_default_socket_and_coverage_extends() {
    let config = parse_ok(&target(
        "destinations = [\"127.0.0.1:5432\", \"[::1]:5432\", \"127.0.0.1:5433\"]\n",
    ));
    let db = &config.targets[0];
    assert_eq!(
        db.unix_sockets,
        [
            PathBuf::from("/var/run/postgresql/.s.PGSQL.5432"),
            PathBuf::from("/var/run/postgresql/.s.PGSQL.5433"),
        ]
    );
    assert_eq!(db.coverage, Coverage::Extend);
    let routes = config.unix_routes();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[1].gateway, Path::new("/run/tollgate/unix/1.s.PGSQL"));
    assert_eq!(db.unix_upstream(), "127.0.0.1:5432".parse().expect("addr"));
}

#[test]
fn a_remote_destination_has_no_default_socket_and_lists_can_be_set_or_emptied() {
    let remote = parse_ok(&target("destinations = [\"192.0.2.7:5432\"]\n"));
    assert!(remote.targets[0].unix_sockets.is_empty());
    let off = parse_ok(&target(
        "destinations = [\"127.0.0.1:5432\"]\nunix_sockets = []\ncoverage = \"strict\"\n",
    ));
    assert!(off.targets[0].unix_sockets.is_empty());
    assert_eq!(off.targets[0].coverage, Coverage::Strict);
    let set = parse_ok(&format!(
        "[gateway]\nunix_socket_dir = \"/run/tg\"\n{}",
        target("destinations = [\"192.0.2.7:5432\"]\nunix_sockets = [\"/tmp/pg/.s.PGSQL.5432\"]\n")
    ));
    assert_eq!(
        set.targets[0].unix_sockets,
        [PathBuf::from("/tmp/pg/.s.PGSQL.5432")]
    );
    assert_eq!(set.unix_routes()[0].gateway, Path::new("/run/tg/0.s.PGSQL"));
    assert_eq!(
        set.targets[0].unix_upstream(),
        "192.0.2.7:5432".parse().expect("addr")
    );
}

const BAD: &[Bad] = &[
    Bad {
        what: "relative unix socket",
        text: "[agents]\nuids = [1]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\n\
               destinations = [\"127.0.0.1:5432\"]\nunix_sockets = [\"pg.sock\"]\n",
        line: 7,
        field: "targets[0].unix_sockets[0]",
        fragments: &["absolute path"],
    },
    Bad {
        what: "unix socket path too long",
        text: "[agents]\nuids = [1]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\n\
               destinations = [\"127.0.0.1:5432\"]\nunix_sockets = [\"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]\n",
        line: 7,
        field: "targets[0].unix_sockets[0]",
        fragments: &["107 bytes"],
    },
    Bad {
        what: "unix socket on an object store",
        text: "[agents]\nuids = [1]\n[[targets]]\nname = \"s3\"\nkind = \"object_store\"\n\
               destinations = [\"*:9000\"]\nunix_sockets = [\"/run/s3.sock\"]\n",
        line: 7,
        field: "targets[0].unix_sockets",
        fragments: &["postgres targets"],
    },
    Bad {
        what: "one socket, two targets",
        text: "[agents]\nuids = [1]\n[[targets]]\nname = \"a\"\nkind = \"postgres\"\n\
               destinations = [\"127.0.0.1:5432\"]\n[[targets]]\nname = \"b\"\nkind = \"postgres\"\n\
               destinations = [\"[::1]:5432\"]\n",
        line: 7,
        field: "targets[1].unix_sockets",
        fragments: &["already protected by target `a`", "unix_sockets = []"],
    },
    Bad {
        what: "unknown coverage",
        text: "[agents]\nuids = [1]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\n\
               destinations = [\"127.0.0.1:5432\"]\ncoverage = \"loose\"\n",
        line: 7,
        field: "targets[0].coverage",
        fragments: &["extend, strict"],
    },
    Bad {
        what: "gateway socket dir too long",
        text: "[gateway]\nunix_socket_dir = \"/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
        line: 2,
        field: "gateway.unix_socket_dir",
        fragments: &["at most 80 bytes"],
    },
];

#[test]
fn bad_local_path_settings_name_file_line_and_field() {
    assert_all_reported(BAD);
}
