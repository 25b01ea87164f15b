//! Privileged end-to-end tests of `auth = "passthrough"` with real password methods: the
//! agent's own SCRAM-SHA-256, md5 and cleartext password logins are relayed to the server.
//! Upstream TLS makes the server offer SCRAM-SHA-256-PLUS, which cannot work through a TLS
//! terminator: the gateway must take it out of the offer so clients fall back to plain SCRAM.

mod common;

use std::process::Output;

use common::{pg_bed_with, PgBed};
use xtask::testbed::TempDir;

/// A self-signed server certificate so the server offers SCRAM-SHA-256-PLUS.
fn server_certificate() -> (TempDir, String) {
    let dir = TempDir::new("tollgate-auth-tls").expect("temp dir");
    let status = std::process::Command::new("openssl")
        .args([
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
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
        ])
        .current_dir(dir.path())
        .output()
        .expect("openssl (installed by cargo xtask setup)");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    dir.chown_to("postgres").expect("chown");
    let key = dir.path().join("server.key");
    let chmod = std::process::Command::new("chmod")
        .arg("600")
        .arg(&key)
        .status();
    assert!(chmod.is_ok_and(|s| s.success()));
    let options = format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        dir.path().join("server.pem").display(),
        key.display()
    );
    (dir, options)
}

/// A TLS-capable server with password roles; `upstream_tls` as given (None: the default).
fn bed(test: &str, upstream_tls: Option<&str>) -> (PgBed, TempDir) {
    let (certs, options) = server_certificate();
    let bed = pg_bed_with(test, &options, |config| {
        if let Some(mode) = upstream_tls {
            config
                .target_lines
                .push(("clinic".into(), format!("upstream_tls = {mode:?}")));
        }
    });
    bed.pg
        .psql_direct(
            "create role scram_user login password 'scram-pass'; \
             set password_encryption = 'md5'; \
             create role md5_user login password 'md5-pass'; \
             create role pw_user login password 'clear-pass'",
        )
        .expect("roles");
    bed.pg
        .prepend_hba(
            "host all scram_user all scram-sha-256\n\
             host all md5_user all md5\n\
             host all pw_user all password",
        )
        .expect("pg_hba");
    (bed, certs)
}

fn agent_psql(bed: &PgBed, user: &str, password: &str, options: &str) -> Output {
    let conninfo = format!(
        "host=127.0.0.1 port={} user={user} dbname=postgres connect_timeout=10 {options}",
        bed.pg.port()
    );
    common::agent_psql(bed, &conninfo, Some(password), "select current_user")
}

fn text(output: &Output) -> String {
    common::output_text(output)
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn scram_md5_and_password_logins_are_relayed() {
    let (bed, _certs) = bed("scram_md5_and_password_logins_are_relayed", Some("require"));
    let cases = [
        ("scram_user", "scram-pass", "sslmode=disable"),
        (
            "scram_user",
            "scram-pass",
            "sslmode=require channel_binding=disable",
        ),
        ("md5_user", "md5-pass", "sslmode=disable"),
        ("md5_user", "md5-pass", "sslmode=require"),
        ("pw_user", "clear-pass", "sslmode=disable"),
        ("pw_user", "clear-pass", "sslmode=require"),
    ];
    for (user, password, options) in cases {
        let output = agent_psql(&bed, user, password, options);
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == user,
            "{user} ({options}) through the gateway: {}",
            text(&output)
        );
        let wrong = agent_psql(&bed, user, "wrong", options);
        assert!(
            text(&wrong).contains(&format!("authentication failed for user \"{user}\"")),
            "the server's own refusal reaches the agent: {}",
            text(&wrong)
        );
    }
    let log = bed.log_when("every session closed", |log| {
        log.matches("\"event\":\"connection.close\"").count() == 12
    });
    for secret in ["scram-pass", "md5-pass", "clear-pass"] {
        assert!(!log.contains(secret), "a password reached the log");
    }
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn channel_binding_cannot_pass_and_is_refused_clearly() {
    let (bed, _certs) = bed(
        "channel_binding_cannot_pass_and_is_refused_clearly",
        Some("require"),
    );
    // Directly over TLS the server offers SCRAM-SHA-256-PLUS and libpq uses it.
    let direct = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-d"])
        .arg(format!(
            "host=127.0.0.1 port={} user=scram_user dbname=postgres sslmode=require channel_binding=require",
            bed.pg.port()
        ))
        .args(["-c", "select 'bound'"])
        .env("PGPASSWORD", "scram-pass")
        .output()
        .expect("psql");
    assert!(
        direct.status.success(),
        "direct channel binding works: {}",
        text(&direct)
    );

    // Through the gateway -PLUS is not offered, so a client that requires it stops itself.
    let output = agent_psql(
        &bed,
        "scram_user",
        "scram-pass",
        "sslmode=require channel_binding=require",
    );
    assert!(!output.status.success(), "must fail: {}", text(&output));
    assert!(
        text(&output).contains("channel binding"),
        "{}",
        text(&output)
    );

    // libpq's default over TLS announces channel-binding support (GS2 flag `y`); the server,
    // on its own TLS connection, would call that a downgrade. The gateway says why instead.
    let output = agent_psql(&bed, "scram_user", "scram-pass", "sslmode=require");
    assert!(!output.status.success(), "must fail: {}", text(&output));
    assert!(
        text(&output).contains(
            "FATAL:  SCRAM channel binding cannot pass through Tollgate's TLS termination"
        ),
        "{}",
        text(&output)
    );
    bed.log_when("the refusal as a protocol violation", |log| {
        log.contains("\"outcome\":\"protocol_violation\"")
            && log.contains("SCRAM channel binding cannot pass")
    });
}

#[test]
#[ignore = "privileged: run by cargo xtask test as root"]
fn by_default_a_tls_agents_scram_login_to_a_local_server_works() {
    // The default (`auto`) keeps the loopback hop to the server in plain text, so the server
    // does not support channel binding there and accepts the agent's "could have bound" flag.
    let (bed, _certs) = bed(
        "by_default_a_tls_agents_scram_login_to_a_local_server_works",
        None,
    );
    let output = agent_psql(&bed, "scram_user", "scram-pass", "sslmode=require");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "scram_user",
        "{}",
        text(&output)
    );
    bed.log_when("a TLS session", |log| {
        log.contains("\"event\":\"session.startup\"") && log.contains("\"tls\":true")
    });
}
