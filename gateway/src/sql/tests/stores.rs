//! What statements store into relations, rendered as text: `t: a = patients.ssn` for a named
//! column, `t: #1 ~ patients.ssn` for the first column in the target's order, `t: * ~ ...`
//! when any column may hold it; `temp t` for a table that lives in the session.

use super::{render, render_lineage, show, single};
use crate::sql::StoredColumns;

const CASES: &[(&str, &[&str])] = &[
    // INSERT ... SELECT, with and without a column list.
    (
        "INSERT INTO t (a, b) SELECT ssn, upper(name) FROM patients",
        &["t: a = patients.ssn", "t: b ~ patients.name"],
    ),
    (
        "INSERT INTO t SELECT ssn FROM patients",
        &["t: #1 ssn = patients.ssn"],
    ),
    (
        "INSERT INTO t SELECT * FROM patients",
        &["t: #1 * patients"],
    ),
    (
        "INSERT INTO t (a, b) SELECT * FROM patients",
        &["t: * ~ row(patients)"],
    ),
    ("INSERT INTO t (a) VALUES ($1)", &["t: a ~"]),
    // UPDATE ... SET, from another table.
    (
        "UPDATE t SET a = p.ssn, b = 1 FROM patients p WHERE p.id = t.id",
        &["t: a = patients.ssn", "t: b ~"],
    ),
    // A field or an element of a column is that column, whose value is then computed from
    // the part assigned (a partial reveal of the whole could show another part).
    (
        "UPDATE t SET a.f = p.ssn FROM patients p",
        &["t: a ~ patients.ssn"],
    ),
    (
        "UPDATE t SET j['a'][0] = p.ssn, b = p.name FROM patients p",
        &["t: j ~ patients.ssn", "t: b = patients.name"],
    ),
    (
        "INSERT INTO t (c.f[1], b) SELECT ssn, name FROM patients",
        &["t: c ~ patients.ssn", "t: b = patients.name"],
    ),
    (
        "UPDATE t SET (a, b) = (SELECT ssn, name FROM patients)",
        &["t: * ~ patients.ssn t.ssn patients.name t.name"],
    ),
    // ON CONFLICT DO UPDATE stores what EXCLUDED proposes.
    (
        "INSERT INTO t (a) SELECT ssn FROM patients ON CONFLICT (a) DO UPDATE SET b = excluded.a",
        &["t: a = patients.ssn", "t: b ~ patients.ssn"],
    ),
    // MERGE: any column may hold anything stored.
    (
        "MERGE INTO t USING patients p ON t.id = p.id WHEN MATCHED THEN UPDATE SET a = p.ssn",
        &["t: * ~ patients.ssn"],
    ),
    // New tables take the select list's names.
    (
        "CREATE TABLE t AS SELECT ssn, id FROM patients",
        &["t: #1 ssn = patients.ssn", "t: #2 id = patients.id"],
    ),
    (
        "CREATE TEMP TABLE t AS SELECT ssn FROM patients",
        &["temp t: #1 ssn = patients.ssn"],
    ),
    // A column list names the leading columns; the others keep the query's names.
    (
        "CREATE TABLE t (a) AS SELECT ssn, name FROM patients",
        &["t: #1 a = patients.ssn", "t: #2 name = patients.name"],
    ),
    (
        "CREATE TEMP TABLE t (a, b) ON COMMIT DROP AS SELECT ssn, name FROM patients",
        &[
            "temp t: #1 a = patients.ssn",
            "temp t: #2 b = patients.name",
        ],
    ),
    // Past a `*` or `(x).*` the names line up with nothing known: any column may hold it.
    (
        "CREATE TABLE t (a, b) USING heap AS SELECT * FROM patients",
        &[
            "t: #1 a ? row(patients)",
            "t: #2 b ? row(patients)",
            "t: #3 * ? row(patients)",
        ],
    ),
    (
        "CREATE TABLE t (a) AS SELECT (p).* FROM patients p",
        &["t: #1 a ? row(patients)", "t: #2 * ? row(patients)"],
    ),
    (
        "SELECT ssn INTO TEMP t FROM patients",
        &["temp t: #1 ssn = patients.ssn"],
    ),
    // A data-modifying CTE.
    (
        "WITH moved AS (INSERT INTO archive.t (a) SELECT ssn FROM patients RETURNING a) SELECT 1",
        &["archive.t: a = patients.ssn"],
    ),
    // Nothing stored from a read.
    ("DELETE FROM t WHERE a IN (SELECT ssn FROM patients)", &[]),
    ("SELECT ssn FROM patients", &[]),
];

fn rendered(sql: &str) -> Vec<String> {
    let facts = single(sql);
    let mut lines = Vec::new();
    for store in &facts.stores {
        let prefix = match store.temporary {
            true => format!("temp {}", show(&store.target)),
            false => show(&store.target),
        };
        match &store.columns {
            StoredColumns::Named(columns) => {
                for (column, lineage) in columns {
                    lines.push(format!("{prefix}: {column} {}", render_lineage(lineage)));
                }
            }
            StoredColumns::InOrder(items) => {
                for (index, item) in items.iter().enumerate() {
                    lines.push(format!("{prefix}: #{} {}", index + 1, render(item)));
                }
            }
            StoredColumns::Whole(lineage) => {
                lines.push(format!("{prefix}: * {}", render_lineage(lineage)));
            }
        }
    }
    lines
}

#[test]
fn what_statements_store_where() {
    let mut failures = Vec::new();
    for (sql, expected) in CASES {
        let got = rendered(sql);
        if got != *expected {
            failures.push(format!(
                "{sql}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
