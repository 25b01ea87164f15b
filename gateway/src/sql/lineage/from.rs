//! FROM items: tables, CTE references, subqueries, table functions and joins.

use sqlparser::ast::{
    FunctionArg, JoinConstraint, JoinOperator, ObjectName, TableAlias, TableFactor, TableWithJoins,
    XmlTableColumnOption,
};

use super::{
    computed, functions, names, placeholder, rename,
    scope::{FromItem, FromKind, Qualifier},
    seal, unknown, Lineage, OutputItem, Scope, SqlError, Walker,
};

impl Walker {
    pub(super) fn table_with_joins(
        &mut self,
        from: &TableWithJoins,
        scope: &mut Scope,
    ) -> Result<(), SqlError> {
        self.table_factor(&from.relation, scope)?;
        for join in &from.joins {
            self.table_factor(&join.relation, scope)?;
            let (constraint, condition) = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c)
                | JoinOperator::RightAnti(c)
                | JoinOperator::StraightJoin(c) => (Some(c), None),
                JoinOperator::AsOf {
                    match_condition,
                    constraint,
                } => (Some(constraint), Some(match_condition)),
                JoinOperator::CrossApply | JoinOperator::OuterApply => (None, None),
                JoinOperator::ArrayJoin
                | JoinOperator::LeftArrayJoin
                | JoinOperator::InnerArrayJoin => {
                    return Err(SqlError::Unreadable("an ARRAY JOIN".to_owned()))
                }
            };
            match constraint {
                Some(JoinConstraint::On(expr)) => self.touch(expr, scope)?,
                // `USING (a) AS j`: `j.a` resolves to nothing, so its lineage is unknown.
                Some(
                    JoinConstraint::Using(_)
                    | JoinConstraint::UsingAlias(..)
                    | JoinConstraint::Natural,
                ) => scope.merged = true,
                Some(JoinConstraint::None) | None => {}
            }
            if let Some(expr) = condition {
                self.touch(expr, scope)?;
            }
        }
        Ok(())
    }

    /// Adds a FROM item (or, for a join in parentheses, several) to `scope`.
    pub(super) fn table_factor(
        &mut self,
        factor: &TableFactor,
        scope: &mut Scope,
    ) -> Result<(), SqlError> {
        self.nested(|walker| walker.table_factor_inner(factor, scope))
    }

    fn table_factor_inner(
        &mut self,
        factor: &TableFactor,
        scope: &mut Scope,
    ) -> Result<(), SqlError> {
        let (alias, kind) = match factor {
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                with_ordinality,
                ..
            } => {
                return self.table_function(
                    name,
                    &args.args,
                    alias.as_ref(),
                    *with_ordinality,
                    scope,
                )
            }
            TableFactor::Table { name, alias, .. } => {
                let parts = names::parts(name);
                if let [single] = parts.as_slice() {
                    if let Some(binding) = scope.cte(single) {
                        let kind = match binding {
                            Some(outputs) => FromKind::Derived {
                                outputs: rename(outputs.clone(), &aliases(alias.as_ref())),
                            },
                            None => FromKind::Pending,
                        };
                        let qualifier = qualifier(alias.as_ref())
                            .unwrap_or_else(|| Qualifier::Alias(single.clone()));
                        scope.items.push(FromItem { qualifier, kind });
                        return Ok(());
                    }
                }
                let relation = names::relation_from_parts(parts);
                self.effects.read(relation.clone());
                let qualifier = qualifier(alias.as_ref())
                    .unwrap_or_else(|| Qualifier::Relation(relation.clone()));
                let kind = FromKind::Base {
                    relation,
                    renamed: aliases(alias.as_ref()),
                    assigned: Lineage::default(),
                };
                scope.items.push(FromItem { qualifier, kind });
                return Ok(());
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let outputs = self.query(subquery, Some(&*scope))?;
                let outputs = rename(outputs, &aliases(alias.as_ref()));
                (alias, FromKind::Derived { outputs })
            }
            TableFactor::Function {
                name, args, alias, ..
            } => return self.table_function(name, args, alias.as_ref(), false, scope),
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_ordinality,
                ..
            } => {
                self.effects.function("unnest".to_owned());
                let mut parts = Vec::new();
                for expr in array_exprs {
                    parts.push(self.expr(expr, scope)?);
                }
                let scalar = alias
                    .as_ref()
                    .map_or("unnest".to_owned(), |a| names::ident(&a.name));
                let mut columns = functions::Shape::PerArgument.columns(&scalar, array_exprs.len());
                if *with_ordinality {
                    columns.push("ordinality".to_owned());
                }
                let columns = renamed(columns, aliases(alias.as_ref()));
                let lineage = computed(parts);
                (alias, FromKind::Opaque { columns, lineage })
            }
            TableFactor::TableFunction { expr, alias }
            | TableFactor::JsonTable {
                json_expr: expr,
                alias,
                ..
            }
            | TableFactor::OpenJsonTable {
                json_expr: expr,
                alias,
                ..
            } => {
                let lineage = unknown(self.expr(expr, scope)?);
                let columns = aliases(alias.as_ref());
                (alias, FromKind::Opaque { columns, lineage })
            }
            TableFactor::XmlTable {
                namespaces,
                row_expression,
                passing,
                columns,
                alias,
            } => {
                // The document, the paths and the defaults all shape the values.
                let mut exprs = vec![row_expression];
                exprs.extend(namespaces.iter().map(|n| &n.uri));
                exprs.extend(passing.arguments.iter().map(|a| &a.expr));
                for column in columns {
                    if let XmlTableColumnOption::NamedInfo { path, default, .. } = &column.option {
                        exprs.extend(path.iter().chain(default));
                    }
                }
                let lineage = unknown(self.exprs(exprs, scope)?);
                let names = columns.iter().map(|c| names::ident(&c.name)).collect();
                let columns = renamed(names, aliases(alias.as_ref()));
                // Without an alias PostgreSQL names the item `xmltable`.
                let qualifier = qualifier(alias.as_ref())
                    .unwrap_or_else(|| Qualifier::Alias("xmltable".to_owned()));
                let kind = FromKind::Opaque { columns, lineage };
                scope.items.push(FromItem { qualifier, kind });
                return Ok(());
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let start = scope.items.len();
                self.table_with_joins(table_with_joins, scope)?;
                let Some(alias) = alias else {
                    return Ok(());
                };
                let outputs: Vec<OutputItem> = if scope.merged {
                    vec![placeholder(computed(
                        scope.items[start..].iter().map(FromItem::whole_row),
                    ))]
                } else {
                    scope.items[start..]
                        .iter()
                        .flat_map(FromItem::expand)
                        .collect()
                };
                let mut outputs = rename(outputs, &aliases(Some(alias)));
                seal(&mut outputs);
                let qualifier = Qualifier::Alias(names::ident(&alias.name));
                let kind = FromKind::Derived { outputs };
                scope.items.push(FromItem { qualifier, kind });
                return Ok(());
            }
            TableFactor::Pivot { table, alias, .. }
            | TableFactor::Unpivot { table, alias, .. }
            | TableFactor::MatchRecognize { table, alias, .. } => {
                let lineage = {
                    let mut inner = Scope::new(Some(&*scope));
                    self.table_factor(table, &mut inner)?;
                    unknown(inner.all_rows())
                };
                let columns = aliases(alias.as_ref());
                (alias, FromKind::Opaque { columns, lineage })
            }
            TableFactor::UnpivotExpr { .. } => {
                return Err(SqlError::Unreadable("UNPIVOT of an expression".to_owned()))
            }
            TableFactor::SemanticView { alias, .. } => {
                let lineage = unknown(Lineage::default());
                (
                    alias,
                    FromKind::Opaque {
                        columns: Vec::new(),
                        lineage,
                    },
                )
            }
        };
        let qualifier = qualifier(alias.as_ref()).unwrap_or(Qualifier::Anonymous);
        scope.items.push(FromItem { qualifier, kind });
        Ok(())
    }

    /// `FROM f(args)`: a function call producing rows. Only known set-returning built-ins
    /// are explained by their arguments; anything else may read what it likes.
    fn table_function(
        &mut self,
        name: &ObjectName,
        args: &[FunctionArg],
        alias: Option<&TableAlias>,
        ordinality: bool,
        scope: &mut Scope,
    ) -> Result<(), SqlError> {
        let function = names::function(name);
        self.effects.function(function.clone());
        let arguments = self.function_args(args, scope)?;
        let own = function.rsplit('.').next().unwrap_or_default().to_owned();
        let shape = names::builtin_name(&function).and_then(functions::table_shape);
        let (mut columns, lineage) = match shape {
            Some(shape) => {
                let alias_name = alias.map(|a| names::ident(&a.name));
                let scalar = alias_name.unwrap_or_else(|| own.clone());
                (shape.columns(&scalar, args.len()), arguments)
            }
            None => (Vec::new(), unknown(arguments)),
        };
        if ordinality && !columns.is_empty() {
            columns.push("ordinality".to_owned());
        }
        let columns = renamed(columns, aliases(alias));
        let qualifier = qualifier(alias).unwrap_or(Qualifier::Alias(own));
        let kind = FromKind::Opaque { columns, lineage };
        scope.items.push(FromItem { qualifier, kind });
        Ok(())
    }
}

/// Default column names with the leading ones replaced by aliases `f(...) AS x(a, b)`.
fn renamed(mut columns: Vec<String>, aliases: Vec<String>) -> Vec<String> {
    if columns.len() <= aliases.len() {
        return aliases;
    }
    columns.splice(..aliases.len(), aliases);
    columns
}

fn aliases(alias: Option<&TableAlias>) -> Vec<String> {
    alias
        .map(|a| a.columns.iter().map(|c| names::ident(&c.name)).collect())
        .unwrap_or_default()
}

fn qualifier(alias: Option<&TableAlias>) -> Option<Qualifier> {
    alias.map(|a| Qualifier::Alias(names::ident(&a.name)))
}
