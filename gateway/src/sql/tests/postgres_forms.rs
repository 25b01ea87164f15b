//! PostgreSQL forms from its own regression suite that the analyzer reads (`cargo xtask bench
//! --only parser` measures the rest): each is read with the relations, functions, flags and
//! output lineage it has, never by leaving part of it out.

use super::{analyze, case, render, single, Flag::*, K};

#[test]
fn forms_the_parser_reads() {
    let cases = [
        // sqlparser 0.64: PostgreSQL forms 0.61 did not read.
        case(
            "RESET SESSION AUTHORIZATION",
            K::Set,
            "RESET SESSION AUTHORIZATION",
        )
        .flags(&[Role]),
        case(
            "INSERT INTO archive OVERRIDING SYSTEM VALUE SELECT ssn FROM patients",
            K::Insert,
            "INSERT",
        )
        .reads(&["patients"])
        .writes(&["archive"]),
        case(
            "MERGE INTO archive a USING patients p ON a.id = p.id \
             WHEN MATCHED THEN DO NOTHING WHEN NOT MATCHED THEN INSERT VALUES (p.ssn)",
            K::Merge,
            "MERGE",
        )
        .reads(&["patients"])
        .writes(&["archive"]),
        case("SELECT * FROM patients* WHERE id = 1", K::Select, "SELECT")
            .reads(&["patients"])
            .flags(&[Where]),
        case(
            "SELECT j.id FROM patients p JOIN visits v USING (id) AS j",
            K::Select,
            "SELECT",
        )
        .reads(&["patients", "visits"]),
        case(
            "CREATE VIEW v WITH (security_barrier) AS SELECT ssn FROM patients",
            K::Create,
            "CREATE VIEW",
        )
        .reads(&["patients"]),
        // Rewritten on the tokens (analyze/forms.rs).
        case(
            "SELECT sum(x) OVER (ROWS BETWEEN 2 PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW), \
             sum(x) OVER (RANGE UNBOUNDED PRECEDING EXCLUDE NO OTHERS) FROM t",
            K::Select,
            "SELECT",
        )
        .reads(&["t"])
        .calls(&["sum"]),
        case(
            "CREATE MATERIALIZED VIEW m AS SELECT ssn FROM patients WITH NO DATA",
            K::Create,
            "CREATE MATERIALIZED VIEW",
        )
        .reads(&["patients"])
        .writes(&["m"]),
        case(
            "CREATE TABLE c AS SELECT ssn FROM patients WITH DATA",
            K::Create,
            "CREATE TABLE AS",
        )
        .reads(&["patients"])
        .writes(&["c"]),
        case(
            "SELECT json_build_array(VARIADIC ARRAY[ssn, name]) FROM patients",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .calls(&["json_build_array"]),
        case(
            "UPDATE t SET a[1:2] = '{1,2}', b = 3, c[-1][2] = v WHERE id = 1",
            K::Update,
            "UPDATE",
        )
        .writes(&["t"])
        .flags(&[Where]),
        case(
            "INSERT INTO t (a[1:5], b) SELECT ssn, name FROM patients",
            K::Insert,
            "INSERT",
        )
        .reads(&["patients"])
        .writes(&["t"]),
        case(
            "UPDATE t SET a = a + 1 WHERE CURRENT OF c1",
            K::Update,
            "UPDATE",
        )
        .writes(&["t"])
        .flags(&[Where]),
        case(
            "DELETE FROM t WHERE CURRENT OF c1 RETURNING *",
            K::Delete,
            "DELETE",
        )
        .writes(&["t"])
        .flags(&[Where]),
    ];
    for case in cases {
        case.check();
    }
}

#[test]
fn rewrites_keep_what_they_do_not_understand() {
    // Subscripts that are not constants may read or call: the statement stays unread.
    for sql in [
        "UPDATE t SET a[(SELECT ssn FROM patients)] = 1",
        "UPDATE t SET a[f(1)] = 1",
        "INSERT INTO t (a[i]) VALUES (1)",
        // CURRENT OF elsewhere than ending an UPDATE's or DELETE's WHERE is not rewritten.
        "SELECT * FROM t WHERE CURRENT OF c1",
    ] {
        assert!(analyze(sql).is_err(), "{sql:?} should stay unread");
    }
}

#[test]
fn lineage_of_forms_the_parser_reads() {
    let cases: &[(&str, &[&str])] = &[
        // The join's alias names only the merged columns, which the text does not trace.
        (
            "SELECT j.id FROM patients p JOIN visits v USING (id) AS j",
            &["id ?"],
        ),
        (
            "SELECT ssn IS JSON OBJECT FROM patients",
            &["?column? ~ patients.ssn"],
        ),
        ("SELECT ssn FROM patients* p", &["ssn = patients.ssn"]),
        // A subscript outside an assignment is a value computed from the array.
        ("SELECT a[1], a[1:2] FROM t", &["a ~ t.a", "a ~ t.a"]),
        (
            "UPDATE t SET a[1] = p.ssn FROM patients p RETURNING t.a",
            &["a ~ t.a patients.ssn"],
        ),
        (
            "SELECT f(VARIADIC ARRAY[ssn]) FROM patients",
            &["f ? patients.ssn"],
        ),
        (
            "INSERT INTO archive OVERRIDING USER VALUE VALUES ($1) RETURNING a",
            &["a = archive.a"],
        ),
    ];
    for (sql, expected) in cases {
        let got: Vec<String> = single(sql).outputs.iter().map(render).collect();
        assert_eq!(&got, expected, "{sql:?}");
    }
}
