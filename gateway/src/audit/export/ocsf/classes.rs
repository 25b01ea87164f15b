//! What each record says in OCSF 1.8.0 terms, class by class. Only attributes OCSF defines
//! go here (captions beside `*_id` fields only for "Other", where OCSF takes our word);
//! anything of Tollgate's own goes under `unmapped.tollgate`, added by the caller.

use serde_json::{json, Map, Value};

use super::{
    super::super::event::{
        Actor, ApprovalDecided, ConnectionOpened, Event, LoginDecided, RequestAnswered,
        StatementRecord,
    },
    connections::Connection,
};

pub const DATASTORE_ACTIVITY: u32 = 6005;
pub const AUTHENTICATION: u32 = 3002;
pub const EVENT_LOG_ACTIVITY: u32 = 1008;
/// The Other activity: the caption is ours (`activity_name`).
const OTHER: u32 = 99;

/// An event before the fields every event has.
pub struct Body {
    pub class_uid: u32,
    pub activity_id: u32,
    /// For [`OTHER`] only.
    pub activity_name: Option<&'static str>,
    pub severity_id: u32,
    pub fields: Map<String, Value>,
    /// OCSF profiles whose attributes the fields use.
    pub profiles: Vec<&'static str>,
}

impl Body {
    fn new(class_uid: u32, activity_id: u32) -> Self {
        Self {
            class_uid,
            activity_id,
            activity_name: None,
            severity_id: 1,
            fields: Map::new(),
            profiles: Vec::new(),
        }
    }

    fn other(class_uid: u32, name: &'static str) -> Self {
        Self {
            activity_name: Some(name),
            ..Self::new(class_uid, OTHER)
        }
    }

    fn set(&mut self, key: &str, value: Value) {
        self.fields.insert(key.to_owned(), value);
    }
}

/// The identity of the connection a record belongs to, as the exporter knows it.
pub struct Who<'a> {
    pub connection: Option<&'a Connection>,
    /// `<log id>:<index of the connection's opening>`.
    pub session: Option<String>,
}

/// One event per record, but one per statement for a request.
pub fn bodies(event: &Event, who: &Who<'_>, origin: &str) -> Vec<Body> {
    match event {
        Event::GatewayStarted {
            version,
            config_file,
            policy_file,
        } => vec![log_event(
            Body::new(EVENT_LOG_ACTIVITY, 6),
            origin,
            format!(
                "tollgate {version} started with {config_file} (policy: {})",
                policy_file.as_deref().unwrap_or("none")
            ),
        )],
        Event::GatewayStopped { reason } => vec![log_event(
            Body::new(EVENT_LOG_ACTIVITY, 7),
            origin,
            format!("tollgate stopped: {reason}"),
        )],
        Event::PolicyReloaded {
            file,
            applied,
            detail,
        } => {
            let mut body = log_event(
                Body::other(EVENT_LOG_ACTIVITY, "Policy Reload"),
                origin,
                match applied {
                    true => format!("policy {file} applied"),
                    false => format!("policy {file} rejected, the previous one stays"),
                },
            );
            status(&mut body, *applied, detail.clone());
            vec![body]
        }
        Event::Checkpoint { .. } => vec![log_event(
            Body::other(EVENT_LOG_ACTIVITY, "Checkpoint"),
            origin,
            "signed checkpoint of the audit log".to_owned(),
        )],
        Event::ConnectionOpened(opened) => {
            let mut body = Body::new(DATASTORE_ACTIVITY, 3);
            parties(&mut body, opened, None, who);
            body.set("database", database(None, &opened.target));
            body.set("type_id", json!(1));
            body.set(
                "message",
                json!(format!(
                    "connection to {} ({})",
                    opened.target, opened.orig_dst
                )),
            );
            vec![body]
        }
        Event::ConnectionClosed(closed) => {
            let mut body = datastore(Body::other(DATASTORE_ACTIVITY, "Disconnect"), who, None);
            status(
                &mut body,
                closed.outcome == "closed",
                closed.error.clone().or_else(|| closed.reason.clone()),
            );
            body.set("duration", json!(closed.duration_ms));
            body.set(
                "message",
                json!(format!(
                    "connection {} after {} ms",
                    closed.outcome, closed.duration_ms
                )),
            );
            vec![body]
        }
        Event::LoginDecided(login) => vec![logon(login, who)],
        Event::RequestDecided(request) => request
            .statements
            .iter()
            .map(|statement| {
                let mut body = datastore(
                    Body::new(DATASTORE_ACTIVITY, activity_of(statement.sql.as_deref())),
                    who,
                    request.token_subject.as_deref(),
                );
                body.set(
                    "database",
                    database(Some(&request.database), &request.target),
                );
                if let Some(sql) = &statement.sql {
                    body.set("query_info", json!({ "query_string": sql }));
                }
                decision(&mut body, statement);
                body
            })
            .collect(),
        Event::RequestAnswered(answer) => vec![answered(answer, who)],
        Event::ApprovalRequested(asked) => {
            let mut body = datastore(
                Body::other(DATASTORE_ACTIVITY, "Approval Request"),
                who,
                asked.token_subject.as_deref(),
            );
            body.set("query_info", json!({ "query_string": asked.statement }));
            body.set("database", database(Some(&asked.database), &asked.target));
            held(&mut body, &asked.rule);
            body.set(
                "message",
                json!(format!(
                    "request held for approval {} by rule {}",
                    asked.approval, asked.rule
                )),
            );
            vec![body]
        }
        Event::ApprovalDecided(decided) => {
            let mut body = datastore(
                Body::other(DATASTORE_ACTIVITY, "Approval Decision"),
                who,
                None,
            );
            approval_outcome(&mut body, decided);
            vec![body]
        }
        Event::GrantUsed(used) => {
            let mut body = datastore(Body::other(DATASTORE_ACTIVITY, "Grant Use"), who, None);
            body.profiles.push("security_control");
            body.set("action_id", json!(1));
            body.set("disposition_id", json!(1));
            body.set(
                "message",
                json!(format!(
                    "request ran under grant {} of approval {} (use {})",
                    used.grant, used.approval, used.uses
                )),
            );
            vec![body]
        }
    }
}

/// A statement held until a person approves it.
fn held(body: &mut Body, rule: &str) {
    body.profiles.push("security_control");
    body.set("action_id", json!(OTHER));
    body.set("action", json!("Held"));
    body.set("disposition_id", json!(OTHER));
    body.set("disposition", json!("Approval Required"));
    body.severity_id = 3;
    body.set("is_alert", json!(true));
    body.set(
        "policy",
        json!({ "uid": rule, "name": rule, "type": "Tollgate policy rule", "is_applied": true }),
    );
}

fn approval_outcome(body: &mut Body, decided: &ApprovalDecided) {
    body.profiles.push("security_control");
    let allowed = decided.outcome == "approved";
    match decided.outcome.as_str() {
        "approved" => {
            body.set("action_id", json!(1));
            body.set("disposition_id", json!(8));
        }
        "approved_in_part" => {
            body.set("action_id", json!(OTHER));
            body.set("action", json!("Held"));
            body.set("disposition_id", json!(OTHER));
            body.set("disposition", json!("Approval Required"));
        }
        _ => {
            body.set("action_id", json!(2));
            body.set("disposition_id", json!(2));
        }
    }
    let by = decided
        .approver
        .as_deref()
        .map(|a| format!(" by {a}"))
        .unwrap_or_default();
    body.set(
        "message",
        json!(format!(
            "approval {} {}{by}",
            decided.approval,
            decided.outcome.replace('_', " ")
        )),
    );
    status(body, allowed, decided.reason.clone());
}

/// What a statement does, from its first word (OCSF defines no mapping from SQL).
fn activity_of(sql: Option<&str>) -> u32 {
    let words: Vec<String> = sql
        .unwrap_or_default()
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .take(64)
        .map(str::to_ascii_uppercase)
        .collect();
    match words.first().map(String::as_str).unwrap_or_default() {
        "SELECT" | "WITH" | "TABLE" | "VALUES" | "FETCH" | "SHOW" | "EXPLAIN" => 4,
        // COPY ... TO reads; COPY ... FROM writes.
        "COPY" if words.iter().any(|w| w == "TO") => 1,
        "INSERT" | "COPY" => 5,
        "UPDATE" | "MERGE" | "ALTER" => 2,
        "DELETE" | "TRUNCATE" | "DROP" => 7,
        "CREATE" => 6,
        _ => OTHER,
    }
}

fn log_event(mut body: Body, origin: &str, message: String) -> Body {
    body.set("log_name", json!(origin));
    body.set("log_provider", json!("Tollgate"));
    body.set("message", json!(message));
    body.set("actor", json!({ "app_name": "tollgate", "process": { "pid": std::process::id(), "name": "tollgate" } }));
    body
}

/// A Datastore Activity event on a known connection.
fn datastore(mut body: Body, who: &Who<'_>, token_subject: Option<&str>) -> Body {
    if body.activity_id == OTHER && body.activity_name.is_none() {
        body.activity_name = Some("Other");
    }
    body.set("type_id", json!(1));
    match who.connection {
        Some(connection) => {
            let token = token_subject.or_else(|| {
                connection
                    .login
                    .as_ref()
                    .and_then(|l| l.token_subject.as_deref())
            });
            parties(&mut body, &connection.opened, token, who);
            let name = connection.login.as_ref().map(|l| l.database.as_str());
            body.set("database", database(name, &connection.opened.target));
        }
        // Not expected: every connection's opening comes before its other records. The
        // event still says what is known (the record travels in `raw_data`).
        None => {
            body.set("actor", json!({ "app_name": "tollgate" }));
            body.set("src_endpoint", json!({ "name": "unknown" }));
            body.set("database", json!({ "type_id": 1, "uid": "unknown" }));
        }
    }
    body
}

fn database(name: Option<&str>, target: &str) -> Value {
    let mut database = json!({ "uid": target, "type_id": 1 });
    if let Some(name) = name {
        database["name"] = json!(name);
    }
    database
}

fn logon(login: &LoginDecided, who: &Who<'_>) -> Body {
    let mut body = Body::new(AUTHENTICATION, 1);
    let account = json!({ "name": login.db_user, "type_id": OTHER, "type": "PostgreSQL role" });
    let user = match &login.token_subject {
        Some(subject) => json!({
            "name": subject,
            "uid": subject,
            "groups": login.token_groups.iter().map(|g| json!({ "name": g })).collect::<Vec<_>>(),
            "account": account,
        }),
        None => json!({ "name": login.db_user, "account": account }),
    };
    body.set("user", user);
    if let Some(connection) = who.connection {
        parties(&mut body, &connection.opened, None, who);
    }
    if let Some(session) = &who.session {
        body.set("session", json!({ "uid": session, "is_remote": true }));
    }
    body.set(
        "service",
        json!({ "name": "PostgreSQL", "uid": login.target }),
    );
    match login.auth.as_str() {
        // A JWT bearer token checked against the identity provider's keys.
        "token" => body.set("auth_protocol_id", json!(6)),
        other => {
            body.set("auth_protocol_id", json!(OTHER));
            body.set("auth_protocol", json!(other));
        }
    }
    body.set("logon_type_id", json!(3));
    body.set("is_remote", json!(true));
    body.set("is_cleartext", json!(!login.tls));
    status(&mut body, login.accepted, login.reason.clone());
    if !login.accepted {
        body.severity_id = 3;
        body.set("action_id", json!(2));
        body.set("disposition_id", json!(2));
        body.set("is_alert", json!(true));
        body.profiles.push("security_control");
    }
    body.set(
        "message",
        json!(format!(
            "login of {} to {} database {}: {}",
            login.db_user,
            login.target,
            login.database,
            if login.accepted {
                "accepted"
            } else {
                "refused"
            }
        )),
    );
    body
}

/// Tollgate's decision as the security control's action and disposition, and its rule as
/// the policy applied.
fn decision(body: &mut Body, statement: &StatementRecord) {
    body.profiles.push("security_control");
    let allowed = match statement.decision.as_deref() {
        None => {
            // Recorded without a policy.
            body.set("action_id", json!(3));
            body.set("disposition_id", json!(17));
            true
        }
        Some("allow") => {
            body.set("action_id", json!(1));
            body.set("disposition_id", json!(1));
            true
        }
        Some("require_approval") => {
            body.set("action_id", json!(OTHER));
            body.set("action", json!("Held"));
            body.set("disposition_id", json!(OTHER));
            body.set("disposition", json!("Approval Required"));
            false
        }
        Some(_) => {
            body.set("action_id", json!(2));
            body.set("disposition_id", json!(2));
            false
        }
    };
    if !allowed {
        body.severity_id = 3;
        body.set("is_alert", json!(true));
    }
    if let Some(rule) = &statement.rule {
        body.set(
            "policy",
            json!({ "uid": rule, "name": rule, "type": "Tollgate policy rule", "is_applied": true }),
        );
        body.set(
            "authorizations",
            json!([{ "decision": statement.decision, "policy": { "uid": rule, "name": rule } }]),
        );
    }
    status(body, allowed, statement.rule.clone());
}

fn answered(answer: &RequestAnswered, who: &Who<'_>) -> Body {
    let mut body = datastore(Body::other(DATASTORE_ACTIVITY, "Answer"), who, None);
    status(&mut body, answer.sqlstate.is_none(), None);
    if let Some(sqlstate) = &answer.sqlstate {
        body.set("status_code", json!(sqlstate));
    }
    body.set("duration", json!(answer.duration_us.div_ceil(1000)));
    if answer.classified_columns.iter().any(|c| c.mask != "clear") {
        body.profiles.push("security_control");
        body.set("action_id", json!(4));
        body.set("disposition_id", json!(OTHER));
        body.set("disposition", json!("Masked"));
    }
    body.set(
        "message",
        json!(format!(
            "{} rows, {} bytes returned, {} classified columns",
            answer.rows,
            answer.row_bytes,
            answer.classified_columns.len()
        )),
    );
    body
}

/// Who acted and between which endpoints, from the connection's opening.
fn parties(body: &mut Body, opened: &ConnectionOpened, token_subject: Option<&str>, who: &Who<'_>) {
    body.set(
        "actor",
        actor(&opened.actor, token_subject, who.session.as_deref()),
    );
    body.set("src_endpoint", source(&opened.actor, &opened.client));
    body.set("dst_endpoint", endpoint(&opened.orig_dst));
}

fn actor(process: &Actor, token_subject: Option<&str>, session: Option<&str>) -> Value {
    let mut actor = Map::new();
    let mut proc = Map::new();
    if let Some(pid) = process.pid {
        proc.insert("pid".into(), json!(pid));
    }
    if let Some(comm) = &process.comm {
        proc.insert("name".into(), json!(comm));
    }
    if let Some(exe) = &process.exe {
        proc.insert("file".into(), file(exe));
    }
    if let Some(cmdline) = &process.cmdline {
        proc.insert("cmd_line".into(), json!(cmdline));
    }
    if let Some(uid) = process.uid {
        proc.insert("user".into(), json!({ "uid": uid.to_string() }));
    }
    if let Some(ppid) = process.ppid {
        let mut parent = json!({ "pid": ppid });
        if let Some(exe) = &process.parent_exe {
            parent["file"] = file(exe);
        }
        proc.insert("parent_process".into(), parent);
    }
    if proc.contains_key("pid") {
        actor.insert("process".into(), Value::Object(proc));
    }
    if let Some(subject) = token_subject {
        actor.insert("user".into(), json!({ "name": subject, "uid": subject }));
    }
    if let Some(session) = session {
        actor.insert(
            "session".into(),
            json!({ "uid": session, "is_remote": process.identity == "remote" }),
        );
    }
    if actor.is_empty() {
        actor.insert("app_name".into(), json!("unknown"));
    }
    Value::Object(actor)
}

fn file(path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({ "path": path, "name": name, "type_id": 1 })
}

/// The agent's end: a remote agent's source address, or the local client socket.
fn source(process: &Actor, client: &str) -> Value {
    endpoint(process.source.as_deref().unwrap_or(client))
}

/// `ip:port` or `[ip]:port` as an OCSF network endpoint.
fn endpoint(address: &str) -> Value {
    match address.parse::<std::net::SocketAddr>() {
        Ok(addr) => json!({ "ip": addr.ip().to_string(), "port": addr.port() }),
        Err(_) => match address.parse::<std::net::IpAddr>() {
            Ok(ip) => json!({ "ip": ip.to_string() }),
            Err(_) => json!({ "name": address }),
        },
    }
}

fn status(body: &mut Body, success: bool, detail: Option<String>) {
    body.set("status_id", json!(if success { 1 } else { 2 }));
    if let Some(detail) = detail {
        body.set("status_detail", json!(detail));
    }
}
