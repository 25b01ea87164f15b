//! A snapshot of a target database's relations, as provenance needs it: names, columns by
//! attribute number, and view definitions. Loaded by the gateway over a side connection;
//! plain data here so resolution stays pure and testable.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use crate::sql::{self, Analysis, SqlError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// Tables, partitioned tables, foreign tables: values come from the relation itself.
    Table,
    /// Views and materialized views: values come from the defining query.
    View,
}

#[derive(Debug)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// (attribute number, name) of live columns, in attribute order.
    pub columns: Vec<(i16, String)>,
    /// The defining query of a view (`pg_get_viewdef`).
    pub view_sql: Option<String>,
    /// The view's analysis, made on first use.
    view_analysis: OnceLock<Result<Analysis, SqlError>>,
}

impl Relation {
    pub fn new(
        oid: u32,
        schema: String,
        name: String,
        kind: RelationKind,
        columns: Vec<(i16, String)>,
        view_sql: Option<String>,
    ) -> Self {
        Self {
            oid,
            schema,
            name,
            kind,
            columns,
            view_sql,
            view_analysis: OnceLock::new(),
        }
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(_, column)| column == name)
    }

    pub fn attnum_index(&self, attnum: i16) -> Option<usize> {
        self.columns
            .iter()
            .position(|(number, _)| *number == attnum)
    }

    /// The view's defining query, analysed (an error for a table or an unreadable view).
    pub fn view_analysis(&self) -> &Result<Analysis, SqlError> {
        self.view_analysis.get_or_init(|| match &self.view_sql {
            Some(text) => sql::analyze(text),
            None => Err(SqlError::Unreadable("not a view".into())),
        })
    }
}

/// Every relation of one database.
#[derive(Debug, Default)]
pub struct Catalog {
    by_oid: HashMap<u32, Arc<Relation>>,
    by_name: HashMap<String, Vec<Arc<Relation>>>,
}

impl Catalog {
    pub fn new(relations: impl IntoIterator<Item = Relation>) -> Self {
        let mut catalog = Self::default();
        for relation in relations {
            let relation = Arc::new(relation);
            catalog
                .by_name
                .entry(relation.name.clone())
                .or_default()
                .push(relation.clone());
            catalog.by_oid.insert(relation.oid, relation);
        }
        catalog
    }

    pub fn by_oid(&self, oid: u32) -> Option<&Arc<Relation>> {
        self.by_oid.get(&oid)
    }

    /// Relations a name can mean: the one in the given schema, or, written without a schema,
    /// every relation of that name (the session's search_path is not tracked, so all are
    /// considered).
    pub fn lookup(&self, schema: Option<&str>, name: &str) -> Vec<&Arc<Relation>> {
        self.by_name
            .get(name)
            .map(|relations| {
                relations
                    .iter()
                    .filter(|r| schema.is_none_or(|s| r.schema == s))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn relation_count(&self) -> usize {
        self.by_oid.len()
    }
}
