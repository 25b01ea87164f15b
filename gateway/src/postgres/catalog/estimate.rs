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
    client: Mutex<Option<Client>>,
    recent: SyncMutex<HashMap<String, (Instant, Option<u64>)>>,
}

impl Estimator {
    /// Rows the planner expects `parameterised` (a text with no literal values) to return or
    /// touch; None when it cannot be planned here (another user's search path, a parameter
    /// whose type the text does not settle, the server unreachable).
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
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            let options = "-c lock_timeout=1s -c statement_timeout=2s \
                           -c plan_cache_mode=force_generic_plan -c jit=off";
            let client = Login::of(access)
                .connect(server, database, "tollgate-estimate", options)
                .await
                .map_err(|e| e.to_string())?;
            *slot = Some(client);
        }
        let Some(client) = slot.as_ref() else {
            return Ok(None);
        };
        let prepared = client
            .batch_execute(&format!("PREPARE {PREPARED} AS {parameterised}"))
            .await;
        if let Err(error) = prepared {
            return Err(error.to_string());
        }
        let nulls = vec!["NULL"; highest_parameter(parameterised) as usize].join(", ");
        let arguments = match nulls.is_empty() {
            true => String::new(),
            false => format!("({nulls})"),
        };
        let explained = client
            .simple_query(&format!(
                "EXPLAIN (FORMAT JSON) EXECUTE {PREPARED}{arguments}"
            ))
            .await;
        // Whatever the answer, the name is free for the next question.
        let _ = client
            .batch_execute(&format!("DEALLOCATE {PREPARED}"))
            .await;
        let messages = explained.map_err(|e| e.to_string())?;
        let plan = messages.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        Ok(plan.and_then(|plan| plan_rows(&plan)))
    }
}

/// The top node's `Plan Rows` of `EXPLAIN (FORMAT JSON)` output.
fn plan_rows(plan: &str) -> Option<u64> {
    let plan: Value = serde_json::from_str(plan).ok()?;
    let mut node = plan.get(0)?.get("Plan")?;
    // An INSERT, UPDATE or DELETE returns nothing itself: the rows it touches are its input's.
    if node["Node Type"] == "ModifyTable" {
        node = node.get("Plans")?.get(0)?;
    }
    let rows = node.get("Plan Rows")?;
    rows.as_u64().or_else(|| rows.as_f64().map(|r| r as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_top_node_s_rows_are_read() {
        let plan = r#"[{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 1200, "Plans": []}}]"#;
        assert_eq!(super::plan_rows(plan), Some(1200));
        let update = r#"[{"Plan": {"Node Type": "ModifyTable", "Plan Rows": 0,
            "Plans": [{"Node Type": "Index Scan", "Plan Rows": 1}]}}]"#;
        assert_eq!(super::plan_rows(update), Some(1));
        assert_eq!(super::plan_rows("[]"), None);
    }
}
