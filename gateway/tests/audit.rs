//! The audit log end to end: real agents through a real gateway, the log read back with the
//! `tollgate audit` commands as an auditor would. Run with `sudo cargo xtask test`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::{json, Value};

use common::{agent_psql, assert_success, output_text, permissive_policy, pg_bed, PgBed, TOLLGATE};

/// `tollgate audit ARGS --config <the bed's>`.
fn audit(bed: &PgBed, args: &[&str]) -> Output {
    Command::new(TOLLGATE)
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(bed.gateway.config_path())
        .output()
        .expect("tollgate audit")
}

/// Every record in the log, parsed.
fn records(bed: &PgBed) -> Vec<Value> {
    bed.gateway.audit_records()
}

fn conninfo(bed: &PgBed) -> String {
    format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        bed.pg.port()
    )
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn every_connection_login_and_statement_is_recorded_and_the_log_verifies() {
    let mut bed = pg_bed("every_connection_login_and_statement_is_recorded", |_| {});
    let output = agent_psql(
        &bed,
        &conninfo(&bed),
        None,
        "SELECT 'a literal that must not be kept' AS recorded_column",
    );
    assert_success(&output, "agent psql");
    let verified = audit(&bed, &["verify"]);
    assert!(verified.status.success(), "{}", output_text(&verified));
    let written = records(&bed);
    let kinds: Vec<&str> = written.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"gateway_started"), "{kinds:?}");
    let opened = written
        .iter()
        .find(|r| r["kind"] == "connection_opened")
        .expect("connection_opened");
    assert_eq!(opened["actor"]["comm"], "psql", "{opened}");
    assert_eq!(opened["target"], "clinic", "{opened}");
    let conn_id = opened["conn_id"].clone();
    let login = written
        .iter()
        .find(|r| r["kind"] == "login_decided" && r["conn_id"] == conn_id)
        .expect("login_decided");
    assert_eq!(login["db_user"], "postgres", "{login}");
    let request = written
        .iter()
        .find(|r| {
            r["kind"] == "request_decided"
                && r["statements"][0]["sql"]
                    .as_str()
                    .is_some_and(|s| s.contains("recorded_column"))
        })
        .expect("the statement's record");
    let sql = request["statements"][0]["sql"].as_str().unwrap_or_default();
    assert!(
        !sql.contains("must not be kept"),
        "literals are redacted: {sql}"
    );
    // The close follows what the client saw; wait for it (bounded).
    let closed = (0..100).find_map(|_| {
        let found = records_of(&bed, "connection_closed", &conn_id);
        if found.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        found
    });
    let closed = closed.expect("connection_closed");
    assert_eq!(closed["outcome"], "closed", "{closed}");
    // The session, as an auditor reads it back.
    let session_id = opened["index"].as_u64().expect("index").to_string();
    let sessions = Command::new(TOLLGATE)
        .args(["sessions", "list", "--identity", "comm=psql", "--config"])
        .arg(bed.gateway.config_path())
        .output()
        .expect("sessions list");
    let listed = output_text(&sessions);
    let pid = opened["actor"]["pid"].as_u64().expect("pid");
    assert!(listed.contains(&format!("pid {pid} (psql)")), "{listed}");
    assert!(
        listed.lines().any(|l| l.starts_with(&session_id)),
        "{listed}"
    );
    let shown = Command::new(TOLLGATE)
        .args(["sessions", "show", &session_id, "--config"])
        .arg(bed.gateway.config_path())
        .output()
        .expect("sessions show");
    let timeline = output_text(&shown);
    for expected in [
        "recorded_column",
        "-> 1 rows",
        "login: db user postgres",
        "closed: closed",
    ] {
        assert!(timeline.contains(expected), "{expected} in:\n{timeline}");
    }
    assert!(!timeline.contains("must not be kept"), "{timeline}");
    // A clean stop signs the end.
    bed.gateway.stop().expect("stop");
    let written = records(&bed);
    let last: Vec<&str> = written
        .iter()
        .rev()
        .take(2)
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(last, ["checkpoint", "gateway_stopped"], "{written:?}");
    let verified = audit(&bed, &["verify"]);
    assert!(verified.status.success(), "{}", output_text(&verified));
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(!text.contains("not signed yet"), "{text}");
}

fn records_of(bed: &PgBed, kind: &str, conn_id: &Value) -> Option<Value> {
    records(bed)
        .into_iter()
        .find(|r| r["kind"] == kind && r["conn_id"] == *conn_id)
}

/// Aliases a psql client printed a header for: statements it saw answered.
fn answered(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("answered_"))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn after_kill_9_under_load_every_answered_statement_has_its_record() {
    let mut bed = pg_bed("after_kill_9_under_load", |_| {});
    // A checkpoint kept elsewhere before the crash: the log must grow from it.
    agent_psql(&bed, &conninfo(&bed), None, "SELECT 1");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let kept = audit(&bed, &["checkpoint"]);
    assert_success(&kept, "audit checkpoint");
    let kept_file = bed.gateway.audit_dir().with_file_name("kept-checkpoint");
    std::fs::write(&kept_file, &kept.stdout).expect("keep the checkpoint");

    let clients: Vec<_> = (0..3)
        .map(|client| {
            let script: String = (0..3000)
                .map(|n| format!("SELECT 1 AS answered_{client}_{n};\n"))
                .collect();
            // A file, so psql sends each statement as a request of its own.
            let file = bed
                .gateway
                .audit_dir()
                .with_file_name(format!("load-{client}.sql"));
            std::fs::write(&file, script).expect("script");
            let mut command = bed.agents.command("psql");
            command
                .args(["-X", "-A", "-d", &conninfo(&bed), "-f"])
                .arg(file)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().expect("psql")
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    bed.gateway.kill9().expect("kill -9 the gateway");
    let outputs: Vec<Output> = clients
        .into_iter()
        .map(|c| c.wait_with_output().expect("psql ends"))
        .collect();
    bed.gateway.spawn().expect("the gateway starts again");

    let since = kept_file.display().to_string();
    let verified = audit(&bed, &["verify", "--since-checkpoint", &since]);
    assert!(verified.status.success(), "{}", output_text(&verified));
    let recorded: std::collections::HashSet<String> = records(&bed)
        .iter()
        .filter(|r| r["kind"] == "request_decided")
        .filter_map(|r| r["statements"][0]["sql"].as_str().map(str::to_owned))
        .flat_map(|sql| {
            sql.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("answered_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut seen = 0;
    for output in &outputs {
        for alias in answered(output) {
            seen += 1;
            assert!(
                recorded.contains(&alias),
                "{alias} was answered but not recorded"
            );
        }
    }
    eprintln!("{seen} statements answered before the kill, each recorded");
    assert!(
        seen > 0,
        "no client got an answer before the kill: the test proves nothing"
    );
}

/// A tmpfs of its own for the audit log, unmounted on Drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=2m,mode=0700",
                "tollgate-audit-test",
            ])
            .arg(at)
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs at {}", at.display());
        Self(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn a_full_disk_refuses_requests_with_53100_and_service_resumes_when_space_returns() {
    // Recording only, and under a policy that allows everything: the refusal must not rest
    // on a policy refusing the statement.
    for permissive in [false, true] {
        full_disk_refuses_and_resumes(permissive);
    }
}

fn full_disk_refuses_and_resumes(permissive: bool) {
    let disk_at = std::env::temp_dir().join(format!(
        "tollgate-audit-disk-{}-{permissive}",
        std::process::id()
    ));
    let disk = SmallDisk::mount(&disk_at);
    let dir = disk_at.join("audit");
    let policy_dir = disk_at.with_extension("policy");
    std::fs::create_dir_all(&policy_dir).expect("policy dir");
    let bed = pg_bed("a_full_disk_refuses_requests_with_53100", |config| {
        config
            .extra_audit
            .push(format!("dir = {:?}", dir.display().to_string()));
        if permissive {
            permissive_policy(config, &policy_dir);
        }
    });
    bed.pg
        .psql_direct("CREATE TABLE audit_full (n int)")
        .expect("create table");
    // One session: the disk fills and empties under it (psql's \! runs a shell command).
    let filler = disk_at.join("filler");
    let mut script = String::from("\\set VERBOSITY verbose\nINSERT INTO audit_full VALUES (1);\n");
    script.push_str(&format!(
        "\\! dd if=/dev/zero of={} bs=4096 2>/dev/null\n",
        filler.display()
    ));
    for n in 2..=21 {
        script.push_str(&format!("INSERT INTO audit_full VALUES ({n});\n"));
    }
    script.push_str(&format!("\\! rm -f {}\n", filler.display()));
    script.push_str("INSERT INTO audit_full VALUES (100);\n");
    let script_file = disk_at.with_extension("sql");
    std::fs::write(&script_file, script).expect("script");
    let mut psql = bed.agents.command("psql");
    psql.args(["-X", "-d", &conninfo(&bed), "-f"])
        .arg(&script_file);
    let output = psql.output().expect("psql");
    let _ = std::fs::remove_file(&script_file);
    let said = output_text(&output);
    let refusals = said
        .matches("53100: Tollgate: the audit log cannot record")
        .count();
    assert!(refusals > 0, "the full disk refused nothing: {said}");
    let served = String::from_utf8_lossy(&output.stdout)
        .matches("INSERT 0 1")
        .count();
    let rows = bed
        .pg
        .psql_direct("SELECT count(*) FROM audit_full")
        .expect("count");
    assert_eq!(
        rows.trim(),
        served.to_string(),
        "every row in the table was answered as recorded, nothing forwarded unrecorded: {said}"
    );
    assert_eq!(served + refusals, 22, "{said}");
    eprintln!(
        "permissive policy: {permissive}: {served} inserts recorded and run, {refusals} refused while the disk was full"
    );
    let resumed = bed
        .pg
        .psql_direct("SELECT count(*) FROM audit_full WHERE n = 100")
        .expect("count");
    assert_eq!(
        resumed.trim(),
        "1",
        "service resumed once space returned: {said}"
    );
    let verified = audit(&bed, &["verify"]);
    assert!(verified.status.success(), "{}", output_text(&verified));
    let decisions: Vec<Value> = xtask::testbed::audit_records_in(&dir)
        .iter()
        .filter(|r| r["kind"] == "request_decided")
        .map(|r| r["statements"][0]["decision"].clone())
        .collect();
    let expected = if permissive {
        json!("allow")
    } else {
        Value::Null
    };
    assert!(
        decisions.len() == served && decisions.iter().all(|d| *d == expected),
        "one record per insert run, decided by the policy in force: {decisions:?}"
    );
    drop(bed);
    drop(disk);
    let _ = std::fs::remove_dir_all(&policy_dir);
}
