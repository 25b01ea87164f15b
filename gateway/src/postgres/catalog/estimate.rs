//! The planner's estimate of the rows a statement returns or touches, for an approver to
//! see before it runs. The statement never runs and none of its values leaves the gateway:
//! its literals become parameters (see `redact::parameterised_sql`), it is prepared under a
//! name of the gateway's, and `EXPLAIN` of its generic plan (every parameter NULL, planned
//! without values) gives the top node's row estimate. A connection of its own, with the
//! server's default search path (the catalog's reads use `pg_catalog` only), one question
//! at a time; holds are rare.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use tokio::sync::Mutex;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{server::Login, CatalogAccess};
use crate::postgres::redact::highest_parameter;

/// The whole question, connection included: a slow estimate is no estimate.
const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(3);
const PREPARED: &str = "tollgate_estimate";

#[derive(Default)]
pub struct Estimator {
    client: Mutex<Option<Client>>,
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
        let asked = self.ask(access, server, database, parameterised);
        match tokio::time::timeout(ESTIMATE_TIMEOUT, asked).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(error)) => {
                tracing::debug!(%error, "no row estimate");
                None
            }
            Err(_) => None,
        }
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
