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

const SINKS: &str = r#"
[[audit.export]]
name = "archive"
kind = "file"
path = "/var/log/tollgate/ocsf.ndjson"
max_bytes = 1048576
keep = 3

[[audit.export]]
name = "rsyslog"
kind = "syslog"
address = "siem.example.org"
ca_file = "/etc/tollgate/siem-ca.pem"

[[audit.export]]
name = "splunk"
kind = "splunk_hec"
url = "https://splunk.example.org:8088"
token_file = "/etc/tollgate/hec-token"
index = "phi_audit"
ack_timeout_s = 30
"#;

#[test]
fn export_sinks_are_read_with_their_defaults_and_cursors() {
    use crate::config::ExportKind;
    let text = format!("[gateway]\nstate_dir = \"/srv/tg\"\n{REST}{SINKS}");
    let config = parse(Path::new("t.toml"), &text).expect("valid");
    let sinks = &config.audit.exports;
    assert_eq!(sinks.len(), 3);
    assert_eq!(
        sinks[0].cursor_file,
        Path::new("/srv/tg/export/archive.cursor")
    );
    match &sinks[0].kind {
        ExportKind::File(file) => {
            assert_eq!(file.max_bytes, 1_048_576);
            assert_eq!(file.keep, 3);
        }
        other => panic!("{other:?}"),
    }
    match &sinks[1].kind {
        ExportKind::Syslog(syslog) => {
            assert_eq!(syslog.host, "siem.example.org");
            assert_eq!(syslog.port, 6514, "the RFC 5425 port by default");
            assert_eq!(syslog.server_name, "siem.example.org");
            assert_eq!(syslog.app_name, "tollgate");
        }
        other => panic!("{other:?}"),
    }
    match &sinks[2].kind {
        ExportKind::SplunkHec(hec) => {
            assert!(hec.https);
            assert_eq!(hec.port, 8088);
            assert_eq!(hec.index.as_deref(), Some("phi_audit"));
            assert_eq!(hec.ack_timeout, Duration::from_secs(30));
            assert_eq!(hec.ca_file, Path::new("/etc/ssl/certs/ca-certificates.crt"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_export_sinks_name_the_line_and_field() {
    let sink = |body: &str| format!("{REST}[[audit.export]]\n{body}");
    let cases = [
        (
            "unknown kind",
            sink("name = \"a\"\nkind = \"kafka\"\n"),
            9,
            "audit.export[0].kind",
            &["kafka", "file, syslog, splunk_hec"][..],
        ),
        (
            "a field of another kind",
            sink("name = \"a\"\nkind = \"file\"\npath = \"/x\"\nurl = \"https://h\"\n"),
            11,
            "audit.export[0].url",
            &["not used with kind = \"file\""][..],
        ),
        (
            "syslog without a CA",
            sink("name = \"a\"\nkind = \"syslog\"\naddress = \"h:6514\"\n"),
            7,
            "audit.export[0].ca_file",
            &["required"][..],
        ),
        (
            "plain http to another host",
            sink("name = \"a\"\nkind = \"splunk_hec\"\nurl = \"http://splunk:8088\"\ntoken_file = \"/t\"\n"),
            10,
            "audit.export[0].url",
            &["loopback", "https://"][..],
        ),
        (
            "a name that cannot name a file",
            sink("name = \"../a\"\nkind = \"file\"\npath = \"/x\"\n"),
            8,
            "audit.export[0].name",
            &["letters, digits"][..],
        ),
        (
            "two sinks of one name",
            format!("{REST}[[audit.export]]\nname = \"a\"\nkind = \"file\"\npath = \"/x\"\n[[audit.export]]\nname = \"a\"\nkind = \"file\"\npath = \"/y\"\n"),
            12,
            "audit.export[1].name",
            &["names another sink"][..],
        ),
    ];
    let bad: Vec<Bad> = cases
        .into_iter()
        .map(|(what, text, line, field, fragments)| Bad {
            what,
            // The table's texts are built from the shared prefix; a test may keep them.
            text: Box::leak(text.into_boxed_str()),
            line,
            field,
            fragments,
        })
        .collect();
    assert_all_reported(&bad);
}
