//! The policy file as written (TOML). Spanned items carry their position so validation errors
//! can name the line. The meaning of each key is documented in `policies/README.md`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub version: Spanned<u32>,
    pub tokenization: Option<Spanned<RawTokenization>>,
    #[serde(default)]
    pub identities: Vec<Spanned<RawIdentity>>,
    #[serde(default)]
    pub classify: Vec<Spanned<RawClassify>>,
    /// Category -> mask method, for every identity unless a rule overrides it.
    #[serde(default)]
    pub masking: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenization {
    pub key_file: Option<Spanned<String>>,
}

/// Every key given must match (and); within a list, any entry may match (or).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub id: Spanned<String>,
    pub cgroup: Option<Vec<String>>,
    pub uid: Option<Vec<u32>>,
    pub exe: Option<Vec<String>>,
    pub comm: Option<Vec<String>>,
    pub token_subject: Option<Vec<String>>,
    pub token_group: Option<Vec<String>>,
    pub remote: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassify {
    /// `schema.table`.
    pub table: Spanned<String>,
    /// Targets this applies to; every PostgreSQL target when absent.
    pub targets: Option<Vec<String>>,
    /// Column -> category.
    pub columns: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: Spanned<String>,
    pub effect: Spanned<String>,
    /// What the client is told on a denial (the rule id is always named).
    pub message: Option<String>,
    pub identities: Option<Vec<String>>,
    pub targets: Option<Vec<String>>,
    // Conditions: all given must hold.
    pub kinds: Option<Vec<String>>,
    pub commands: Option<Vec<String>>,
    pub tables: Option<Vec<String>>,
    pub schemas: Option<Vec<String>>,
    pub functions: Option<Vec<String>>,
    pub copy_endpoints: Option<Vec<String>>,
    pub role_change: Option<bool>,
    pub hidden_write: Option<bool>,
    pub explain_analyze: Option<bool>,
    pub reads_classified: Option<bool>,
    pub writes_classified: Option<bool>,
    pub reads_categories: Option<Vec<String>>,
    pub unbounded: Option<bool>,
    pub unparsed: Option<bool>,
    // Allow and require_approval rules.
    pub masking: Option<BTreeMap<String, String>>,
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
    /// require_approval rules: how long a statement waits (default `[approvals] timeout_s`).
    pub timeout_s: Option<u64>,
    /// require_approval rules: hold only statements the planner expects to return or touch
    /// more rows than this.
    pub rows_over: Option<u64>,
}
