//! `tollgate classified list | forget`: the classified columns an admin manages. Declared ones
//! come from the policy; derived ones from the store under `state_dir`, which a running
//! gateway re-reads within a second of a change.

use std::path::Path;

use crate::{
    config,
    policy::{
        self,
        derived::{self as store, DerivedRecord, ForgetSpec, SettingsRecord},
    },
};

/// The list as text, or as JSON (`{"declared": [...], "derived": [...]}`).
pub fn list(config_path: &Path, json: bool) -> Result<String, String> {
    let config = config::load(config_path).map_err(|e| e.to_string())?;
    let derived = store::list(&config.gateway.tls.state_dir).map_err(|e| e.to_string())?;
    let policy = match &config.gateway.policy_file {
        Some(file) => Some(policy::load(file).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut declared = Vec::new();
    for table in policy.iter().flat_map(|p| &p.classified) {
        let mut columns: Vec<_> = table.columns.iter().collect();
        columns.sort();
        for (column, category) in columns {
            declared.push(serde_json::json!({
                "targets": table.targets,
                "schema": table.schema,
                "table": table.table,
                "column": column,
                "category": &**category,
            }));
        }
    }
    if json {
        let document = serde_json::json!({
            "declared": declared,
            "derived": derived.columns,
            "settings": derived.settings,
        });
        return Ok(format!("{document:#}\n"));
    }
    let mut text = String::new();
    match &config.gateway.policy_file {
        Some(file) => text.push_str(&format!("declared by the policy ({}):\n", file.display())),
        None => text.push_str("declared: no policy_file in the configuration\n"),
    }
    for entry in &declared {
        let targets = match entry["targets"].as_array() {
            Some(targets) => targets
                .iter()
                .filter_map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            None => "every target".to_owned(),
        };
        text.push_str(&format!(
            "  {}.{}.{}  {}  ({targets})\n",
            entry["schema"].as_str().unwrap_or_default(),
            entry["table"].as_str().unwrap_or_default(),
            entry["column"].as_str().unwrap_or_default(),
            entry["category"].as_str().unwrap_or_default(),
        ));
    }
    let path = config.gateway.tls.state_dir.join(store::FILE_NAME);
    text.push_str(&format!(
        "derived by agents' statements ({}):\n",
        path.display()
    ));
    if derived.columns.is_empty() {
        text.push_str("  none\n");
    }
    for record in &derived.columns {
        text.push_str(&describe(record));
    }
    if !derived.settings.is_empty() {
        text.push_str(
            "settings code Tollgate cannot read may have filled (inherited settings are read \
             back masked; check them with psql's \\drds and `ALTER SYSTEM`, then \
             `tollgate classified forget --settings`):\n",
        );
    }
    for record in &derived.settings {
        text.push_str(&describe_settings(record));
    }
    Ok(text)
}

/// Stops masking a target's inherited settings (or every target's); returns what was removed.
pub fn forget_settings(config_path: &Path, target: Option<&str>) -> Result<String, String> {
    let config = config::load(config_path).map_err(|e| e.to_string())?;
    let removed =
        store::forget_settings(&config.gateway.tls.state_dir, target).map_err(|e| e.to_string())?;
    if removed.is_empty() {
        return Err(
            "no target's settings are marked; `tollgate classified list` shows them".to_owned(),
        );
    }
    let mut text = String::from(
        "inherited settings no longer masked (running gateways apply this within a second):\n",
    );
    for record in &removed {
        text.push_str(&describe_settings(record));
    }
    Ok(text)
}

/// Removes derived columns; returns what was removed, as text.
pub fn forget(config_path: &Path, spec: &str, target: Option<&str>) -> Result<String, String> {
    let config = config::load(config_path).map_err(|e| e.to_string())?;
    let spec = ForgetSpec::parse(spec).map_err(|e| e.to_string())?;
    let removed =
        store::forget(&config.gateway.tls.state_dir, target, &spec).map_err(|e| e.to_string())?;
    if removed.is_empty() {
        return Err("no derived column matches; `tollgate classified list` shows them".to_owned());
    }
    let mut text =
        String::from("no longer classified (running gateways apply this within a second):\n");
    for record in &removed {
        text.push_str(&describe(record));
    }
    Ok(text)
}

fn describe(record: &DerivedRecord) -> String {
    let how = match (record.unknown, record.direct) {
        (true, _) => "untraceable, masked whole",
        (false, true) => "stored as is",
        (false, false) => "computed from it",
    };
    let columns = match record.column.as_str() {
        store::ANY => "(every column)".to_owned(),
        column => column.to_owned(),
    };
    let schema = match record.schema.as_str() {
        store::ANY => "(any schema)",
        schema => schema,
    };
    format!(
        "  {}: {schema}.{}.{columns}  {} ({how})\n    from {} by {} at {} ({})\n",
        record.target,
        record.table,
        record.categories.join(", "),
        record.provenance.sources.join(", "),
        record.provenance.identity,
        record.provenance.at,
        record.provenance.statement,
    )
}

fn describe_settings(record: &SettingsRecord) -> String {
    format!(
        "  {}: every setting a session inherits\n    {} by {} at {}\n",
        record.target,
        record.provenance.statement,
        record.provenance.identity,
        record.provenance.at,
    )
}
