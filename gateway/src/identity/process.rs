//! Reads what `/proc/<pid>` says about the process that opened a connection.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub exe: Option<PathBuf>,
    pub cmdline: Vec<String>,
    pub cgroup: Option<String>,
    pub ppid: Option<u32>,
    pub parent_exe: Option<PathBuf>,
}

/// Reads `/proc/<pid>` under `proc_root`. A process that started after `connect_boot_ns`
/// (its pid was reused) yields nothing, so a stranger is never named as the agent.
pub fn read_process(proc_root: &Path, pid: u32, connect_boot_ns: Option<u64>) -> ProcessInfo {
    let dir = proc_root.join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
        return ProcessInfo::default();
    };
    let fields = stat_fields(&stat);
    // Both are CLOCK_BOOTTIME. starttime is rounded down to a clock tick, so a process that
    // started after the connect can never look older than it.
    if let (Some(connect_ns), Some(start_ns)) = (connect_boot_ns, fields.start_ns) {
        if start_ns > connect_ns {
            return ProcessInfo::default();
        }
    }
    let ppid = fields.ppid;
    ProcessInfo {
        exe: std::fs::read_link(dir.join("exe")).ok(),
        cmdline: std::fs::read(dir.join("cmdline"))
            .map(|raw| redact_cmdline(split_cmdline(&raw)))
            .unwrap_or_default(),
        cgroup: std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|text| cgroup2_path(&text)),
        ppid,
        parent_exe: ppid
            .and_then(|ppid| std::fs::read_link(proc_root.join(ppid.to_string()).join("exe")).ok()),
    }
}

struct StatFields {
    ppid: Option<u32>,
    start_ns: Option<u64>,
}

/// `pid (comm) state ppid ... starttime(22nd field)`; comm may hold spaces and parentheses.
fn stat_fields(stat: &str) -> StatFields {
    let after_comm = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let rest: Vec<&str> = after_comm.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let ppid = rest.get(1).and_then(|v| v.parse().ok());
    let start_ns = rest
        .get(19)
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ticks| ticks * 10_000_000);
    StatFields { ppid, start_ns }
}

fn split_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The cgroup v2 line of /proc/PID/cgroup is `0::<path>`.
fn cgroup2_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// Hides what must not reach the logs: the password in a `scheme://user:password@host` URI,
/// the value of `password=...` parameters, and inline code or SQL (`-c`/`--command` values,
/// as in `psql -c`, `sh -c`, `python -c`), which can quote PHI.
pub fn redact_cmdline(args: Vec<String>) -> Vec<String> {
    let mut redacted = Vec::with_capacity(args.len());
    let mut inline_code_follows = false;
    for arg in args {
        if inline_code_follows {
            redacted.push(REDACTED.to_owned());
            inline_code_follows = false;
            continue;
        }
        if arg == "-c" || arg == "--command" {
            inline_code_follows = true;
            redacted.push(arg);
            continue;
        }
        if arg.starts_with("--command=") {
            redacted.push(format!("--command={REDACTED}"));
            continue;
        }
        redacted.push(redact_password_param(&redact_uri_password(&arg)));
    }
    redacted
}

const REDACTED: &str = "<redacted>";

fn redact_uri_password(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://") else {
        return arg.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = arg[authority_start..]
        .find(['/', '?'])
        .map_or(arg.len(), |i| authority_start + i);
    let authority = &arg[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return arg.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return arg.to_owned();
    };
    format!(
        "{}{}:***{}",
        &arg[..authority_start],
        &userinfo[..colon],
        &arg[authority_start + at..]
    )
}

fn redact_password_param(arg: &str) -> String {
    let lower = arg.to_ascii_lowercase();
    let Some(start) = lower.find("password=") else {
        return arg.to_owned();
    };
    let value_start = start + "password=".len();
    let value_end = arg[value_start..]
        .find([' ', '&', ';'])
        .map_or(arg.len(), |i| value_start + i);
    format!("{}***{}", &arg[..value_start], &arg[value_end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_uris_and_parameters() {
        let args = vec![
            "psql".to_owned(),
            "postgresql://agent:s3cret@db:5432/clinic?sslmode=require".to_owned(),
            "host=db password=hunter2 user=x".to_owned(),
            "postgres://agent@db/clinic".to_owned(),
        ];
        let redacted = redact_cmdline(args);
        assert_eq!(
            redacted[1],
            "postgresql://agent:***@db:5432/clinic?sslmode=require"
        );
        assert_eq!(redacted[2], "host=db password=*** user=x");
        assert_eq!(redacted[3], "postgres://agent@db/clinic");
        assert!(!redacted.concat().contains("s3cret"));
        assert!(!redacted.concat().contains("hunter2"));
    }

    #[test]
    fn redacts_inline_code_and_sql() {
        let args = [
            "psql",
            "-h",
            "db",
            "-c",
            "select ssn from patients where ssn = '123-45-6789'",
            "--command=select 1",
        ];
        let redacted = redact_cmdline(args.iter().map(ToString::to_string).collect());
        assert_eq!(
            redacted,
            [
                "psql",
                "-h",
                "db",
                "-c",
                "<redacted>",
                "--command=<redacted>"
            ]
        );
    }

    #[test]
    fn parses_stat_with_awkward_comm() {
        let stat = "4242 (my) agent (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 100";
        let fields = stat_fields(stat);
        assert_eq!(fields.ppid, Some(17));
        assert_eq!(fields.start_ns, Some(12345 * 10_000_000));
    }

    #[test]
    fn reads_a_fake_proc_tree() {
        let root = std::env::temp_dir().join(format!("tollgate-proc-{}", std::process::id()));
        let dir = root.join("4242");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("stat"),
            "4242 (psql) S 17 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0",
        )
        .expect("stat");
        std::fs::write(dir.join("cmdline"), b"psql\0postgresql://a:pw@h/db\0").expect("cmdline");
        std::fs::write(dir.join("cgroup"), "12:cpu:/\n0::/tollgate-agents/job1\n").expect("cgroup");
        let info = read_process(&root, 4242, Some(2_000_000_000));
        assert_eq!(info.ppid, Some(17));
        assert_eq!(info.cgroup.as_deref(), Some("/tollgate-agents/job1"));
        assert_eq!(
            info.cmdline,
            vec!["psql".to_owned(), "postgresql://a:***@h/db".to_owned()]
        );
        // Started (1 s after boot) after the connect (0.5 s): a reused pid, not the agent.
        assert_eq!(
            read_process(&root, 4242, Some(500_000_000)),
            ProcessInfo::default()
        );
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
