//! Privileged end-to-end TLS tests: unmodified `psql` agents asking for `sslmode=require` and
//! `verify-full` against the gateway, and the gateway's own TLS to the server per
//! `upstream_tls`. Certificates come from a throwaway CA made with the `openssl` command.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::{appliance_cert, pg_bed, pg_bed_with, PgBed};
use xtask::testbed::TempDir;

/// A throwaway CA and the certificates it issued, readable by the postgres user.
struct TestCa {
    dir: TempDir,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(&format!("tollgate-tls-{name}")).expect("temp dir");
        let ca = Self { dir };
        ca.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Tollgate test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        ca
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf certificate for localhost, 127.0.0.1 and ::1: (cert, key).
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let ext = self.dir.path().join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("extensions file");
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
            "-extfile",
            &ext.display().to_string(),
        ]);
        // PostgreSQL wants its key owned by itself and private.
        self.dir.chown_to("postgres").expect("chown");
        let key = self.dir.path().join(key);
        let chmod = Command::new("chmod").arg("600").arg(&key).status();
        assert!(
            chmod.is_ok_and(|s| s.success()),
            "chmod 600 {}",
            key.display()
        );
        (self.dir.path().join(cert), key)
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl (installed by cargo xtask setup)");
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `psql` as an agent with a libpq connection string; returns the output.
fn agent_psql(bed: &PgBed, options: &str, sql: &str) -> Output {
    let conninfo = format!(
        "host=localhost port={} user=postgres dbname=postgres connect_timeout=10 {options}",
        bed.pg.port()
    );
    common::agent_psql(bed, &conninfo, None, sql)
}

fn text(output: &Output) -> String {
    common::output_text(output)
}

fn assert_ok(output: &Output, expected: &str, what: &str) {
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == expected,
        "{what}: expected {expected:?}, got {}: {}",
        output.status,
        text(output)
    );
}

/// Waits for `count` session records of the gateway whose `tls` field is true.
fn assert_tls_sessions(bed: &PgBed, count: usize) {
    let tls_sessions = |log: &str| {
        log.lines()
            .filter(|l| l.contains("\"event\":\"session.startup\"") && l.contains("\"tls\":true"))
            .count()
    };
    bed.log_when(&format!("{count} TLS session(s)"), |log| {
        tls_sessions(log) == count
    });
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn agents_get_tls_from_the_appliance_certificate() {
    let bed = pg_bed("agents_get_tls_from_the_appliance_certificate", |_| {});
    let output = agent_psql(&bed, "sslmode=require", "select 'over tls'");
    assert_ok(&output, "over tls", "sslmode=require through the gateway");
    assert_tls_sessions(&bed, 1);

    // The generated certificate names localhost, so a client that trusts it can verify fully.
    let appliance = appliance_cert(&bed);
    let output = agent_psql(
        &bed,
        &format!("sslmode=verify-full sslrootcert={}", appliance.display()),
        "select 'verified'",
    );
    assert_ok(
        &output,
        "verified",
        "verify-full against the appliance certificate",
    );
    assert_tls_sessions(&bed, 2);
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn verify_full_clients_check_the_configured_certificate() {
    let ca = TestCa::new("gateway");
    let (cert, key) = ca.issue("gateway");
    let bed = pg_bed(
        "verify_full_clients_check_the_configured_certificate",
        |config| {
            config
                .extra_gateway
                .push(format!("tls_cert_file = {:?}", cert.display().to_string()));
            config
                .extra_gateway
                .push(format!("tls_key_file = {:?}", key.display().to_string()));
        },
    );
    let output = agent_psql(
        &bed,
        &format!("sslmode=verify-full sslrootcert={}", ca.ca_file().display()),
        "select 'verified'",
    );
    assert_ok(
        &output,
        "verified",
        "verify-full with the CA that issued the gateway's certificate",
    );

    // A client trusting another CA refuses the gateway: the certificate really is checked.
    let other = TestCa::new("other");
    let output = agent_psql(
        &bed,
        &format!(
            "sslmode=verify-full sslrootcert={}",
            other.ca_file().display()
        ),
        "select 1",
    );
    assert!(
        !output.status.success(),
        "a foreign CA must fail: {}",
        text(&output)
    );
    assert!(
        text(&output).contains("certificate verify failed"),
        "{}",
        text(&output)
    );
}

/// Server settings for TLS with `cert` and `key`.
fn server_tls(cert: &Path, key: &Path) -> String {
    format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        cert.display(),
        key.display()
    )
}

const UPSTREAM_SSL: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn upstream_verify_full_checks_the_server_certificate() {
    let ca = TestCa::new("server");
    let (cert, key) = ca.issue("server");
    let ca_file = ca.ca_file().display().to_string();
    let bed = pg_bed_with(
        "upstream_verify_full_checks_the_server_certificate",
        &server_tls(&cert, &key),
        |config| {
            let lines = [
                "upstream_tls = \"verify-full\"".to_owned(),
                format!("upstream_ca_file = {ca_file:?}"),
                "upstream_server_name = \"localhost\"".to_owned(),
            ];
            for line in lines {
                config.target_lines.push(("clinic".into(), line));
            }
        },
    );
    // A plain-text agent; the server sees the gateway's TLS connection.
    let output = agent_psql(&bed, "sslmode=disable", UPSTREAM_SSL);
    assert_ok(&output, "t", "the gateway's upstream connection uses TLS");
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn upstream_verify_full_refuses_a_server_signed_by_another_ca() {
    let ca = TestCa::new("server");
    let (cert, key) = ca.issue("server");
    let other = TestCa::new("other");
    let other_ca = other.ca_file().display().to_string();
    let bed = pg_bed_with(
        "upstream_verify_full_refuses_a_server_signed_by_another_ca",
        &server_tls(&cert, &key),
        |config| {
            config
                .target_lines
                .push(("clinic".into(), "upstream_tls = \"verify-full\"".into()));
            config
                .target_lines
                .push(("clinic".into(), format!("upstream_ca_file = {other_ca:?}")));
        },
    );
    let output = agent_psql(&bed, "sslmode=disable", "select 1");
    assert!(!output.status.success(), "must fail: {}", text(&output));
    assert!(
        text(&output).contains("could not connect to the database server of target \"clinic\""),
        "the agent is told which target failed: {}",
        text(&output)
    );
    bed.log_when("a close record saying why", |log| {
        log.contains("\"outcome\":\"upstream_unreachable\"") && log.contains("TLS handshake")
    });
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn upstream_require_refuses_a_plain_server_and_prefer_falls_back() {
    let bed = pg_bed(
        "upstream_require_refuses_a_plain_server_and_prefer_falls_back",
        |config| {
            config
                .target_lines
                .push(("clinic".into(), "upstream_tls = \"require\"".into()));
        },
    );
    let output = agent_psql(&bed, "sslmode=disable", "select 1");
    assert!(
        !output.status.success(),
        "require must refuse: {}",
        text(&output)
    );
    bed.log_when("the refusal of TLS", |log| {
        log.contains("the server refused TLS")
    });
    drop(bed);

    // The default (auto: plain text to a loopback server) and prefer both end in plain text
    // with a server that has no TLS.
    let bed = pg_bed(
        "upstream_require_refuses_a_plain_server_and_prefer_falls_back",
        |_| {},
    );
    let output = agent_psql(&bed, "sslmode=disable", UPSTREAM_SSL);
    assert_ok(&output, "f", "prefer falls back to plain text");
}
