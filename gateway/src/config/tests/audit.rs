//! The `[audit]` section: defaults, explicit values, and each bad value named.

use std::{path::Path, time::Duration};

use super::bad_files::{assert_all_reported, Bad};
use crate::config::{parse, Durability};

const REST: &str = "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n";

#[test]
fn the_log_is_on_by_default_under_the_state_dir() {
    let text = format!("[gateway]\nstate_dir = \"/srv/tg\"\n{REST}");
    let config = parse(Path::new("t.toml"), &text).expect("valid");
    let audit = &config.audit;
    assert_eq!(audit.dir, Path::new("/srv/tg/audit"));
    assert_eq!(audit.key_file, Path::new("/srv/tg/audit-key"));
    assert_eq!(audit.durability, Durability::Batched);
    assert_eq!(audit.flush_interval, Duration::from_millis(20));
    assert!(
        audit.origin.starts_with("tollgate.audit/"),
        "{}",
        audit.origin
    );
}

#[test]
fn explicit_values_are_taken() {
    let text = format!(
        "{REST}[audit]\ndir = \"/logs/a\"\ndurability = \"strict\"\nflush_ms = 5\nkey_file = \"/k\"\norigin = \"example.org/db1\"\n"
    );
    let config = parse(Path::new("t.toml"), &text).expect("valid");
    let audit = &config.audit;
    assert_eq!(audit.dir, Path::new("/logs/a"));
    assert_eq!(audit.durability, Durability::Strict);
    assert_eq!(audit.flush_interval, Duration::from_millis(5));
    assert_eq!(audit.key_file, Path::new("/k"));
    assert_eq!(audit.origin, "example.org/db1");
}

#[test]
fn bad_audit_settings_name_the_line_and_field() {
    assert_all_reported(&[
        Bad {
            what: "unknown durability",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[audit]\ndurability = \"sometimes\"\n",
            line: 8,
            field: "audit.durability",
            fragments: &["sometimes", "batched, strict"],
        },
        Bad {
            what: "flush interval out of range",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[audit]\nflush_ms = 0\n",
            line: 8,
            field: "audit.flush_ms",
            fragments: &["between 1 and 10000"],
        },
        Bad {
            what: "relative log directory",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[audit]\ndir = \"audit\"\n",
            line: 8,
            field: "audit.dir",
            fragments: &["absolute path"],
        },
        Bad {
            what: "origin with a space",
            text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"127.0.0.1:5432\"]\n[audit]\norigin = \"my log\"\n",
            line: 8,
            field: "audit.origin",
            fragments: &["without spaces"],
        },
    ]);
}
