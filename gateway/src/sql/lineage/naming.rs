//! The name PostgreSQL gives an output column the statement does not name (its
//! `FigureColname`). A table created from a query takes these names, so a wrong one would file
//! derived PHI under a column that does not hold it: where the server's choice cannot be told
//! from the text, the name is [`UNNAMED`] and the column is treated as any column.

use sqlparser::ast::{
    AccessExpr, ArrayElemTypeDef, DataType, Expr, SelectItem, SetExpr, TrimWhereField,
};

use super::names;
use crate::sql::UNNAMED;

/// How sure the server is of a name: a cast or CASE only names what has no better name.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Strength {
    Nameless,
    Weak,
    Strong,
}

/// The server's name for an output column computed by `expr`.
pub(in crate::sql) fn column_name(expr: &Expr) -> String {
    match figure(expr) {
        Some((_, Strength::Nameless)) => "?column?".to_owned(),
        Some((name, _)) => name,
        None => UNNAMED.to_owned(),
    }
}

/// The name and its strength; None when the server's choice cannot be told.
fn figure(expr: &Expr) -> Option<(String, Strength)> {
    use Strength::{Nameless, Strong, Weak};
    let strong = |name: &str| Some((name.to_owned(), Strong));
    match expr {
        Expr::Identifier(ident) => Some((names::ident(ident), Strong)),
        Expr::CompoundIdentifier(parts) => Some((names::ident(parts.last()?), Strong)),
        Expr::CompoundFieldAccess { root, access_chain } => {
            let field = access_chain.iter().rev().find_map(|access| match access {
                AccessExpr::Dot(Expr::Identifier(ident)) => Some(names::ident(ident)),
                _ => None,
            });
            match field {
                Some(field) => Some((field, Strong)),
                None => figure(root),
            }
        }
        Expr::Function(function) => {
            let name = names::function(&function.name);
            strong(name.rsplit('.').next().unwrap_or_default())
        }
        Expr::Substring { .. } => strong("substring"),
        Expr::Position { .. } => strong("position"),
        Expr::Extract { .. } => strong("extract"),
        Expr::Overlay { .. } => strong("overlay"),
        Expr::Ceil { .. } => strong("ceil"),
        Expr::Floor { .. } => strong("floor"),
        Expr::AtTimeZone { .. } => strong("timezone"),
        Expr::IsNormalized { .. } => strong("is_normalized"),
        Expr::Trim { trim_where, .. } => strong(match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            Some(TrimWhereField::Both) | None => "btrim",
        }),
        Expr::Tuple(_) => strong("row"),
        Expr::Array(_) => strong("array"),
        Expr::Exists { negated: false, .. } => strong("exists"),
        Expr::Cast {
            expr, data_type, ..
        } => {
            let inner = figure(expr)?;
            match inner.1 {
                Strong => Some(inner),
                _ => Some((type_name(data_type)?, Weak)),
            }
        }
        Expr::TypedString(typed) => Some((type_name(&typed.data_type)?, Weak)),
        Expr::Interval(_) => Some(("interval".to_owned(), Weak)),
        Expr::Case { else_result, .. } => {
            let otherwise = match else_result {
                Some(result) => figure(result)?,
                None => (String::new(), Nameless),
            };
            match otherwise.1 {
                Strong => Some(otherwise),
                _ => Some(("case".to_owned(), Weak)),
            }
        }
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => figure(inner),
        // A scalar subquery takes the name of its one column.
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.first()? {
                SelectItem::UnnamedExpr(expr) => {
                    Some((column_name(expr), Strong)).filter(|(name, _)| name != UNNAMED)
                }
                SelectItem::ExprWithAlias { alias, .. } => Some((names::ident(alias), Strong)),
                _ => None,
            },
            _ => None,
        },
        // Operators, tests and constants have no name of their own.
        Expr::Value(_)
        | Expr::BinaryOp { .. }
        | Expr::UnaryOp { .. }
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsNotTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::IsJson { .. }
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::In { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::SimilarTo { .. }
        | Expr::AnyOp { .. }
        | Expr::AllOp { .. }
        | Expr::Exists { negated: true, .. } => Some((String::new(), Nameless)),
        _ => None,
    }
}

/// The name a cast gives: the type's own name as the catalog spells it for the SQL
/// keywords (`integer` is `int4`), as written otherwise; None for a spelling not known.
fn type_name(data_type: &DataType) -> Option<String> {
    let base = match data_type {
        DataType::Custom(name, _) => return Some(names::ident(name.0.last()?.as_ident()?)),
        // `text[]` is named by its element type.
        DataType::Array(
            ArrayElemTypeDef::SquareBracket(element, _)
            | ArrayElemTypeDef::AngleBracket(element)
            | ArrayElemTypeDef::Parenthesis(element),
        ) => return type_name(element),
        DataType::Array(ArrayElemTypeDef::None) => return None,
        other => other.to_string().to_ascii_lowercase(),
    };
    // Modifiers (`varchar(10)`, `numeric(10,2)`) do not change the name.
    let base = base.split('(').next().unwrap_or_default().trim();
    let keyword = match base {
        "int" | "integer" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" => "float8",
        "decimal" | "dec" => "numeric",
        "boolean" => "bool",
        "character varying" => "varchar",
        "char" | "character" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        "bit varying" => "varbit",
        // `float(p)` is float4 or float8 by its precision.
        "float" if data_type.to_string().contains('(') => return None,
        "float" => "float8",
        word if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            word
        }
        _ => return None,
    };
    Some(keyword.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::{dialect::PostgreSqlDialect, parser::Parser};

    fn name_of(item: &str) -> String {
        let sql = format!("SELECT {item}");
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql).unwrap();
        let sqlparser::ast::Statement::Query(query) = &statements[0] else {
            panic!("not a query");
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            panic!("not a select");
        };
        let SelectItem::UnnamedExpr(expr) = &select.projection[0] else {
            panic!("not an expression");
        };
        column_name(expr)
    }

    // Each expected name is what PostgreSQL 15 reports for `SELECT <item>`.
    #[test]
    fn names_follow_the_server() {
        let cases = [
            ("ssn", "ssn"),
            ("p.ssn", "ssn"),
            ("ssn::text", "ssn"),
            ("(ssn || 'x')::text", "text"),
            ("(ssn || 'x')::varchar(20)", "varchar"),
            ("(1 + 2)::integer", "int4"),
            ("1::double precision", "float8"),
            ("'a'::character varying", "varchar"),
            ("now()::timestamp with time zone", "now"),
            ("'x'::public.my_type", "my_type"),
            ("true", "?column?"),
            ("true::text", "text"),
            ("ssn || 'x'", "?column?"),
            ("1", "?column?"),
            ("NOT EXISTS (SELECT 1)", "?column?"),
            ("EXISTS (SELECT 1)", "exists"),
            ("upper(ssn)", "upper"),
            ("pg_catalog.lower(ssn)", "lower"),
            ("CASE WHEN true THEN 1 ELSE ssn END", "ssn"),
            ("CASE WHEN true THEN ssn END", "case"),
            ("CASE WHEN true THEN ssn ELSE 'x' END", "case"),
            ("(SELECT ssn FROM patients LIMIT 1)", "ssn"),
            ("(SELECT ssn AS s FROM patients LIMIT 1)", "s"),
            ("(1, ssn)", "row"),
            ("ARRAY[ssn]", "array"),
            ("DATE '2020-01-01'", "date"),
            ("'{a}'::text[]", "text"),
            ("INTERVAL '1 day'", "interval"),
            ("now() AT TIME ZONE 'UTC'", "timezone"),
            ("substring(ssn from 1 for 3)", "substring"),
            ("(ssn)", "ssn"),
        ];
        for (item, expected) in cases {
            assert_eq!(name_of(item), expected, "SELECT {item}");
        }
    }

    #[test]
    fn a_name_the_text_cannot_tell_is_unnamed() {
        for item in ["(SELECT * FROM patients LIMIT 1)", "'1'::float(10)"] {
            assert_eq!(name_of(item), UNNAMED, "SELECT {item}");
        }
    }
}
