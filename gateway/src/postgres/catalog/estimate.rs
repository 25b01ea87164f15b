//! The planner's estimate of the rows a statement returns or touches, for an approver to
//! see before it runs. The statement never runs and none of its values leaves the gateway:
//! its literals become parameters (see `redact::parameterised_sql`), it is prepared under a
//! name of the gateway's, and `EXPLAIN` of its generic plan (every parameter NULL, planned
//! without values) gives the top node's row estimate. A connection of its own, with the
//! server's default search path (the catalog's reads use `pg_catalog` only), one question
//! at a time. A `rows_over` policy rule asks for every statement it matches, so answers are
//! kept a few seconds per statement shape: a generic plan's estimate has no values to vary
//! with, only the table statistics, which change slowly.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Mutex as SyncMutex,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::sync::Mutex;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{server::Login, CatalogAccess};
use crate::postgres::redact::highest_parameter;

/// The whole question, connection included: a slow estimate is no estimate.
const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(3);
const PREPARED: &str = "tollgate_estimate";
/// How long an answer is reused for the same statement shape.
const KEEP: Duration = Duration::from_secs(10);
/// Shapes remembered at once; past this the memory starts over.
const MAX_KEPT: usize = 1024;

#[derive(Default)]
pub struct Estimator {
    connection: Mutex<Option<Connection>>,
    recent: SyncMutex<HashMap<String, (Instant, Option<u64>)>>,
}

struct Connection {
    client: Client,
    /// No question was cut short on it: nothing of ours is left prepared, no transaction open.
    clean: bool,
}

impl Estimator {
    /// Rows the planner expects `parameterised` (a text with no literal values) to return or
    /// touch; None when it cannot be planned here (another user's search path, a parameter
    /// whose type the text does not settle, more than one statement, the server unreachable).
    pub async fn rows(
        &self,
        access: &CatalogAccess,
        server: SocketAddr,
        database: &str,
        parameterised: &str,
    ) -> Option<u64> {
        if let Some(rows) = self.kept(parameterised) {
            return rows;
        }
        let asked = self.ask(access, server, database, parameterised);
        let rows = match tokio::time::timeout(ESTIMATE_TIMEOUT, asked).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(error)) => {
                tracing::debug!(%error, "no row estimate");
                None
            }
            Err(_) => None,
        };
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= MAX_KEPT {
            recent.clear();
        }
        recent.insert(parameterised.to_owned(), (Instant::now(), rows));
        rows
    }

    /// An answer given for this text within [`KEEP`] (Some(None): it could not be planned).
    fn kept(&self, parameterised: &str) -> Option<Option<u64>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        (recent.get(parameterised))
            .filter(|(at, _)| at.elapsed() < KEEP)
            .map(|(_, rows)| *rows)
    }

    async fn ask(
        &self,
        access: &CatalogAccess,
        server: SocketAddr,
        database: &str,
        parameterised: &str,
    ) -> Result<Option<u64>, String> {
        let mut slot = self.connection.lock().await;
        let usable = slot
            .as_ref()
            .is_some_and(|c| c.clean && !c.client.is_closed());
        if !usable {
            // Read-only: whatever a text makes of the PREPARE below, it cannot write.
            let options = "-c lock_timeout=1s -c statement_timeout=2s \
                           -c plan_cache_mode=force_generic_plan -c jit=off \
                           -c default_transaction_read_only=on";
            let client = Login::of(access)
                .connect(server, database, "tollgate-estimate", options)
                .await
                .map_err(|e| e.to_string())?;
            *slot = Some(Connection {
                client,
                clean: true,
            });
        }
        let Some(connection) = slot.as_mut() else {
            return Ok(None);
        };
        // Set again only once the name is free: a question cut short (its future dropped
        // at the timeout) leaves the connection to be replaced.
        connection.clean = false;
        let answer = explain(&connection.client, parameterised).await;
        match &answer {
            Ok(_) => connection.clean = true,
            Err(_) => *slot = None,
        }
        answer
    }
}

/// Prepares the text under our name, EXPLAINs its generic plan and frees the name, in a
/// read-only transaction that is rolled back: whatever planning the text runs (a function
/// folded as a constant) changes nothing, not even a setting. The PREPARE goes through the
/// extended protocol, which refuses a text of several statements: nothing but the one
/// statement is ever prepared, and nothing runs.
async fn explain(client: &Client, parameterised: &str) -> Result<Option<u64>, String> {
    client
        .batch_execute("BEGIN READ ONLY")
        .await
        .map_err(|e| e.to_string())?;
    let explained = explain_in_transaction(client, parameterised).await;
    // A statement that could not be planned leaves nothing behind once this has run.
    client
        .batch_execute("ROLLBACK; DEALLOCATE ALL")
        .await
        .map_err(|e| e.to_string())?;
    match explained {
        Ok(rows) => Ok(rows),
        // The server's answer about this text (no such table, a type it cannot settle): no
        // estimate, and the connection stays good.
        Err(error) if error.as_db_error().is_some() => {
            tracing::debug!(%error, "no row estimate for this text");
            Ok(None)
        }
        Err(error) => Err(error.to_string()),
    }
}

async fn explain_in_transaction(
    client: &Client,
    parameterised: &str,
) -> Result<Option<u64>, tokio_postgres::Error> {
    client
        .execute(&format!("PREPARE {PREPARED} AS {parameterised}"), &[])
        .await?;
    let nulls = vec!["NULL"; highest_parameter(parameterised) as usize].join(", ");
    let arguments = match nulls.is_empty() {
        true => String::new(),
        false => format!("({nulls})"),
    };
    let messages = client
        .simple_query(&format!(
            "EXPLAIN (FORMAT JSON) EXECUTE {PREPARED}{arguments}"
        ))
        .await?;
    let plan = messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    Ok(plan.and_then(|plan| plan_rows(&plan)))
}

/// The rows a statement returns (the top node's `Plan Rows` of `EXPLAIN (FORMAT JSON)`), or
/// those it writes, whichever is more: an INSERT, UPDATE or DELETE, also one inside a CTE,
/// touches the rows of its input.
fn plan_rows(plan: &str) -> Option<u64> {
    let plan: Value = serde_json::from_str(plan).ok()?;
    let top = plan.get(0)?.get("Plan")?;
    let mut rows = node_rows(top)?;
    let mut nodes = vec![top];
    while let Some(node) = nodes.pop() {
        let children = node.get("Plans").and_then(Value::as_array);
        if node["Node Type"] == "ModifyTable" {
            let input = children.and_then(|c| c.first()).and_then(node_rows);
            rows = rows.max(input.unwrap_or(u64::MAX));
        }
        nodes.extend(children.into_iter().flatten());
    }
    Some(rows)
}

fn node_rows(node: &Value) -> Option<u64> {
    let rows = node.get("Plan Rows")?;
    rows.as_u64().or_else(|| rows.as_f64().map(|r| r as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rows_returned_or_written_are_read() {
        let plan = r#"[{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 1200, "Plans": []}}]"#;
        assert_eq!(super::plan_rows(plan), Some(1200));
        // A LIMIT returns what it lets through, whatever its scan reads.
        let limited = r#"[{"Plan": {"Node Type": "Limit", "Plan Rows": 10,
            "Plans": [{"Node Type": "Seq Scan", "Plan Rows": 5000}]}}]"#;
        assert_eq!(super::plan_rows(limited), Some(10));
        let update = r#"[{"Plan": {"Node Type": "ModifyTable", "Plan Rows": 0,
            "Plans": [{"Node Type": "Index Scan", "Plan Rows": 1}]}}]"#;
        assert_eq!(super::plan_rows(update), Some(1));
        // A write in a CTE counts, though the statement returns one row.
        let hidden = r#"[{"Plan": {"Node Type": "Result", "Plan Rows": 1, "Plans": [
            {"Node Type": "ModifyTable", "Plan Rows": 0,
             "Plans": [{"Node Type": "Seq Scan", "Plan Rows": 4000}]}]}}]"#;
        assert_eq!(super::plan_rows(hidden), Some(4000));
        assert_eq!(super::plan_rows("[]"), None);
    }
}
