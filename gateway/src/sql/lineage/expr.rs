//! Expressions: which sources a value is computed from.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, AccessExpr, BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, InTarget, Subscript, WindowFrameBound, WindowSpec,
    WindowType,
};

use super::{
    computed,
    functions::{self, FunctionClass},
    items_lineage, names, unknown, Lineage, Scope, SqlError, Walker,
};

impl Walker {
    pub(in crate::sql) fn expr(&mut self, expr: &Expr, scope: &Scope) -> Result<Lineage, SqlError> {
        self.nested(|walker| walker.expr_inner(expr, scope))
    }

    /// Walks an expression for what it reads and calls; its value goes nowhere.
    pub(in crate::sql) fn touch(&mut self, expr: &Expr, scope: &Scope) -> Result<(), SqlError> {
        self.expr(expr, scope).map(drop)
    }

    pub(super) fn exprs<'e>(
        &mut self,
        exprs: impl IntoIterator<Item = &'e Expr>,
        scope: &Scope,
    ) -> Result<Lineage, SqlError> {
        let mut parts = Vec::new();
        for expr in exprs {
            parts.push(self.expr(expr, scope)?);
        }
        Ok(computed(parts))
    }

    fn expr_inner(&mut self, expr: &Expr, scope: &Scope) -> Result<Lineage, SqlError> {
        Ok(match expr {
            Expr::Identifier(ident) => {
                if ident.quote_style.is_none() && functions::is_special_value(&ident.value) {
                    Lineage::default()
                } else {
                    scope.resolve(&names::ident(ident))
                }
            }
            Expr::CompoundIdentifier(parts) => {
                let parts: Vec<String> = parts.iter().map(names::ident).collect();
                match parts.split_last() {
                    Some((column, [])) => scope.resolve(column),
                    Some((column, qualifier)) => scope.resolve_qualified(qualifier, column),
                    None => unknown(Lineage::default()),
                }
            }
            Expr::Value(_) | Expr::TypedString(_) => Lineage::default(),
            // The same value, only compared differently.
            Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => self.expr(inner, scope)?,
            Expr::Named { expr: inner, .. } => self.expr(inner, scope)?,
            Expr::BinaryOp { .. } => self.binary_chain(expr, scope)?,
            Expr::UnaryOp { expr: inner, .. }
            | Expr::Cast { expr: inner, .. }
            | Expr::IsFalse(inner)
            | Expr::IsNotFalse(inner)
            | Expr::IsTrue(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::IsUnknown(inner)
            | Expr::IsNotUnknown(inner)
            | Expr::IsNormalized { expr: inner, .. }
            | Expr::IsJson { expr: inner, .. }
            | Expr::Extract { expr: inner, .. }
            | Expr::Ceil { expr: inner, .. }
            | Expr::Floor { expr: inner, .. }
            | Expr::Prefixed { value: inner, .. }
            | Expr::OuterJoin(inner)
            | Expr::Prior(inner)
            | Expr::JsonAccess { value: inner, .. } => self.exprs([&**inner], scope)?,
            Expr::Interval(interval) => self.exprs([&*interval.value], scope)?,
            Expr::IsDistinctFrom(a, b)
            | Expr::IsNotDistinctFrom(a, b)
            | Expr::Position { expr: a, r#in: b }
            | Expr::AtTimeZone {
                timestamp: a,
                time_zone: b,
            }
            | Expr::AnyOp {
                left: a, right: b, ..
            }
            | Expr::AllOp {
                left: a, right: b, ..
            }
            | Expr::In {
                expr: a,
                target: InTarget::Unnest(b),
                ..
            }
            | Expr::Like {
                expr: a,
                pattern: b,
                ..
            }
            | Expr::ILike {
                expr: a,
                pattern: b,
                ..
            }
            | Expr::SimilarTo {
                expr: a,
                pattern: b,
                ..
            }
            | Expr::RLike {
                expr: a,
                pattern: b,
                ..
            } => self.exprs([&**a, &**b], scope)?,
            Expr::Between {
                expr, low, high, ..
            } => self.exprs([&**expr, &**low, &**high], scope)?,
            Expr::In {
                expr,
                target: InTarget::List(list),
                ..
            } => self.exprs(std::iter::once(&**expr).chain(list), scope)?,
            // `x IN table` is SQLite's, not PostgreSQL's.
            Expr::In {
                target: InTarget::Table { .. },
                ..
            } => return Err(SqlError::Unreadable("IN over a table name".to_owned())),
            Expr::In {
                expr,
                target: InTarget::Subquery(subquery),
                ..
            } => {
                let value = self.expr(expr, scope)?;
                let outputs = self.query(subquery, Some(scope))?;
                computed([value, items_lineage(&outputs)])
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => {
                let outputs = self.query(subquery, Some(scope))?;
                computed([items_lineage(&outputs)])
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let more = substring_from.iter().chain(substring_for).map(|e| &**e);
                self.exprs(std::iter::once(&**expr).chain(more), scope)?
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                let what = trim_what.iter().map(|e| &**e);
                let chars = trim_characters.iter().flatten();
                self.exprs(std::iter::once(&**expr).chain(what).chain(chars), scope)?
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                let parts = [&**expr, &**overlay_what, &**overlay_from];
                let more = overlay_for.iter().map(|e| &**e);
                self.exprs(parts.into_iter().chain(more), scope)?
            }
            Expr::Convert { expr, styles, .. } => {
                self.exprs(std::iter::once(&**expr).chain(styles), scope)?
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let operand = operand.iter().map(|e| &**e);
                let whens = conditions.iter().flat_map(|c| [&c.condition, &c.result]);
                let otherwise = else_result.iter().map(|e| &**e);
                self.exprs(operand.chain(whens).chain(otherwise), scope)?
            }
            Expr::Function(function) => self.function(function, scope)?,
            Expr::Array(array) => self.exprs(&array.elem, scope)?,
            Expr::Tuple(items) | Expr::Struct { values: items, .. } => self.exprs(items, scope)?,
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                self.exprs(sets.iter().flatten(), scope)?
            }
            Expr::Dictionary(fields) => self.exprs(fields.iter().map(|f| &*f.value), scope)?,
            Expr::Map(map) => {
                let entries = map.entries.iter().flat_map(|e| [&*e.key, &*e.value]);
                self.exprs(entries, scope)?
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                let mut parts = vec![self.expr(root, scope)?];
                for access in access_chain {
                    // `.field` names a field, not a column in scope.
                    if let AccessExpr::Subscript(subscript) = access {
                        parts.push(self.subscript(subscript, scope)?);
                    }
                }
                computed(parts)
            }
            Expr::QualifiedWildcard(name, _) => match scope.find(&names::parts(name)) {
                Some(item) => item.whole_row(),
                None => unknown(Lineage::default()),
            },
            Expr::Wildcard(_) => scope.all_rows(),
            Expr::MatchAgainst { .. } | Expr::Lambda(_) | Expr::MemberOf(_) => opaque(expr, scope),
        })
    }

    /// `a + b + c ...` (and AND/OR chains): the left-deep chain is walked in a loop, so a long
    /// chain is not mistaken for deep nesting.
    fn binary_chain(&mut self, expr: &Expr, scope: &Scope) -> Result<Lineage, SqlError> {
        let mut operands = Vec::new();
        let mut custom = false;
        let mut current = expr;
        while let Expr::BinaryOp { left, op, right } = current {
            // `OPERATOR(s.op)` and unknown symbols name operators anybody may have defined.
            custom |= matches!(
                op,
                BinaryOperator::Custom(_) | BinaryOperator::PGCustomBinaryOperator(_)
            );
            operands.push(&**right);
            current = left;
        }
        operands.push(current);
        let lineage = self.exprs(operands.into_iter().rev(), scope)?;
        Ok(if custom { unknown(lineage) } else { lineage })
    }

    fn subscript(&mut self, subscript: &Subscript, scope: &Scope) -> Result<Lineage, SqlError> {
        match subscript {
            Subscript::Index { index } => self.expr(index, scope),
            Subscript::Slice {
                lower_bound,
                upper_bound,
                stride,
            } => self.exprs(lower_bound.iter().chain(upper_bound).chain(stride), scope),
        }
    }

    /// A function call: a known pure transform carries its arguments' sources, `count`
    /// carries none, anything else is unknown (it may read tables by itself).
    pub(in crate::sql) fn function(
        &mut self,
        function: &Function,
        scope: &Scope,
    ) -> Result<Lineage, SqlError> {
        let name = names::function(&function.name);
        self.effects.function(name.clone());
        let mut parts = Vec::new();
        for arguments in [&function.parameters, &function.args] {
            match arguments {
                FunctionArguments::None => {}
                FunctionArguments::Subquery(query) => {
                    let outputs = self.query(query, Some(scope))?;
                    parts.push(items_lineage(&outputs));
                }
                FunctionArguments::List(list) => {
                    parts.push(self.function_args(&list.args, scope)?);
                    for clause in &list.clauses {
                        match clause {
                            FunctionArgumentClause::OrderBy(order) => {
                                for item in order {
                                    parts.push(self.expr(&item.expr, scope)?);
                                }
                            }
                            FunctionArgumentClause::Limit(expr) => {
                                parts.push(self.expr(expr, scope)?)
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        if let Some(filter) = &function.filter {
            parts.push(self.expr(filter, scope)?);
        }
        if let Some(WindowType::WindowSpec(spec)) = &function.over {
            parts.push(self.window_spec(spec, scope)?);
        }
        for item in &function.within_group {
            parts.push(self.expr(&item.expr, scope)?);
        }
        Ok(match names::builtin_name(&name).map(functions::classify) {
            Some(FunctionClass::Count) => Lineage::default(),
            Some(FunctionClass::Pure) => computed(parts),
            Some(FunctionClass::Unknown) | None => unknown(computed(parts)),
        })
    }

    pub(super) fn function_args(
        &mut self,
        args: &[FunctionArg],
        scope: &Scope,
    ) -> Result<Lineage, SqlError> {
        let mut parts = Vec::new();
        for arg in args {
            let value = match arg {
                FunctionArg::Named { arg, .. } | FunctionArg::Unnamed(arg) => arg,
                FunctionArg::ExprNamed { name, arg, .. } => {
                    parts.push(self.expr(name, scope)?);
                    arg
                }
            };
            parts.push(match value {
                FunctionArgExpr::Expr(expr) => self.expr(expr, scope)?,
                FunctionArgExpr::QualifiedWildcard(name) => match scope.find(&names::parts(name)) {
                    Some(item) => item.whole_row(),
                    None => unknown(Lineage::default()),
                },
                FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => {
                    scope.all_rows()
                }
            });
        }
        Ok(computed(parts))
    }

    pub(super) fn window_spec(
        &mut self,
        spec: &WindowSpec,
        scope: &Scope,
    ) -> Result<Lineage, SqlError> {
        let mut exprs: Vec<&Expr> = spec.partition_by.iter().collect();
        exprs.extend(spec.order_by.iter().map(|o| &o.expr));
        if let Some(frame) = &spec.window_frame {
            for bound in std::iter::once(&frame.start_bound).chain(&frame.end_bound) {
                if let WindowFrameBound::Preceding(Some(e)) | WindowFrameBound::Following(Some(e)) =
                    bound
                {
                    exprs.push(e);
                }
            }
        }
        self.exprs(exprs, scope)
    }
}

/// An expression form this module does not model: unknown, with whatever columns it names.
fn opaque(expr: &Expr, scope: &Scope) -> Lineage {
    let mut parts = Vec::new();
    let _ = visit_expressions(expr, |inner| {
        match inner {
            Expr::Identifier(ident) => parts.push(scope.resolve(&names::ident(ident))),
            Expr::CompoundIdentifier(idents) => {
                if let Some(last) = idents.last() {
                    parts.push(scope.resolve(&names::ident(last)));
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    unknown(computed(parts))
}
