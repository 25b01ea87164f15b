//! One parsed statement to its facts.

use sqlparser::ast::{
    CloseCursor, DiscardObject, Expr, LimitClause, Query, Reset, Set, SetExpr, Statement,
    UtilityOption, Value,
};

use super::{
    super::{
        lineage::{push_unique, Effects, Scope, Walker},
        names, Lineage, OutputItem, Released,
    },
    blank, copy, ddl, kinds, sweep, SqlError, StatementFacts,
};

/// Facts of `statement`; `size` (its token count) scales the work allowed.
pub(super) fn facts(statement: &Statement, size: usize) -> Result<StatementFacts, SqlError> {
    let (kind, command) = kinds::classify(statement);
    let mut facts = blank(kind, command);
    let mut walker = Walker::new(size);
    let root = Scope::new(None);
    match statement {
        Statement::Query(query) => {
            facts.outputs = walker.query(query, None)?;
            if walker.effects.select_into {
                facts.outputs.clear();
            }
            facts.has_where = body_has_where(&query.body);
            facts.has_limit = has_limit(query);
        }
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_) => {
            facts.outputs = walker.dml(statement, &root)?;
            facts.has_where = dml_has_where(statement);
        }
        Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => {
            let copy = copy::Copy {
                source,
                to: *to,
                target,
                options,
                legacy_options,
            };
            copy.describe(&mut walker, &mut facts)?;
        }
        Statement::Explain {
            statement: inner,
            analyze,
            options,
            ..
        } => {
            let inner = self::facts(inner, size)?;
            let analyze = *analyze || options.iter().flatten().any(enables_analyze);
            return Ok(finish(explain(facts, &inner, analyze)));
        }
        Statement::Prepare {
            name,
            statement: inner,
            ..
        } => {
            let inner = self::facts(inner, size)?;
            absorb(&mut facts, &inner);
            facts.prepared = Some((names::ident(name), Box::new(inner)));
            return Ok(finish(facts));
        }
        Statement::Declare { stmts, .. } => {
            for declare in stmts {
                let (Some(query), Some(name)) = (&declare.for_query, declare.names.first()) else {
                    continue;
                };
                let inner = self::facts(&Statement::Query(query.clone()), size)?;
                absorb(&mut facts, &inner);
                facts.cursor_query = Some((names::ident(name), Box::new(inner)));
                facts.cursor_holds = declare.hold == Some(true);
            }
            return Ok(finish(facts));
        }
        Statement::Execute {
            name, parameters, ..
        } => {
            facts.executes = name.as_ref().map(|n| names::parts(n).join("."));
            for parameter in parameters {
                walker.touch(parameter, &root)?;
            }
        }
        Statement::Fetch { name, .. } => facts.cursor = Some(names::ident(name)),
        Statement::Close { cursor } => {
            facts.cursor = match cursor {
                CloseCursor::Specific { name } => Some(names::ident(name)),
                CloseCursor::All => None,
            };
            facts.released = Some(match &facts.cursor {
                Some(name) => Released::Cursor(name.clone()),
                None => Released::AllCursors,
            });
        }
        Statement::Commit { .. }
        | Statement::Rollback {
            savepoint: None, ..
        } => facts.ends_transaction = true,
        // The parser reads `ALL` as a name; only a quoted "ALL" is one.
        Statement::Deallocate { name, .. } => {
            facts.released = Some(match name.quote_style {
                None if name.value.eq_ignore_ascii_case("all") => Released::AllPrepared,
                _ => Released::Prepared(names::ident(name)),
            });
        }
        Statement::Call(function) => {
            walker.function(function, &root)?;
        }
        Statement::ShowVariable { variable } => {
            let name: Vec<String> = variable.iter().map(names::ident).collect();
            facts.shows = Some(name.join("."));
        }
        Statement::Set(set) => {
            facts.role_change |= set_changes_role(set);
            for expr in set_values(set) {
                walker.touch(expr, &root)?;
            }
        }
        Statement::Reset(reset) => {
            facts.role_change |= match &reset.reset {
                Reset::ConfigurationParameter(name) => is_role_setting(&names::function(name)),
                Reset::SessionAuthorization => true,
                Reset::ALL => false,
            };
        }
        // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT.
        Statement::Discard {
            object_type: DiscardObject::ALL,
        } => {
            facts.role_change = true;
            facts.released = Some(Released::Everything);
        }
        Statement::StartTransaction { statements, .. } => {
            for inner in statements {
                absorb(&mut facts, &self::facts(inner, size)?);
            }
        }
        _ => ddl::objects(statement, &mut walker, &mut facts)?,
    }
    sweep::sweep(statement, &mut walker.effects, &mut facts);
    collect(&mut facts, walker.effects);
    Ok(finish(facts))
}

pub(in crate::sql) fn explain_analyze_of(
    explain: &StatementFacts,
    prepared: &StatementFacts,
) -> StatementFacts {
    self::explain(explain.clone(), prepared, true)
}

fn explain(mut facts: StatementFacts, inner: &StatementFacts, analyze: bool) -> StatementFacts {
    if analyze {
        facts.explain_analyze = true;
        absorb(&mut facts, inner);
        facts.hidden_write |= !inner.writes.is_empty();
        // `EXPLAIN ANALYZE EXECUTE p` runs p: the caller must look it up.
        facts.executes.clone_from(&inner.executes);
    } else {
        // Planning runs nothing, but a guardrail on functions should still see them.
        for function in &inner.functions {
            push_unique(&mut facts.functions, function.clone());
        }
    }
    facts.outputs = vec![OutputItem::Column {
        name: "QUERY PLAN".to_owned(),
        lineage: Lineage::default(),
    }];
    facts
}

/// `EXPLAIN (ANALYZE)`, `(ANALYZE true)`, ...: anything but an explicit false runs it.
fn enables_analyze(option: &UtilityOption) -> bool {
    if !matches!(names::ident(&option.name).as_str(), "analyze" | "analyse") {
        return false;
    }
    let off = match &option.arg {
        None => return true,
        Some(Expr::Value(value)) => match &value.value {
            Value::Boolean(on) => !on,
            Value::Number(n, _) => n == "0",
            Value::SingleQuotedString(s) => is_off_word(s),
            _ => false,
        },
        Some(Expr::Identifier(word)) => is_off_word(&word.value),
        Some(_) => false,
    };
    !off
}

fn is_off_word(word: &str) -> bool {
    ["false", "off", "no", "0"]
        .iter()
        .any(|w| w.eq_ignore_ascii_case(word))
}

fn set_changes_role(set: &Set) -> bool {
    match set {
        Set::SetRole { .. } | Set::SetSessionAuthorization(_) => true,
        Set::SingleAssignment { variable, .. } => is_role_setting(&names::function(variable)),
        Set::ParenthesizedAssignments { variables, .. } => variables
            .iter()
            .any(|v| is_role_setting(&names::function(v))),
        Set::MultipleAssignments { assignments } => assignments
            .iter()
            .any(|a| is_role_setting(&names::function(&a.name))),
        _ => false,
    }
}

fn set_values(set: &Set) -> Vec<&Expr> {
    match set {
        Set::SingleAssignment { values, .. } | Set::ParenthesizedAssignments { values, .. } => {
            values.iter().collect()
        }
        Set::MultipleAssignments { assignments } => assignments.iter().map(|a| &a.value).collect(),
        Set::SetTimeZone { value, .. } => vec![value],
        _ => Vec::new(),
    }
}

pub(super) fn is_role_setting(name: &str) -> bool {
    name == "role" || name == "session_authorization"
}

fn body_has_where(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.selection.is_some(),
        SetExpr::Query(query) => body_has_where(&query.body),
        // A UNION, INTERSECT or EXCEPT is filtered when every branch is.
        SetExpr::SetOperation { left, right, .. } => body_has_where(left) && body_has_where(right),
        SetExpr::Insert(statement)
        | SetExpr::Update(statement)
        | SetExpr::Delete(statement)
        | SetExpr::Merge(statement) => dml_has_where(statement),
        _ => false,
    }
}

fn dml_has_where(statement: &Statement) -> bool {
    match statement {
        Statement::Update(update) => update.selection.is_some(),
        Statement::Delete(delete) => delete.selection.is_some(),
        _ => false,
    }
}

fn has_limit(query: &Query) -> bool {
    let limit = match &query.limit_clause {
        Some(LimitClause::LimitOffset { limit, .. }) => limit.is_some(),
        Some(LimitClause::OffsetCommaLimit { .. }) => true,
        None => false,
    };
    limit || query.fetch.is_some()
}

/// Adds what an inner statement (prepared, declared, explained) does to the outer one.
fn absorb(outer: &mut StatementFacts, inner: &StatementFacts) {
    let lists = [
        (&mut outer.reads, &inner.reads),
        (&mut outer.writes, &inner.writes),
        (&mut outer.ddl_objects, &inner.ddl_objects),
    ];
    for (to, from) in lists {
        for item in from {
            push_unique(to, item.clone());
        }
    }
    for function in &inner.functions {
        push_unique(&mut outer.functions, function.clone());
    }
    outer.hidden_write |= inner.hidden_write;
    outer.role_change |= inner.role_change;
    outer.stores.extend(inner.stores.iter().cloned());
}

fn collect(facts: &mut StatementFacts, effects: Effects) {
    for relation in effects.reads {
        push_unique(&mut facts.reads, relation);
    }
    for relation in effects.writes {
        push_unique(&mut facts.writes, relation);
    }
    for function in effects.functions {
        push_unique(&mut facts.functions, function);
    }
    facts.hidden_write |= effects.hidden_write;
    facts.stores.extend(effects.stores);
}

/// Lists in a stable order, each entry once.
fn finish(mut facts: StatementFacts) -> StatementFacts {
    for list in [&mut facts.reads, &mut facts.writes, &mut facts.ddl_objects] {
        list.sort();
        list.dedup();
    }
    facts.functions.sort();
    facts.functions.dedup();
    facts
}
