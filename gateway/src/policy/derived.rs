//! Derived classification: columns an agent's statement filled from classified data (INSERT
//! ... SELECT, UPDATE ... SET, MERGE, CREATE TABLE AS, SELECT INTO, data-modifying CTEs) take
//! on the categories of their sources, so reading them back is masked as reading the sources
//! would be. A write never makes a column clean again: other rows may still hold what was
//! stored before; only an admin's `tollgate classified forget` does.
//!
//! Where a statement's columns cannot be told apart, every column of the destination is
//! classified; a destination the catalog cannot place is matched in any schema.

mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use super::{provenance::ResolvedColumn, rules::Category};

pub use store::{
    forget, forget_settings, list, DerivedRecord, DerivedStore, DerivedStoreError, Document,
    ForgetSpec, Provenance, SettingsRecord, FILE_NAME,
};

/// Any schema, or every column.
pub const ANY: &str = "*";
/// The schema key of a session's temporary tables (`pg_temp_N` on the server).
pub const TEMP_SCHEMA: &str = "pg_temp";

/// One derived column (or, with column [`ANY`], every column of a table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedColumn {
    /// [`ANY`] when the destination could not be placed; [`TEMP_SCHEMA`] for temporary tables.
    pub schema: String,
    pub table: String,
    pub column: String,
    pub class: ResolvedColumn,
}

/// The derived columns in force for one session: the target's persistent ones and the
/// session's own temporary tables'. Looked up by table name.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    tables: HashMap<String, Vec<DerivedColumn>>,
}

impl Derived {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Adds columns; one already present (same place) takes on the new categories too.
    /// True when that changed anything.
    pub fn add(&mut self, columns: impl IntoIterator<Item = DerivedColumn>) -> bool {
        let mut changed = false;
        for column in columns {
            let entries = self.tables.entry(column.table.clone()).or_default();
            match entries
                .iter_mut()
                .find(|e| e.schema == column.schema && e.column == column.column)
            {
                Some(existing) => {
                    let before = existing.class.clone();
                    merge(&mut existing.class, &column.class);
                    changed |= existing.class != before;
                }
                None => {
                    entries.push(column);
                    changed = true;
                }
            }
        }
        changed
    }

    pub fn columns(&self) -> impl Iterator<Item = &DerivedColumn> {
        self.tables.values().flatten()
    }

    /// What is stored in `schema.table.column` (`schema` None: the name was written without
    /// one, so any schema's table may be meant), if anything derived is.
    pub fn column(
        &self,
        schema: Option<&str>,
        table: &str,
        column: &str,
    ) -> Option<ResolvedColumn> {
        self.matching(schema, table, |c| c == ANY || c == column)
    }

    /// Everything derived stored in a table's columns, merged (a whole-row reference).
    pub fn row(&self, schema: Option<&str>, table: &str) -> Option<ResolvedColumn> {
        self.matching(schema, table, |_| true)
    }

    fn matching(
        &self,
        schema: Option<&str>,
        table: &str,
        column: impl Fn(&str) -> bool,
    ) -> Option<ResolvedColumn> {
        let mut found: Option<ResolvedColumn> = None;
        for entry in self.tables.get(table)?.iter() {
            if !schema_matches(&entry.schema, schema) || !column(&entry.column) {
                continue;
            }
            match &mut found {
                Some(found) => merge(found, &entry.class),
                None => found = Some(entry.class.clone()),
            }
        }
        found
    }
}

/// Whether an entry's schema key covers a relation in `schema`.
fn schema_matches(entry: &str, schema: Option<&str>) -> bool {
    let Some(schema) = schema else {
        return true;
    };
    entry == ANY
        || entry == schema
        || (entry == TEMP_SCHEMA && (schema == "pg_temp" || schema.starts_with("pg_temp_")))
}

/// `into` also holds what `other` holds.
fn merge(into: &mut ResolvedColumn, other: &ResolvedColumn) {
    into.categories.extend(other.categories.iter().cloned());
    into.direct &= other.direct;
    into.unknown |= other.unknown;
}

/// A column class from stored categories.
pub fn class_of(categories: &[String], direct: bool, unknown: bool) -> ResolvedColumn {
    ResolvedColumn {
        categories: categories
            .iter()
            .map(|c| Category::from(c.as_str()))
            .collect::<BTreeSet<_>>(),
        direct,
        unknown,
    }
}
