//! The decision for one statement: a pure function of (policy, target, identities, facts).
//! Deny rules are tried first, then approval rules, then allow rules; nothing matching is a
//! denial (default deny). Where a condition cannot be decided (a table written without its
//! schema, a relation the catalog does not know) it counts as met for deny and approval
//! rules and as unmet for allow rules: uncertainty never grants.

use std::{collections::BTreeMap, sync::Arc};

use super::{
    glob::{any_matches, Glob},
    mask::MaskMethod,
    provenance::{Resolved, ResolvedColumn},
    rules::{Category, Conditions, Effect, EndpointKind, Policy, Rule},
};
use crate::sql::{RelationName, StatementFacts, StatementKind};

pub const DEFAULT_DENY: &str = "default-deny";

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(MaskPlan),
    Deny(Refusal),
    /// Held until a person approves it; then it runs, its results masked by the plan.
    RequireApproval(Refusal, MaskPlan),
    /// Allowed, unless the planner expects more rows than a `rows_over` rule before the
    /// allowing one names (or cannot say): then held by that rule, its results masked by the
    /// allowing rule's plan either way. Settled per run by [`Decision::settle`].
    AllowUnlessOver(MaskPlan, HoldOver),
}

/// A `rows_over` approval rule that matched, waiting on the row estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldOver {
    pub rows: u64,
    pub refusal: Refusal,
    /// The statement writes (or may): its rows cannot be capped on the way back, so one
    /// the planner cannot estimate waits.
    pub writes: bool,
}

impl HoldOver {
    /// What two rows_over rules (or statements of one text) ask together: the smaller limit,
    /// and a wait whatever the estimate if either writes.
    pub fn stricter(seen: Option<HoldOver>, next: HoldOver) -> HoldOver {
        let Some(seen) = seen else {
            return next;
        };
        let writes = seen.writes || next.writes;
        let limit = if next.rows < seen.rows { next } else { seen };
        HoldOver { writes, ..limit }
    }
}

impl Decision {
    /// The plan its results are masked by if it runs (at once, or once approved).
    pub fn plan(&self) -> Option<&MaskPlan> {
        match self {
            Self::Allow(plan) | Self::RequireApproval(_, plan) => Some(plan),
            // Whichever way it settles, it may run.
            Self::AllowUnlessOver(plan, _) => Some(plan),
            Self::Deny(_) => None,
        }
    }

    /// The decision for a statement the planner expects `estimate` rows of. More than the
    /// limit waits. Within it, or not estimated, a read runs, and the session lets no more
    /// than the limit of its rows through (what a generic plan misses is cut, not granted).
    /// A write always waits: the rows it touches cannot be cut, and a generic plan can be
    /// led to underestimate them.
    pub fn settle(self, estimate: Option<u64>) -> Decision {
        match self {
            Self::AllowUnlessOver(plan, over) => match estimate {
                _ if over.writes => Self::RequireApproval(over.refusal, plan),
                Some(rows) if rows > over.rows => Self::RequireApproval(over.refusal, plan),
                _ => Self::Allow(plan),
            },
            settled => settled,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Arc<str>,
    pub message: String,
}

/// How an allowed statement's results are masked for this session.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskPlan {
    pub rule: Arc<str>,
    /// The target has classified columns: results are checked at all.
    pub protect: bool,
    pub methods: Arc<BTreeMap<Category, MaskMethod>>,
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// The statement as policy sees it.
#[derive(Debug, Clone, Copy)]
pub enum StatementView<'a> {
    Parsed {
        facts: &'a StatementFacts,
        resolved: &'a Resolved,
    },
    /// The parser could not read it.
    Unparsed,
}

pub fn evaluate(
    policy: &Policy,
    target: &str,
    identities: &[String],
    protect: bool,
    statement: StatementView<'_>,
) -> Decision {
    // A `rows_over` rule that matched: it holds the statement if the estimate says so, and
    // the rules after it decide otherwise.
    let mut hold_over: Option<HoldOver> = None;
    for rule in policy.rules_for(target, identities) {
        if !rule_matches(rule, statement) {
            continue;
        }
        let plan = || MaskPlan {
            rule: rule.id.clone(),
            protect,
            methods: rule.masking.clone(),
            max_rows: rule.max_rows,
            max_bytes: rule.max_bytes,
        };
        let approval = || refusal(rule, "requires a person's approval");
        return match (rule.effect, rule.rows_over) {
            // The strictest limit of every rows_over rule that matches holds.
            (Effect::RequireApproval, Some(rows)) => {
                let over = HoldOver {
                    rows,
                    refusal: approval(),
                    writes: writes(statement),
                };
                hold_over = Some(HoldOver::stricter(hold_over.take(), over));
                continue;
            }
            (Effect::Deny, _) => Decision::Deny(refusal(rule, "denied by policy")),
            (Effect::RequireApproval, None) => Decision::RequireApproval(approval(), plan()),
            (Effect::Allow, _) => match hold_over {
                Some(over) => Decision::AllowUnlessOver(plan(), over),
                None => Decision::Allow(plan()),
            },
        };
    }
    let message = match statement {
        StatementView::Unparsed => {
            "the statement could not be parsed, and no rule allows unparsed statements for this \
             identity"
        }
        StatementView::Parsed { .. } => "no rule allows this statement for this identity",
    };
    Decision::Deny(Refusal {
        rule: DEFAULT_DENY.into(),
        message: message.into(),
    })
}

/// Whether a statement writes, or may: anything but a plain read (a query, SHOW, EXPLAIN
/// without ANALYZE, COPY TO, a cursor's DECLARE or FETCH) that calls no function with side
/// effects; an unparsed statement may do anything.
fn writes(statement: StatementView<'_>) -> bool {
    let StatementView::Parsed { facts, resolved } = statement else {
        return true;
    };
    let plain_read = match facts.kind {
        StatementKind::Select
        | StatementKind::Show
        | StatementKind::CopyTo
        | StatementKind::Declare
        | StatementKind::Fetch
        | StatementKind::ClosePortal => true,
        StatementKind::Explain => !facts.explain_analyze,
        _ => false,
    };
    !plain_read
        || !facts.writes.is_empty()
        || facts.hidden_write
        || !resolved.stored.is_empty()
        || facts.functions.iter().any(|f| has_side_effects(f))
}

/// A built-in that changes something beyond its result. (A function of the user's is
/// decided as opaque code is, by the rest of the policy: counted as a write here, every read
/// that calls one would wait.)
fn has_side_effects(function: &str) -> bool {
    // `set_config` and `pg_notify` are not here: Tollgate follows what they carry (tainted
    // settings, masked payloads) as it follows any read.
    const CHANGING: [&str; 10] = [
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_logical_emit_message",
        "lowrite",
    ];
    let name = function.strip_prefix("pg_catalog.").unwrap_or(function);
    CHANGING.contains(&name)
        || [
            "lo_",
            "pg_advisory",
            "pg_try_advisory",
            "pg_stat_reset",
            "dblink",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

fn refusal(rule: &Rule, default: &str) -> Refusal {
    Refusal {
        rule: rule.id.clone(),
        message: rule.message.clone().unwrap_or_else(|| default.into()),
    }
}

impl MaskPlan {
    /// The method for one result column, or None to pass it unchanged.
    pub fn method_for(&self, column: &ResolvedColumn) -> Option<MaskMethod> {
        if !self.protect {
            return None;
        }
        if column.unknown {
            return Some(MaskMethod::Redact);
        }
        let methods: Vec<MaskMethod> = column
            .categories
            .iter()
            .map(|c| self.methods.get(c).copied().unwrap_or(MaskMethod::Redact))
            .filter(|m| *m != MaskMethod::Clear)
            .collect();
        let first = *methods.first()?;
        if methods.len() == 1 && column.direct {
            return Some(first);
        }
        // A computed value or a mix of categories: only methods that do not depend on the
        // value's layout stay meaningful; a partial reveal (last digits, year, ZIP prefix) of
        // a computed value could reveal another part of the source.
        let same = methods.iter().all(|m| *m == first);
        Some(match first {
            MaskMethod::Tokenize | MaskMethod::Null | MaskMethod::Redact if same => first,
            _ if methods.contains(&MaskMethod::Null) => MaskMethod::Null,
            _ => MaskMethod::Redact,
        })
    }
}

/// Yes, no, or cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Yes,
    No,
    Unknown,
}

impl Truth {
    fn from_bool(value: bool) -> Self {
        if value {
            Self::Yes
        } else {
            Self::No
        }
    }

    fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::No, _) | (_, Truth::No) => Truth::No,
            (Truth::Yes, Truth::Yes) => Truth::Yes,
            _ => Truth::Unknown,
        }
    }
}

fn rule_matches(rule: &Rule, statement: StatementView<'_>) -> bool {
    let truth = match statement {
        StatementView::Unparsed => Truth::from_bool(rule.when.unparsed),
        StatementView::Parsed { .. } if rule.when.unparsed => Truth::No,
        StatementView::Parsed { facts, resolved } => conditions(&rule.when, facts, resolved),
    };
    match truth {
        Truth::Yes => true,
        Truth::No => false,
        Truth::Unknown => rule.effect != Effect::Allow,
    }
}

fn conditions(when: &Conditions, facts: &StatementFacts, resolved: &Resolved) -> Truth {
    let mut truth = Truth::Yes;
    let mut check = |condition: Option<Truth>| {
        if let Some(t) = condition {
            truth = truth.and(t);
        }
    };
    check(
        when.kinds
            .as_ref()
            .map(|k| Truth::from_bool(k.contains(&facts.kind))),
    );
    check(when.commands.as_ref().map(|commands| {
        Truth::from_bool(commands.iter().any(|c| command_matches(&facts.command, c)))
    }));
    let relations = || {
        facts
            .reads
            .iter()
            .chain(&facts.writes)
            .chain(&facts.ddl_objects)
    };
    check(
        when.tables
            .as_ref()
            .map(|globs| any_relation(relations(), |r| table_truth(globs, r))),
    );
    check(when.schemas.as_ref().map(|globs| {
        any_relation(relations(), |r| match &r.schema {
            Some(schema) => Truth::from_bool(any_matches(globs, schema)),
            None => Truth::Unknown,
        })
    }));
    check(when.functions.as_ref().map(|globs| {
        Truth::from_bool(facts.functions.iter().any(|f| {
            any_matches(globs, f)
                || f.rsplit_once('.')
                    .is_some_and(|(_, n)| any_matches(globs, n))
        }))
    }));
    check(when.copy_endpoints.as_ref().map(|endpoints| {
        Truth::from_bool(
            facts
                .copy
                .as_ref()
                .is_some_and(|c| endpoints.contains(&EndpointKind::of(&c.endpoint))),
        )
    }));
    check(
        when.role_change
            .map(|v| Truth::from_bool(facts.role_change == v)),
    );
    check(
        when.hidden_write
            .map(|v| Truth::from_bool(facts.hidden_write == v)),
    );
    check(
        when.explain_analyze
            .map(|v| Truth::from_bool(facts.explain_analyze == v)),
    );
    check(when.reads_classified.map(|v| {
        if resolved.classified || !resolved.categories.is_empty() {
            Truth::from_bool(v)
        } else if resolved.unknown {
            Truth::Unknown
        } else {
            Truth::from_bool(!v)
        }
    }));
    check(
        when.writes_classified
            .map(|v| Truth::from_bool(resolved.stored.is_empty() != v)),
    );
    check(when.reads_categories.as_ref().map(|wanted| {
        if resolved.categories.iter().any(|c| wanted.contains(c)) {
            Truth::Yes
        } else if resolved.unknown {
            Truth::Unknown
        } else {
            Truth::No
        }
    }));
    check(
        when.unbounded
            .map(|v| Truth::from_bool((!facts.has_where && !facts.has_limit) == v)),
    );
    truth
}

fn any_relation<'a>(
    relations: impl Iterator<Item = &'a RelationName>,
    test: impl Fn(&RelationName) -> Truth,
) -> Truth {
    let mut result = Truth::No;
    for relation in relations {
        match test(relation) {
            Truth::Yes => return Truth::Yes,
            Truth::Unknown => result = Truth::Unknown,
            Truth::No => {}
        }
    }
    result
}

/// `schema.table` patterns; a name written without a schema might be in any schema.
fn table_truth(globs: &[Glob], relation: &RelationName) -> Truth {
    match &relation.schema {
        Some(schema) => {
            Truth::from_bool(any_matches(globs, &format!("{schema}.{}", relation.name)))
        }
        None => {
            let mut result = Truth::No;
            for glob in globs {
                match glob.table_part(&relation.name) {
                    Some(true) => return Truth::Yes,
                    Some(false) => result = Truth::Unknown,
                    None => {}
                }
            }
            result
        }
    }
}

/// "DROP" matches "DROP TABLE" but not "DROPX".
fn command_matches(command: &str, prefix: &str) -> bool {
    command.len() >= prefix.len()
        && command[..prefix.len()].eq_ignore_ascii_case(prefix)
        && command[prefix.len()..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ')
}
