//! INSERT, UPDATE, DELETE and MERGE, at top level or inside a WITH: their targets are
//! written, and RETURNING reads the target back, including what the statement stored in it.

use sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, FromTable, Insert, Merge, MergeAction, MergeInsertKind,
    MergeUpdateKind, OnConflictAction, OnInsert, OutputClause, SelectItem, Statement, TableFactor,
    TableObject, Update, UpdateTableFromKind,
};

use super::{
    computed, items_lineage, names,
    scope::{FromItem, FromKind, Qualifier},
    seal, stored_in_order, Lineage, OutputItem, Scope, SqlError, Walker,
};
use crate::sql::{RelationName, Store, StoredColumns};

/// What SET assignments store, merged and per column.
struct Assigned {
    all: Lineage,
    columns: StoredColumns,
}

impl Walker {
    /// The rows a data-modifying statement returns (its RETURNING list; empty without one).
    pub(in crate::sql) fn dml(
        &mut self,
        statement: &Statement,
        outer: &Scope,
    ) -> Result<Vec<OutputItem>, SqlError> {
        self.nested(|walker| match statement {
            Statement::Insert(insert) => walker.insert(insert, outer),
            Statement::Update(update) => walker.update(update, outer),
            Statement::Delete(delete) => walker.delete(delete, outer),
            Statement::Merge(merge) => walker.merge(merge, outer),
            _ => Err(SqlError::Unreadable(
                "an unexpected statement inside a query".to_owned(),
            )),
        })
    }

    fn insert(&mut self, insert: &Insert, outer: &Scope) -> Result<Vec<OutputItem>, SqlError> {
        let target = match &insert.table {
            TableObject::TableName(name) => names::relation(name),
            TableObject::TableFunction(_) | TableObject::TableQuery(_) => {
                return Err(SqlError::Unreadable(
                    "INSERT into a table function".to_owned(),
                ))
            }
        };
        self.effects.write(target.clone());
        let source = match &insert.source {
            Some(query) => self.query(query, Some(outer))?,
            None => Vec::new(),
        };
        if insert.source.is_some() {
            // `(a.f, b[1])`: fields and elements of columns a and b.
            let named = insert.columns.iter().map(column_of).collect();
            let mut stored = stored_in_order(named, source.clone());
            if let StoredColumns::Named(columns) = &mut stored {
                for ((_, lineage), name) in columns.iter_mut().zip(&insert.columns) {
                    *lineage = assigned_to(name, lineage.clone());
                }
            }
            self.stores(&target, stored);
        }
        let mut scope = Scope::new(Some(outer));
        let qualifier = match &insert.table_alias {
            Some(alias) => Qualifier::Alias(names::ident(&alias.alias)),
            None => Qualifier::Relation(target.clone()),
        };
        scope.items.push(FromItem {
            qualifier,
            kind: FromKind::Base {
                relation: target.clone(),
                renamed: Vec::new(),
                assigned: Lineage::default(),
            },
        });
        let mut stored = vec![items_lineage(&source)];
        let assigned = self.assignments(&insert.assignments, &scope)?;
        self.stores(&target, assigned.columns);
        stored.push(assigned.all);
        match &insert.on {
            Some(OnInsert::OnConflict(conflict)) => {
                // EXCLUDED is the row proposed for insertion; RETURNING cannot see it.
                let mut excluded = Scope::new(Some(&scope));
                excluded.items.push(FromItem {
                    qualifier: Qualifier::Alias("excluded".to_owned()),
                    kind: FromKind::Opaque {
                        columns: Vec::new(),
                        lineage: items_lineage(&source),
                    },
                });
                if let OnConflictAction::DoUpdate(update) = &conflict.action {
                    let assigned = self.assignments(&update.assignments, &excluded)?;
                    self.stores(&target, assigned.columns);
                    stored.push(assigned.all);
                    if let Some(selection) = &update.selection {
                        self.touch(selection, &excluded)?;
                    }
                }
            }
            Some(OnInsert::DuplicateKeyUpdate(assignments)) => {
                let assigned = self.assignments(assignments, &scope)?;
                self.stores(&target, assigned.columns);
                stored.push(assigned.all);
            }
            // `OnInsert` is non-exhaustive; the sweep still sees what any other form calls.
            Some(_) | None => {}
        }
        store(&mut scope, 0, computed(stored));
        self.returning(insert.returning.as_deref(), &scope)
    }

    fn update(&mut self, update: &Update, outer: &Scope) -> Result<Vec<OutputItem>, SqlError> {
        let mut scope = Scope::new(Some(outer));
        let target = self.target(&update.table.relation, &mut scope)?;
        for join in &update.table.joins {
            self.table_factor(&join.relation, &mut scope)?;
        }
        if let Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) =
            &update.from
        {
            for item in from {
                self.table_with_joins(item, &mut scope)?;
            }
        }
        let assigned = self.assignments(&update.assignments, &scope)?;
        self.stores(&target, assigned.columns);
        for expr in update.selection.iter().chain(&update.limit) {
            self.touch(expr, &scope)?;
        }
        store(&mut scope, 0, assigned.all);
        self.returning(update.returning.as_deref(), &scope)
    }

    fn delete(&mut self, delete: &Delete, outer: &Scope) -> Result<Vec<OutputItem>, SqlError> {
        let mut scope = Scope::new(Some(outer));
        for name in &delete.tables {
            self.effects.write(names::relation(name));
        }
        let (FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables)) = &delete.from;
        let Some((first, rest)) = tables.split_first() else {
            return Err(SqlError::Unreadable("DELETE without a table".to_owned()));
        };
        self.target(&first.relation, &mut scope)?;
        for join in &first.joins {
            self.table_factor(&join.relation, &mut scope)?;
        }
        for item in rest.iter().chain(delete.using.iter().flatten()) {
            self.table_with_joins(item, &mut scope)?;
        }
        for expr in delete.selection.iter().chain(&delete.limit) {
            self.touch(expr, &scope)?;
        }
        for order in &delete.order_by {
            self.touch(&order.expr, &scope)?;
        }
        self.returning(delete.returning.as_deref(), &scope)
    }

    fn merge(&mut self, merge: &Merge, outer: &Scope) -> Result<Vec<OutputItem>, SqlError> {
        let mut scope = Scope::new(Some(outer));
        let target = self.target(&merge.table, &mut scope)?;
        self.table_factor(&merge.source, &mut scope)?;
        self.touch(&merge.on, &scope)?;
        let mut stored = Vec::new();
        for clause in &merge.clauses {
            if let Some(predicate) = &clause.predicate {
                self.touch(predicate, &scope)?;
            }
            match &clause.action {
                MergeAction::Insert(insert) => {
                    if let MergeInsertKind::Values(values) = &insert.kind {
                        for expr in values.rows.iter().flat_map(|row| &row.content) {
                            stored.push(self.expr(expr, &scope)?);
                        }
                    } else {
                        // INSERT ROW: the source row as a whole.
                        stored.push(scope.all_rows());
                    }
                    if let Some(predicate) = &insert.insert_predicate {
                        self.touch(predicate, &scope)?;
                    }
                }
                MergeAction::Update(update) => {
                    stored.push(match &update.kind {
                        MergeUpdateKind::Set(assignments) => {
                            self.assignments(assignments, &scope)?.all
                        }
                        // `UPDATE SET *`: every column from the source row.
                        MergeUpdateKind::Wildcard => scope.all_rows(),
                    });
                    let predicates = [&update.update_predicate, &update.delete_predicate];
                    for predicate in predicates.into_iter().flatten() {
                        self.touch(predicate, &scope)?;
                    }
                }
                MergeAction::Delete { .. } | MergeAction::DoNothing { .. } => {}
            }
        }
        // Which clause stores what where is not followed: any column may hold any of it.
        let all = computed(stored);
        self.stores(&target, StoredColumns::Whole(all.clone()));
        store(&mut scope, 0, all);
        let items = match &merge.output {
            Some(
                OutputClause::Returning { select_items, .. }
                | OutputClause::Output { select_items, .. },
            ) => Some(select_items.as_slice()),
            None => None,
        };
        self.returning(items, &scope)
    }

    /// The written table of UPDATE / DELETE / MERGE, as the first item of `scope`.
    fn target(
        &mut self,
        factor: &TableFactor,
        scope: &mut Scope,
    ) -> Result<RelationName, SqlError> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        else {
            return Err(SqlError::Unreadable(
                "a data-modifying statement on something other than a table".to_owned(),
            ));
        };
        let relation = names::relation(name);
        self.effects.write(relation.clone());
        let qualifier = match alias {
            Some(alias) => Qualifier::Alias(names::ident(&alias.name)),
            None => Qualifier::Relation(relation.clone()),
        };
        let renamed = alias
            .iter()
            .flat_map(|a| a.columns.iter().map(|c| names::ident(&c.name)))
            .collect();
        scope.items.push(FromItem {
            qualifier,
            kind: FromKind::Base {
                relation: relation.clone(),
                renamed,
                assigned: Lineage::default(),
            },
        });
        Ok(relation)
    }

    /// What `SET a = ..., b = ...` stores, all together and per column.
    fn assignments(
        &mut self,
        assignments: &[Assignment],
        scope: &Scope,
    ) -> Result<Assigned, SqlError> {
        let mut parts = Vec::new();
        let mut named = Some(Vec::new());
        for assignment in assignments {
            let lineage = self.expr(&assignment.value, scope)?;
            match (&assignment.target, &mut named) {
                (AssignmentTarget::ColumnName(column), Some(named)) => {
                    named.push((column_of(column), assigned_to(column, lineage.clone())));
                }
                // `(a, b) = (SELECT ...)`: which value goes where is not followed.
                _ => named = None,
            }
            parts.push(lineage);
        }
        let all = computed(parts);
        let columns = match named {
            Some(named) => StoredColumns::Named(named),
            None => StoredColumns::Whole(all.clone()),
        };
        Ok(Assigned { all, columns })
    }

    /// Notes what a statement stores into `target` (nothing stored, nothing noted).
    fn stores(&mut self, target: &RelationName, columns: StoredColumns) {
        let empty = match &columns {
            StoredColumns::Named(named) => named.is_empty(),
            StoredColumns::InOrder(items) => items.is_empty(),
            StoredColumns::Whole(_) => false,
        };
        if !empty {
            self.effects.stores.push(Store {
                target: target.clone(),
                new_table: false,
                temporary: false,
                columns,
            });
        }
    }

    fn returning(
        &mut self,
        items: Option<&[SelectItem]>,
        scope: &Scope,
    ) -> Result<Vec<OutputItem>, SqlError> {
        let mut outputs = Vec::new();
        for item in items.unwrap_or_default() {
            self.select_item(item, scope, &mut outputs)?;
        }
        seal(&mut outputs);
        Ok(outputs)
    }
}

/// The column a SET or INSERT list entry writes: `a.f` is field f of column a (PostgreSQL
/// allows no table name there).
fn column_of(name: &sqlparser::ast::ObjectName) -> String {
    names::parts(name).into_iter().next().unwrap_or_default()
}

/// What column `name` holds after `value` is assigned to it: a field or element of it
/// (`a.f`, or `a."[]"` as the analyzer's rewrite spells `a[1]`) makes the whole column a
/// value computed from the old one and the new part, not a copy of the part.
fn assigned_to(name: &sqlparser::ast::ObjectName, value: Lineage) -> Lineage {
    match name.0.len() {
        1 => value,
        _ => computed([value]),
    }
}

/// Records in the target item what the statement stores in it.
fn store(scope: &mut Scope, index: usize, stored: Lineage) {
    if let Some(FromItem {
        kind: FromKind::Base { assigned, .. },
        ..
    }) = scope.items.get_mut(index)
    {
        *assigned = stored;
    }
}
