//! Checks about whole sessions: transaction visibility between two connections, and a
//! backend terminated under the driver.

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use tokio_postgres::{error::SqlState, Client};

use super::{connect, connect_with_task, expect_code, sqlstate, APPLICATION_NAME};

/// Commit and rollback (also of a savepoint and of a failed transaction) are visible from a
/// second connection exactly as expected.
pub async fn transaction(port: u16) -> anyhow::Result<()> {
    let mut writer = connect(port).await?;
    let reader = connect(port).await?;
    let table = format!("pc_tx_{}", std::process::id());
    writer
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int4 PRIMARY KEY)"
        ))
        .await
        .context("creating the table")?;
    let result = transaction_steps(&mut writer, &reader, &table).await;
    let dropped = writer
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await;
    result?;
    dropped.context("dropping the table")?;
    Ok(())
}

async fn transaction_steps(
    writer: &mut Client,
    reader: &Client,
    table: &str,
) -> anyhow::Result<()> {
    let insert = format!("INSERT INTO {table} VALUES ($1)");

    let transaction = writer.transaction().await?;
    transaction.execute(&insert, &[&1_i32]).await?;
    ensure!(
        ids(reader, table).await?.is_empty(),
        "an uncommitted row is visible to another session"
    );
    transaction.commit().await.context("commit")?;
    ensure!(
        ids(reader, table).await? == [1],
        "a committed row is not visible"
    );

    let transaction = writer.transaction().await?;
    transaction.execute(&insert, &[&2_i32]).await?;
    transaction.rollback().await.context("rollback")?;
    ensure!(
        ids(reader, table).await? == [1],
        "a rolled-back row is visible"
    );

    let mut transaction = writer.transaction().await?;
    transaction.execute(&insert, &[&3_i32]).await?;
    let savepoint = transaction.savepoint("pc_inner").await?;
    savepoint.execute(&insert, &[&4_i32]).await?;
    savepoint
        .rollback()
        .await
        .context("rollback to savepoint")?;
    transaction.commit().await?;
    ensure!(
        ids(reader, table).await? == [1, 3],
        "rollback to a savepoint: expected rows [1, 3]"
    );

    // A failed transaction refuses everything until it is rolled back.
    let transaction = writer.transaction().await?;
    expect_code(
        transaction.execute(&insert, &[&1_i32]).await,
        &SqlState::UNIQUE_VIOLATION,
        "a duplicate key",
    )?;
    expect_code(
        transaction.execute("SELECT 1", &[]).await,
        &SqlState::IN_FAILED_SQL_TRANSACTION,
        "a statement in a failed transaction",
    )?;
    transaction.rollback().await?;

    // A transaction dropped without commit is rolled back by the driver.
    {
        let transaction = writer.transaction().await?;
        transaction.execute(&insert, &[&5_i32]).await?;
    }
    let one: i32 = writer.query_one("SELECT 1", &[]).await?.get(0);
    ensure!(one == 1, "the session after a dropped transaction");
    ensure!(
        ids(reader, table).await? == [1, 3],
        "a dropped transaction's row is visible"
    );
    Ok(())
}

async fn ids(client: &Client, table: &str) -> anyhow::Result<Vec<i32>> {
    let rows = client
        .query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// `pg_terminate_backend(pg_backend_pid())` ends the session with 57P01 (the driver sees the
/// connection closed), the backend disappears, and a new connection gets a new backend. The
/// server also sees the client's application_name unchanged.
pub async fn pid(port: u16) -> anyhow::Result<()> {
    let victim = connect_with_task(port).await?;
    let observer = connect(port).await?;
    let pid: i32 = victim
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let application: Option<String> = observer
        .query_opt(
            "SELECT application_name FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await?
        .ok_or_else(|| anyhow!("backend {pid} is not in pg_stat_activity"))?
        .get(0);
    ensure!(
        application.as_deref() == Some(APPLICATION_NAME),
        "the server sees application_name {application:?}"
    );

    let terminated = victim
        .client
        .query_one("SELECT pg_terminate_backend(pg_backend_pid())", &[])
        .await;
    match terminated {
        Ok(_) => bail!("pg_terminate_backend(pg_backend_pid()) returned a row"),
        Err(error) if error.code() == Some(&SqlState::ADMIN_SHUTDOWN) || error.is_closed() => {}
        Err(error) => bail!(
            "terminating the backend: expected SQLSTATE 57P01 or a closed connection, got {:?}: {error}",
            sqlstate(&error)
        ),
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), victim.task)
        .await
        .map_err(|_| anyhow!("the driver did not see the connection end within 5 s"))?
        .context("the connection task")?;
    if let Err(error) = ended {
        // How the connection ended: the server's FATAL, or the socket closing after it.
        ensure!(
            error
                .code()
                .is_none_or(|code| code == &SqlState::ADMIN_SHUTDOWN),
            "the connection ended with {error}"
        );
    }
    ensure!(victim.client.is_closed(), "the client is not closed");
    ensure!(
        victim.client.simple_query("SELECT 1").await.is_err(),
        "a terminated session still answers"
    );

    let mut gone = false;
    for _ in 0..50 {
        let rows = observer
            .query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await?;
        if rows.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(gone, "backend {pid} still exists 5 s after termination");

    let fresh = connect(port).await.context("a new connection")?;
    let new_pid: i32 = fresh
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    ensure!(new_pid != pid, "the new connection reuses backend {pid}");
    Ok(())
}
