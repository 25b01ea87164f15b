//! Name resolution: the FROM items and CTEs a query level sees, and the levels around it.

use super::{
    alternatives, column_of, computed, items_lineage, lookup_output, placeholder, unknown,
    whole_row, Lineage, OutputItem, RelationName,
};

/// One query level: its CTEs, its FROM items, and the enclosing level (outer references of
/// correlated subqueries, LATERAL, CTEs defined further out).
#[derive(Debug, Default)]
pub(in crate::sql) struct Scope<'p> {
    parent: Option<&'p Scope<'p>>,
    /// CTEs in order of definition; None while a recursive WITH is still being evaluated.
    ctes: Vec<(String, Option<Vec<OutputItem>>)>,
    pub(super) items: Vec<FromItem>,
    /// A join USING / NATURAL merged same-named columns: `*` lists them once, so its
    /// columns no longer line up with the items' own.
    pub(super) merged: bool,
}

#[derive(Debug, Clone)]
pub(super) struct FromItem {
    pub qualifier: Qualifier,
    pub kind: FromKind,
}

/// How columns of a FROM item may be qualified.
#[derive(Debug, Clone)]
pub(super) enum Qualifier {
    /// `AS alias`: the only name the item goes by.
    Alias(String),
    /// An unaliased relation: `t.c`, `s.t.c` (and `db.s.t.c`).
    Relation(RelationName),
    /// An unaliased subquery.
    Anonymous,
}

#[derive(Debug, Clone)]
pub(super) enum FromKind {
    /// A table or view. `renamed` are column aliases `t AS x(a, b)`: which attribute each
    /// renames is not known here. `assigned` is what INSERT/UPDATE/MERGE store in the target,
    /// which RETURNING then reads back.
    Base {
        relation: RelationName,
        renamed: Vec<String>,
        assigned: Lineage,
    },
    /// A subquery or CTE with known outputs.
    Derived { outputs: Vec<OutputItem> },
    /// A recursive CTE on a first pass: contributes nothing yet.
    Pending,
    /// A table function or the like: named columns (empty when the text does not say how
    /// many there are), all carrying `lineage`.
    Opaque {
        columns: Vec<String>,
        lineage: Lineage,
    },
}

/// What one FROM item says about a column name.
enum Hit {
    /// The item has the column.
    Sure(Lineage),
    /// The item may have it.
    Maybe(Lineage),
    /// A table that may have it (the catalog decides).
    Table(RelationName, Lineage),
}

impl<'p> Scope<'p> {
    pub fn new(parent: Option<&'p Scope<'p>>) -> Self {
        Scope {
            parent,
            ctes: Vec::new(),
            items: Vec::new(),
            merged: false,
        }
    }

    pub(super) fn set_cte(&mut self, name: String, outputs: Option<Vec<OutputItem>>) {
        match self.ctes.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = outputs,
            None => self.ctes.push((name, outputs)),
        }
    }

    pub(super) fn cte_outputs(&self, name: &str) -> Option<&Vec<OutputItem>> {
        self.ctes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, outputs)| outputs.as_ref())
    }

    /// The CTE `name` visible here: Some(None) while it is still pending.
    pub(super) fn cte(&self, name: &str) -> Option<Option<&Vec<OutputItem>>> {
        let mut level = Some(self);
        while let Some(scope) = level {
            if let Some((_, outputs)) = scope.ctes.iter().rev().find(|(n, _)| n == name) {
                return Some(outputs.as_ref());
            }
            level = scope.parent;
        }
        None
    }

    fn levels(&self) -> impl Iterator<Item = &Scope<'p>> {
        std::iter::successors(Some(self), |scope| scope.parent)
    }

    /// The FROM item `qualifier` (`t`, `s.t`) names, innermost level first.
    pub(super) fn find(&self, qualifier: &[String]) -> Option<&FromItem> {
        self.levels()
            .find_map(|scope| scope.items.iter().find(|item| item.matches(qualifier)))
    }

    /// An unqualified column name: the innermost level that surely has it wins; tables that
    /// may have it are listed together for the catalog to pick from, and outer levels are
    /// kept as candidates until a level surely has the name.
    pub(super) fn resolve(&self, name: &str) -> Lineage {
        let mut found = Vec::new();
        for scope in self.levels() {
            let mut sure = Vec::new();
            let mut maybe = Vec::new();
            let mut tables = Vec::new();
            for item in &scope.items {
                match item.hit(name) {
                    Some(Hit::Sure(lineage)) => sure.push(lineage),
                    Some(Hit::Maybe(lineage)) => maybe.push(lineage),
                    Some(Hit::Table(relation, assigned)) => {
                        if !tables.contains(&relation) {
                            tables.push(relation);
                        }
                        if assigned.unknown || !assigned.sources.is_empty() {
                            maybe.push(assigned);
                        }
                    }
                    None => {}
                }
            }
            if !sure.is_empty() {
                // A table here with the same column would make the name ambiguous, which
                // PostgreSQL refuses: the sure hit is the one.
                found.extend(maybe);
                found.extend(sure);
                return alternatives(found);
            }
            if !tables.is_empty() {
                found.push(column_of(tables, name));
            }
            found.extend(maybe);
        }
        if found.is_empty() {
            let tables: Vec<RelationName> = self
                .levels()
                .flat_map(|scope| &scope.items)
                .filter_map(|item| match &item.kind {
                    FromKind::Base { relation, .. } => Some(relation.clone()),
                    _ => None,
                })
                .collect();
            let guess = if tables.is_empty() {
                Lineage::default()
            } else {
                column_of(tables, name)
            };
            return unknown(guess);
        }
        alternatives(found)
    }

    /// `q.c`: the column of the item `q` names. An unknown qualifier is unknown.
    pub(super) fn resolve_qualified(&self, qualifier: &[String], name: &str) -> Lineage {
        match self.find(qualifier) {
            Some(item) => match item.hit(name) {
                Some(Hit::Sure(lineage) | Hit::Maybe(lineage)) => lineage,
                Some(Hit::Table(relation, assigned)) => {
                    if assigned.unknown || !assigned.sources.is_empty() {
                        computed([column_of(vec![relation], name), assigned])
                    } else {
                        column_of(vec![relation], name)
                    }
                }
                None => unknown(item.whole_row()),
            },
            None => unknown(Lineage::default()),
        }
    }

    /// Whole rows of every FROM item at this level (`count(*)` style arguments).
    pub(super) fn all_rows(&self) -> Lineage {
        computed(self.items.iter().map(FromItem::whole_row))
    }

    /// `*`: every item of this level, in FROM order.
    pub(super) fn expand_all(&self) -> Vec<OutputItem> {
        if self.merged {
            return vec![placeholder(self.all_rows())];
        }
        self.items.iter().flat_map(FromItem::expand).collect()
    }
}

impl FromItem {
    pub fn matches(&self, qualifier: &[String]) -> bool {
        match (&self.qualifier, qualifier) {
            (Qualifier::Alias(alias), [name]) => alias == name,
            (Qualifier::Relation(relation), [name]) => relation.name == *name,
            (Qualifier::Relation(relation), [.., schema, name]) if qualifier.len() <= 3 => {
                relation.name == *name && relation.schema.as_ref().is_none_or(|s| s == schema)
            }
            _ => false,
        }
    }

    /// Is `name` this item's own name (a whole-row reference `SELECT p FROM patients p`)?
    fn is_named(&self, name: &str) -> bool {
        self.matches(&[name.to_owned()])
    }

    fn hit(&self, name: &str) -> Option<Hit> {
        match &self.kind {
            FromKind::Base {
                relation,
                renamed,
                assigned,
            } => {
                if renamed.iter().any(|r| r == name) {
                    // Which attribute the alias renames is for the catalog; any of them.
                    Some(Hit::Sure(computed([whole_row(relation), assigned.clone()])))
                } else if self.is_named(name) {
                    // Columns win over the row in PostgreSQL; the row covers them all.
                    Some(Hit::Maybe(self.whole_row()))
                } else {
                    Some(Hit::Table(relation.clone(), assigned.clone()))
                }
            }
            FromKind::Derived { outputs } => match lookup_output(outputs, name) {
                Some((lineage, true)) => Some(Hit::Sure(lineage)),
                Some((lineage, false)) => Some(Hit::Maybe(lineage)),
                None => self.is_named(name).then(|| Hit::Maybe(self.whole_row())),
            },
            FromKind::Pending => Some(Hit::Maybe(Lineage::default())),
            FromKind::Opaque { columns, lineage } => {
                if columns.is_empty() {
                    Some(Hit::Maybe(lineage.clone()))
                } else if columns.iter().any(|c| c == name) {
                    Some(Hit::Sure(lineage.clone()))
                } else {
                    self.is_named(name).then(|| Hit::Maybe(self.whole_row()))
                }
            }
        }
    }

    /// The item's whole row as one value.
    pub fn whole_row(&self) -> Lineage {
        match &self.kind {
            FromKind::Base {
                relation, assigned, ..
            } => computed([whole_row(relation), assigned.clone()]),
            FromKind::Derived { outputs } => items_lineage(outputs),
            FromKind::Pending => Lineage::default(),
            FromKind::Opaque { lineage, .. } => computed([lineage.clone()]),
        }
    }

    /// The item's columns, as `*` lists them.
    pub fn expand(&self) -> Vec<OutputItem> {
        match &self.kind {
            FromKind::Base {
                relation, assigned, ..
            } => {
                if assigned.unknown || !assigned.sources.is_empty() {
                    vec![placeholder(self.whole_row())]
                } else {
                    vec![OutputItem::Expand(relation.clone())]
                }
            }
            FromKind::Derived { outputs } => outputs.clone(),
            FromKind::Pending => Vec::new(),
            FromKind::Opaque { columns, lineage } if !columns.is_empty() => columns
                .iter()
                .map(|name| OutputItem::Column {
                    name: name.clone(),
                    lineage: lineage.clone(),
                })
                .collect(),
            FromKind::Opaque { lineage, .. } => vec![placeholder(lineage.clone())],
        }
    }
}
