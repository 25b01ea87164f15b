//! SIEM export end to end: real agents through a real gateway enforcing a policy, the events
//! delivered to a real rsyslog over TLS (RFC 5425), to a Splunk-style HTTP Event Collector
//! with indexer acknowledgement, and to NDJSON files validated against the OCSF schema the
//! tests ship. Receivers are stopped under load and started again: every event arrives, in
//! order. Run with `sudo cargo xtask test`.

mod common;
#[path = "export/hec.rs"]
mod hec;
#[path = "export/receivers.rs"]
mod receivers;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use common::{
    agent_psql, output_text, permissive_policy, pg_bed, PgBed, PATIENTS_POLICY as POLICY,
};
use hec::HecReceiver;
use receivers::{Rsyslog, TestCa};
use xtask::testbed::{write_catalog_credentials, TempDir};

const HEC_TOKEN: &str = "5f1c2a4e-tollgate-test-token";

/// The receivers and the sinks that point at them.
struct Sinks {
    dir: TempDir,
    ca: TestCa,
    rsyslog: Rsyslog,
    hec: HecReceiver,
}

impl Sinks {
    fn start() -> Self {
        let dir = TempDir::new("tollgate-export").expect("temp dir");
        let ca = TestCa::new(dir.path());
        let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), &ca);
        let hec = HecReceiver::start(HEC_TOKEN);
        Self {
            dir,
            ca,
            rsyslog,
            hec,
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("siem").join("ocsf.ndjson")
    }

    /// `[[audit.export]]` tables for the three sinks.
    fn config(&self) -> Vec<String> {
        let token_file = self.dir.path().join("hec-token");
        std::fs::write(&token_file, format!("{HEC_TOKEN}\n")).expect("token file");
        vec![
            format!(
                "[[audit.export]]\nname = \"archive\"\nkind = \"file\"\npath = {:?}\nmax_bytes = 1048576",
                self.file().display().to_string()
            ),
            format!(
                "[[audit.export]]\nname = \"rsyslog\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{}\"\n\
                 server_name = \"localhost\"\nca_file = {:?}\nconfirm_ms = 500",
                self.rsyslog.port(),
                self.ca.ca_file.display().to_string()
            ),
            format!(
                "[[audit.export]]\nname = \"splunk\"\nkind = \"splunk_hec\"\nurl = {:?}\n\
                 token_file = {:?}\nack_timeout_s = 3",
                self.hec.url(),
                token_file.display().to_string()
            ),
        ]
    }
}

/// A gateway enforcing [`POLICY`] over `patients` (or, `permissive`, a policy that allows
/// everything and classifies nothing), exporting to `sinks`.
fn export_bed(test: &str, sinks: &Sinks, permissive: bool) -> PgBed {
    let policy_file = sinks.dir.path().join("policy.toml");
    std::fs::write(&policy_file, POLICY).expect("policy");
    let credentials = sinks.dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials).expect("catalog credentials");
    let bed = pg_bed(test, |config| {
        match permissive {
            true => permissive_policy(config, sinks.dir.path()),
            false => config.enforce_policy("clinic", &policy_file, &credentials),
        }
        config.extra_audit.extend(sinks.config());
    });
    bed.pg
        .psql_direct(
            "CREATE TABLE patients (id int PRIMARY KEY, full_name text, ssn text, zip text);
             INSERT INTO patients VALUES (1, 'Ada Lovelace', '123-45-6789', '02139');",
        )
        .expect("schema");
    bed
}

fn conninfo(bed: &PgBed) -> String {
    format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        bed.pg.port()
    )
}

/// Each sink's status, by name.
fn sink_status(bed: &PgBed) -> Vec<Value> {
    bed.gateway
        .status()
        .and_then(|s| s["audit"]["exports"].as_array().cloned())
        .unwrap_or_default()
}

/// Waits until every sink has delivered the whole log.
fn wait_until_delivered(bed: &PgBed, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = sink_status(bed);
        if !status.is_empty() && status.iter().all(|s| s["lag"] == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sinks did not catch up within {within:?}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn file_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("the file sink's file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

/// First occurrences by id, in arrival order: what a receiver keeps after de-duplicating.
fn first_occurrences(events: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|e| seen.insert(e["metadata"]["uid"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["metadata"]["uid"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The number of records in the gateway's log.
fn records(bed: &PgBed) -> u64 {
    bed.gateway
        .status()
        .and_then(|s| s["audit"]["records"].as_u64())
        .expect("records in status")
}

fn validate_ocsf(file: &Path) {
    let validator = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf/validate.py");
    let output = Command::new("python3")
        .arg(&validator)
        .arg(file)
        .output()
        .expect("python3 (installed by cargo xtask setup)");
    assert!(
        output.status.success(),
        "events fail the OCSF schema:\n{}",
        output_text(&output)
    );
    eprintln!("{}", output_text(&output).trim());
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn every_sink_receives_the_sessions_as_valid_ocsf_with_their_place_in_the_log() {
    let mut sinks = Sinks::start();
    let bed = export_bed(
        "every_sink_receives_the_sessions_as_valid_ocsf",
        &sinks,
        false,
    );
    for sql in [
        "SELECT ssn, zip FROM patients",
        "SELECT zip FROM patients WHERE ssn = '123-45-6789'",
        "DROP TABLE patients",
        "DELETE FROM patients",
        "SELECT 42 AS answer",
    ] {
        // Denied statements fail the client; the record is what matters here.
        let output = agent_psql(&bed, &conninfo(&bed), None, sql);
        assert!(
            !output_text(&output).contains("123-45-6789"),
            "{sql} leaked"
        );
    }
    wait_until_delivered(&bed, Duration::from_secs(30));
    let in_file = file_events(&sinks.file());
    validate_ocsf(&sinks.file());
    let everything: String = in_file.iter().map(Value::to_string).collect();
    assert!(
        !everything.contains("123-45-6789") && !everything.contains("Ada Lovelace"),
        "no PHI value leaves in an event"
    );
    // Every record of the log, once, in order.
    let sequences: Vec<u64> = in_file
        .iter()
        .map(|e| e["metadata"]["sequence"].as_u64().expect("sequence"))
        .collect();
    let mut distinct = sequences.clone();
    distinct.dedup();
    assert_eq!(distinct, (0..records(&bed)).collect::<Vec<_>>());
    let statement = |text: &str| {
        in_file
            .iter()
            .find(|e| {
                e["metadata"]["event_code"] == "request_decided"
                    && e["query_info"]["query_string"]
                        .as_str()
                        .is_some_and(|q| q.starts_with(text))
            })
            .unwrap_or_else(|| panic!("no event for {text}"))
    };
    let drop = statement("DROP TABLE");
    assert_eq!(drop["disposition_id"], 2, "{drop}");
    assert_eq!(drop["policy"]["uid"], "deny-ddl-on-phi", "{drop}");
    assert_eq!(drop["actor"]["process"]["name"], "psql", "{drop}");
    let delete = statement("DELETE FROM");
    assert_eq!(delete["disposition"], "Approval Required", "{delete}");
    // Held, never approved here (the test gateway waits 1 s): the hold and its timeout.
    let approval = |code: &str| {
        in_file
            .iter()
            .find(|e| e["metadata"]["event_code"] == code)
            .unwrap_or_else(|| panic!("no {code} event"))
    };
    let requested = approval("approval_requested");
    assert_eq!(
        requested["activity_name"], "Approval Request",
        "{requested}"
    );
    assert_eq!(
        requested["query_info"]["query_string"],
        "DELETE FROM patients"
    );
    let decided = approval("approval_decided");
    assert!(
        decided["raw_data"]
            .as_str()
            .is_some_and(|r| r.contains("\"outcome\":\"timed_out\"")),
        "{decided}"
    );
    assert!(
        decided["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("timed out")),
        "{decided}"
    );
    assert_eq!(decided["disposition_id"], 2, "{decided}");
    let select = statement("SELECT ssn");
    assert_eq!(select["activity_id"], 4, "{select}");
    let answer = in_file
        .iter()
        .find(|e| {
            e["unmapped"]["tollgate"]["classified_columns"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["column"] == "ssn"))
        })
        .expect("the answer names the classified column it masked");
    assert_eq!(answer["disposition"], "Masked", "{answer}");
    assert!(
        in_file.iter().any(|e| e["class_uid"] == 3002),
        "a logon event"
    );
    assert!(
        in_file
            .iter()
            .any(|e| e["metadata"]["event_code"] == "checkpoint"),
        "checkpoint events"
    );
    // The other sinks got the same events in the same order.
    let expected = ids(&in_file);
    let from_syslog: Vec<Value> = sinks
        .rsyslog
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m).expect("each syslog message is one event"))
        .collect();
    assert_eq!(ids(&first_occurrences(from_syslog)), expected, "rsyslog");
    assert_eq!(ids(&first_occurrences(sinks.hec.events())), expected, "HEC");
    let (batches, acks) = sinks.hec.stats();
    assert!(
        batches > 0 && acks > 0,
        "HEC acknowledgement was used: {batches} {acks}"
    );
    sinks.rsyslog.stop();
}

/// No policy masks anything here: events carry no PHI because records never hold a value
/// (literals redacted, results only counted), not because a rule refused or masked it.
#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn events_carry_no_phi_value_under_a_permissive_policy() {
    let sinks = Sinks::start();
    let bed = export_bed(
        "events_carry_no_phi_value_under_a_permissive_policy",
        &sinks,
        true,
    );
    let mut said = String::new();
    for sql in [
        "SELECT full_name, ssn FROM patients WHERE ssn = '123-45-6789'",
        "INSERT INTO patients VALUES (2, 'Grace Hopper', '987-65-4321', '10001')",
        "UPDATE patients SET ssn = '555-12-3456' WHERE full_name = 'Ada Lovelace'",
        "COPY (SELECT * FROM patients) TO STDOUT",
    ] {
        let output = agent_psql(&bed, &conninfo(&bed), None, sql);
        assert!(output.status.success(), "{sql}: {}", output_text(&output));
        said.push_str(&output_text(&output));
    }
    // The agent did get the values: nothing masked them on the way.
    assert!(
        said.contains("987-65-4321"),
        "unmasked under this policy: {said}"
    );
    wait_until_delivered(&bed, Duration::from_secs(30));
    validate_ocsf(&sinks.file());
    let exported = [
        std::fs::read_to_string(sinks.file()).expect("file sink"),
        sinks.rsyslog.messages().join("\n"),
        sinks.hec.events().iter().map(Value::to_string).collect(),
    ];
    for (sink, text) in ["file", "rsyslog", "HEC"].iter().zip(&exported) {
        assert!(
            text.contains("request_decided"),
            "{sink} got the statements"
        );
        for value in [
            "123-45-6789",
            "987-65-4321",
            "555-12-3456",
            "Grace Hopper",
            "Ada Lovelace",
        ] {
            assert!(
                !text.contains(value),
                "{sink} received the PHI value {value}"
            );
        }
    }
}

#[test]
#[ignore = "privileged: needs root and BPF; run `sudo cargo xtask test`"]
fn receivers_stopped_under_load_get_every_event_in_order_when_they_return() {
    let mut sinks = Sinks::start();
    let bed = export_bed("receivers_stopped_under_load", &sinks, false);
    let clients: Vec<_> = (0..3)
        .map(|client| {
            let script: String = (0..1500)
                .map(|n| format!("SELECT {n} AS load_{client};\n"))
                .collect();
            let file = sinks.dir.path().join(format!("load-{client}.sql"));
            std::fs::write(&file, script).expect("script");
            let mut command = bed.agents.command("psql");
            command
                .args(["-X", "-A", "-q", "-d", &conninfo(&bed), "-f"])
                .arg(file)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            command.spawn().expect("psql")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    sinks.rsyslog.stop();
    sinks.hec.stop();
    // Both outages are noticed while events keep being recorded.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = sink_status(&bed);
        let failing = |name: &str| {
            status
                .iter()
                .any(|s| s["name"] == name && !s["error"].is_null())
        };
        if failing("rsyslog") && failing("splunk") {
            break;
        }
        assert!(Instant::now() < deadline, "outage not noticed: {status:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    sinks.rsyslog.restart();
    sinks.hec.restart();
    for client in clients {
        let output = client.wait_with_output().expect("psql ends");
        assert!(output.status.success(), "{}", output_text(&output));
    }
    wait_until_delivered(&bed, Duration::from_secs(90));
    let total = records(&bed);
    for (name, events) in [
        (
            "rsyslog",
            sinks
                .rsyslog
                .messages()
                .iter()
                .map(|m| serde_json::from_str(m).expect("one event per message"))
                .collect::<Vec<Value>>(),
        ),
        ("HEC", sinks.hec.events()),
    ] {
        let kept = first_occurrences(events);
        let sequences: Vec<u64> = kept
            .iter()
            .map(|e| e["metadata"]["sequence"].as_u64().expect("sequence"))
            .collect();
        assert!(
            sequences.windows(2).all(|w| w[0] <= w[1]),
            "{name}: events out of order"
        );
        let mut distinct = sequences.clone();
        distinct.dedup();
        assert_eq!(
            distinct,
            (0..total).collect::<Vec<_>>(),
            "{name}: every record of the log arrives"
        );
        eprintln!("{name}: {} events, {total} records, none lost", kept.len());
    }
    sinks.rsyslog.stop();
}
