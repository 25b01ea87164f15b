//! Where each output column's values come from. A [`Walker`] follows queries through FROM
//! items, derived tables, CTEs, set operations and DML, and records on the way what the
//! statement reads, writes and calls. Whatever it cannot follow is marked `unknown`.
//!
//! Output lists may hold a "placeholder": one column named `*` with `unknown` set, standing
//! for columns whose number the text does not give (a table function without a column list,
//! a set operation over `*`). Every column after a placeholder is `unknown` too, because its
//! position in the result is no longer known.

mod dml;
mod expr;
mod from;
mod functions;
mod naming;
mod query;
mod scope;

use super::{
    names, Lineage, OutputItem, RelationName, Source, SqlError, Store, StoredColumns, UNNAMED,
};

pub use functions::may_run_user_code;
pub(super) use naming::column_name;
pub(super) use scope::Scope;

/// Nesting (queries in queries, expressions in expressions) analysed before giving up.
const MAX_DEPTH: usize = 64;

/// Nodes visited per statement before giving up, beyond a multiple of its size: recursive
/// CTEs are evaluated more than once, and nested ones multiply.
const BASE_STEPS: usize = 100_000;
const STEPS_PER_TOKEN: usize = 16;

/// Name of a placeholder column (see the module docs).
const PLACEHOLDER: &str = "*";

/// What a walk found besides lineage, each entry once.
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub reads: Vec<RelationName>,
    pub writes: Vec<RelationName>,
    pub functions: Vec<String>,
    /// A data-modifying CTE or SELECT INTO.
    pub hidden_write: bool,
    /// The top-level query is SELECT INTO: it returns no rows.
    pub select_into: bool,
    /// CTE names defined anywhere: not relations, whatever a later sweep sees.
    pub cte_names: Vec<String>,
    /// What is stored into relations, anywhere in the statement.
    pub stores: Vec<Store>,
}

impl Effects {
    pub fn read(&mut self, relation: RelationName) {
        push_unique(&mut self.reads, relation);
    }

    pub fn write(&mut self, relation: RelationName) {
        push_unique(&mut self.writes, relation);
    }

    pub fn function(&mut self, name: String) {
        push_unique(&mut self.functions, name);
    }
}

pub(super) fn push_unique<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// Follows one statement. Depth and work are bounded so hostile text fails instead of
/// exhausting the stack or the worker.
#[derive(Debug)]
pub(super) struct Walker {
    pub effects: Effects,
    depth: usize,
    steps_left: usize,
}

impl Walker {
    /// A walker for a statement of `size` tokens.
    pub fn new(size: usize) -> Self {
        Walker {
            effects: Effects::default(),
            depth: 0,
            steps_left: BASE_STEPS.saturating_add(size.saturating_mul(STEPS_PER_TOKEN)),
        }
    }

    /// Runs `step` one level deeper.
    fn nested<T>(
        &mut self,
        step: impl FnOnce(&mut Self) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        if self.depth >= MAX_DEPTH || self.steps_left == 0 {
            return Err(SqlError::TooDeep);
        }
        self.steps_left -= 1;
        self.depth += 1;
        let result = step(self);
        self.depth -= 1;
        result
    }
}

/// A value computed from all of `parts`.
pub(super) fn computed(parts: impl IntoIterator<Item = Lineage>) -> Lineage {
    let mut out = Lineage::default();
    for part in parts {
        absorb(&mut out, part);
    }
    out.direct = false;
    out
}

/// A value that is exactly one of `parts` (candidates for one name): direct if each is.
pub(super) fn alternatives(parts: Vec<Lineage>) -> Lineage {
    let direct = !parts.is_empty() && parts.iter().all(|p| p.direct);
    let mut out = computed(parts);
    out.direct = direct;
    out
}

fn absorb(into: &mut Lineage, part: Lineage) {
    into.unknown |= part.unknown;
    for source in part.sources {
        push_unique(&mut into.sources, source);
    }
}

pub(super) fn unknown(mut lineage: Lineage) -> Lineage {
    lineage.unknown = true;
    lineage.direct = false;
    lineage
}

pub(super) fn column_of(relations: Vec<RelationName>, column: &str) -> Lineage {
    Lineage {
        direct: true,
        sources: vec![Source::Column {
            relations,
            column: column.to_owned(),
        }],
        unknown: false,
    }
}

pub(super) fn whole_row(relation: &RelationName) -> Lineage {
    Lineage {
        direct: false,
        sources: vec![Source::WholeRow(relation.clone())],
        unknown: false,
    }
}

/// Everything one output item carries.
pub(super) fn item_lineage(item: &OutputItem) -> Lineage {
    match item {
        OutputItem::Column { lineage, .. } => lineage.clone(),
        OutputItem::Expand(relation) => whole_row(relation),
    }
}

/// What a source's output list stores into columns named in order (`named` empty: the
/// target's own column order, which only the catalog knows). Lists that do not line up
/// (a `*` the text does not spell out, counts that differ) store everything anywhere.
pub(in crate::sql) fn stored_in_order(named: Vec<String>, items: Vec<OutputItem>) -> StoredColumns {
    if named.is_empty() {
        return StoredColumns::InOrder(items);
    }
    let aligned = named.len() == items.len()
        && items
            .iter()
            .all(|item| matches!(item, OutputItem::Column { .. }));
    if !aligned {
        return StoredColumns::Whole(items_lineage(&items));
    }
    StoredColumns::Named(
        named
            .into_iter()
            .zip(items.iter().map(item_lineage))
            .collect(),
    )
}

/// Everything a whole output list carries (a row of it, or any one of its values).
pub(super) fn items_lineage(items: &[OutputItem]) -> Lineage {
    computed(items.iter().map(item_lineage))
}

pub(super) fn placeholder(lineage: Lineage) -> OutputItem {
    OutputItem::Column {
        name: PLACEHOLDER.to_owned(),
        lineage: unknown(lineage),
    }
}

fn is_placeholder(item: &OutputItem) -> bool {
    matches!(item, OutputItem::Column { name, lineage } if name == PLACEHOLDER && lineage.unknown)
}

/// Marks every column after the first placeholder unknown: its position is not known.
pub(super) fn seal(items: &mut [OutputItem]) {
    let Some(first) = items.iter().position(is_placeholder) else {
        return;
    };
    for item in &mut items[first..] {
        match item {
            OutputItem::Column { lineage, .. } => lineage.unknown = true,
            OutputItem::Expand(relation) => *item = placeholder(whole_row(relation)),
        }
    }
}

/// Renames the leading outputs to a derived table's column aliases `(a, b)`. Past a `*` the
/// positions are not known, so the remaining aliases get the rest's lineage, marked unknown.
pub(super) fn rename(mut items: Vec<OutputItem>, aliases: &[String]) -> Vec<OutputItem> {
    for (index, alias) in aliases.iter().enumerate() {
        let aligned = items
            .get(index)
            .map(|item| matches!(item, OutputItem::Column { .. }) && !is_placeholder(item));
        match aligned {
            Some(true) => {
                if let Some(OutputItem::Column { name, .. }) = items.get_mut(index) {
                    alias.clone_into(name);
                }
            }
            Some(false) => {
                let rest = unknown(items_lineage(&items[index..]));
                items.truncate(index);
                items.extend(aliases[index..].iter().map(|alias| OutputItem::Column {
                    name: alias.clone(),
                    lineage: rest.clone(),
                }));
                items.push(placeholder(rest));
                return items;
            }
            // More aliases than columns: PostgreSQL refuses the statement.
            None => items.push(OutputItem::Column {
                name: alias.clone(),
                lineage: unknown(Lineage::default()),
            }),
        }
    }
    items
}

/// The lineage of column `name` in an output list, and whether the list surely has it (a
/// named column) or only may have it (under a `*`).
pub(super) fn lookup_output(items: &[OutputItem], name: &str) -> Option<(Lineage, bool)> {
    let named: Vec<Lineage> = items
        .iter()
        .filter_map(|item| match item {
            OutputItem::Column { name: n, lineage } if n == name && !is_placeholder(item) => {
                Some(lineage.clone())
            }
            _ => None,
        })
        .collect();
    if !named.is_empty() {
        return Some((alternatives(named), true));
    }
    let mut candidates = Vec::new();
    let expanded: Vec<RelationName> = items
        .iter()
        .filter_map(|item| match item {
            OutputItem::Expand(relation) => Some(relation.clone()),
            OutputItem::Column { .. } => None,
        })
        .collect();
    if !expanded.is_empty() {
        candidates.push(column_of(expanded, name));
    }
    // A column whose server-given name is not known may be the one asked for.
    let unnamed = |item: &&OutputItem| {
        is_placeholder(item) || matches!(item, OutputItem::Column { name, .. } if name == UNNAMED)
    };
    candidates.extend(items.iter().filter(unnamed).map(item_lineage));
    (!candidates.is_empty()).then(|| (alternatives(candidates), false))
}
