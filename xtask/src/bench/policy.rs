//! The policy's cost: the decision on a cached statement (criterion), pgbench -S with the
//! example policy against the same gateway with hooks only, and a 1,000,000-row SELECT of
//! four classified columns masked by Tollgate against the same SELECT direct.

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context};
use xtask::testbed::{
    example_policy, write_catalog_credentials, AgentCgroup, GatewayConfig, GatewayProcess,
    PgCluster, TempDir,
};

use super::{median, pgbench::pgbench, verdict};
use crate::{cargo, workspace_root};

const DECISION_FLOOR_NS: f64 = 5_000.0;
const DECISIONS: [&str; 2] = ["phi-read", "pgbench-select"];
const POLICY_TOLERANCE: f64 = 0.05;
const MASKED_FLOOR: f64 = 0.8;
const ROWS: u32 = 1_000_000;
const MODES: [&str; 3] = ["simple", "extended", "prepared"];
const CLIENTS: u32 = 10;

/// Four classified columns, each with a different mask, and nothing else in the way.
const MASKING_POLICY: &str = r#"
version = 1

[tokenization]
key_file = "KEY_FILE"

[[identities]]
id = "bench-agents"
cgroup = ["AGENTS"]

[[classify]]
table = "public.patients"
columns = { full_name = "name", ssn = "ssn", birth_date = "birth_date", zip = "zip" }

[masking]
name = "tokenize"
ssn = "keep_last_4"
birth_date = "year"
zip = "zip3"

[[rules]]
id = "bench-reads"
effect = "allow"
identities = ["bench-agents"]
kinds = ["select"]
"#;

const PATIENTS_SQL: &str = "
CREATE TABLE patients (id int PRIMARY KEY, full_name text, ssn text, birth_date date, zip text);
INSERT INTO patients
SELECT g, 'Patient Number ' || g,
       lpad((g % 899 + 100)::text, 3, '0') || '-' || lpad((g % 97)::text, 2, '0') || '-' ||
           lpad((g % 9973)::text, 4, '0'),
       date '1930-01-01' + (g % 29000),
       lpad((g % 99989)::text, 5, '0')
FROM generate_series(1, 1000000) g;
ANALYZE patients;";

const MASKED_SELECT: &str = "SELECT full_name, ssn, birth_date, zip FROM patients WHERE id > 0";

pub fn measure(binary: &Path, seconds: u32, rounds: u32) -> anyhow::Result<String> {
    let mut out = String::new();
    out.push_str(&decision()?);
    let pg = PgCluster::start("127.0.0.1")?;
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", "-U", "postgres", "-h"])
        .arg(pg.socket_dir())
        .args(["-p", &pg.port().to_string(), "postgres"])
        .output()?;
    ensure!(
        init.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    pg.psql_direct(PATIENTS_SQL)?;
    let agents = AgentCgroup::create("tollgate-bench-policy")?;
    let dir = TempDir::new("tollgate-bench-policy")?;
    let glob = format!("{}*", agents.path);
    let key_file = dir.path().join("tokenization.key");
    let example = dir.path().join("example.toml");
    std::fs::write(&example, example_policy(&glob, &key_file)?)?;
    let masking = dir.path().join("masking.toml");
    std::fs::write(
        &masking,
        MASKING_POLICY
            .replace("KEY_FILE", &key_file.display().to_string())
            .replace("AGENTS", &glob),
    )?;
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials)?;
    let config = |policy: Option<&Path>| {
        let mut config = GatewayConfig::new("benchpolicy");
        config.cgroups = vec![agents.path.clone()];
        config.targets = vec![(
            "clinic".to_owned(),
            vec![format!("127.0.0.1:{}", pg.port())],
        )];
        if let Some(policy) = policy {
            config.enforce_policy("clinic", policy, &credentials);
        }
        config
    };

    // pgbench -S: hooks only vs the example policy, alternating within each round.
    let mut hooks: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    let mut policed: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for _ in 0..rounds {
        for (policy, results) in [(None, &mut hooks), (Some(example.as_path()), &mut policed)] {
            let _gateway = GatewayProcess::start(binary, &config(policy))?;
            for (mode, tps) in MODES.iter().zip(results.iter_mut()) {
                tps.push(pgbench(
                    agents.command("pgbench"),
                    pg.port(),
                    mode,
                    CLIENTS,
                    seconds,
                )?);
            }
        }
    }
    let _ = writeln!(
        out,
        "## pgbench -S with the example policy, {CLIENTS} clients, {seconds} s per run, {rounds} round(s)\n\n\
         The same gateway (nftables redirect, recording hooks on) without a policy and with \
         policies/examples/clinic-policy.toml in force: every statement analysed, decided and \
         its results tracked.\n\n| mode | hooks only (tps) | example policy (tps) | ratio |\n|---|---:|---:|---:|"
    );
    let mut floors = String::new();
    for ((mode, hooks), policed) in MODES.iter().zip(&mut hooks).zip(&mut policed) {
        let mut ratios: Vec<f64> = policed
            .iter()
            .zip(hooks.iter())
            .map(|(p, h)| p / h)
            .collect();
        let ratio = median(&mut ratios);
        let _ = writeln!(
            out,
            "| {mode} | {:.0} | {:.0} | {ratio:.3}× |",
            median(hooks),
            median(policed)
        );
        let _ = writeln!(
            floors,
            "- {mode}: within {:.0}% of hooks only: {ratio:.3}× **{}**",
            POLICY_TOLERANCE * 100.0,
            verdict(ratio >= 1.0 - POLICY_TOLERANCE)
        );
    }
    let _ = writeln!(out, "\nFloors:\n\n{floors}");

    // 1,000,000 rows of four classified columns: direct vs masked by Tollgate.
    let gateway = GatewayProcess::start(binary, &config(Some(masking.as_path())))?;
    check_masked(&pg, &agents)?;
    let mut direct = Vec::new();
    let mut masked = Vec::new();
    for _ in 0..rounds.max(3) {
        direct.push(timed_select(Command::new("psql"), &pg)?);
        masked.push(timed_select(agents.command("psql"), &pg)?);
    }
    drop(gateway);
    let mut ratios: Vec<f64> = direct
        .iter()
        .zip(&masked)
        .map(|(d, m)| d.as_secs_f64() / m.as_secs_f64())
        .collect();
    let ratio = median(&mut ratios);
    let rate = |times: &[Duration]| {
        let mut rates: Vec<f64> = times
            .iter()
            .map(|t| f64::from(ROWS) / t.as_secs_f64())
            .collect();
        median(&mut rates)
    };
    let _ = writeln!(
        out,
        "## {ROWS} rows, four classified columns (tokenize, keep_last_4, year, zip3)\n\n\
         `psql -c \"{MASKED_SELECT}\"` with its output discarded, {} run(s) each, alternating.\n\n\
         | path | rows/s |\n|---|---:|\n| direct (unmasked) | {:.0} |\n| Tollgate (masked) | {:.0} |\n\n\
         Floor: ≥ {MASKED_FLOOR}× direct: {ratio:.3}× **{}**\n",
        direct.len(),
        rate(&direct),
        rate(&masked),
        verdict(ratio >= MASKED_FLOOR)
    );
    Ok(out)
}

/// The criterion benchmark of the decision, read back from its estimates.
fn decision() -> anyhow::Result<String> {
    cargo(&[
        "bench",
        "-p",
        "tollgate",
        "--bench",
        "decision",
        "--",
        "--warm-up-time",
        "1",
        "--measurement-time",
        "3",
    ])?;
    let mut out = String::from(
        "## Policy decision on a cached statement (criterion)\n\nAnalysis lookup by text, \
         provenance through a catalog snapshot, evaluation of the example policy.\n\n\
         | statement | mean | floor |\n|---|---:|---|\n",
    );
    for name in DECISIONS {
        let path = workspace_root().join(format!(
            "target/criterion/decision_{name}/new/estimates.json"
        ));
        let estimates: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?;
        let mean = estimates["mean"]["point_estimate"]
            .as_f64()
            .context("no mean in the criterion estimates")?;
        let _ = writeln!(
            out,
            "| {name} | {:.2} µs | < {:.0} µs **{}** |",
            mean / 1000.0,
            DECISION_FLOOR_NS / 1000.0,
            verdict(mean < DECISION_FLOOR_NS)
        );
    }
    out.push('\n');
    Ok(out)
}

/// The bench measures masking, so it first checks that masking happens.
fn check_masked(pg: &PgCluster, agents: &AgentCgroup) -> anyhow::Result<()> {
    let sample = "SELECT full_name, ssn, birth_date, zip FROM patients WHERE id = 1234";
    let direct = psql(Command::new("psql"), pg, sample)?;
    let through = psql(agents.command("psql"), pg, sample)?;
    ensure!(
        direct.contains("Patient Number 1234"),
        "unexpected direct row: {direct}"
    );
    if through.contains("Patient Number 1234")
        || through.contains(direct.split('|').nth(1).unwrap_or("?"))
    {
        bail!("the bench row came through unmasked: {through}");
    }
    Ok(())
}

fn timed_select(mut command: Command, pg: &PgCluster) -> anyhow::Result<Duration> {
    // The rows are read and formatted by psql, then discarded.
    command.args(["-o", "/dev/null"]);
    let started = Instant::now();
    psql(command, pg, MASKED_SELECT)?;
    Ok(started.elapsed())
}

fn psql(mut command: Command, pg: &PgCluster, sql: &str) -> anyhow::Result<String> {
    let output = command
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-p", &pg.port().to_string(), "-c", sql])
        .env("PGSSLMODE", "disable")
        .output()?;
    ensure!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
