//! Records as OCSF 1.8.0 events: Datastore Activity (6005) for connections and statements,
//! Authentication (3002) for logins, Event Log Activity (1008) for the log's own events and
//! its checkpoints. Every event carries the record's leaf index, its exact bytes
//! (`raw_data`), its leaf hash and the signed checkpoint that covers it (size and root; the
//! note is the checkpoint event's own `raw_data`), so a receiver can check it against the log
//! with `tollgate audit prove --inclusion INDEX`.
//!
//! Ids are stable: `<log id>:<leaf index>.<n>`, the same however often an event is sent.

mod classes;
mod connections;

use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};

use self::classes::{Body, Who};
pub use self::connections::Connections;
use super::{
    super::{event::Event, merkle::leaf_hash, segment},
    batch::Covered,
};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.8.0";

/// One event ready for a sink.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub time_ms: u64,
    pub class_uid: u32,
    pub uid: String,
    pub json: String,
}

/// What every event of a log shares, and the connections open at the point being read.
pub struct LogContext {
    /// The first 16 hex digits of the log's first leaf hash: names this log among others
    /// (one moved aside, a new one started on another host).
    pub log_id: String,
    pub origin: String,
    connections: Connections,
}

impl LogContext {
    /// The log's identity, with no connection open (the log's start).
    pub fn read(dir: &Path, origin: &str) -> Result<Self, String> {
        let mut first = None;
        let scanned = segment::for_each_line(dir, |_, line| {
            first = Some(leaf_hash(line));
            Err(())
        });
        if let Err(segment::ScanError::Io(error)) = scanned {
            return Err(format!("reading the audit log: {error}"));
        }
        let first = first.ok_or("the audit log holds no record yet")?;
        Ok(Self {
            log_id: crate::audit::hex(&first[..8]),
            origin: origin.to_owned(),
            connections: Connections::default(),
        })
    }

    /// The connections open after the records mapped so far.
    pub fn snapshot(&self) -> Connections {
        self.connections.clone()
    }

    /// Back to connections kept earlier (a sink sends again from there).
    pub fn restore(&mut self, connections: Connections) {
        self.connections = connections;
    }
}

/// The events of a batch of records, in order.
pub fn events(batch: &[Covered], context: &mut LogContext) -> Vec<Outgoing> {
    let mut out = Vec::with_capacity(batch.len());
    for covered in batch {
        let event = &covered.record.event;
        let connection = match event {
            Event::ConnectionOpened(_) => None,
            _ => event.conn_id().and_then(|id| context.connections.get(id)),
        };
        let session = match event {
            Event::ConnectionOpened(_) => Some(covered.index),
            _ => connection.as_ref().map(|c| c.session),
        };
        let who = Who {
            connection: connection.as_deref(),
            session: session.map(|s| format!("{}:{s}", context.log_id)),
        };
        let bodies = classes::bodies(event, &who, &context.origin);
        for (n, body) in bodies.into_iter().enumerate() {
            out.push(finish(covered, context, &who, n, body));
        }
        context.connections.apply(covered.index, event);
    }
    out
}

/// The fields every event has, and the record's place in the log.
fn finish(
    covered: &Covered,
    context: &LogContext,
    who: &Who<'_>,
    n: usize,
    body: Body,
) -> Outgoing {
    let record = &covered.record;
    let uid = format!("{}:{}.{n}", context.log_id, covered.index);
    let mut event = body.fields;
    if let Some(Value::Object(query)) = event.get_mut("query_info") {
        // The request the statement came in: shared by its statements.
        query.insert(
            "uid".into(),
            json!(format!("{}:{}", context.log_id, covered.index)),
        );
    }
    event.insert("class_uid".into(), json!(body.class_uid));
    event.insert("category_uid".into(), json!(body.class_uid / 1000));
    event.insert("activity_id".into(), json!(body.activity_id));
    if let Some(name) = body.activity_name {
        event.insert("activity_name".into(), json!(name));
    }
    event.insert(
        "type_uid".into(),
        json!(u64::from(body.class_uid) * 100 + u64::from(body.activity_id)),
    );
    event.insert("severity_id".into(), json!(body.severity_id));
    event.insert("time".into(), json!(record.time_ms));
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "Tollgate",
            "vendor_name": "Tollgate",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "uid": uid,
        "original_event_uid": covered.index.to_string(),
        "sequence": covered.index,
        "event_code": record.event.kind(),
        "log_name": context.origin,
        "log_provider": "Tollgate",
        "logged_time": record.time_ms,
    });
    if let Some(session) = &who.session {
        metadata["correlation_uid"] = json!(session);
    }
    if !body.profiles.is_empty() {
        let mut profiles = body.profiles;
        profiles.dedup();
        metadata["profiles"] = json!(profiles);
    }
    event.insert("metadata".into(), metadata);
    event.insert(
        "raw_data".into(),
        json!(String::from_utf8_lossy(&covered.bytes)),
    );
    event.insert("raw_data_size".into(), json!(covered.bytes.len()));
    event.insert(
        "raw_data_hash".into(),
        json!({
            "algorithm_id": 99,
            "algorithm": "RFC 6962 leaf hash (SHA-256)",
            "value": STANDARD.encode(covered.leaf),
        }),
    );
    event.insert(
        "unmapped".into(),
        json!({ "tollgate": unmapped(covered, n) }),
    );
    Outgoing {
        time_ms: record.time_ms,
        class_uid: body.class_uid,
        uid,
        json: Value::Object(event).to_string(),
    }
}

/// Tollgate's own facts: the record's place in the tree and the checkpoint that covers it
/// (check with `tollgate audit prove --inclusion <leaf_index>` against that checkpoint),
/// and what OCSF has no attribute for.
fn unmapped(covered: &Covered, n: usize) -> Value {
    let record = &covered.record;
    let mut tollgate = json!({
        "kind": record.event.kind(),
        "leaf_index": covered.index,
        "prev": record.prev,
        // The signed note itself is in the checkpoint's own event (its `raw_data`).
        "checkpoint": {
            "index": covered.cover.index,
            "size": covered.cover.size,
            "root_hash": covered.cover.root,
        },
    });
    if let Some(conn_id) = record.event.conn_id() {
        tollgate["conn_id"] = json!(conn_id);
    }
    let extra = match &record.event {
        Event::ConnectionOpened(opened) => json!({
            "target": opened.target,
            "target_kind": opened.target_kind,
            "identity": opened.actor.identity,
            "gid": opened.actor.gid,
            "cgroup": opened.actor.cgroup,
        }),
        Event::ConnectionClosed(closed) => json!({
            "outcome": closed.outcome,
            "bytes_from_agent": closed.bytes_from_agent,
            "bytes_to_agent": closed.bytes_to_agent,
        }),
        Event::LoginDecided(login) => json!({
            "target": login.target,
            "database": login.database,
            "auth": login.auth,
            "tls": login.tls,
        }),
        Event::RequestDecided(request) => match request.statements.get(n) {
            Some(statement) => json!({
                "target": request.target,
                "request": covered.index,
                "statement": n,
                "protocol": statement.protocol,
                "parameters": statement.parameters,
                "decision": statement.decision,
                "rule": statement.rule,
            }),
            None => json!({}),
        },
        Event::RequestAnswered(answer) => json!({
            "request": answer.request,
            "rows": answer.rows,
            "row_bytes": answer.row_bytes,
            "sqlstate": answer.sqlstate,
            "duration_us": answer.duration_us,
            "classified_columns": answer.classified_columns,
        }),
        _ => json!({}),
    };
    if let (Some(into), Value::Object(extra)) = (tollgate.as_object_mut(), extra) {
        into.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
    }
    tollgate
}
