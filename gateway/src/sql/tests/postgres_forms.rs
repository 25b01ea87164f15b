//! PostgreSQL forms from its own regression suite that the analyzer reads (`cargo xtask bench
//! --only parser` measures the rest): each is read with the relations, functions, flags and
//! output lineage it has, never by leaving part of it out.

use super::{case, render, single, Flag::*, K};

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
    ];
    for case in cases {
        case.check();
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
