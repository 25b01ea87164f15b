//! Export from a real log in a temporary directory: what each event carries, that a sink
//! resumed anywhere produces the same events, and the file sink end to end.

use std::{path::Path, time::Duration};

use serde_json::Value;

use super::{
    super::{
        event::{Event, LoginDecided},
        log::AuditLog,
        merkle::{self, leaf_hash},
        tests::{closed, opened, settings, statement, TempDir},
    },
    batch::Reader,
    ocsf::{self, LogContext},
    Exporters,
};
use crate::config::{AuditSettings, Durability, ExportKind, ExportSink, FileExport};

fn login(conn_id: u64) -> Event {
    Event::LoginDecided(LoginDecided {
        conn_id,
        target: "clinic".to_owned(),
        db_user: "app".to_owned(),
        database: "clinic".to_owned(),
        auth: "token".to_owned(),
        tls: true,
        token_subject: Some("agent-7".to_owned()),
        token_groups: vec!["analysts".to_owned()],
        accepted: true,
        reason: None,
    })
}

/// Two gateway runs, each with a connection that logs in and runs statements.
fn sessions(log: &AuditLog) {
    for run in 0..2 {
        log.append(Event::GatewayStarted {
            version: "test".to_owned(),
            config_file: "/etc/tollgate/tollgate.toml".to_owned(),
            policy_file: None,
        })
        .expect("append");
        // Connection numbers start again with each run.
        log.append(opened(1, 100 + run, "psql")).expect("append");
        log.append(login(1)).expect("append");
        log.append(statement(1, "SELECT name FROM patients", "allow"))
            .expect("append");
        log.append(statement(1, "DELETE FROM patients", "deny"))
            .expect("append");
        log.append(closed(1)).expect("append");
    }
}

/// Every event of the log from record `from` on, as a sink would send them.
fn exported(settings: &AuditSettings, from: u64) -> Vec<Value> {
    let mut reader = Reader::new(&settings.dir, from);
    let mut context = LogContext::read(&settings.dir, &settings.origin).expect("context");
    context.restore(ocsf::Connections::rebuild(&settings.dir, from).expect("rebuild"));
    let batch = reader.next_batch(10_000, u64::MAX).expect("batch");
    ocsf::events(&batch, &mut context)
        .iter()
        .map(|e| serde_json::from_str(&e.json).expect("json"))
        .collect()
}

fn leaves(settings: &AuditSettings) -> Vec<merkle::Hash> {
    let mut leaves = Vec::new();
    super::super::segment::for_each_line::<()>(&settings.dir, |_, line| {
        leaves.push(leaf_hash(line));
        Ok(())
    })
    .expect("scan");
    leaves
}

#[test]
fn each_event_carries_its_leaf_and_a_checkpoint_that_proves_it() {
    let dir = TempDir::new("export-events");
    let settings = settings(&dir.0, Durability::Batched);
    let log = AuditLog::open(&settings).expect("open");
    sessions(&log);
    log.close();
    let events = exported(&settings, 0);
    let leaves = leaves(&settings);
    // Every record is exported (one event per statement of a request).
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["metadata"]["sequence"].as_u64().expect("sequence"))
        .collect();
    let mut distinct = sequences.clone();
    distinct.dedup();
    assert_eq!(distinct, (0..leaves.len() as u64).collect::<Vec<_>>());
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["metadata"]["uid"].as_str().expect("uid"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "ids are unique");
    for event in &events {
        let tollgate = &event["unmapped"]["tollgate"];
        let index = tollgate["leaf_index"].as_u64().expect("leaf index");
        // raw_data is the record; its leaf hash is the one in the tree.
        let raw = event["raw_data"].as_str().expect("raw_data");
        let hash = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            leaf_hash(raw.as_bytes()),
        );
        assert_eq!(event["raw_data_hash"]["value"], hash.as_str());
        assert_eq!(leaf_hash(raw.as_bytes()), leaves[index as usize]);
        // The covering checkpoint signs a tree that includes this leaf.
        let checkpoint = &tollgate["checkpoint"];
        let size = checkpoint["size"].as_u64().expect("size");
        assert!(index < size || event["metadata"]["event_code"] == "checkpoint");
        if index < size {
            let proof = merkle::inclusion_proof(&leaves[..size as usize], index).expect("proof");
            let root = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                checkpoint["root_hash"].as_str().expect("root"),
            )
            .expect("base64 root");
            let root: merkle::Hash = root.try_into().expect("32 bytes");
            merkle::verify_inclusion(&leaves[index as usize], index, size, &proof, &root)
                .expect("the leaf is in the checkpoint's tree");
        }
    }
    // A statement names the process and the token subject of its connection, in its run.
    let statements: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["event_code"] == "request_decided")
        .collect();
    assert_eq!(statements.len(), 4);
    assert_eq!(statements[0]["actor"]["process"]["pid"], 100);
    assert_eq!(statements[2]["actor"]["process"]["pid"], 101);
    assert_eq!(statements[0]["actor"]["user"]["uid"], "agent-7");
    assert_eq!(statements[0]["activity_id"], 4, "SELECT is a Query");
    assert_eq!(statements[1]["activity_id"], 7, "DELETE is a Delete");
    assert_eq!(statements[1]["disposition_id"], 2, "a denial is Blocked");
    assert_ne!(
        statements[0]["metadata"]["correlation_uid"], statements[2]["metadata"]["correlation_uid"],
        "connection 1 of two runs are two sessions"
    );
    let logins: Vec<&Value> = events.iter().filter(|e| e["class_uid"] == 3002).collect();
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0]["user"]["name"], "agent-7");
}

#[test]
fn a_sink_resumed_at_any_record_sends_the_same_events() {
    let dir = TempDir::new("export-resume");
    let settings = settings(&dir.0, Durability::Batched);
    let log = AuditLog::open(&settings).expect("open");
    sessions(&log);
    log.close();
    let all = exported(&settings, 0);
    let records = leaves(&settings).len() as u64;
    for from in 1..records {
        let resumed = exported(&settings, from);
        let tail: Vec<&Value> = all
            .iter()
            .filter(|e| e["metadata"]["sequence"].as_u64() >= Some(from))
            .collect();
        assert_eq!(
            resumed.iter().collect::<Vec<_>>(),
            tail,
            "resumed at record {from}"
        );
    }
}

fn file_sink(root: &Path, name: &str) -> ExportSink {
    ExportSink {
        name: name.to_owned(),
        cursor_file: root.join("export").join(format!("{name}.cursor")),
        kind: ExportKind::File(FileExport {
            path: root.join("siem").join("events.ndjson"),
            max_bytes: 64 * 1024,
            keep: 1000,
        }),
    }
}

/// Every event in the file sink's files, oldest file first.
fn delivered(root: &Path) -> Vec<Value> {
    let base = root.join("siem").join("events.ndjson");
    let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(root.join("siem"))
        .expect("siem dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let n = p
                .extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse().ok())
                .unwrap_or(0);
            (n, p)
        })
        .collect();
    files.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    assert!(files.iter().any(|(_, p)| *p == base), "{files:?}");
    files
        .iter()
        .flat_map(|(_, p)| {
            std::fs::read_to_string(p)
                .expect("read")
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn wait_delivered(exporters: &Exporters, log: &AuditLog) {
    for _ in 0..200 {
        let records = log.records();
        let status = exporters.status(records);
        if status[0]["lag"] == 0 {
            return;
        }
        assert!(status[0]["error"].is_null(), "{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "not delivered within 10 s: {}",
        exporters.status(log.records())
    );
}

#[test]
fn the_file_sink_delivers_every_event_once_in_order_across_restarts_and_rotation() {
    let dir = TempDir::new("export-file");
    let settings = settings(&dir.0, Durability::Batched);
    let log = AuditLog::open(&settings).expect("open");
    let sink = [file_sink(&dir.0, "file")];
    for round in 0..3 {
        let exporters = Exporters::start(&sink, &log, 0);
        for n in 0..40 {
            log.append(statement(
                n,
                &format!("SELECT {round} AS round_{n}"),
                "allow",
            ))
            .expect("append");
        }
        wait_delivered(&exporters, &log);
        exporters.stop();
    }
    let events = delivered(&dir.0);
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["metadata"]["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(
        sequences,
        (0..log.records()).collect::<Vec<_>>(),
        "every record once, in order"
    );
    let rotated = std::fs::read_dir(dir.0.join("siem")).expect("dir").count();
    assert!(rotated > 1, "64 KiB files rotated: {rotated} files");
    log.close();
}

#[test]
fn a_cursor_of_another_log_is_refused() {
    let dir = TempDir::new("export-other-log");
    let settings = settings(&dir.0, Durability::Batched);
    let sink = [file_sink(&dir.0, "file")];
    let log = AuditLog::open(&settings).expect("open");
    log.append(statement(1, "SELECT 1", "allow"))
        .expect("append");
    let exporters = Exporters::start(&sink, &log, 0);
    wait_delivered(&exporters, &log);
    exporters.stop();
    log.close();
    // The log is moved aside and a new one starts; the old cursor must not apply.
    std::fs::rename(&settings.dir, dir.0.join("old-audit")).expect("move aside");
    let log = AuditLog::open(&settings).expect("a new log");
    log.append(statement(1, "SELECT 2", "allow"))
        .expect("append");
    let exporters = Exporters::start(&sink, &log, 0);
    let mut status = Value::Null;
    for _ in 0..100 {
        status = exporters.status(log.records());
        if !status[0]["error"].is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        status[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("belongs to another audit log")),
        "{status}"
    );
    exporters.stop();
    log.close();
}
