//! The validated policy: identities, classification of columns, default masks and rules.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
};

use super::{derived::Derived, glob::Glob, identity::IdentityMatcher, mask::MaskMethod};
use crate::sql::{CopyEndpoint, StatementKind};

/// A PHI category such as `ssn` or `birth_date`.
pub type Category = Arc<str>;

#[derive(Debug)]
pub struct Policy {
    pub source: PathBuf,
    pub identities: Vec<IdentityMatcher>,
    pub classified: Vec<ClassifiedTable>,
    /// Category -> method for everyone, unless an allow rule overrides it.
    pub masking: BTreeMap<Category, MaskMethod>,
    /// Deny rules first, then approval rules, then allow rules, each in file order.
    pub rules: Vec<Rule>,
    pub token_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ClassifiedTable {
    pub schema: String,
    pub table: String,
    /// None: every PostgreSQL target.
    pub targets: Option<Vec<String>>,
    pub columns: HashMap<String, Category>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    Deny,
    RequireApproval,
    Allow,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// Shared by every decision that names it (cloned per statement).
    pub id: Arc<str>,
    pub effect: Effect,
    pub message: Option<String>,
    /// None: every identity (deny and approval rules only, or an explicit `"*"`).
    pub identities: Option<Vec<String>>,
    pub targets: Option<Vec<String>>,
    pub when: Conditions,
    /// Allow rules: category -> method in force for this rule's statements (the policy's
    /// defaults with this rule's overrides), shared by every plan the rule makes.
    pub masking: Arc<BTreeMap<Category, MaskMethod>>,
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
    /// require_approval rules: how long a statement waits for a decision (None: the
    /// gateway's `[approvals] timeout_s`).
    pub timeout: Option<std::time::Duration>,
    /// require_approval rules: the rule holds a statement only when the planner expects it
    /// to return or touch more rows than this (or cannot say); otherwise the rules after it
    /// decide.
    pub rows_over: Option<u64>,
}

/// Every condition given must hold; within a list, any entry may.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub kinds: Option<Vec<StatementKind>>,
    /// Upper-case command prefixes, matched on word boundaries ("DROP" matches "DROP TABLE").
    pub commands: Option<Vec<String>>,
    /// `schema.table` patterns over every relation read, written or altered.
    pub tables: Option<Vec<Glob>>,
    pub schemas: Option<Vec<Glob>>,
    pub functions: Option<Vec<Glob>>,
    pub copy_endpoints: Option<Vec<EndpointKind>>,
    pub role_change: Option<bool>,
    pub hidden_write: Option<bool>,
    pub explain_analyze: Option<bool>,
    pub reads_classified: Option<bool>,
    /// It stores values derived from classified columns into a relation.
    pub writes_classified: Option<bool>,
    pub reads_categories: Option<Vec<Category>>,
    /// No WHERE and no LIMIT.
    pub unbounded: Option<bool>,
    /// The rule is about statements the parser could not read (and only those).
    pub unparsed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Client,
    File,
    Program,
}

impl EndpointKind {
    pub fn of(endpoint: &CopyEndpoint) -> Self {
        match endpoint {
            CopyEndpoint::Client => Self::Client,
            CopyEndpoint::File(_) => Self::File,
            CopyEndpoint::Program(_) => Self::Program,
        }
    }
}

/// Statement kinds as the policy file names them.
pub const KIND_NAMES: &[(&str, StatementKind)] = &[
    ("select", StatementKind::Select),
    ("insert", StatementKind::Insert),
    ("update", StatementKind::Update),
    ("delete", StatementKind::Delete),
    ("merge", StatementKind::Merge),
    ("copy_to", StatementKind::CopyTo),
    ("copy_from", StatementKind::CopyFrom),
    ("create", StatementKind::Create),
    ("alter", StatementKind::Alter),
    ("drop", StatementKind::Drop),
    ("truncate", StatementKind::Truncate),
    ("grant", StatementKind::Grant),
    ("set", StatementKind::Set),
    ("show", StatementKind::Show),
    ("transaction", StatementKind::Transaction),
    ("prepare", StatementKind::Prepare),
    ("execute", StatementKind::Execute),
    ("deallocate", StatementKind::Deallocate),
    ("declare", StatementKind::Declare),
    ("fetch", StatementKind::Fetch),
    ("close", StatementKind::ClosePortal),
    ("do", StatementKind::Do),
    ("call", StatementKind::Call),
    ("explain", StatementKind::Explain),
    ("listen", StatementKind::Listen),
    ("notify", StatementKind::Notify),
    ("vacuum", StatementKind::Vacuum),
    ("other", StatementKind::Other),
];

pub fn kind_name(kind: StatementKind) -> &'static str {
    KIND_NAMES
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("other", |(name, _)| name)
}

impl Policy {
    /// Classified columns of the tables that apply to `target`, keyed by (schema, table).
    pub fn classification_for(&self, target: &str) -> TargetClassification {
        let mut tables: HashMap<(String, String), HashMap<String, Category>> = HashMap::new();
        for entry in &self.classified {
            let applies = entry
                .targets
                .as_ref()
                .is_none_or(|targets| targets.iter().any(|t| t == target));
            if applies {
                tables
                    .entry((entry.schema.clone(), entry.table.clone()))
                    .or_default()
                    .extend(entry.columns.iter().map(|(c, k)| (c.clone(), k.clone())));
            }
        }
        TargetClassification {
            tables,
            derived: Derived::default(),
        }
    }

    /// How long a statement the rule `id` holds waits, if the rule says.
    pub fn approval_timeout(&self, id: &str) -> Option<std::time::Duration> {
        self.rules.iter().find(|rule| &*rule.id == id)?.timeout
    }

    /// Rules that apply to a session of these identities on this target, in decision order.
    pub fn rules_for<'a>(
        &'a self,
        target: &'a str,
        identities: &'a [String],
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |rule| {
            rule.targets
                .as_ref()
                .is_none_or(|targets| targets.iter().any(|t| t == target))
                && rule.identities.as_ref().is_none_or(|ids| {
                    ids.iter()
                        .any(|id| id == "*" || identities.iter().any(|mine| mine == id))
                })
        })
    }

    /// Ids of the identities whose match keys these facts satisfy.
    pub fn identities_of(&self, facts: &super::IdentityFacts) -> Vec<String> {
        self.identities
            .iter()
            .filter(|identity| identity.matches(facts))
            .map(|identity| identity.id.clone())
            .collect()
    }

    /// A session is admitted when some allow rule applies to it: default deny.
    pub fn admits(&self, target: &str, identities: &[String]) -> bool {
        self.rules_for(target, identities)
            .any(|rule| rule.effect == Effect::Allow)
    }
}

/// Classified columns for one target: declared by the policy, and derived (filled by
/// agents from classified data).
#[derive(Debug, Clone, Default)]
pub struct TargetClassification {
    tables: HashMap<(String, String), HashMap<String, Category>>,
    derived: Derived,
}

impl TargetClassification {
    /// No declared classification: the target holds no classified data.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The same declarations, with these derived columns.
    pub fn with_derived(&self, derived: Derived) -> Self {
        Self {
            tables: self.tables.clone(),
            derived,
        }
    }

    pub fn derived(&self) -> &Derived {
        &self.derived
    }

    pub fn column(&self, schema: &str, table: &str, column: &str) -> Option<&Category> {
        self.tables
            .get(&(schema.to_owned(), table.to_owned()))
            .and_then(|columns| columns.get(column))
    }

    /// Every classified table with this name, in any schema (for names written without one).
    pub fn tables_named<'a>(
        &'a self,
        table: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a HashMap<String, Category>)> + 'a {
        self.tables
            .iter()
            .filter(move |((_, name), _)| name == table)
            .map(|((schema, _), columns)| (schema.as_str(), columns))
    }

    pub fn table(&self, schema: &str, table: &str) -> Option<&HashMap<String, Category>> {
        self.tables.get(&(schema.to_owned(), table.to_owned()))
    }
}
