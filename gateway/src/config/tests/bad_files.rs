//! One bad file per check: each error must name the file, the 1-based line and the field.

use std::path::Path;

use crate::config::{parse, ConfigError};

/// One bad file: where the error must point and what it must say.
pub(super) struct Bad {
    pub what: &'static str,
    pub text: &'static str,
    pub line: usize,
    /// The `field` of the error; empty for errors found while reading the TOML itself.
    pub field: &'static str,
    /// Text the Display must contain besides the file and line (for serde errors, the field).
    pub fragments: &'static [&'static str],
}

/// Valid `[agents]` and `[[targets]]`, appended after a bad `[gateway]`.
pub(super) const REST: &str = r#"
[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]
"#;

const BAD: &[Bad] = &[
    Bad {
        what: "unknown field in [gateway]",
        text: "[gateway]\nlisten_port = 16000\nlisten_prot = 16001\n",
        line: 3,
        field: "gateway.listen_prot",
        fragments: &["unknown field", "listen_prot"],
    },
    Bad {
        what: "unknown field in a target",
        text: r#"
[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]
upstream_tsl = true
"#,
        line: 9,
        field: "targets[0].upstream_tsl",
        fragments: &["unknown field", "upstream_tsl"],
    },
    Bad {
        what: "unknown top-level table",
        text: "[agents]\nuids = [1000]\n\n[policy]\nfile = \"x\"\n",
        line: 4,
        field: "policy",
        fragments: &["unknown field", "policy"],
    },
    Bad {
        what: "listen_port 0",
        text: "[gateway]\nbind = [\"127.0.0.1\"]\nlisten_port = 0\n",
        line: 3,
        field: "gateway.listen_port",
        fragments: &["1 to 65535"],
    },
    Bad {
        what: "mark 0",
        text: "[gateway]\n\nmark = 0\n",
        line: 3,
        field: "gateway.mark",
        fragments: &["non-zero"],
    },
    Bad {
        what: "bind address that is not an IP",
        text: "[gateway]\nbind = [\n  \"127.0.0.1\",\n  \"127.0.0.300\",\n]\n",
        line: 4,
        field: "gateway.bind[1]",
        fragments: &["`127.0.0.300` is not an IP address"],
    },
    Bad {
        what: "relative admin_socket",
        text: "[gateway]\nadmin_socket = \"run/admin.sock\"\n",
        line: 2,
        field: "gateway.admin_socket",
        fragments: &["`run/admin.sock` must be an absolute path"],
    },
    Bad {
        what: "relative bpffs_dir",
        text: "[gateway]\nlisten_port = 16000\nbpffs_dir = \"tollgate\"\n",
        line: 3,
        field: "gateway.bpffs_dir",
        fragments: &["absolute path"],
    },
    Bad {
        what: "nft_table with a dash",
        text: "[gateway]\nnft_table = \"toll-gate\"\n",
        line: 2,
        field: "gateway.nft_table",
        fragments: &["letters, digits and `_`"],
    },
    Bad {
        what: "nft_table starting with a digit",
        text: "[gateway]\n\nnft_table = \"1tollgate\"\n",
        line: 3,
        field: "gateway.nft_table",
        fragments: &["must start with a letter"],
    },
    Bad {
        what: "zero timeout",
        text: "[gateway]\nupstream_connect_timeout_ms = 0\n",
        line: 2,
        field: "gateway.upstream_connect_timeout_ms",
        fragments: &["greater than 0"],
    },
    Bad {
        what: "no agents selected",
        text: r#"
[agents]
cgroups = []

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]
"#,
        line: 2,
        field: "agents",
        fragments: &["at least one of `cgroups`, `uids` or `remote_sources`"],
    },
    Bad {
        what: "cgroup path not starting with /",
        text: "[agents]\ncgroups = [\"/ok\", \"tollgate-agents\"]\n",
        line: 2,
        field: "agents.cgroups[1]",
        fragments: &["`tollgate-agents`", "below the root"],
    },
    Bad {
        what: "cgroup root",
        text: "[agents]\n\ncgroups = [\"/\"]\n",
        line: 3,
        field: "agents.cgroups[0]",
        fragments: &["below the root"],
    },
    Bad {
        what: "cgroup path with ..",
        text: "[agents]\ncgroups = [\n  \"/agents/../system.slice\",\n]\n",
        line: 3,
        field: "agents.cgroups[0]",
        fragments: &["must not contain `.` or `..`"],
    },
    Bad {
        what: "bad remote_sources CIDR",
        text: "[agents]\nuids = [1000]\nremote_sources = [\"10.0.0.0/33\"]\n",
        line: 3,
        field: "agents.remote_sources[0]",
        fragments: &["`10.0.0.0/33` is not an address or CIDR"],
    },
    Bad {
        what: "no targets at all (points at [agents])",
        text: "# nothing protected\n\n[agents]\nuids = [1000]\n",
        line: 3,
        field: "targets",
        fragments: &["no [[targets]]"],
    },
    Bad {
        what: "empty targets array",
        text: "targets = []\n\n[agents]\nuids = [1000]\n",
        line: 3,
        field: "targets",
        fragments: &["no [[targets]]"],
    },
    Bad {
        what: "empty target name",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "  "
kind = "postgres"
destinations = ["127.0.0.1:5432"]
"#,
        line: 5,
        field: "targets[0].name",
        fragments: &["must be non-empty"],
    },
    Bad {
        what: "target name with a space",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "clinic db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]
"#,
        line: 5,
        field: "targets[0].name",
        fragments: &["letters, digits"],
    },
    Bad {
        what: "duplicate target name",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5433"]
"#,
        line: 10,
        field: "targets[1].name",
        fragments: &["`db` is used by another target"],
    },
    Bad {
        what: "unknown kind",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "mysql"
destinations = ["127.0.0.1:3306"]
"#,
        line: 6,
        field: "targets[0].kind",
        fragments: &["`mysql` is not one of: postgres, object_store"],
    },
    Bad {
        what: "empty destinations",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = []
"#,
        line: 7,
        field: "targets[0].destinations",
        fragments: &["at least one destination"],
    },
    Bad {
        what: "destination without a port",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = [
  "127.0.0.1:5432",
  "127.0.0.2",
]
"#,
        line: 9,
        field: "targets[0].destinations[1]",
        fragments: &["`127.0.0.2` must be host:port, [ipv6]:port or *:port"],
    },
    Bad {
        what: "destination port 0",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = [
  "127.0.0.1:5432",
  "[::1]:0",
]
"#,
        line: 9,
        field: "targets[0].destinations[1]",
        fragments: &["`[::1]:0` needs a non-zero port"],
    },
    Bad {
        what: "wildcard destination port 0",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["*:0"]
"#,
        line: 7,
        field: "targets[0].destinations[0]",
        fragments: &["`0` is not a port number from 1 to 65535"],
    },
    Bad {
        what: "same destination in two targets",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]

[[targets]]
name = "replica"
kind = "postgres"
destinations = [
  "127.0.0.2:5432",
  "127.0.0.1:5432",
]
"#,
        line: 14,
        field: "targets[1].destinations[1]",
        fragments: &["127.0.0.1:5432 is already protected by target `db`"],
    },
    Bad {
        what: "same wildcard destination in two targets",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["*:5432"]

[[targets]]
name = "replica"
kind = "postgres"
destinations = ["*:5432"]
"#,
        line: 12,
        field: "targets[1].destinations[0]",
        fragments: &["*:5432 is already protected by target `db`"],
    },
    Bad {
        what: "upstream without a port",
        text: r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]
upstream = "127.0.0.1"
"#,
        line: 8,
        field: "targets[0].upstream",
        fragments: &["must be host:port"],
    },
    Bad {
        what: "wrong type: listen_port as a string",
        text: "[gateway]\nbind = [\"127.0.0.1\"]\nlisten_port = \"15432\"\n",
        line: 3,
        field: "gateway.listen_port",
        fragments: &["invalid type", "string"],
    },
    Bad {
        what: "wrong type: uid out of range",
        text: "[agents]\nuids = [1000, -1]\n",
        line: 2,
        field: "agents.uids[1]",
        fragments: &["invalid value"],
    },
    Bad {
        what: "missing [agents]",
        text: "[gateway]\nlisten_port = 16000\n",
        line: 1,
        field: "",
        fragments: &["missing field `agents`"],
    },
    Bad {
        what: "TOML syntax error",
        text: "[agents]\nuids = [1000,, 2]\n\n[[targets]]\n",
        line: 2,
        field: "",
        fragments: &[],
    },
    Bad {
        what: "unspecified address as an exact destination",
        text: "[agents]\nuids = [1000]\n[[targets]]\nname = \"db\"\nkind = \"postgres\"\ndestinations = [\"0.0.0.0:5432\"]\n",
        line: 6,
        field: "targets[0].destinations[0]",
        fragments: &["unspecified address", "\"*:5432\""],
    },
    Bad {
        what: "bypass mark equal to the agent mark",
        text: "[gateway]\nmark = 7\nbypass_mark = 7\n",
        line: 3,
        field: "gateway.bypass_mark",
        fragments: &["differ from gateway.mark"],
    },
    Bad {
        what: "unknown untrack scope",
        text: "[gateway]\nuntrack = \"everything\"\n",
        line: 2,
        field: "gateway.untrack",
        fragments: &["not one of: auto, non-agent, loopback"],
    },
    Bad {
        what: "no worker threads",
        text: "[gateway]\n\nworkers = 0\n",
        line: 3,
        field: "gateway.workers",
        fragments: &["between 1 and 1024"],
    },
    Bad {
        what: "busy polling beyond a millisecond",
        text: "[gateway]\nbusy_poll_us = 5000\n",
        line: 2,
        field: "gateway.busy_poll_us",
        fragments: &["between 0 and 1000 (microseconds)"],
    },
    Bad {
        what: "eBPF redirect without a loopback listener",
        text: "[gateway]\nredirect = \"ebpf\"\nbind = [\"10.0.0.1\"]\n",
        line: 3,
        field: "gateway.bind",
        fragments: &["127.0.0.1 and ::1"],
    },
    Bad {
        what: "cgroup deeper than the programs look",
        text: "[agents]\ncgroups = [\"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q\"]\n",
        line: 2,
        field: "agents.cgroups[0]",
        fragments: &["17 levels deep"],
    },
];

pub(super) fn check_bad(case: &Bad, text: &str) -> Result<(), String> {
    let error = match parse(Path::new("bad.toml"), text) {
        Ok(config) => return Err(format!("parsed, but should not have: {config:?}")),
        Err(error) => error,
    };
    let shown = error.to_string();
    let ConfigError::Invalid {
        path,
        line,
        field,
        message,
    } = &error
    else {
        return Err(format!("not an Invalid error: {shown}"));
    };
    let mut problems = Vec::new();
    if path != Path::new("bad.toml") {
        problems.push(format!("path {path:?}"));
    }
    if *line != case.line {
        problems.push(format!("line {line}, expected {}", case.line));
    }
    let prefix = format!("bad.toml:{}: ", case.line);
    if !shown.starts_with(&prefix) {
        problems.push(format!("Display does not start with `{prefix}`"));
    }
    if field != case.field {
        problems.push(format!("field `{field}`, expected `{}`", case.field));
    }
    if !case.field.is_empty() && !shown.contains(&format!("{}: ", case.field)) {
        problems.push(format!("Display does not name the field `{}`", case.field));
    }
    for fragment in case.fragments {
        if !message.contains(fragment) {
            problems.push(format!("message lacks `{fragment}`"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n  error: {shown}", problems.join("; ")))
    }
}

#[test]
fn bad_configs_name_file_line_and_field() {
    assert_all_reported(BAD);
}

/// Every case must fail with its file, line, field and fragments.
pub(super) fn assert_all_reported(cases: &[Bad]) {
    let mut failures = Vec::new();
    for case in cases {
        // Agents and targets are checked before the gateway section, so a gateway case
        // gets valid ones appended.
        let text = if case.field.starts_with("gateway.") {
            format!("{}{REST}", case.text)
        } else {
            case.text.to_owned()
        };
        if let Err(problem) = check_bad(case, &text) {
            failures.push(format!("{}: {problem}\n---\n{text}---", case.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad config(s) not reported as expected:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn destination_on_the_listen_port_is_refused() {
    let text = r#"[gateway]
listen_port = 15432

[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]

[[targets]]
name = "loop"
kind = "postgres"
destinations = [
  "127.0.0.1:6543",
  "*:15432",
]
"#;
    let error = parse(Path::new("bad.toml"), text).expect_err("listen_port collision");
    let shown = error.to_string();
    let ConfigError::Invalid { line, field, .. } = &error else {
        panic!("not an Invalid error: {shown}");
    };
    assert!(
        field.starts_with("targets[1].destinations"),
        "field `{field}`: {shown}"
    );
    assert!(
        shown.contains("*:15432 uses the gateway's own listen_port 15432"),
        "{shown}"
    );
    // The error must point into the offending target, not elsewhere in the file.
    assert!(
        (12..=18).contains(line),
        "line {line} is outside target `loop`: {shown}"
    );
    assert!(shown.starts_with(&format!("bad.toml:{line}: ")), "{shown}");
}

/// Errors that are reported, but not where or as precisely as the module promises ("every error
/// names the file, the line and the field"). Each case is the precise report a user should get.
const PRECISE_POSITIONS: &[(&str, &str, usize, &[&str])] = &[
    (
        "wrong type names no field (toml's key path is dropped by `error.message()`)",
        "[gateway]\nbind = [\"127.0.0.1\"]\nlisten_port = \"15432\"\n",
        3,
        &["listen_port", "invalid type"],
    ),
    (
        "out-of-range uid names no field",
        "[agents]\nuids = [1000, -1]\n",
        2,
        &["uids", "invalid value"],
    ),
    (
        "empty bind points at line 1 (offset 0) instead of the `bind` line",
        r#"[gateway]
listen_port = 16000
bind = []

[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = ["127.0.0.1:5432"]
"#,
        3,
        &["gateway.bind: must list at least one address"],
    ),
    (
        "listen_port collision points at the [[targets]] header, not the destination",
        r#"[agents]
uids = [1000]

[[targets]]
name = "db"
kind = "postgres"
destinations = [
  "127.0.0.1:6543",
  "*:954",
]
"#,
        9,
        &["targets[0].destinations[1]: *:954 uses the gateway's own listen_port"],
    ),
];

#[test]

fn type_and_position_errors_name_the_exact_line_and_field() {
    let mut failures = Vec::new();
    for (what, text, line, fragments) in PRECISE_POSITIONS {
        let shown = match parse(Path::new("bad.toml"), text) {
            Ok(_) => {
                failures.push(format!("{what}: parsed"));
                continue;
            }
            Err(error) => error.to_string(),
        };
        let prefix = format!("bad.toml:{line}: ");
        let missing: Vec<&&str> = fragments.iter().filter(|f| !shown.contains(**f)).collect();
        if !shown.starts_with(&prefix) || !missing.is_empty() {
            failures.push(format!(
                "{what}: expected `{prefix}` and {missing:?}, got: {shown}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
