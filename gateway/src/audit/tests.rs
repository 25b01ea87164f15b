//! The log against every edit an auditor must catch, on real files in a temporary directory.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    commands,
    event::Event,
    log::AuditLog,
    merkle,
    prove::{self, Asked},
    record::Record,
    segment,
};
use crate::config::{AuditSettings, Durability};

pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tollgate-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn settings(root: &Path, durability: Durability) -> AuditSettings {
    AuditSettings {
        dir: root.join("audit"),
        durability,
        flush_interval: Duration::from_millis(5),
        key_file: root.join("audit-key"),
        origin: "tollgate.audit/test".to_owned(),
        exports: Vec::new(),
    }
}

fn event(n: u64) -> Event {
    Event::GatewayStopped {
        reason: format!("event {n}"),
    }
}

/// A closed log of `count` events (checkpoints among them).
fn written(root: &Path, count: u64) -> AuditSettings {
    let settings = settings(root, Durability::Batched);
    let log = AuditLog::open(&settings).expect("open");
    for n in 0..count {
        log.append(event(n)).expect("append");
    }
    log.close();
    settings
}

fn segment_path(settings: &AuditSettings) -> PathBuf {
    segment::list(&settings.dir).expect("segments")[0].1.clone()
}

fn lines(settings: &AuditSettings) -> Vec<String> {
    let text = std::fs::read_to_string(segment_path(settings)).expect("segment");
    text.lines().map(str::to_owned).collect()
}

fn rewrite(settings: &AuditSettings, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(segment_path(settings), text).expect("rewrite");
}

fn verify(settings: &AuditSettings) -> Result<String, String> {
    commands::verify(settings, None, None)
}

/// The index of the line holding `event n`.
fn line_of(lines: &[String], n: u64) -> usize {
    let needle = format!("\"event {n}\"");
    lines
        .iter()
        .position(|l| l.contains(&needle))
        .expect("event line")
}

#[test]
fn an_untouched_log_verifies_with_checkpoints_every_thousand_records() {
    let dir = TempDir::new("intact");
    let settings = written(&dir.0, 2500);
    let report = verify(&settings).expect("intact");
    // 2500 events, a checkpoint after every 1000 records, and one at close.
    assert!(
        report.contains("intact: 2503 records, 3 checkpoints"),
        "{report}"
    );
    let checkpoints = lines(&settings)
        .iter()
        .filter(|l| l.contains("\"kind\":\"checkpoint\""))
        .count();
    assert_eq!(checkpoints, 3);
}

#[test]
fn a_reopened_log_continues_the_same_tree() {
    let dir = TempDir::new("reopen");
    let settings = written(&dir.0, 10);
    written(&dir.0, 10);
    let report = verify(&settings).expect("intact");
    assert!(
        report.contains("intact: 22 records, 2 checkpoints"),
        "{report}"
    );
}

#[test]
fn a_flipped_byte_is_named() {
    let dir = TempDir::new("flip");
    let settings = written(&dir.0, 50);
    let mut lines = lines(&settings);
    let at = line_of(&lines, 20);
    lines[at] = lines[at].replace("event 20", "event 2O");
    rewrite(&settings, &lines);
    let error = verify(&settings).expect_err("modified");
    assert!(error.contains("record 20 was modified"), "{error}");
}

#[test]
fn a_deleted_inserted_or_reordered_record_is_named() {
    let dir = TempDir::new("order");
    let settings = written(&dir.0, 50);
    let original = lines(&settings);
    let at = line_of(&original, 30);

    let mut deleted = original.clone();
    deleted.remove(at);
    rewrite(&settings, &deleted);
    let error = verify(&settings).expect_err("deleted");
    assert!(
        error.contains("record 30 is not where it belongs"),
        "{error}"
    );
    assert!(error.contains("holds record 31"), "{error}");

    let mut inserted = original.clone();
    inserted.insert(at, original[at - 5].clone());
    rewrite(&settings, &inserted);
    let error = verify(&settings).expect_err("inserted");
    assert!(
        error.contains("record 30 is not where it belongs"),
        "{error}"
    );

    let mut reordered = original.clone();
    reordered.swap(at, at + 1);
    rewrite(&settings, &reordered);
    let error = verify(&settings).expect_err("reordered");
    assert!(
        error.contains("record 30 is not where it belongs"),
        "{error}"
    );
}

#[test]
fn an_edit_with_recomputed_links_is_caught_by_the_checkpoint() {
    let dir = TempDir::new("relink");
    let settings = written(&dir.0, 50);
    let mut lines = lines(&settings);
    let at = line_of(&lines, 10);
    lines[at] = lines[at].replace("event 10", "event 99");
    // Every later record relinked, as an editor with the format in hand would.
    let mut prev = merkle::leaf_hash(lines[at].as_bytes());
    for line in lines.iter_mut().skip(at + 1) {
        let mut record = Record::parse(line.as_bytes()).expect("record");
        record.prev = super::record::link(&prev);
        *line = String::from_utf8(record.to_line()).expect("utf-8");
        prev = merkle::leaf_hash(line.as_bytes());
    }
    rewrite(&settings, &lines);
    let error = verify(&settings).expect_err("relinked");
    assert!(
        error.contains("records 0 to 49 do not match the checkpoint at record 50"),
        "{error}"
    );
}

#[test]
fn a_cut_tail_is_caught_by_the_latest_checkpoint() {
    let dir = TempDir::new("cut");
    let settings = written(&dir.0, 50);
    let mut lines = lines(&settings);
    lines.truncate(lines.len() - 10);
    rewrite(&settings, &lines);
    let error = verify(&settings).expect_err("cut");
    assert!(error.contains("cut short or rolled back"), "{error}");
    assert!(
        error.contains("signs 50 records, the log holds 41"),
        "{error}"
    );
}

#[test]
fn a_log_rolled_back_to_an_older_copy_is_caught_by_an_exported_checkpoint() {
    let dir = TempDir::new("rollback");
    let settings = written(&dir.0, 20);
    let older = dir.0.join("older");
    copy_dir(&settings.dir, &older);
    written(&dir.0, 20);
    let exported = dir.0.join("exported-checkpoint");
    std::fs::write(
        &exported,
        commands::checkpoint(&settings).expect("checkpoint"),
    )
    .expect("export");
    std::fs::remove_dir_all(&settings.dir).expect("remove");
    copy_dir(&older, &settings.dir);
    // The older copy is consistent in itself, latest-checkpoint file included...
    verify(&settings).expect("an older log verifies on its own");
    // ...but not against what was exported.
    let error = commands::verify(&settings, Some(&exported), None).expect_err("rolled back");
    assert!(error.contains("rolled back"), "{error}");
}

#[test]
fn a_log_signed_by_a_swapped_key_fails_against_the_kept_verifier_key() {
    let dir = TempDir::new("swap");
    let settings = written(&dir.0, 5);
    let kept = commands::public_key(&settings).expect("public key");
    // Everything replaced: a new key, a new log signed by it.
    std::fs::remove_dir_all(&settings.dir).expect("remove");
    std::fs::remove_file(&settings.key_file).expect("remove key");
    written(&dir.0, 5);
    verify(&settings).expect("the forgery verifies with its own key");
    let error = commands::verify(&settings, None, Some(kept.trim())).expect_err("swapped");
    assert!(error.contains("does not verify with key"), "{error}");
}

#[test]
fn a_bad_signature_is_named() {
    let dir = TempDir::new("signature");
    let settings = written(&dir.0, 5);
    let mut lines = lines(&settings);
    let last = lines.len() - 1;
    // The signature line of the final checkpoint: change one base64 character.
    let record = Record::parse(lines[last].as_bytes()).expect("record");
    let Event::Checkpoint { note } = record.event else {
        panic!("the last record is the closing checkpoint")
    };
    let tampered = note.replacen(
        "\u{2014} tollgate.audit/test ",
        "\u{2014} tollgate.audit/test A",
        1,
    );
    let tampered = tampered.replacen(" A", " B", 1);
    let line = lines[last].replace(
        &serde_json::to_string(&note).expect("json")[1..note.len()],
        &serde_json::to_string(&tampered).expect("json")[1..note.len()],
    );
    lines[last] = line;
    rewrite(&settings, &lines);
    let error = verify(&settings).expect_err("bad signature");
    assert!(error.contains("does not verify with key"), "{error}");
}

#[test]
fn inclusion_and_consistency_proofs_check_with_the_key_alone() {
    let dir = TempDir::new("proofs");
    let settings = written(&dir.0, 300);
    let key = commands::public_key(&settings).expect("key");
    for index in [0, 1, 150, 299] {
        let proof = prove::prove(&settings.dir, Asked::Inclusion(index)).expect("inclusion");
        let file = dir.0.join(format!("inclusion-{index}.json"));
        std::fs::write(&file, serde_json::to_string(&proof).expect("json")).expect("write");
        let ok = commands::check_proof(&settings, &file, Some(key.trim())).expect("checks");
        assert!(
            ok.contains(&format!("record {index} is in the log")),
            "{ok}"
        );
        // The record shown is the one proven.
        let mut forged = proof;
        if let Some(inclusion) = forged.inclusion.as_mut() {
            inclusion.record = inclusion.record.replace("event", "evént");
        }
        std::fs::write(&file, serde_json::to_string(&forged).expect("json")).expect("write");
        commands::check_proof(&settings, &file, Some(key.trim())).expect_err("forged record");
    }
    for old in [1, 2, 100, 300] {
        let proof = prove::prove(&settings.dir, Asked::Consistency(old)).expect("consistency");
        let file = dir.0.join(format!("consistency-{old}.json"));
        std::fs::write(&file, serde_json::to_string(&proof).expect("json")).expect("write");
        let ok = commands::check_proof(&settings, &file, Some(key.trim())).expect("checks");
        assert!(
            ok.contains(&format!("grew from its first {old} records")),
            "{ok}"
        );
    }
}

#[test]
fn a_torn_last_record_is_dropped_when_the_log_opens_again() {
    let dir = TempDir::new("torn");
    let settings = written(&dir.0, 5);
    let path = segment_path(&settings);
    let mut text = std::fs::read(&path).expect("segment");
    text.extend_from_slice(b"{\"index\":7,\"time_ms\":1,\"pr");
    std::fs::write(&path, text).expect("append torn");
    let report = verify(&settings).expect("a torn tail is not tampering");
    assert!(report.contains("half-written"), "{report}");
    written(&dir.0, 1);
    let report = verify(&settings).expect("intact");
    assert!(!report.contains("half-written"), "{report}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

#[tokio::test]
async fn a_strict_record_returns_only_once_it_is_synced() {
    let dir = TempDir::new("strict");
    let settings = settings(&dir.0, Durability::Strict);
    let log = AuditLog::open(&settings).expect("open");
    for n in 0..20 {
        let index = log.record(event(n)).await.expect("record");
        let synced = log.status()["synced"].as_u64().expect("synced count");
        assert!(
            synced > index,
            "record {index} returned with {synced} synced"
        );
    }
    log.close();
    verify(&settings).expect("intact");
}

pub(super) fn opened(conn_id: u64, pid: u32, comm: &str) -> Event {
    Event::ConnectionOpened(super::event::ConnectionOpened {
        conn_id,
        client: "127.0.0.1:40000".to_owned(),
        orig_dst: "127.0.0.1:5432".to_owned(),
        target: "clinic".to_owned(),
        target_kind: "postgres".to_owned(),
        actor: super::event::Actor {
            identity: "process".to_owned(),
            pid: Some(pid),
            uid: Some(1000),
            comm: Some(comm.to_owned()),
            cgroup: Some("/ai-agents.slice/job".to_owned()),
            ..Default::default()
        },
    })
}

pub(super) fn statement(conn_id: u64, sql: &str, decision: &str) -> Event {
    Event::RequestDecided(super::event::RequestDecided {
        conn_id,
        target: "clinic".to_owned(),
        db_user: "app".to_owned(),
        database: "clinic".to_owned(),
        token_subject: None,
        statements: vec![super::event::StatementRecord {
            protocol: "simple".to_owned(),
            sql: Some(sql.to_owned()),
            parameters: None,
            decision: Some(decision.to_owned()),
            rule: Some("r1".to_owned()),
        }],
    })
}

pub(super) fn closed(conn_id: u64) -> Event {
    Event::ConnectionClosed(super::event::ConnectionClosed {
        conn_id,
        client: "127.0.0.1:40000".to_owned(),
        orig_dst: "127.0.0.1:5432".to_owned(),
        target: Some("clinic".to_owned()),
        pid: None,
        outcome: "closed".to_owned(),
        reason: None,
        error: None,
        bytes_from_agent: 10,
        bytes_to_agent: 20,
        duration_ms: 5,
    })
}

#[test]
fn sessions_are_told_apart_across_gateway_runs_and_filtered() {
    use super::sessions::{list, read, show, Filter};
    let dir = TempDir::new("sessions");
    let settings = settings(&dir.0, Durability::Batched);
    let started = || Event::GatewayStarted {
        version: "t".to_owned(),
        config_file: "c".to_owned(),
        policy_file: None,
    };
    // Two gateway runs: connection numbers start again at 1.
    for (pid, comm) in [(100, "psql"), (200, "python3")] {
        let log = AuditLog::open(&settings).expect("open");
        log.append(started()).expect("append");
        log.append(opened(1, pid, comm)).expect("append");
        log.append(statement(1, &format!("SELECT {comm}"), "allow"))
            .expect("append");
        log.append(statement(1, "DROP TABLE x", "deny"))
            .expect("append");
        log.append(closed(1)).expect("append");
        log.close();
    }
    let sessions = read(&settings.dir).expect("sessions");
    assert_eq!(sessions.len(), 2);
    assert_ne!(sessions[0].id, sessions[1].id);
    assert_eq!(
        sessions[1].requests[0].statements[0].sql.as_deref(),
        Some("SELECT python3")
    );
    let only_psql = Filter {
        identity: Some("comm=psql".to_owned()),
        ..Default::default()
    };
    let text = list(&settings.dir, &only_psql, false).expect("list");
    assert!(
        text.contains("pid 100 (psql)") && !text.contains("python3"),
        "{text}"
    );
    assert!(text.contains("1 sessions"), "{text}");
    let later = Filter {
        since_ms: Some(u64::MAX),
        ..Default::default()
    };
    assert!(list(&settings.dir, &later, false)
        .expect("list")
        .contains("0 sessions"));
    let timeline = show(&settings.dir, sessions[1].id, false).expect("show");
    for expected in [
        "pid 200 (python3)",
        "SELECT python3: allow by rule r1",
        "DROP TABLE x: deny",
        "closed: closed",
    ] {
        assert!(timeline.contains(expected), "{expected} in:\n{timeline}");
    }
    show(&settings.dir, 999_999, false).expect_err("no such session");
}

#[test]
fn records_written_later_are_in_the_file_at_once_in_order() {
    let dir = TempDir::new("later");
    let settings = settings(&dir.0, Durability::Batched);
    let log = AuditLog::open(&settings).expect("open");
    log.append(event(0)).expect("append");
    log.record_anyway(event(1));
    let text = || std::fs::read_to_string(segment_path(&settings)).expect("segment");
    // Space was reserved ahead: a record written later costs a copy, so it is not held back.
    assert!(
        text().contains("event 1"),
        "written with no write of its own"
    );
    log.append(event(2)).expect("append");
    let written = text();
    let (one, two) = (written.find("event 1"), written.find("event 2"));
    assert!(one.is_some() && one < two, "in order:\n{written}");
    log.close();
    verify(&settings).expect("intact");
}

#[test]
fn a_line_made_from_a_body_is_the_record_serde_writes() {
    use super::{
        event::{RequestAnswered, RequestDecided, StatementRecord},
        merkle::leaf_hash,
        record::{Body, Record},
    };
    let events = [
        event(7),
        Event::Checkpoint {
            note: "origin\n1\nroot\n\n\u{2014} key sig\n".to_owned(),
        },
        Event::RequestDecided(RequestDecided {
            conn_id: 3,
            target: "clinic".to_owned(),
            db_user: "agent \"quoted\"".to_owned(),
            database: "db".to_owned(),
            token_subject: None,
            statements: vec![StatementRecord {
                protocol: "simple".to_owned(),
                sql: Some("SELECT $1\n\t\u{1}".to_owned()),
                parameters: None,
                decision: Some("allow".to_owned()),
                rule: None,
            }],
        }),
        Event::RequestAnswered(RequestAnswered {
            conn_id: 3,
            request: 41,
            rows: 1,
            row_bytes: 10,
            sqlstate: None,
            duration_us: 99,
            classified_columns: Vec::new(),
        }),
        opened(4, 200, "python3"),
        closed(4),
    ];
    let prev = leaf_hash(b"before");
    for (n, event) in events.into_iter().enumerate() {
        let prev = (n > 0).then_some(&prev);
        let mut line = Vec::new();
        Body::of(&event).line_into(u64::MAX - n as u64, 1_700_000_000_123, prev, &mut line);
        let record = Record {
            index: u64::MAX - n as u64,
            time_ms: 1_700_000_000_123,
            prev: prev.map(super::record::link).unwrap_or_default(),
            event,
        };
        assert_eq!(
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&record.to_line())
        );
        assert_eq!(Record::parse(&line).expect("parses"), record);
    }
}

#[test]
fn the_space_ahead_of_the_records_is_allocated_on_disk_not_sparse() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("allocated");
    let settings = settings(&dir.0, Durability::Batched);
    let log = AuditLog::open(&settings).expect("open");
    log.append(event(0)).expect("append");
    let meta = std::fs::metadata(segment_path(&settings)).expect("meta");
    assert!(
        meta.blocks() * 512 >= meta.len(),
        "{} bytes, {} allocated: a full disk would show up as a fault on a mapped page",
        meta.len(),
        meta.blocks() * 512
    );
    log.close();
}

#[test]
fn a_segment_sized_ahead_reads_to_its_last_record_and_a_crash_copy_reopens() {
    let dir = TempDir::new("ahead");
    let settings = settings(&dir.0, Durability::Batched);
    let log = AuditLog::open(&settings).expect("open");
    for n in 0..5 {
        log.append(event(n)).expect("append");
    }
    let path = segment_path(&settings);
    let on_disk = std::fs::metadata(&path).expect("meta").len();
    let text = std::fs::read(&path).expect("segment");
    let end = text.iter().rposition(|&b| b == b'\n').expect("records") as u64 + 1;
    assert!(
        on_disk > end,
        "sized ahead: {on_disk} bytes for {end} of records"
    );
    assert!(text[end as usize..].iter().all(|&b| b == 0));
    // The state a kill -9 leaves: the same files, with the writer gone.
    let crashed = TempDir::new("ahead-crashed");
    let copy = super::super::config::AuditSettings {
        dir: crashed.0.join("audit"),
        key_file: settings.key_file.clone(),
        ..settings.clone()
    };
    copy_dir(&settings.dir, &copy.dir);
    // Five records, and a checkpoint if the sync thread's second passed meanwhile.
    let copied = std::fs::read(segment_path(&copy)).expect("copy");
    let copied = copied.iter().filter(|&&b| b == b'\n').count();
    assert!((5..=6).contains(&copied), "{copied} records copied");
    let report = verify(&copy).expect("a live log verifies");
    assert!(
        report.contains(&format!("intact: {copied} records")),
        "{report}"
    );
    log.close();
    let reopened = AuditLog::open(&copy).expect("reopen after a crash");
    reopened.append(event(5)).expect("append");
    reopened.close();
    let report = verify(&copy).expect("intact");
    let reopened = std::fs::read_to_string(segment_path(&copy)).expect("segment");
    assert!(reopened.contains("event 5"), "appended after the crash");
    let records = reopened.lines().count();
    assert!(
        report.contains(&format!("intact: {records} records")),
        "{report}"
    );
    let closed = std::fs::metadata(segment_path(&copy)).expect("meta").len();
    let text = std::fs::read(segment_path(&copy)).expect("segment");
    assert_eq!(closed as usize, text.len());
    assert_eq!(
        text.last(),
        Some(&b'\n'),
        "a closed segment ends with its last record"
    );
}
