//! The corpus: the statements of the kinds measured in every script of the regression suite
//! (`src/test/regress/sql/*.sql`), each with the server's verdict from its expected output.

use std::path::Path;

use anyhow::Context;

use super::{
    expected::{verdicts, Verdict},
    psql::{split, Statement},
};

/// The statement kinds measured, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Select,
    With,
    Insert,
    Update,
    Delete,
    Copy,
    Prepare,
    Declare,
    /// `CREATE TABLE ... AS`, `CREATE [MATERIALIZED] VIEW ... AS`.
    CreateAs,
    CreateFunction,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Select,
        Kind::With,
        Kind::Insert,
        Kind::Update,
        Kind::Delete,
        Kind::Copy,
        Kind::Prepare,
        Kind::Declare,
        Kind::CreateAs,
        Kind::CreateFunction,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Select => "SELECT",
            Kind::With => "WITH",
            Kind::Insert => "INSERT",
            Kind::Update => "UPDATE",
            Kind::Delete => "DELETE",
            Kind::Copy => "COPY",
            Kind::Prepare => "PREPARE",
            Kind::Declare => "DECLARE",
            Kind::CreateAs => "CREATE ... AS (table, view)",
            Kind::CreateFunction => "CREATE FUNCTION",
        }
    }
}

pub struct Entry {
    /// `file.sql:line`
    pub place: String,
    pub kind: Kind,
    pub verdict: Verdict,
    /// Uses a psql variable whose value the script does not give: not SQL as written.
    pub unknown_variable: bool,
    pub text: String,
}

/// Every statement of a measured kind under `regress_dir`, files in name order.
pub fn collect(regress_dir: &Path) -> anyhow::Result<Vec<Entry>> {
    let sql_dir = regress_dir.join("sql");
    let mut files: Vec<_> = std::fs::read_dir(&sql_dir)
        .with_context(|| format!("reading {}", sql_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut entries = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // Some scripts are not UTF-8 (the encoding tests): read them as psql would send bytes.
        let script = String::from_utf8_lossy(&std::fs::read(&file)?).into_owned();
        let expected = regress_dir
            .join("expected")
            .join(&name)
            .with_extension("out");
        let (statements, echoed) = split(&script);
        let verdicts = match std::fs::read(&expected) {
            Ok(output) => verdicts(
                &script,
                &echoed,
                &String::from_utf8_lossy(&output),
                &statements,
            ),
            Err(_) => vec![Verdict::Unknown; statements.len()],
        };
        for (statement, verdict) in statements.into_iter().zip(verdicts) {
            let Some(kind) = kind(&statement) else {
                continue;
            };
            entries.push(Entry {
                place: format!("{name}:{}", statement.first_line),
                kind,
                verdict,
                unknown_variable: statement.unknown_variable,
                text: statement.text,
            });
        }
    }
    Ok(entries)
}

/// The kind of a statement from its first words, or None for kinds not measured.
pub fn kind(statement: &Statement) -> Option<Kind> {
    let words: Vec<&str> = statement.words.iter().map(|(w, _)| w.as_str()).collect();
    let first = *words.first()?;
    // `(SELECT ...) UNION ...` starts with a parenthesis.
    if statement.text.starts_with('(') {
        return match first {
            "select" | "values" | "table" => Some(Kind::Select),
            "with" => Some(Kind::With),
            _ => None,
        };
    }
    match first {
        "select" => Some(Kind::Select),
        "with" => Some(Kind::With),
        "insert" => Some(Kind::Insert),
        "update" => Some(Kind::Update),
        "delete" => Some(Kind::Delete),
        "copy" => Some(Kind::Copy),
        "prepare" if words.get(1) != Some(&"transaction") => Some(Kind::Prepare),
        "declare" => Some(Kind::Declare),
        "create" => create_kind(statement),
        _ => None,
    }
}

fn create_kind(statement: &Statement) -> Option<Kind> {
    const MODIFIERS: [&str; 7] = [
        "or",
        "replace",
        "temp",
        "temporary",
        "local",
        "global",
        "unlogged",
    ];
    let mut rest = statement.words[1..]
        .iter()
        .map(|(w, _)| w.as_str())
        .skip_while(|w| MODIFIERS.contains(w));
    let has_as = || {
        statement
            .words
            .iter()
            .any(|(w, depth)| w == "as" && *depth == 0)
    };
    match rest.next()? {
        "function" => Some(Kind::CreateFunction),
        "materialized" | "view" | "recursive" => Some(Kind::CreateAs),
        "table" if has_as() => Some(Kind::CreateAs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{super::psql::split, kind, Kind};

    #[test]
    fn kinds_come_from_the_leading_words() {
        let script = "(SELECT 1) UNION SELECT 2;\nCREATE TEMP TABLE t AS SELECT 1;\n\
                      CREATE TABLE u (a int GENERATED ALWAYS AS (1) STORED);\n\
                      CREATE OR REPLACE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql;\n\
                      PREPARE TRANSACTION 'x';\nPREPARE p AS SELECT 1;\nEXPLAIN SELECT 1;";
        let (statements, _) = split(script);
        let kinds: Vec<Option<Kind>> = statements.iter().map(kind).collect();
        assert_eq!(
            kinds,
            [
                Some(Kind::Select),
                Some(Kind::CreateAs),
                None,
                Some(Kind::CreateFunction),
                None,
                Some(Kind::Prepare),
                None,
            ]
        );
    }
}
