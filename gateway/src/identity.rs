//! Who is behind a connection: the process the kernel saw call `connect()`, enriched from
//! `/proc` at accept time, or a remote agent host selected by source address.

mod process;
pub mod token;

use std::{net::IpAddr, path::PathBuf};

use gateway_common::ConnIdentity;

pub use process::{read_process, ProcessInfo};

/// Identity of the agent behind one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentIdentity {
    Process(ProcessIdentity),
    /// A connection from a configured remote agent network: no process is known.
    Remote {
        source: IpAddr,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Thread name at connect time (`bpf_get_current_comm`).
    pub comm: String,
    pub cgroup_id: u64,
    /// cgroup v2 path from /proc, when the process was still there at accept.
    pub cgroup: Option<String>,
    pub exe: Option<PathBuf>,
    /// Redacted: passwords in connection strings are replaced.
    pub cmdline: Vec<String>,
    pub ppid: Option<u32>,
    pub parent_exe: Option<PathBuf>,
}

impl ProcessIdentity {
    /// Kernel facts from the connect record plus what `/proc` still shows for that process.
    pub fn from_kernel(conn: &ConnIdentity, info: ProcessInfo) -> Self {
        let comm_len = conn
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(conn.comm.len());
        Self {
            pid: conn.tgid,
            tid: conn.tid,
            uid: conn.uid,
            gid: conn.gid,
            comm: printable(&String::from_utf8_lossy(&conn.comm[..comm_len])),
            cgroup_id: conn.cgroup_id,
            cgroup: info.cgroup,
            exe: info.exe,
            cmdline: info.cmdline.iter().map(|arg| printable(arg)).collect(),
            ppid: info.ppid,
            parent_exe: info.parent_exe,
        }
    }
}

/// Agent-controlled text (thread names, arguments) with control characters escaped, so a
/// newline in argv cannot forge a log line.
pub fn printable(text: &str) -> String {
    // Every request's record names its user and database: the common case is one copy.
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl AgentIdentity {
    /// As the audit records name who acted.
    pub fn actor(&self) -> crate::audit::event::Actor {
        let identity = self.kind().to_owned();
        match self {
            Self::Process(p) => crate::audit::event::Actor {
                identity,
                pid: Some(p.pid),
                uid: Some(p.uid),
                gid: Some(p.gid),
                comm: Some(p.comm.clone()),
                exe: p.exe.as_ref().map(|e| e.display().to_string()),
                cmdline: Some(p.cmdline.join(" ")),
                cgroup: p.cgroup.clone(),
                ppid: p.ppid,
                parent_exe: p.parent_exe.as_ref().map(|e| e.display().to_string()),
                source: None,
            },
            Self::Remote { source } => crate::audit::event::Actor {
                identity,
                source: Some(source.to_string()),
                ..Default::default()
            },
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Process(_) => "process",
            Self::Remote { .. } => "remote",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            printable("psql\n{\"event\":\"forged\"}\t"),
            "psql\\n{\"event\":\"forged\"}\\t"
        );
        assert_eq!(printable("select 'x'"), "select 'x'");
    }
}
