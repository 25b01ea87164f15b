//! Queries: CTEs, set operations, SELECT lists over FROM items, VALUES.

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, LimitClause, NamedWindowExpr, ObjectName, OrderBy, OrderByKind,
    Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Values,
    WildcardAdditionalOptions, With,
};

use super::{
    column_name, computed, items_lineage, names, placeholder, push_unique, rename, scope::FromItem,
    seal, unknown, whole_row, Lineage, OutputItem, Scope, SqlError, Walker,
};
use crate::sql::{Store, StoredColumns};

/// Evaluations of a recursive WITH before its lineage is declared unknown.
const MAX_RECURSIVE_PASSES: usize = 8;

impl Walker {
    /// A query's output list; reads, writes and calls go to `effects`.
    pub(in crate::sql) fn query(
        &mut self,
        query: &Query,
        outer: Option<&Scope>,
    ) -> Result<Vec<OutputItem>, SqlError> {
        self.nested(|walker| {
            let mut scope = Scope::new(outer);
            if let Some(with) = &query.with {
                walker.with(with, &mut scope)?;
            }
            let outputs = walker.set_expr(&query.body, &scope, query.order_by.as_ref())?;
            walker.limits(query, &scope)?;
            Ok(outputs)
        })
    }

    fn with(&mut self, with: &With, scope: &mut Scope) -> Result<(), SqlError> {
        let ctes: Vec<(String, Vec<String>, &Query)> = with
            .cte_tables
            .iter()
            .map(|cte| {
                let columns = cte.alias.columns.iter().map(|c| names::ident(&c.name));
                (
                    names::ident(&cte.alias.name),
                    columns.collect(),
                    &*cte.query,
                )
            })
            .collect();
        for (name, _, query) in &ctes {
            push_unique(&mut self.effects.cte_names, name.clone());
            if is_dml(query) {
                self.effects.hidden_write = true;
            }
        }
        if !with.recursive {
            for (name, columns, query) in &ctes {
                let outputs = rename(self.query(query, Some(&*scope))?, columns);
                scope.set_cte(name.clone(), Some(outputs));
            }
            return Ok(());
        }
        // WITH RECURSIVE: every name is visible to every CTE. Evaluate until nothing changes.
        for (name, _, _) in &ctes {
            scope.set_cte(name.clone(), None);
        }
        for _ in 0..MAX_RECURSIVE_PASSES {
            let mut changed = false;
            for (name, columns, query) in &ctes {
                let outputs = rename(self.query(query, Some(&*scope))?, columns);
                if scope.cte_outputs(name) != Some(&outputs) {
                    changed = true;
                    scope.set_cte(name.clone(), Some(outputs));
                }
            }
            if !changed {
                return Ok(());
            }
        }
        for (name, _, _) in &ctes {
            let outputs = scope.cte_outputs(name).cloned().unwrap_or_default();
            let mut outputs: Vec<OutputItem> = outputs.into_iter().map(unknown_item).collect();
            seal(&mut outputs);
            scope.set_cte(name.clone(), Some(outputs));
        }
        Ok(())
    }

    fn set_expr(
        &mut self,
        body: &SetExpr,
        scope: &Scope,
        order: Option<&OrderBy>,
    ) -> Result<Vec<OutputItem>, SqlError> {
        self.nested(|walker| {
            let outputs = match body {
                SetExpr::Select(select) => return walker.select(select, scope, order),
                SetExpr::Query(query) => walker.query(query, Some(scope))?,
                SetExpr::SetOperation { .. } => walker.set_operation(body, scope)?,
                SetExpr::Values(values) => walker.values(values, scope)?,
                SetExpr::Insert(statement)
                | SetExpr::Update(statement)
                | SetExpr::Delete(statement)
                | SetExpr::Merge(statement) => walker.dml(statement, scope)?,
                // `TABLE t` is rewritten to `SELECT * FROM t` before parsing; the parser's own
                // form drops quoting, so it is not trusted.
                SetExpr::Table(_) => {
                    return Err(SqlError::Unreadable(
                        "a TABLE query in an unsupported position".to_owned(),
                    ))
                }
            };
            if let Some(order) = order {
                walker.order_by(order, scope)?;
            }
            Ok(outputs)
        })
    }

    /// `a UNION b UNION c ...`: the left-deep chain is walked in a loop, not recursively, so
    /// a long chain is not mistaken for deep nesting.
    fn set_operation(
        &mut self,
        body: &SetExpr,
        scope: &Scope,
    ) -> Result<Vec<OutputItem>, SqlError> {
        let mut rights = Vec::new();
        let mut leftmost = body;
        while let SetExpr::SetOperation { left, right, .. } = leftmost {
            rights.push(&**right);
            leftmost = left;
        }
        let mut outputs = self.set_expr(leftmost, scope, None)?;
        for right in rights.into_iter().rev() {
            let right = self.set_expr(right, scope, None)?;
            outputs = set_union(outputs, right);
        }
        Ok(outputs)
    }

    fn select(
        &mut self,
        select: &Select,
        outer: &Scope,
        order: Option<&OrderBy>,
    ) -> Result<Vec<OutputItem>, SqlError> {
        let mut scope = Scope::new(Some(outer));
        for from in &select.from {
            self.table_with_joins(from, &mut scope)?;
        }
        for view in &select.lateral_views {
            self.touch(&view.lateral_view, &scope)?;
        }
        let mut into_target = None;
        if let Some(into) = &select.into {
            // PostgreSQL's INTO names one new table; the parser keeps it as an expression.
            let [Expr::Identifier(_) | Expr::CompoundIdentifier(_)] = into.targets.as_slice()
            else {
                return Err(SqlError::Unreadable("an unexpected INTO target".to_owned()));
            };
            let parts = match &into.targets[0] {
                Expr::Identifier(ident) => vec![ident.clone()],
                Expr::CompoundIdentifier(idents) => idents.clone(),
                _ => Vec::new(),
            };
            into_target = Some((names::relation(&ObjectName::from(parts)), into.temporary));
        }
        if let Some((target, _)) = &into_target {
            self.effects.write(target.clone());
            self.effects.hidden_write = true;
            self.effects.select_into = true;
        }
        if let Some(Distinct::On(exprs)) = &select.distinct {
            for expr in exprs {
                self.touch(expr, &scope)?;
            }
        }
        let mut outputs = Vec::new();
        for item in &select.projection {
            self.select_item(item, &scope, &mut outputs)?;
        }
        seal(&mut outputs);
        if let Some((target, temporary)) = into_target {
            // The new table's columns are the select list's, in order.
            self.effects.stores.push(Store {
                target,
                new_table: true,
                temporary,
                columns: StoredColumns::InOrder(outputs.clone()),
            });
        }
        let clauses = [
            &select.prewhere,
            &select.selection,
            &select.having,
            &select.qualify,
        ];
        for expr in clauses.into_iter().flatten() {
            self.touch(expr, &scope)?;
        }
        if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
            for expr in exprs {
                self.touch(expr, &scope)?;
            }
        }
        for expr in select.cluster_by.iter().chain(&select.distribute_by) {
            self.touch(expr, &scope)?;
        }
        for sort in &select.sort_by {
            self.touch(&sort.expr, &scope)?;
        }
        for window in &select.named_window {
            if let NamedWindowExpr::WindowSpec(spec) = &window.1 {
                self.window_spec(spec, &scope)?;
            }
        }
        if let Some(order) = order {
            self.order_by(order, &scope)?;
        }
        Ok(outputs)
    }

    /// One item of a SELECT list or RETURNING clause.
    pub(super) fn select_item(
        &mut self,
        item: &SelectItem,
        scope: &Scope,
        out: &mut Vec<OutputItem>,
    ) -> Result<(), SqlError> {
        match item {
            SelectItem::UnnamedExpr(expr) => out.push(OutputItem::Column {
                name: column_name(expr),
                lineage: self.expr(expr, scope)?,
            }),
            // `(expr).*` as the analyzer's token rewrite spells it (analyze/forms/clauses.rs):
            // the fields of a composite value, how many the text does not say. A column a
            // statement itself names "*" is read the same way, which only masks more.
            SelectItem::ExprWithAlias { expr, alias }
                if alias.quote_style == Some('"') && alias.value == "*" =>
            {
                out.push(placeholder(self.expr(expr, scope)?));
            }
            SelectItem::ExprWithAlias { expr, alias } => out.push(OutputItem::Column {
                name: names::ident(alias),
                lineage: self.expr(expr, scope)?,
            }),
            // `expr AS (a, b)` is not PostgreSQL's: refused rather than guessed.
            SelectItem::ExprWithAliases { .. } => {
                return Err(SqlError::Unreadable(
                    "an expression with several aliases".to_owned(),
                ))
            }
            SelectItem::Wildcard(options) if has_options(options) => {
                out.push(placeholder(scope.all_rows()));
            }
            SelectItem::Wildcard(_) => out.extend(scope.expand_all()),
            SelectItem::QualifiedWildcard(kind, options) => {
                let expanded = match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        scope.find(&names::parts(name)).map(FromItem::expand)
                    }
                    SelectItemQualifiedWildcardKind::Expr(expr) => {
                        Some(vec![placeholder(self.expr(expr, scope)?)])
                    }
                };
                match expanded {
                    Some(_) if has_options(options) => {
                        out.push(placeholder(scope.all_rows()));
                    }
                    Some(items) => out.extend(items),
                    None => out.push(placeholder(Lineage::default())),
                }
            }
        }
        Ok(())
    }

    fn values(&mut self, values: &Values, scope: &Scope) -> Result<Vec<OutputItem>, SqlError> {
        let width = values
            .rows
            .iter()
            .map(|row| row.content.len())
            .max()
            .unwrap_or(0);
        let mut columns: Vec<Vec<Lineage>> = vec![Vec::new(); width];
        for row in &values.rows {
            for (column, expr) in columns.iter_mut().zip(&row.content) {
                column.push(self.expr(expr, scope)?);
            }
        }
        Ok(columns
            .into_iter()
            .enumerate()
            .map(|(index, mut parts)| OutputItem::Column {
                name: format!("column{}", index + 1),
                lineage: match (parts.len(), values.rows.len()) {
                    (1, 1) => parts.pop().unwrap_or_default(),
                    _ => computed(parts),
                },
            })
            .collect())
    }

    fn order_by(&mut self, order: &OrderBy, scope: &Scope) -> Result<(), SqlError> {
        if let OrderByKind::Expressions(exprs) = &order.kind {
            for expr in exprs {
                self.touch(&expr.expr, scope)?;
            }
        }
        Ok(())
    }

    fn limits(&mut self, query: &Query, scope: &Scope) -> Result<(), SqlError> {
        let mut exprs: Vec<&Expr> = Vec::new();
        match &query.limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                exprs.extend(limit);
                exprs.extend(offset.as_ref().map(|o| &o.value));
                exprs.extend(limit_by);
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => exprs.extend([offset, limit]),
            None => {}
        }
        exprs.extend(query.fetch.as_ref().and_then(|f| f.quantity.as_ref()));
        for expr in exprs {
            self.touch(expr, scope)?;
        }
        Ok(())
    }
}

/// Position-wise union of two sides of UNION / INTERSECT / EXCEPT. Sides that cannot be
/// lined up (a `*` on one side only) make every column unknown, carrying all of the right.
pub(super) fn set_union(left: Vec<OutputItem>, right: Vec<OutputItem>) -> Vec<OutputItem> {
    // An empty side is a recursive CTE's first pass (PostgreSQL refuses it otherwise).
    if right.is_empty() {
        return left;
    }
    if left.is_empty() {
        return right;
    }
    let aligned = left.len() == right.len()
        && left.iter().zip(&right).all(|pair| match pair {
            (OutputItem::Column { .. }, OutputItem::Column { .. }) => true,
            (OutputItem::Expand(a), OutputItem::Expand(b)) => a == b,
            _ => false,
        });
    let mut out: Vec<OutputItem> = if aligned {
        left.into_iter()
            .zip(right)
            .map(|pair| match pair {
                (
                    OutputItem::Column { name, lineage },
                    OutputItem::Column { lineage: other, .. },
                ) => OutputItem::Column {
                    name,
                    lineage: computed([lineage, other]),
                },
                (item, _) => item,
            })
            .collect()
    } else {
        let rest = items_lineage(&right);
        left.into_iter()
            .map(|item| match item {
                OutputItem::Column { name, lineage } => OutputItem::Column {
                    name,
                    lineage: unknown(computed([lineage, rest.clone()])),
                },
                OutputItem::Expand(relation) => {
                    placeholder(computed([whole_row(&relation), rest.clone()]))
                }
            })
            .collect()
    };
    seal(&mut out);
    out
}

fn unknown_item(item: OutputItem) -> OutputItem {
    match item {
        OutputItem::Column { name, lineage } => OutputItem::Column {
            name,
            lineage: unknown(lineage),
        },
        OutputItem::Expand(relation) => placeholder(whole_row(&relation)),
    }
}

fn is_dml(query: &Query) -> bool {
    matches!(
        *query.body,
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
    )
}

/// `* EXCLUDE (...)` and the like (not PostgreSQL): the column count is not known.
fn has_options(options: &WildcardAdditionalOptions) -> bool {
    options.opt_ilike.is_some()
        || options.opt_exclude.is_some()
        || options.opt_except.is_some()
        || options.opt_replace.is_some()
        || options.opt_rename.is_some()
}
