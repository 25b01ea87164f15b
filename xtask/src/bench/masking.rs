//! A 1,000,000-row SELECT of four classified columns, each with a different mask: direct,
//! through Tollgate without a policy (the relay alone), and through Tollgate masking them.
//! Runs alternate within each round, so the ratios share the machine's conditions.

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure};
use xtask::testbed::{
    write_catalog_credentials, AgentCgroup, GatewayConfig, GatewayProcess, PgCluster, TempDir,
};

use super::{median, verdict};

const FLOOR: f64 = 0.85;
const ROWS: u32 = 1_000_000;

const POLICY: &str = r#"
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

const SELECT: &str = "SELECT full_name, ssn, birth_date, zip FROM patients WHERE id > 0";

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let pg = PgCluster::start("127.0.0.1")?;
    pg.psql_direct(PATIENTS_SQL)?;
    let agents = AgentCgroup::create("tollgate-bench-masking")?;
    let dir = TempDir::new("tollgate-bench-masking")?;
    let policy_file = dir.path().join("masking.toml");
    std::fs::write(
        &policy_file,
        POLICY
            .replace(
                "KEY_FILE",
                &dir.path().join("tokenization.key").display().to_string(),
            )
            .replace("AGENTS", &format!("{}*", agents.path)),
    )?;
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials)?;
    let config = |masking: bool| {
        let mut config = GatewayConfig::new("benchmask");
        config.cgroups = vec![agents.path.clone()];
        config.targets = vec![(
            "clinic".to_owned(),
            vec![format!("127.0.0.1:{}", pg.port())],
        )];
        if masking {
            config.enforce_policy("clinic", &policy_file, &credentials);
        }
        config
    };
    let runs = rounds.max(3);
    let (mut direct, mut relayed, mut masked) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        for masking in [false, true] {
            // One gateway at a time: both would mark the same agents.
            let _gateway = GatewayProcess::start(binary, &config(masking))?;
            if masking {
                check_masked(&pg, &agents)?;
            }
            direct.push(timed_select(Command::new("psql"), &pg)?);
            let through = timed_select(agents.command("psql"), &pg)?;
            if masking {
                masked.push(through);
            } else {
                relayed.push(through);
            }
        }
    }
    // Each Tollgate run against the direct run just before it.
    let pairs = |through: &[Duration], offset: usize| {
        let mut ratios: Vec<f64> = through
            .iter()
            .enumerate()
            .map(|(i, t)| direct[2 * i + offset].as_secs_f64() / t.as_secs_f64())
            .collect();
        median(&mut ratios)
    };
    let relay_ratio = pairs(&relayed, 0);
    let masked_ratio = pairs(&masked, 1);
    let rate = |times: &[Duration]| {
        let mut rates: Vec<f64> = times
            .iter()
            .map(|t| f64::from(ROWS) / t.as_secs_f64())
            .collect();
        median(&mut rates)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## {ROWS} rows, four classified columns (tokenize, keep_last_4, year, zip3)\n\n\
         `psql -c \"{SELECT}\"` with its output discarded, {runs} run(s) of each, alternating.\n\n\
         | path | rows/s | ratio to direct |\n|---|---:|---:|\n\
         | direct (unmasked) | {:.0} | 1 |\n\
         | Tollgate, no policy (relay only) | {:.0} | {relay_ratio:.3}× |\n\
         | Tollgate, masking the four columns | {:.0} | {masked_ratio:.3}× |\n\n\
         Floor: masked ≥ {FLOOR}× direct: {masked_ratio:.3}× **{}**\n",
        rate(&direct),
        rate(&relayed),
        rate(&masked),
        verdict(masked_ratio >= FLOOR)
    );
    Ok(out)
}

/// The bench measures masking, so it first checks that masking happens.
fn check_masked(pg: &PgCluster, agents: &AgentCgroup) -> anyhow::Result<()> {
    let sample = "SELECT full_name, ssn, birth_date, zip FROM patients WHERE id = 1234";
    let direct = psql(Command::new("psql"), pg, sample)?;
    let through = psql(agents.command("psql"), pg, sample)?;
    let raw_ssn = direct.split('|').nth(1).unwrap_or("?");
    ensure!(
        direct.contains("Patient Number 1234"),
        "unexpected direct row: {direct}"
    );
    if through.contains("Patient Number 1234") || through.contains(raw_ssn) {
        bail!("the bench row came through unmasked: {through}");
    }
    Ok(())
}

fn timed_select(mut command: Command, pg: &PgCluster) -> anyhow::Result<Duration> {
    // The rows are read and formatted by psql, then discarded.
    command.args(["-o", "/dev/null"]);
    let started = Instant::now();
    psql(command, pg, SELECT)?;
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
