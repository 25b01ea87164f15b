//! What the audit log keeps of a session: each request before it is forwarded, and once
//! answered, the rows and bytes the agent got, the classified columns with their masks, and
//! the SQLSTATE of an error.

use pgwire::messages::{simplequery::Query, PgWireFrontendMessage as F};
use serde_json::Value;

use super::{
    fake_server::{text_column, Canned},
    start_recording, Agent, POLICY,
};
use crate::{
    audit::AuditLog,
    config::{AuditSettings, Durability},
};

struct Recorded {
    root: std::path::PathBuf,
    settings: AuditSettings,
}

impl Recorded {
    fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "tollgate-session-audit-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let settings = AuditSettings {
            dir: root.join("audit"),
            durability: Durability::Batched,
            flush_interval: std::time::Duration::from_millis(5),
            key_file: root.join("key"),
            origin: "tollgate.audit/session-test".to_owned(),
            exports: Vec::new(),
        };
        Self { root, settings }
    }

    fn records(&self, kind: &str) -> Vec<Value> {
        let segment = crate::audit::segment::list(&self.settings.dir).expect("segments")[0]
            .1
            .clone();
        std::fs::read_to_string(segment)
            .expect("segment")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json"))
            .filter(|r| r["kind"] == kind)
            .collect()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn canned() -> Canned {
    super::pipeline::patients().error(
        "SELECT nonsense",
        "42703",
        "column \"nonsense\" does not exist",
    )
}

fn query(sql: &str) -> F {
    F::Query(Query::new(sql.to_owned()))
}

#[tokio::test]
async fn each_answer_is_recorded_with_rows_masks_and_errors() {
    for policy in [Some(POLICY), None] {
        let recorded = Recorded::new(if policy.is_some() { "policy" } else { "relay" });
        let audit = AuditLog::open(&recorded.settings).expect("audit log");
        let mut session =
            start_recording(policy, canned(), Agent::Plain, Some(audit.clone())).await;
        for sql in ["SELECT ssn FROM patients", "SELECT nonsense", "SELECT 1"] {
            session.client.send(vec![query(sql)]).await;
            session.client.until_ready(1).await;
        }
        let _ = session.outcome().await;
        audit.close();
        let decided = recorded.records("request_decided");
        let answered = recorded.records("request_answered");
        assert_eq!(decided.len(), 3, "{decided:?}");
        assert_eq!(answered.len(), 3, "{answered:?}");
        for (decision, answer) in decided.iter().zip(&answered) {
            assert_eq!(answer["request"], decision["index"], "{answer}");
        }
        let ssn = &answered[0];
        assert_eq!(ssn["rows"], 2, "{ssn}");
        assert!(ssn["row_bytes"].as_u64().unwrap_or(0) > 0, "{ssn}");
        assert_eq!(ssn["sqlstate"], Value::Null, "{ssn}");
        match policy {
            Some(_) => {
                let column = &ssn["classified_columns"][0];
                assert_eq!(column["column"], "ssn", "{ssn}");
                assert_eq!(column["categories"][0], "ssn", "{ssn}");
                assert_eq!(column["mask"], "redact", "{ssn}");
            }
            // Without a policy nothing is classified, and nothing claims to be.
            None => assert_eq!(ssn["classified_columns"], serde_json::json!([]), "{ssn}"),
        }
        assert_eq!(answered[1]["sqlstate"], "42703", "{:?}", answered[1]);
        assert_eq!(answered[1]["rows"], 0);
        assert_eq!(answered[2]["rows"], 1);
        assert_eq!(answered[2]["classified_columns"], serde_json::json!([]));
    }
}

#[tokio::test]
async fn a_denied_statement_is_answered_with_the_denials_sqlstate() {
    let recorded = Recorded::new("denied");
    let audit = AuditLog::open(&recorded.settings).expect("audit log");
    let canned = Canned::default().rows("SELECT 1", vec![text_column("one")], &[&["1"]]);
    let mut session =
        start_recording(Some(POLICY), canned, Agent::Plain, Some(audit.clone())).await;
    session
        .client
        .send(vec![query("SELECT * FROM secrets")])
        .await;
    let lines = session.client.until_ready(1).await;
    assert!(lines.iter().any(|l| l.contains("42501")), "{lines:?}");
    let _ = session.outcome().await;
    audit.close();
    let decided = recorded.records("request_decided");
    assert_eq!(decided[0]["statements"][0]["decision"], "deny");
    assert_eq!(decided[0]["statements"][0]["rule"], "no-secrets");
    let answered = recorded.records("request_answered");
    assert_eq!(answered[0]["sqlstate"], "42501", "{answered:?}");
}
