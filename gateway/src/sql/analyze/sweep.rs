//! A second pass over the whole statement with the parser's visitor, which reaches every
//! expression and relation name, so nothing the lineage walk skipped is missed: relations
//! not otherwise accounted for become reads, every function call is listed, `set_config` of
//! the role is a role change, and a write nested where only a query was expected is hidden.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FromTable, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Query,
    SetExpr, Statement, TableFactor, TableObject, Visit, Visitor,
};

use super::{
    super::{
        lineage::{push_unique, Effects},
        names, RelationName,
    },
    statements::is_role_setting,
    StatementFacts,
};

pub(super) fn sweep(statement: &Statement, effects: &mut Effects, facts: &mut StatementFacts) {
    let mut sweep = Sweep::default();
    let _ = statement.visit(&mut sweep);
    for name in sweep.functions {
        effects.function(name);
    }
    for relation in sweep.writes {
        effects.write(relation);
    }
    for cte in sweep.ctes {
        push_unique(&mut effects.cte_names, cte);
    }
    for relation in sweep.relations {
        let accounted = effects.reads.contains(&relation)
            || effects.writes.contains(&relation)
            || facts.ddl_objects.contains(&relation)
            || sweep.table_functions.contains(&relation)
            || (relation.schema.is_none() && effects.cte_names.contains(&relation.name));
        if !accounted {
            effects.read(relation);
        }
    }
    facts.role_change |= sweep.role_change;
    for setting in sweep.settings_set {
        if !facts.settings_set.contains(&setting) {
            facts.settings_set.push(setting);
        }
    }
    if sweep.dml > usize::from(is_dml(statement)) {
        effects.hidden_write = true;
    }
}

#[derive(Default)]
struct Sweep {
    relations: Vec<RelationName>,
    writes: Vec<RelationName>,
    functions: Vec<String>,
    table_functions: Vec<RelationName>,
    ctes: Vec<String>,
    /// The next relation name the visitor reports is a table function's name.
    function_name_next: bool,
    role_change: bool,
    /// `set_config` targets (None: not a literal name).
    settings_set: Vec<Option<String>>,
    dml: usize,
}

impl Visitor for Sweep {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            push_unique(&mut self.ctes, names::ident(&cte.alias.name));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                self.function_name_next = true;
                push_unique(&mut self.table_functions, names::relation(name));
                push_unique(&mut self.functions, names::function(name));
            }
            TableFactor::Function { name, .. } => {
                push_unique(&mut self.functions, names::function(name));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if std::mem::take(&mut self.function_name_next) {
            return ControlFlow::Continue(());
        }
        push_unique(&mut self.relations, names::relation(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            self.call(function);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Insert(insert) => {
                self.dml += 1;
                if let TableObject::TableName(name) = &insert.table {
                    push_unique(&mut self.writes, names::relation(name));
                }
            }
            Statement::Update(update) => {
                self.dml += 1;
                self.target(&update.table.relation);
            }
            Statement::Delete(delete) => {
                self.dml += 1;
                let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) =
                    &delete.from;
                if let Some(first) = tables.first() {
                    self.target(&first.relation);
                }
            }
            Statement::Merge(merge) => {
                self.dml += 1;
                self.target(&merge.table);
            }
            Statement::Call(function) => self.call(function),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Sweep {
    fn call(&mut self, function: &Function) {
        let name = names::function(&function.name);
        if name.rsplit('.').next() == Some("set_config") {
            let setting = setting_name(function);
            self.role_change |= setting.as_deref().is_none_or(is_role_setting);
            self.settings_set.push(setting);
        }
        push_unique(&mut self.functions, name);
    }

    fn target(&mut self, factor: &TableFactor) {
        if let TableFactor::Table { name, .. } = factor {
            push_unique(&mut self.writes, names::relation(name));
        }
    }
}

/// The setting `set_config(name, value, is_local)` changes, lower-cased; None when the name
/// is not a literal (so it may be any, the role included).
fn setting_name(function: &Function) -> Option<String> {
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let named = list.args.iter().find_map(|arg| match arg {
        FunctionArg::Named { name, arg, .. } if names::ident(name) == "setting_name" => Some(arg),
        _ => None,
    });
    let first = named.or_else(|| {
        list.args.iter().find_map(|arg| match arg {
            FunctionArg::Unnamed(arg) => Some(arg),
            _ => None,
        })
    });
    match first {
        Some(FunctionArgExpr::Expr(Expr::Value(value))) => value
            .value
            .clone()
            .into_string()
            .map(|setting| setting.trim().to_ascii_lowercase()),
        _ => None,
    }
}

/// Is the statement itself a write (as opposed to one nested in it)?
fn is_dml(statement: &Statement) -> bool {
    match statement {
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_) => true,
        Statement::Query(query) => matches!(
            *query.body,
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ),
        _ => false,
    }
}
