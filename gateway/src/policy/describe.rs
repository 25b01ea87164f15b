//! Human-readable output for `check-config` (what a policy says) and `explain` (what it decides
//! for one statement).

use std::fmt::Write;

use super::{
    evaluate::{evaluate, Decision, StatementView},
    identity::IdentityFacts,
    provenance::Resolver,
    rules::{kind_name, Effect, Policy},
};
use crate::sql::{self, OutputItem, StatementKind, UNNAMED};

pub fn summary(policy: &Policy) -> String {
    let mut out = String::new();
    for identity in &policy.identities {
        let _ = writeln!(out, "identity {}", identity.id);
    }
    for table in &policy.classified {
        let mut columns: Vec<String> = table
            .columns
            .iter()
            .map(|(column, category)| format!("{column}={category}"))
            .collect();
        columns.sort();
        let _ = writeln!(
            out,
            "classified {}.{}: {}",
            table.schema,
            table.table,
            columns.join(", ")
        );
    }
    for rule in &policy.rules {
        let effect = match rule.effect {
            Effect::Deny => "deny",
            Effect::RequireApproval => "require_approval",
            Effect::Allow => "allow",
        };
        let who = rule
            .identities
            .as_ref()
            .map_or_else(|| "everyone".to_owned(), |ids| ids.join(", "));
        let _ = writeln!(out, "rule {} ({effect}) for {who}", rule.id);
    }
    for warning in opaque_code_warnings(policy) {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

/// Allow rules that let an identity run code Tollgate cannot read (`DO`, `CALL`, unparsed
/// statements) where classified columns exist: what that code writes is not followed, so
/// PHI it copies into other tables is not known to be classified.
pub fn opaque_code_warnings(policy: &Policy) -> Vec<String> {
    if policy.classified.is_empty() {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    for rule in policy.rules.iter().filter(|r| r.effect == Effect::Allow) {
        let opaque: Vec<&str> = match (&rule.when.kinds, rule.when.unparsed) {
            (_, true) => vec!["unparsed statements"],
            (None, false) => vec!["do", "call"],
            (Some(kinds), false) => [StatementKind::Do, StatementKind::Call]
                .into_iter()
                .filter(|k| kinds.contains(k))
                .map(kind_name)
                .collect(),
        };
        if opaque.is_empty() {
            continue;
        }
        let who = rule.identities.as_deref().unwrap_or_default().join(", ");
        warnings.push(format!(
            "rule {} lets {who} run {}, code Tollgate cannot read: its notices and errors \
             are masked, but PHI it copies into other tables is not followed (derived \
             classification); deny them or keep such identities off classified data",
            rule.id,
            opaque.join(" and ")
        ));
    }
    warnings
}

/// The decision and mask plan for each statement of `sql`, from the policy and the parser
/// alone (the running gateway also uses the database catalog and the server's column origins).
pub fn explain(policy: &Policy, target: &str, identity: &IdentityFacts, sql: &str) -> String {
    let mut out = String::new();
    let identities = policy.identities_of(identity);
    let _ = writeln!(
        out,
        "identities: {}",
        if identities.is_empty() {
            "(none: default deny)".to_owned()
        } else {
            identities.join(", ")
        }
    );
    let classes = policy.classification_for(target);
    let protect = !classes.is_empty();
    let resolver = Resolver {
        catalog: None,
        classes: &classes,
    };
    let analysis = match sql::analyze(sql) {
        Ok(analysis) => analysis,
        Err(error) => {
            let decision = evaluate(
                policy,
                target,
                &identities,
                protect,
                StatementView::Unparsed,
            );
            let _ = writeln!(out, "statement 1: {error}");
            let _ = writeln!(out, "  decision: {}", decision_text(&decision));
            return out;
        }
    };
    for (index, facts) in analysis.statements.iter().enumerate() {
        let resolved = resolver.resolve(facts);
        let decision = evaluate(
            policy,
            target,
            &identities,
            protect,
            StatementView::Parsed {
                facts,
                resolved: &resolved,
            },
        );
        let _ = writeln!(
            out,
            "statement {}: {} ({})",
            index + 1,
            facts.command,
            kind_name(facts.kind)
        );
        let names = |list: &[sql::RelationName]| {
            list.iter()
                .map(|r| match &r.schema {
                    Some(schema) => format!("{schema}.{}", r.name),
                    None => r.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "  reads: {}", names(&facts.reads));
        if !facts.writes.is_empty() {
            let _ = writeln!(out, "  writes: {}", names(&facts.writes));
        }
        if !facts.functions.is_empty() {
            let _ = writeln!(out, "  functions: {}", facts.functions.join(", "));
        }
        let categories: Vec<&str> = resolved.categories.iter().map(|c| &**c).collect();
        let _ = writeln!(
            out,
            "  returns PHI categories: {}",
            if categories.is_empty() {
                "none".to_owned()
            } else {
                categories.join(", ")
            }
        );
        let _ = writeln!(out, "  decision: {}", decision_text(&decision));
        if matches!(facts.kind, StatementKind::Do | StatementKind::Call) {
            let _ = writeln!(
                out,
                "  note: code Tollgate cannot read: its notices and errors are masked, what it \
                 writes to tables is not followed (no derived classification); every setting \
                 reads masked afterwards, and on a target with classified data so do the \
                 settings later sessions inherit, until `tollgate classified forget --settings`"
            );
        }
        if !resolved.stored.is_empty() {
            let stored: Vec<String> = resolved
                .stored
                .iter()
                .map(|c| format!("{}.{}.{}", c.schema, c.table, c.column))
                .collect();
            let _ = writeln!(
                out,
                "  stores PHI into: {} (classified from then on)",
                stored.join(", ")
            );
        }
        if let Decision::Allow(plan) | Decision::AllowUnlessOver(plan, _) = &decision {
            match &resolved.outputs {
                Some(columns) => {
                    let names = output_names(&facts.outputs);
                    for (name, column) in names.iter().zip(columns) {
                        let method = plan
                            .method_for(column)
                            .map_or_else(|| "clear".to_owned(), |m| m.to_string());
                        let _ = writeln!(out, "  column {name}: {method}");
                    }
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  columns: decided when the server describes them (a * needs the catalog)"
                    );
                }
            }
            if let Some(rows) = plan.max_rows {
                let _ = writeln!(out, "  at most {rows} rows");
            }
        }
    }
    out
}

fn output_names(items: &[OutputItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| match item {
            OutputItem::Column { name, .. } if name == UNNAMED => {
                "(name chosen by the server)".to_owned()
            }
            OutputItem::Column { name, .. } => name.clone(),
            OutputItem::Expand(relation) => format!("{}.*", relation.name),
        })
        .collect()
}

pub fn decision_text(decision: &Decision) -> String {
    match decision {
        Decision::Allow(plan) => format!("allow (rule {})", plan.rule),
        Decision::Deny(refusal) => format!("deny (rule {}): {}", refusal.rule, refusal.message),
        Decision::RequireApproval(refusal, _) => {
            format!(
                "require approval (rule {}): {}",
                refusal.rule, refusal.message
            )
        }
        Decision::AllowUnlessOver(plan, over) => format!(
            "allow (rule {}) if the planner expects at most {} rows; otherwise require approval \
             (rule {}): {}",
            plan.rule, over.rows, over.refusal.rule, over.refusal.message
        ),
    }
}
