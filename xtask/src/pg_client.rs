//! `xtask pg-client`: a real driver (tokio-postgres) exercised against 127.0.0.1:`port`. Run
//! inside an agent cgroup it goes through Tollgate with the connection string unchanged; run
//! outside it goes direct, which tells a broken check from a gateway fault.
//!
//! Each check uses its own connections, is bounded by [`CHECK_TIMEOUT`] and prints `ok <name>`
//! when it passes. The command exits non-zero naming every check that failed.

mod copy;
mod session;
mod types;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use tokio_postgres::{error::SqlState, types::Type, Client, NoTls};

/// Every check, in the order they run when none is named.
const CHECKS: &[&str] = &[
    "prepared",
    "binary-types",
    "copy",
    "cancel",
    "transaction",
    "pid",
];

/// Checks run only when named: they need a table or a person the others do not.
const ON_DEMAND: &[&str] = &["held-update"];

const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The application_name the checks connect with (the server must see it unchanged).
const APPLICATION_NAME: &str = "tollgate-pg-client";

pub fn run(port: u16, checks: &[String]) -> anyhow::Result<()> {
    let selected: Vec<&str> = if checks.is_empty() {
        CHECKS.to_vec()
    } else {
        checks.iter().map(String::as_str).collect()
    };
    let known = |name: &&str| CHECKS.contains(name) || ON_DEMAND.contains(name);
    if let Some(unknown) = selected.iter().find(|name| !known(name)) {
        bail!(
            "unknown check `{unknown}` (known: {}, {})",
            CHECKS.join(", "),
            ON_DEMAND.join(", ")
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let mut failed = Vec::new();
    for name in selected {
        let started = Instant::now();
        let result = runtime.block_on(async {
            tokio::time::timeout(CHECK_TIMEOUT, run_check(name, port))
                .await
                .unwrap_or_else(|_| Err(anyhow!("timed out after {CHECK_TIMEOUT:?}")))
        });
        match result {
            Ok(()) => println!("ok {name} ({} ms)", started.elapsed().as_millis()),
            Err(error) => {
                eprintln!("FAILED {name}: {error:#}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("pg-client checks failed: {}", failed.join(", "));
    }
    Ok(())
}

async fn run_check(name: &str, port: u16) -> anyhow::Result<()> {
    match name {
        "prepared" => prepared(port).await,
        "binary-types" => types::binary_types(port).await,
        "copy" => copy::copy(port).await,
        "cancel" => cancel(port).await,
        "transaction" => session::transaction(port).await,
        "pid" => session::pid(port).await,
        "held-update" => held_update(port).await,
        other => bail!("no such check `{other}`"),
    }
}

/// A parameterised UPDATE of `patients` row 1 that a policy holds for approval: it must
/// come back updated once a person approves it (the test approves while this waits).
async fn held_update(port: u16) -> anyhow::Result<()> {
    let client = connect(port).await?;
    let updated = client
        .execute(
            "UPDATE patients SET zip = $1 WHERE id = $2",
            &[&"77777", &1_i32],
        )
        .await
        .context("the held UPDATE")?;
    ensure!(updated == 1, "updated {updated} rows, expected 1");
    Ok(())
}

/// A connection with its driver task; the task's result says how the connection ended.
pub struct Connection {
    pub client: Client,
    pub task: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

pub async fn connect_with_task(port: u16) -> anyhow::Result<Connection> {
    let config = format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres \
         application_name={APPLICATION_NAME} connect_timeout=5"
    );
    let (client, connection) =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(&config, NoTls))
            .await
            .map_err(|_| anyhow!("connecting to 127.0.0.1:{port} timed out"))?
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    let task = tokio::spawn(connection);
    Ok(Connection { client, task })
}

pub async fn connect(port: u16) -> anyhow::Result<Client> {
    Ok(connect_with_task(port).await?.client)
}

/// The SQLSTATE of a server error, for messages and comparisons.
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(SqlState::code)
}

/// Expects `result` to be a server error with `code`.
pub fn expect_code<T>(
    result: Result<T, tokio_postgres::Error>,
    code: &SqlState,
    what: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(_) => bail!("{what}: succeeded, expected SQLSTATE {}", code.code()),
        Err(error) if error.code() == Some(code) => Ok(()),
        Err(error) => bail!(
            "{what}: expected SQLSTATE {}, got {:?}: {error}",
            code.code(),
            sqlstate(&error)
        ),
    }
}

/// Prepare once and execute many times (named statements reused), the unnamed statement,
/// many statements in flight at once, a portal fetched in batches, and errors in between.
async fn prepared(port: u16) -> anyhow::Result<()> {
    let mut client = connect(port).await?;
    let add = client
        .prepare("SELECT $1::int4 + $2::int4, $3::text || '!'")
        .await
        .context("prepare")?;
    for i in 0..100_i32 {
        let row = client
            .query_one(&add, &[&i, &(i * 2), &format!("n{i}")])
            .await
            .with_context(|| format!("execution {i} of the prepared statement"))?;
        let (sum, label): (i32, String) = (row.get(0), row.get(1));
        ensure!(
            sum == i * 3 && label == format!("n{i}!"),
            "execution {i}: got ({sum}, {label:?})"
        );
    }

    let typed = client
        .prepare_typed("SELECT $1 * 2", &[Type::INT8])
        .await
        .context("prepare_typed")?;
    let doubled: i64 = client.query_one(&typed, &[&21_i64]).await?.get(0);
    ensure!(doubled == 42, "typed statement: got {doubled}");

    // The unnamed statement: Parse, Bind, Execute and Sync in one round trip.
    let row = client
        .query_typed_one("SELECT $1::text || 'x'", &[(&"unnamed", Type::TEXT)])
        .await
        .context("query_typed (unnamed statement)")?;
    ensure!(row.get::<_, String>(0) == "unnamedx", "unnamed statement");

    client
        .batch_execute("CREATE TEMP TABLE pc_items (id int4 PRIMARY KEY, label text NOT NULL)")
        .await?;
    let insert = client
        .prepare("INSERT INTO pc_items VALUES ($1, $2)")
        .await?;
    for i in 0..200_i32 {
        let inserted = client
            .execute(&insert, &[&i, &format!("item {i}")])
            .await
            .with_context(|| format!("insert {i}"))?;
        ensure!(inserted == 1, "insert {i} reported {inserted} rows");
    }

    // tokio-postgres pipelines: all of these are written before the first answer arrives.
    let in_flight = (0..50_i32).map(|i| {
        let add = &add;
        let label = format!("p{i}");
        let client = &client;
        async move { client.query_one(add, &[&i, &1_i32, &label]).await }
    });
    let rows = futures_util::future::try_join_all(in_flight)
        .await
        .context("50 pipelined executions")?;
    for (i, row) in (0_i32..).zip(&rows) {
        ensure!(
            row.get::<_, i32>(0) == i + 1 && row.get::<_, String>(1) == format!("p{i}!"),
            "pipelined execution {i} got another statement's answer"
        );
    }

    // Errors leave the session and its prepared statements usable.
    expect_code(
        client.prepare("SELEC 1").await,
        &SqlState::SYNTAX_ERROR,
        "preparing bad SQL",
    )?;
    expect_code(
        client.execute(&insert, &[&1_i32, &"duplicate"]).await,
        &SqlState::UNIQUE_VIOLATION,
        "inserting a duplicate key",
    )?;
    let row = client.query_one(&add, &[&2_i32, &3_i32, &"after"]).await?;
    ensure!(row.get::<_, i32>(0) == 5, "statement reuse after errors");

    // A portal fetched 64 rows at a time (Execute with a row limit, PortalSuspended).
    let transaction = client.transaction().await?;
    let select = transaction
        .prepare("SELECT id, label FROM pc_items ORDER BY id")
        .await?;
    let portal = transaction.bind(&select, &[]).await?;
    let mut seen = 0_i32;
    loop {
        let batch = transaction.query_portal(&portal, 64).await?;
        ensure!(batch.len() <= 64, "a batch of {} rows", batch.len());
        for row in &batch {
            ensure!(
                row.get::<_, i32>(0) == seen,
                "portal row {seen} out of order"
            );
            seen += 1;
        }
        if batch.len() < 64 {
            break;
        }
    }
    transaction.commit().await?;
    ensure!(seen == 200, "the portal returned {seen} rows, expected 200");
    Ok(())
}

/// `SELECT pg_sleep(10)` cancelled after ~300 ms through the driver's cancel token (a
/// CancelRequest on a new connection to the same host and port), in the extended and the
/// simple protocol; the session stays usable.
async fn cancel(port: u16) -> anyhow::Result<()> {
    let client = connect(port).await?;
    for simple in [false, true] {
        let protocol = if simple { "simple" } else { "extended" };
        let token = client.cancel_token();
        let started = Instant::now();
        let sleep = async {
            if simple {
                client.batch_execute("SELECT pg_sleep(10)").await
            } else {
                client.query("SELECT pg_sleep(10)", &[]).await.map(drop)
            }
        };
        let canceller = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            token.cancel_query(NoTls).await
        };
        let (result, sent) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(sleep, canceller)
        })
        .await
        .map_err(|_| anyhow!("{protocol}: pg_sleep(10) not cancelled within 5 s"))?;
        sent.with_context(|| format!("{protocol}: sending the cancel request"))?;
        expect_code(
            result,
            &SqlState::QUERY_CANCELED,
            &format!("{protocol}: cancelled pg_sleep(10)"),
        )?;
        let elapsed = started.elapsed();
        ensure!(
            elapsed < Duration::from_secs(3),
            "{protocol}: the cancel took {elapsed:?}"
        );
        let one: i32 = client
            .query_one("SELECT 1", &[])
            .await
            .with_context(|| format!("{protocol}: the session after the cancel"))?
            .get(0);
        ensure!(one == 1, "{protocol}: SELECT 1 after the cancel");
    }
    Ok(())
}
