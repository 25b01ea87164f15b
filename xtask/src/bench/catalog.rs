//! The catalog's cost per statement as the database grows, and under DDL: the same
//! statements directly and through Tollgate with a policy and catalog access, in a database
//! of 10 relations and again once it holds 10,000 (tables and views). The gateway reads only
//! what statements name, so the per-statement cost must not grow with the database.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{ensure, Context};
use xtask::testbed::{
    write_catalog_credentials, AgentCgroup, GatewayConfig, GatewayProcess, PgCluster, TempDir,
};

use super::{median, verdict};

/// Statements per steady-state run.
const STATEMENTS: usize = 2000;
/// CREATE TABLE / INSERT / SELECT / DROP rounds per DDL run.
const DDL_ROUNDS: usize = 200;
const LARGE: usize = 10_000;
/// Of the large database's relations, one in this many is a view.
const VIEW_EVERY: usize = 5;
/// Through Tollgate in the large database within this of the small one, per statement.
const GROWTH_FLOOR: f64 = 1.25;

const KINDS: &str = r#""select", "insert", "update", "delete", "merge", "copy_to", "copy_from",
    "create", "alter", "drop", "truncate", "grant", "set", "show", "transaction", "prepare",
    "execute", "deallocate", "declare", "fetch", "close", "do", "call", "explain", "listen",
    "notify", "vacuum", "other""#;

/// Every statement allowed, one classified table: decisions, provenance and the catalog run.
fn policy(cgroup_glob: &str) -> String {
    format!(
        r#"version = 1

[[identities]]
id = "bench-agents"
cgroup = [{cgroup_glob:?}]

[[classify]]
table = "public.patients"
columns = {{ ssn = "ssn" }}

[[rules]]
id = "bench-everything"
effect = "allow"
identities = ["bench-agents"]
kinds = [{KINDS}]
"#
    )
}

/// Milliseconds per statement (and for the whole run) of one kind of workload.
#[derive(Default)]
struct Timings {
    direct: Vec<f64>,
    through: Vec<f64>,
}

#[derive(Default)]
struct Phase {
    first: Timings,
    steady: Timings,
    ddl: Timings,
}

pub fn measure(binary: &Path, rounds: u32) -> anyhow::Result<String> {
    let pg = PgCluster::start("127.0.0.1")?;
    let agents = AgentCgroup::create("tollgate-bench-catalog")?;
    let dir = TempDir::new("tollgate-bench-catalog")?;
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy(&format!("{}*", agents.path)))?;
    let credentials = dir.path().join("catalog.toml");
    write_catalog_credentials(&credentials)?;
    let mut config = GatewayConfig::new("benchcatalog");
    config.cgroups = vec![agents.path.clone()];
    config.targets = vec![(
        "clinic".to_owned(),
        vec![format!("127.0.0.1:{}", pg.port())],
    )];
    config.enforce_policy("clinic", &policy_file, &credentials);

    // Two databases of one cluster, measured in turn within each round (the gateway keeps a
    // catalog per database): the machine's drift weighs on both alike.
    pg.psql_direct("CREATE DATABASE large")?;
    let mut relations = [0; 2];
    for (index, (database, last)) in [("postgres", 9), ("large", LARGE)].into_iter().enumerate() {
        pg.psql_in(
            database,
            "CREATE TABLE patients (id int PRIMARY KEY, ssn text);
             INSERT INTO patients SELECT g, 'ssn-' || g FROM generate_series(1, 100) g;",
        )?;
        create_relations(&pg, database, last)?;
        relations[index] = count_relations(&pg, database)?;
    }
    let steady = steady_script();
    let ddl = ddl_script();
    let mut phases: [Phase; 2] = Default::default();
    for _ in 0..rounds {
        // A fresh gateway each round: its first statement finds the cache cold.
        let _gateway = GatewayProcess::start(binary, &config)?;
        for (phase, database) in phases.iter_mut().zip(["postgres", "large"]) {
            let psql = |direct: bool| {
                let mut command = match direct {
                    true => Command::new("psql"),
                    false => agents.command("psql"),
                };
                command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"]);
                command.arg(format!(
                    "host=127.0.0.1 port={} user=postgres dbname={database} sslmode=disable",
                    pg.port()
                ));
                command
            };
            // Through first, while the gateway's catalog is cold.
            for direct in [false, true] {
                let ms = run(psql(direct), "SELECT ssn FROM patients WHERE id = 1;\n")?;
                side(&mut phase.first, direct).push(ms);
            }
            for direct in [true, false] {
                let ms = run(psql(direct), &steady)?;
                side(&mut phase.steady, direct).push(ms / STATEMENTS as f64);
                let ms = run(psql(direct), &ddl)?;
                side(&mut phase.ddl, direct).push(ms / (DDL_ROUNDS * 4) as f64);
            }
        }
    }
    Ok(report(&mut phases, relations, rounds))
}

fn side(timings: &mut Timings, direct: bool) -> &mut Vec<f64> {
    match direct {
        true => &mut timings.direct,
        false => &mut timings.through,
    }
}

/// Tables `filler_{1..=last}`; every [`VIEW_EVERY`]th number is a view over a table instead.
fn create_relations(pg: &PgCluster, database: &str, last: usize) -> anyhow::Result<()> {
    // Batches, so no transaction holds thousands of locks.
    for start in (1..=last).step_by(500) {
        let end = (start + 499).min(last);
        pg.psql_in(
            database,
            &format!(
                "DO $$ BEGIN FOR i IN {start}..{end} LOOP
               IF i % {VIEW_EVERY} = 0 THEN
                 EXECUTE format('CREATE VIEW filler_%s AS SELECT id, v FROM filler_%s', i, i - 1);
               ELSE
                 EXECUTE format('CREATE TABLE filler_%s (id int, v text)', i);
                 EXECUTE format('INSERT INTO filler_%s VALUES (1, ''x'')', i);
               END IF;
             END LOOP; END $$"
            ),
        )?;
    }
    Ok(())
}

fn count_relations(pg: &PgCluster, database: &str) -> anyhow::Result<usize> {
    let count = pg.psql_in(
        database,
        "SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p', 'f', 'v', 'm')
           AND relnamespace = 'public'::regnamespace",
    )?;
    count.trim().parse().context("relation count")
}

/// Reads of ten relations (tables, views, the classified table) in turn.
fn steady_script() -> String {
    let mut script = String::new();
    for i in 0..STATEMENTS {
        let n = i % 10;
        let _ = match n {
            0 => writeln!(
                script,
                "SELECT ssn FROM patients WHERE id = {};",
                i % 100 + 1
            ),
            _ => writeln!(script, "SELECT id, v FROM filler_{n} WHERE id = {i};"),
        };
    }
    script
}

fn ddl_script() -> String {
    let mut script = String::new();
    for i in 0..DDL_ROUNDS {
        let _ = writeln!(
            script,
            "CREATE TABLE scratch_{i} (id int, v text);\n\
             INSERT INTO scratch_{i} VALUES (1, 'x');\n\
             SELECT * FROM scratch_{i};\n\
             DROP TABLE scratch_{i};"
        );
    }
    script
}

/// Wall milliseconds of one psql run of `script`.
fn run(mut command: Command, script: &str) -> anyhow::Result<f64> {
    use std::io::Write;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .args(["-f", "-"])
        .spawn()
        .context("psql")?;
    child
        .stdin
        .take()
        .context("psql stdin")?
        .write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

fn report(phases: &mut [Phase; 2], relations: [usize; 2], rounds: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Catalog: per-statement cost as the database grows, and under DDL\n\n\
         psql runs the same scripts directly and through Tollgate (a policy that allows \
         everything and classifies one table, with catalog access), first in a database of \
         {} relations and in one of {}, in turn ({rounds} rounds, a fresh gateway each; \
         medians). \
         *first*: one statement on a new connection right after the gateway started (its \
         catalog cold). *reads*: {STATEMENTS} reads of ten relations in turn, per statement. \
         *DDL*: {DDL_ROUNDS} rounds of CREATE TABLE / INSERT / SELECT / DROP, per statement.\n\n\
         | relations | first, direct / through | reads, direct / through | DDL, direct / through |\n\
         |---:|---:|---:|---:|",
        relations[0], relations[1]
    );
    let mut through_steady = [0.0; 2];
    for (index, phase) in phases.iter_mut().enumerate() {
        let pair = |t: &mut Timings| (median(&mut t.direct), median(&mut t.through));
        let first = pair(&mut phase.first);
        let steady = pair(&mut phase.steady);
        let ddl = pair(&mut phase.ddl);
        through_steady[index] = steady.1;
        let _ = writeln!(
            out,
            "| {} | {:.1} / {:.1} ms | {:.3} / {:.3} ms | {:.3} / {:.3} ms |",
            relations[index], first.0, first.1, steady.0, steady.1, ddl.0, ddl.1
        );
    }
    let growth = through_steady[1] / through_steady[0];
    let _ = writeln!(
        out,
        "\nFloor: reads through Tollgate with {} relations within {GROWTH_FLOOR}× of {}: \
         {growth:.3}× **{}**\n",
        relations[1],
        relations[0],
        verdict(growth <= GROWTH_FLOOR)
    );
    out
}
