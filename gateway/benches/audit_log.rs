//! The audit log's own speed (`cargo xtask bench --only audit` runs this and reports it):
//! batched appends of request-sized records on one thread, strict appends from concurrent
//! sessions (group commit), `audit verify` over 1,000,000 records, the same log exported as
//! OCSF through a file sink, and proof sizes. Writes
//! JSON to the file named by the first argument. Needs no root; files go under the system's
//! temporary directory and are removed.

use std::{path::PathBuf, sync::Arc, time::Instant};

use serde_json::json;
use tollgate::{
    audit::{
        commands,
        event::{RequestDecided, StatementRecord},
        export::Exporters,
        prove::{prove, Asked},
        AuditLog, Event,
    },
    config::{AuditSettings, Durability, ExportKind, ExportSink, FileExport},
};

const BATCHED_RECORDS: u64 = 1_000_000;
const STRICT_SESSIONS: u64 = 16;
const STRICT_PER_SESSION: u64 = 500;

fn settings(root: &std::path::Path, durability: Durability) -> AuditSettings {
    AuditSettings {
        dir: root.join("audit"),
        durability,
        flush_interval: std::time::Duration::from_millis(20),
        key_file: root.join("audit-key"),
        origin: "tollgate.audit/bench".to_owned(),
        exports: Vec::new(),
    }
}

/// A request as pgbench -S sends it, recorded.
fn request(n: u64) -> Event {
    Event::RequestDecided(RequestDecided {
        conn_id: n % 10,
        target: "clinic".to_owned(),
        db_user: "postgres".to_owned(),
        database: "postgres".to_owned(),
        token_subject: None,
        statements: vec![StatementRecord {
            protocol: "extended".to_owned(),
            sql: Some("SELECT abalance FROM pgbench_accounts WHERE aid = $1".to_owned()),
            parameters: Some("text:5".to_owned()),
            decision: Some("allow".to_owned()),
            rule: Some("agents-read".to_owned()),
        }],
    })
}

/// CPU seconds this thread has used (`/proc/thread-self/stat`, in clock ticks of 10 ms).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The whole batched log through a file sink (OCSF NDJSON, fsynced per batch), from the
/// sink's start (its one full read of the log) until its lag is zero: seconds and bytes out.
fn export(root: &std::path::Path, batched: &AuditSettings) -> (f64, u64) {
    let path = root.join("siem").join("ocsf.ndjson");
    let sink = ExportSink {
        name: "bench".to_owned(),
        cursor_file: root.join("export").join("bench.cursor"),
        kind: ExportKind::File(FileExport {
            path: path.clone(),
            max_bytes: 1 << 40,
            keep: 0,
        }),
    };
    let log = AuditLog::open(batched).expect("reopen");
    let started = Instant::now();
    let exporters = Exporters::start(&[sink], &log, 0);
    loop {
        let status = exporters.status(log.records());
        assert!(status[0]["error"].is_null(), "{status}");
        if status[0]["lag"] == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    exporters.stop();
    log.close();
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    (seconds, bytes)
}

fn main() {
    let output: PathBuf = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .expect("usage: audit_log OUTPUT.json")
        .into();
    let root = std::env::temp_dir().join(format!("tollgate-audit-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);

    // Batched: one thread appending as fast as it can.
    let batched = settings(&root.join("batched"), Durability::Batched);
    let log = AuditLog::open(&batched).expect("open");
    let (started, cpu) = (Instant::now(), thread_cpu());
    for n in 0..BATCHED_RECORDS {
        log.append(request(n)).expect("append");
    }
    let append_seconds = started.elapsed().as_secs_f64();
    let append_cpu = thread_cpu() - cpu;
    log.close();
    let bytes: u64 = std::fs::read_dir(&batched.dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    let started = Instant::now();
    let report = commands::verify(&batched, None, None).expect("the bench log verifies");
    let verify_seconds = started.elapsed().as_secs_f64();

    let (export_seconds, export_bytes) = export(&root, &batched);

    let inclusion = prove(&batched.dir, Asked::Inclusion(BATCHED_RECORDS / 3)).expect("inclusion");
    let consistency =
        prove(&batched.dir, Asked::Consistency(BATCHED_RECORDS / 2)).expect("consistency");
    let inclusion_hashes = inclusion.inclusion.as_ref().map_or(0, |p| p.path.len());
    let consistency_hashes = consistency.consistency.as_ref().map_or(0, |p| p.path.len());

    // Strict: concurrent sessions, each waiting for its record's fsync.
    let strict = settings(&root.join("strict"), Durability::Strict);
    let log = AuditLog::open(&strict).expect("open");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..STRICT_SESSIONS)
            .map(|session| {
                let log: Arc<AuditLog> = log.clone();
                tokio::spawn(async move {
                    for n in 0..STRICT_PER_SESSION {
                        log.record(request(session * STRICT_PER_SESSION + n))
                            .await
                            .expect("record");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("session");
        }
    });
    let strict_seconds = started.elapsed().as_secs_f64();
    log.close();

    let result = json!({
        "batched_records": BATCHED_RECORDS,
        "append_seconds": append_seconds,
        "append_cpu_seconds": append_cpu,
        "log_bytes": bytes,
        "verify_report": report,
        "verify_seconds": verify_seconds,
        "inclusion_hashes": inclusion_hashes,
        "inclusion_json_bytes": serde_json::to_string(&inclusion).map_or(0, |s| s.len()),
        "consistency_hashes": consistency_hashes,
        "consistency_json_bytes": serde_json::to_string(&consistency).map_or(0, |s| s.len()),
        "strict_sessions": STRICT_SESSIONS,
        "strict_records": STRICT_SESSIONS * STRICT_PER_SESSION,
        "strict_seconds": strict_seconds,
        "export_seconds": export_seconds,
        "export_bytes": export_bytes,
    });
    let _ = std::fs::remove_dir_all(&root);
    std::fs::write(&output, result.to_string()).expect("write the result");
}
