//! SQL text turned into typed facts for policy: what a statement is, what it reads and writes,
//! which functions it calls, and where each output column's values come from (lineage). No
//! policy and no catalog here: names are as written (normalized), wildcards and whole-row
//! references are left for the catalog-aware step to expand.

mod analyze;
mod cache;
mod lineage;
mod names;
mod shape;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use cache::FactsCache;
pub use lineage::may_run_user_code;
pub use shape::literal_shape;

/// Parses `sql` (PostgreSQL dialect) into one [`StatementFacts`] per statement.
pub fn analyze(sql: &str) -> Result<Analysis, SqlError> {
    analyze::analyze(sql)
}

/// What `EXPLAIN ANALYZE EXECUTE name` (`explain`) does once the statement prepared under
/// that name (`prepared`, known only to the session) is looked up: it runs it.
pub fn explain_analyze_of(explain: &StatementFacts, prepared: &StatementFacts) -> StatementFacts {
    analyze::explain_analyze_of(explain, prepared)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The parser could not read the text; the message is the parser's, without the SQL.
    #[error("the statement could not be parsed: {0}")]
    Unreadable(String),
    /// Nesting (subqueries, views in views, parenthesized expressions) beyond what is analysed.
    #[error("the statement nests too deeply to analyse")]
    TooDeep,
}

/// Every statement of one query string, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Analysis {
    pub statements: Vec<StatementFacts>,
}

/// A relation name as written, normalized the way PostgreSQL folds it: unquoted parts are
/// lower-cased, quoted parts kept exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationName {
    pub schema: Option<String>,
    pub name: String,
}

impl std::fmt::Display for RelationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    /// `COPY ... TO` (to the client or a file/program on the server).
    CopyTo,
    /// `COPY ... FROM`.
    CopyFrom,
    Create,
    Alter,
    Drop,
    Truncate,
    /// GRANT / REVOKE.
    Grant,
    /// SET / RESET / SHOW and other session settings (role changes also set `role_change`).
    Set,
    Show,
    /// BEGIN / COMMIT / ROLLBACK / SAVEPOINT / ... .
    Transaction,
    /// `PREPARE name AS ...` (the prepared statement's facts are in `prepared`).
    Prepare,
    /// `EXECUTE name` of an SQL-level prepared statement.
    Execute,
    /// `DEALLOCATE`.
    Deallocate,
    /// `DECLARE cursor ... FOR ...` (the query's facts are in `cursor_query`).
    Declare,
    /// `FETCH` / `MOVE` from a cursor.
    Fetch,
    /// `CLOSE` a cursor.
    ClosePortal,
    /// `DO` block: an anonymous procedure whose body is not analysed.
    Do,
    /// `CALL procedure(...)`.
    Call,
    /// `EXPLAIN` (with `ANALYZE` the inner statement runs: see `explain_analyze`).
    Explain,
    Listen,
    Notify,
    Vacuum,
    /// Anything else the parser reads (the `command` says what).
    Other,
}

/// What one statement does, as far as the text shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementFacts {
    pub kind: StatementKind,
    /// Upper-case command words, e.g. "SELECT", "DROP TABLE", "ALTER SYSTEM", "SET ROLE".
    pub command: String,
    /// Relations read anywhere in the statement (FROM, JOIN, subqueries, CTEs, `TABLE t`,
    /// COPY's source, INSERT ... SELECT's source), each once. CTE names are not relations.
    pub reads: Vec<RelationName>,
    /// Relations written anywhere (INSERT/UPDATE/DELETE/MERGE targets, also inside CTEs;
    /// SELECT INTO's new table; COPY FROM's target), each once.
    pub writes: Vec<RelationName>,
    /// Objects the statement creates, alters, drops or truncates (tables, views, schemas,
    /// functions, ...), each once.
    pub ddl_objects: Vec<RelationName>,
    /// Functions called anywhere (including in FROM, as casts are not), lower-cased and
    /// qualified if written so (`pg_catalog.pg_read_file`), each once.
    pub functions: Vec<String>,
    /// The statement's top-level query has a WHERE clause (for SELECT/UPDATE/DELETE).
    pub has_where: bool,
    /// The statement's top-level query has LIMIT or FETCH FIRST.
    pub has_limit: bool,
    /// A write inside what reads like a query: a data-modifying CTE, SELECT INTO, or a
    /// write under EXPLAIN ANALYZE.
    pub hidden_write: bool,
    /// `EXPLAIN ANALYZE`: the inner statement is executed. Its facts are merged into this
    /// statement's reads, writes and functions.
    pub explain_analyze: bool,
    /// SET ROLE, RESET ROLE, SET SESSION AUTHORIZATION, or `set_config('role'|'session_authorization', ...)`.
    pub role_change: bool,
    pub copy: Option<CopyFacts>,
    /// PREPARE: the name and the facts of the prepared statement.
    pub prepared: Option<(String, Box<StatementFacts>)>,
    /// EXECUTE: the name of the SQL-level prepared statement.
    pub executes: Option<String>,
    /// DECLARE: the cursor name and the facts of its query.
    pub cursor_query: Option<(String, Box<StatementFacts>)>,
    /// DECLARE ... WITH HOLD: the cursor outlives its transaction.
    pub cursor_holds: bool,
    /// FETCH / MOVE / CLOSE: the cursor name (None for `CLOSE ALL`).
    pub cursor: Option<String>,
    /// DEALLOCATE, CLOSE, DISCARD ALL: the SQL-level names the statement releases.
    pub released: Option<Released>,
    /// COMMIT, END, ROLLBACK (not to a savepoint): the transaction block ends, and the
    /// cursors declared without HOLD with it.
    pub ends_transaction: bool,
    /// The columns the statement returns (SELECT list, RETURNING, VALUES, `TABLE t`, COPY's
    /// columns), in order; empty when it returns none.
    pub outputs: Vec<OutputItem>,
    /// What it stores into relations from what it reads (INSERT, UPDATE, MERGE, CREATE TABLE
    /// AS, SELECT INTO, also inside CTEs), for derived classification.
    pub stores: Vec<Store>,
    /// Settings `set_config` changes, by lower-cased name (None: a name that is not a
    /// literal, so any setting).
    pub settings_set: Vec<Option<String>>,
    /// `SHOW name` (lower-cased; `all` for `SHOW ALL`).
    pub shows: Option<String>,
}

/// What a statement stores into one relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub target: RelationName,
    /// CREATE TABLE AS, SELECT INTO: the statement creates the table (a relation of the same
    /// name elsewhere is not it).
    pub new_table: bool,
    /// `CREATE TEMP TABLE ... AS`, `SELECT ... INTO TEMP`: the table lives in the session.
    pub temporary: bool,
    pub columns: StoredColumns,
}

impl Store {
    /// Whether what it stores may come from a column (or from something untraceable):
    /// `INSERT ... VALUES ($1, 'x')` stores only what the client sent.
    pub fn may_carry_data(&self) -> bool {
        let carries = |lineage: &Lineage| lineage.unknown || !lineage.sources.is_empty();
        match &self.columns {
            StoredColumns::Named(columns) => columns.iter().any(|(_, l)| carries(l)),
            StoredColumns::InOrder(items) => items.iter().any(|item| match item {
                OutputItem::Column { lineage, .. } => carries(lineage),
                OutputItem::Expand(_) => true,
            }),
            StoredColumns::Whole(lineage) => carries(lineage),
        }
    }
}

/// Which columns of the target receive what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredColumns {
    /// Named columns (INSERT with a column list, UPDATE SET), each with what it receives.
    Named(Vec<(String, Lineage)>),
    /// The target's columns in order from the first (INSERT without a column list, CREATE
    /// TABLE AS, SELECT INTO): the source's output items, whose names a new table takes.
    InOrder(Vec<OutputItem>),
    /// It cannot be told which column receives what: everything stored, merged, may be in
    /// any of them.
    Whole(Lineage),
}

/// What a statement releases of the session's prepared statements and cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    Prepared(String),
    /// `DEALLOCATE ALL`.
    AllPrepared,
    Cursor(String),
    /// `CLOSE ALL`.
    AllCursors,
    /// `DISCARD ALL`: every prepared statement and cursor.
    Everything,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFacts {
    pub direction: CopyDirection,
    pub endpoint: CopyEndpoint,
    /// The copied relation (`COPY t` / `COPY t (a, b)`), or None for `COPY (query)`.
    pub relation: Option<RelationName>,
    /// Explicit column list of `COPY t (a, b)`; empty means every column.
    pub columns: Vec<String>,
    pub format: CopyFormat,
    /// How text and CSV rows are written (unset: the format's default).
    pub text: CopyTextOptions,
}

/// The COPY options that decide how text and CSV rows are split into values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyTextOptions {
    pub delimiter: Option<char>,
    pub null: Option<String>,
    pub quote: Option<char>,
    pub escape: Option<char>,
    /// The first row holds column names.
    pub header: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    To,
    From,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyEndpoint {
    /// STDOUT / STDIN: the data travels through the connection.
    Client,
    /// A file on the server.
    File(String),
    /// `PROGRAM 'command'` on the server.
    Program(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// The name of an output column whose name on the server the text does not tell (a
/// scalar subquery over `*`, a cast to a type spelled unusually). No identifier holds a NUL.
pub const UNNAMED: &str = "\0?column?";

/// One item of an output list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputItem {
    /// One output column.
    Column { name: String, lineage: Lineage },
    /// `*` or `t.*` over a relation whose column list the text does not give: expands, in the
    /// relation's attribute order, to one column per attribute whose lineage is that
    /// attribute (directly).
    Expand(RelationName),
}

/// Where one output column's values come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    /// The value is exactly a column's value (a plain reference, possibly through derived
    /// tables, CTEs and views), not computed from it.
    pub direct: bool,
    /// Every source the value is computed from.
    pub sources: Vec<Source>,
    /// Some part of the value comes from something the text does not explain: a function
    /// not known to be a pure transform of its arguments, a column that resolves to nothing.
    pub unknown: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A named column of one of these relations (several when an unqualified name could
    /// belong to more than one relation in scope).
    Column {
        relations: Vec<RelationName>,
        column: String,
    },
    /// A whole row of a relation (`SELECT p FROM patients p`, `row_to_json(p)`, `p::text`):
    /// every column of it.
    WholeRow(RelationName),
}

/// Shared analysis, as the cache hands it out.
pub type SharedAnalysis = Arc<Result<Analysis, SqlError>>;
