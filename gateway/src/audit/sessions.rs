//! `tollgate sessions`: the log read back as sessions, each a timeline of who connected, from
//! which process, what they ran, what was decided, and how it ended. A session's id is the
//! index of its `connection_opened` record: unique for the life of the log, where connection
//! numbers start again with every gateway start.

use std::{collections::HashMap, path::Path};

use serde::Serialize;

use super::{
    event::{Actor, ConnectionClosed, Event, LoginDecided, RequestAnswered, StatementRecord},
    record::Record,
    segment,
};
use crate::clock::{parse_rfc3339_utc_ms, rfc3339_utc};

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: u64,
    pub conn_id: u64,
    pub opened_ms: u64,
    pub target: String,
    pub client: String,
    pub orig_dst: String,
    pub actor: Actor,
    pub login: Option<LoginDecided>,
    pub requests: Vec<TimedRequest>,
    pub closed: Option<ClosedAt>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimedRequest {
    pub index: u64,
    pub time_ms: u64,
    pub statements: Vec<StatementRecord>,
    /// What the agent got back, once the server answered.
    pub answer: Option<RequestAnswered>,
    /// Its wait for approval, or the grant it ran under: what happened, when.
    pub approval: Vec<TimedNote>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimedNote {
    pub time_ms: u64,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClosedAt {
    pub time_ms: u64,
    #[serde(flatten)]
    pub closed: ConnectionClosed,
}

impl Session {
    fn statements(&self) -> impl Iterator<Item = &StatementRecord> {
        self.requests.iter().flat_map(|r| r.statements.iter())
    }

    fn refused(&self) -> usize {
        self.statements()
            .filter(|s| s.decision.as_deref().is_some_and(|d| d != "allow"))
            .count()
    }

    /// `pid 123 (psql) uid 1000 /ai-agents.slice`, or the remote source.
    fn who(&self) -> String {
        let a = &self.actor;
        match a.pid {
            Some(pid) => format!(
                "pid {pid} ({}) uid {} {}",
                a.comm.as_deref().unwrap_or("?"),
                a.uid.map_or("?".to_owned(), |u| u.to_string()),
                a.cgroup.as_deref().unwrap_or("")
            ),
            None => format!("remote {}", a.source.as_deref().unwrap_or("?")),
        }
    }
}

/// Which sessions to list.
#[derive(Debug, Default)]
pub struct Filter {
    pub since_ms: Option<u64>,
    pub identity: Option<String>,
    pub target: Option<String>,
}

impl Filter {
    /// `--since`: an RFC 3339 UTC time, or how long ago (`90s`, `15m`, `2h`, `7d`).
    pub fn since(text: &str, now_ms: u64) -> Result<u64, String> {
        if let Some(at) = parse_rfc3339_utc_ms(text) {
            return Ok(at);
        }
        let age = crate::clock::parse_span(text).ok_or_else(|| {
            format!("--since `{text}`: give a time like 2026-12-03T07:00:00Z or an age like 15m, 2h, 7d")
        })?;
        Ok(now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
    }

    fn admits(&self, session: &Session) -> bool {
        self.since_ms.is_none_or(|since| session.opened_ms >= since)
            && self.target.as_ref().is_none_or(|t| *t == session.target)
            && self
                .identity
                .as_deref()
                .is_none_or(|wanted| identity_matches(session, wanted))
    }
}

/// `key=value` (uid, pid, exe, comm, cgroup as a prefix, subject), or text found in the
/// executable, thread name, cgroup, token subject or remote source.
fn identity_matches(session: &Session, wanted: &str) -> bool {
    let a = &session.actor;
    let subject = session
        .login
        .as_ref()
        .and_then(|l| l.token_subject.as_deref());
    match wanted.split_once('=') {
        Some(("uid", v)) => a.uid.is_some_and(|u| u.to_string() == v),
        Some(("pid", v)) => a.pid.is_some_and(|p| p.to_string() == v),
        Some(("exe", v)) => a.exe.as_deref() == Some(v),
        Some(("comm", v)) => a.comm.as_deref() == Some(v),
        Some(("cgroup", v)) => a.cgroup.as_deref().is_some_and(|c| c.starts_with(v)),
        Some(("subject", v)) => subject == Some(v),
        _ => [
            a.exe.as_deref(),
            a.comm.as_deref(),
            a.cgroup.as_deref(),
            a.source.as_deref(),
            subject,
        ]
        .into_iter()
        .flatten()
        .any(|field| field.contains(wanted)),
    }
}

/// Every session in the log, in the order they were opened.
pub fn read(dir: &Path) -> Result<Vec<Session>, String> {
    let mut sessions: Vec<Session> = Vec::new();
    // Connection number -> session, for the gateway run being read.
    let mut open: HashMap<u64, usize> = HashMap::new();
    // Approval id -> (session, request record), for the decisions that follow a hold.
    let mut held: HashMap<u64, (usize, u64)> = HashMap::new();
    segment::for_each_line(dir, |place, line| {
        let record = Record::parse(line).map_err(|e| format!("{place}: {e}"))?;
        let at = |open: &HashMap<u64, usize>, conn: u64| open.get(&conn).copied();
        match record.event {
            Event::GatewayStarted { .. } => open.clear(),
            Event::ConnectionOpened(opened) => {
                open.insert(opened.conn_id, sessions.len());
                sessions.push(Session {
                    id: record.index,
                    conn_id: opened.conn_id,
                    opened_ms: record.time_ms,
                    target: opened.target,
                    client: opened.client,
                    orig_dst: opened.orig_dst,
                    actor: opened.actor,
                    login: None,
                    requests: Vec::new(),
                    closed: None,
                });
            }
            Event::LoginDecided(login) => {
                if let Some(i) = at(&open, login.conn_id) {
                    sessions[i].login = Some(login);
                }
            }
            Event::RequestDecided(request) => {
                if let Some(i) = at(&open, request.conn_id) {
                    sessions[i].requests.push(TimedRequest {
                        index: record.index,
                        time_ms: record.time_ms,
                        statements: request.statements,
                        answer: None,
                        approval: Vec::new(),
                    });
                }
            }
            Event::RequestAnswered(answer) => {
                if let Some(i) = at(&open, answer.conn_id) {
                    let request = sessions[i]
                        .requests
                        .iter_mut()
                        .rev()
                        .find(|r| r.index == answer.request);
                    if let Some(request) = request {
                        request.answer = Some(answer);
                    }
                }
            }
            Event::ApprovalRequested(asked) => {
                if let (Some(i), Some(request)) = (at(&open, asked.conn_id), asked.request) {
                    held.insert(asked.approval, (i, request));
                    let note = format!(
                        "held for approval {} by rule {}",
                        asked.approval, asked.rule
                    );
                    note_on(&mut sessions[i], request, record.time_ms, note);
                }
            }
            Event::ApprovalDecided(decided) => {
                if let Some(&(i, request)) = held.get(&decided.approval) {
                    let mut note = format!(
                        "approval {} {}",
                        decided.approval,
                        decided.outcome.replace('_', " ")
                    );
                    if let Some(by) = &decided.approver {
                        note.push_str(&format!(" by {by}"));
                    }
                    if let Some(reason) = &decided.reason {
                        note.push_str(&format!(": {reason}"));
                    }
                    if let Some(grant) = decided.grant {
                        note.push_str(&format!(" (grant {grant})"));
                    }
                    note_on(&mut sessions[i], request, record.time_ms, note);
                }
            }
            Event::GrantUsed(used) => {
                if let (Some(i), Some(request)) = (at(&open, used.conn_id), used.request) {
                    let note = format!(
                        "ran under grant {} of approval {} (use {})",
                        used.grant, used.approval, used.uses
                    );
                    note_on(&mut sessions[i], request, record.time_ms, note);
                }
            }
            Event::ConnectionClosed(closed) => {
                if let Some(i) = open.remove(&closed.conn_id) {
                    sessions[i].closed = Some(ClosedAt {
                        time_ms: record.time_ms,
                        closed,
                    });
                }
            }
            _ => {}
        }
        Ok::<(), String>(())
    })
    .map_err(|e| e.to_string())?;
    Ok(sessions)
}

fn note_on(session: &mut Session, request: u64, time_ms: u64, note: String) {
    let found = session
        .requests
        .iter_mut()
        .rev()
        .find(|r| r.index == request);
    if let Some(request) = found {
        request.approval.push(TimedNote { time_ms, note });
    }
}

/// `sessions list`.
pub fn list(dir: &Path, filter: &Filter, json: bool) -> Result<String, String> {
    let sessions: Vec<Session> = read(dir)?
        .into_iter()
        .filter(|s| filter.admits(s))
        .collect();
    if json {
        return serde_json::to_string_pretty(&sessions)
            .map(|j| j + "\n")
            .map_err(|e| e.to_string());
    }
    let mut text = format!(
        "{:<10} {:<24} {:<12} {:<44} {:<12} {:>6} {:>7} OUTCOME\n",
        "ID", "OPENED (UTC)", "TARGET", "WHO", "DB USER", "STMTS", "REFUSED"
    );
    for s in &sessions {
        text.push_str(&format!(
            "{:<10} {:<24} {:<12} {:<44} {:<12} {:>6} {:>7} {}\n",
            s.id,
            time(s.opened_ms),
            s.target,
            s.who(),
            s.login.as_ref().map_or("-", |l| l.db_user.as_str()),
            s.statements().count(),
            s.refused(),
            s.closed
                .as_ref()
                .map_or("open (or the gateway stopped)", |c| c
                    .closed
                    .outcome
                    .as_str())
        ));
    }
    text.push_str(&format!("{} sessions\n", sessions.len()));
    Ok(text)
}

/// `sessions show ID`.
pub fn show(dir: &Path, id: u64, json: bool) -> Result<String, String> {
    let session = read(dir)?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| format!("no session {id} in {}", dir.display()))?;
    if json {
        return serde_json::to_string_pretty(&session)
            .map(|j| j + "\n")
            .map_err(|e| e.to_string());
    }
    let a = &session.actor;
    let mut text = format!(
        "session {} (connection {}), target {}\n  who: {}\n",
        session.id,
        session.conn_id,
        session.target,
        session.who()
    );
    for (label, value) in [
        ("exe", a.exe.clone()),
        ("cmdline", a.cmdline.clone()),
        ("gid", a.gid.map(|g| g.to_string())),
        (
            "parent",
            a.ppid
                .map(|p| format!("pid {p} {}", a.parent_exe.as_deref().unwrap_or(""))),
        ),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("  {label}: {value}\n"));
        }
    }
    text.push_str(&format!(
        "  {} opened: {} -> {}\n",
        time(session.opened_ms),
        session.client,
        session.orig_dst
    ));
    if let Some(l) = &session.login {
        text.push_str(&format!(
            "  login: db user {}, database {}, {} auth{}{}\n",
            l.db_user,
            l.database,
            l.auth,
            if l.tls { ", TLS" } else { "" },
            l.token_subject
                .as_ref()
                .map(|s| format!(", token subject {s}"))
                .unwrap_or_default()
        ));
    }
    for request in &session.requests {
        let answer = request.answer.as_ref().map(describe_answer);
        for s in &request.statements {
            text.push_str(&format!(
                "  {} [{}] {}{}: {}{}\n",
                time(request.time_ms),
                s.protocol,
                s.sql.as_deref().unwrap_or("<prepared earlier>"),
                s.parameters
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default(),
                s.decision.as_deref().unwrap_or("recorded"),
                s.rule
                    .as_deref()
                    .map(|r| format!(" by rule {r}"))
                    .unwrap_or_default()
            ));
        }
        for note in &request.approval {
            text.push_str(&format!("      {} {}\n", time(note.time_ms), note.note));
        }
        if let Some(answer) = answer {
            text.push_str(&format!("      -> {answer}\n"));
        }
    }
    match &session.closed {
        Some(c) => text.push_str(&format!(
            "  {} closed: {}{}, {} bytes from the agent, {} to it, {} ms\n",
            time(c.time_ms),
            c.closed.outcome,
            c.closed
                .reason
                .as_ref()
                .or(c.closed.error.as_ref())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            c.closed.bytes_from_agent,
            c.closed.bytes_to_agent,
            c.closed.duration_ms
        )),
        None => text.push_str("  not closed in the log (still open, or the gateway stopped)\n"),
    }
    Ok(text)
}

/// `3 rows (96 bytes) in 1.2 ms; ssn [ssn] redact` or `ERROR 42501 in 0.3 ms`.
fn describe_answer(answer: &RequestAnswered) -> String {
    let mut text = match &answer.sqlstate {
        Some(code) => format!("ERROR {code}"),
        None => format!("{} rows ({} bytes)", answer.rows, answer.row_bytes),
    };
    text.push_str(&format!(" in {:.1} ms", answer.duration_us as f64 / 1000.0));
    for column in &answer.classified_columns {
        text.push_str(&format!(
            "; {} [{}] {}",
            column.column,
            column.categories.join(", "),
            column.mask
        ));
    }
    text
}

/// `2026-12-03T07:43:26.123Z`.
fn time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let text = rfc3339_utc(at);
    format!("{}.{:03}Z", text.trim_end_matches('Z'), ms % 1000)
}
