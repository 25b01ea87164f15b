//! PostgreSQL forms the analyzer rewrites on the tokens before parsing (analyze/forms/):
//! each keeps every relation, function and column of the statement, and the result columns
//! in number and order. The PHI-like column `patients.ssn` is carried through each
//! construct, and the output's lineage must still name it.

use super::{analyze, case, render, single, Flag::*, K};
use crate::sql::{CopyFormat, StatementKind};

#[test]
fn facts_of_rewritten_forms() {
    let cases = [
        // SQL/XML.
        case(
            "SELECT xmlelement(name e, xmlattributes(ssn AS a), xmlforest(name, dob AS born)) \
             FROM patients",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .calls(&["xmlattributes", "xmlelement", "xmlforest"]),
        case(
            "SELECT xmlpi(name php, ssn), xmlroot(doc, version no value, standalone yes), \
             xmlserialize(content doc AS varchar(20)) FROM patients",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .calls(&["xmlpi", "xmlroot", "xmlserialize"]),
        case(
            "SELECT id FROM patients WHERE doc IS NOT DOCUMENT \
             AND xmlexists('/a' PASSING BY REF doc BY REF)",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .calls(&["xmlexists"])
        .flags(&[Where]),
        case(
            "SELECT x.* FROM patients p, LATERAL XMLTABLE('/r' PASSING BY REF p.doc \
             COLUMNS ssn text PATH 'ssn' DEFAULT upper(p.name), n FOR ORDINALITY) AS x",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .calls(&["upper"]),
        // Views.
        case(
            "CREATE VIEW v WITH (security_barrier) AS SELECT ssn FROM patients WHERE id > 0 \
             WITH LOCAL CHECK OPTION",
            K::Create,
            "CREATE VIEW",
        )
        .reads(&["patients"]),
        case(
            "CREATE OR REPLACE RECURSIVE VIEW v (id) AS SELECT id FROM org \
             UNION ALL SELECT o.id FROM org o JOIN v ON o.parent = v.id",
            K::Create,
            "CREATE VIEW",
        )
        .reads(&["org"]),
        // Expressions and clauses.
        case(
            "SELECT SUBSTRING(ssn SIMILAR '%#\"_#\"' ESCAPE '#') FROM patients",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"]),
        case(
            "SELECT sum(x) OVER (ORDER BY d RANGE BETWEEN '1 year'::interval PRECEDING \
             AND '1 year'::interval FOLLOWING EXCLUDE TIES) FROM t",
            K::Select,
            "SELECT",
        )
        .reads(&["t"])
        .calls(&["sum"]),
        case(
            "SELECT id FROM patients WHERE ssn ISNULL \
             OR dob NOT BETWEEN SYMMETRIC '2000-01-01' AND '1990-01-01'",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .flags(&[Where]),
        case(
            "SELECT a, count(*) FROM t GROUP BY DISTINCT ROLLUP (a, b), \
             GROUPING SETS (a, GROUPING SETS (b, CUBE (c)))",
            K::Select,
            "SELECT",
        )
        .reads(&["t"])
        .calls(&["count"]),
        case("SELECT (f(ssn)).* FROM patients", K::Select, "SELECT")
            .reads(&["patients"])
            .calls(&["f"]),
        case(
            "SELECT row(a, ssn)::pair *< row(b, name)::pair, a |@| b FROM patients",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .calls(&["row"]),
        // Assignments to parts of a column.
        case(
            "UPDATE t SET j['a'][0] = '1', k[1]['b'] = p.ssn FROM patients p WHERE t.id = p.id",
            K::Update,
            "UPDATE",
        )
        .reads(&["patients"])
        .writes(&["t"])
        .flags(&[Where]),
        case(
            "INSERT INTO t (c.f[1], d[1].g) SELECT ssn, name FROM patients",
            K::Insert,
            "INSERT",
        )
        .reads(&["patients"])
        .writes(&["t"]),
        case(
            "UPDATE t SET c[1].f = c[1].f + 1 WHERE c[1].g > 0",
            K::Update,
            "UPDATE",
        )
        .writes(&["t"])
        .flags(&[Where]),
        // CREATE TABLE AS and materialized views.
        case(
            "CREATE TEMP TABLE c (a, b) ON COMMIT DELETE ROWS AS SELECT ssn, name FROM patients",
            K::Create,
            "CREATE TABLE AS",
        )
        .reads(&["patients"])
        .writes(&["c"]),
        case(
            "CREATE TABLE c USING heap TABLESPACE ts AS SELECT ssn FROM patients WITH NO DATA",
            K::Create,
            "CREATE TABLE AS",
        )
        .reads(&["patients"])
        .writes(&["c"]),
        case(
            "CREATE MATERIALIZED VIEW m USING heap AS SELECT ssn FROM patients",
            K::Create,
            "CREATE MATERIALIZED VIEW",
        )
        .reads(&["patients"])
        .writes(&["m"]),
        // Routines.
        case(
            "CREATE FUNCTION f(a int, b OUT int, c VARIADIC int[]) LANGUAGE sql \
             COST 10 NOT LEAKPROOF AS 'select 1'",
            K::Create,
            "CREATE FUNCTION",
        ),
        case(
            "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql \
             BEGIN ATOMIC ; SELECT ssn FROM patients; ; END",
            K::Create,
            "CREATE FUNCTION",
        )
        .reads(&["patients"]),
        // Functions in FROM.
        case(
            "SELECT * FROM patients p, ROWS FROM (f(p.ssn), generate_series(1, 2)) \
             WITH ORDINALITY AS z(a, b, o)",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .calls(&["f", "generate_series"]),
        case(
            "SELECT x FROM patients p, json_populate_record(NULL::record, p.doc) AS (x int, y text)",
            K::Select,
            "SELECT",
        )
        .reads(&["patients"])
        .calls(&["json_populate_record"]),
        // COPY options.
        case(
            "COPY t (a, b) FROM STDIN WITH (HEADER MATCH, FORMAT csv)",
            K::CopyFrom,
            "COPY",
        )
        .writes(&["t"]),
        case("COPY t FROM STDIN CSV FREEZE", K::CopyFrom, "COPY").writes(&["t"]),
        case("COPY BINARY patients TO STDOUT", K::CopyTo, "COPY").reads(&["patients"]),
    ];
    for case in cases {
        case.check();
    }
}

#[test]
fn lineage_through_rewritten_forms() {
    let cases: &[(&str, &[&str])] = &[
        (
            "SELECT xmlelement(name e, xmlattributes(ssn AS a)) FROM patients",
            &["xmlelement ? patients.ssn"],
        ),
        (
            "SELECT xmlserialize(content ssn AS text), ssn IS DOCUMENT FROM patients",
            &["xmlserialize ? patients.ssn", "?column? ~ patients.ssn"],
        ),
        // XMLTABLE's columns come from its document, paths and defaults.
        (
            "SELECT x.* FROM patients p, XMLTABLE('/r' PASSING p.doc \
             COLUMNS s text PATH 'ssn' DEFAULT p.ssn, n FOR ORDINALITY) AS x",
            &[
                "s ? patients.doc patients.ssn",
                "n ? patients.doc patients.ssn",
            ],
        ),
        (
            "SELECT xmltable.s FROM patients p, LATERAL XMLTABLE('/r' PASSING BY REF p.ssn \
             COLUMNS s text)",
            &["s ? patients.ssn"],
        ),
        (
            "SELECT ssn ISNULL AS isnull, ssn IS NULL AS \"notnull\" FROM patients",
            &["isnull ~ patients.ssn", "notnull ~ patients.ssn"],
        ),
        (
            "SELECT SUBSTRING(ssn SIMILAR '%' ESCAPE '#') FROM patients",
            &["substring ~ patients.ssn"],
        ),
        (
            "SELECT max(ssn) OVER (ORDER BY dob RANGE '1 year'::interval PRECEDING) FROM patients",
            &["max ~ patients.ssn patients.dob"],
        ),
        // `(x).*`: columns of unknown number; what follows is no longer placed.
        (
            "SELECT id, (f(ssn)).*, name FROM patients",
            &[
                "id = patients.id",
                "* ? patients.ssn",
                "name ? patients.name",
            ],
        ),
        ("SELECT (p).* FROM patients p", &["* ? row(patients)"]),
        // Anybody's operator: unknown, from both operands.
        (
            "SELECT ssn *< name, id FROM patients",
            &["?column? ? patients.ssn patients.name", "id = patients.id"],
        ),
        (
            "UPDATE t SET j['a'] = p.ssn FROM patients p RETURNING t.j",
            &["j ~ t.j patients.ssn"],
        ),
        // ROWS FROM: each function's columns, then the ordinality.
        (
            "SELECT * FROM patients p, ROWS FROM (unnest(array[p.ssn]), f(p.name)) WITH ORDINALITY",
            &[
                "* patients",
                "unnest ~ patients.ssn",
                "* ? patients.name",
                "ordinality ?",
            ],
        ),
        (
            "SELECT * FROM patients p, f(p.ssn) AS (x int, y text)",
            &["* patients", "x ? patients.ssn", "y ? patients.ssn"],
        ),
    ];
    for (sql, expected) in cases {
        let got: Vec<String> = single(sql).outputs.iter().map(render).collect();
        assert_eq!(&got, expected, "{sql:?}");
    }
}

#[test]
fn copy_options_keep_the_format() {
    let binary = single("COPY BINARY patients TO STDOUT");
    assert_eq!(binary.copy.map(|c| c.format), Some(CopyFormat::Binary));
    let header = single("COPY t FROM STDIN WITH (FORMAT csv, HEADER MATCH)");
    let copy = header.copy.expect("COPY facts");
    assert!(copy.text.header, "HEADER MATCH is a header");
    assert_eq!(copy.format, CopyFormat::Csv);
}

#[test]
fn a_routine_body_is_one_statement() {
    let analysis = analyze(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC \
         SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SELECT ssn FROM patients",
    )
    .expect("readable");
    let kinds: Vec<StatementKind> = analysis.statements.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [K::Create, K::Select]);
}

#[test]
fn rewrites_leave_what_they_cannot_place() {
    for sql in [
        // A subscript that reads.
        "UPDATE t SET j[id] = '1'",
        "UPDATE t SET j[(SELECT ssn FROM patients)] = '1'",
        // `(x).*` where it is not a SELECT item.
        "SELECT f((p).*) FROM patients p",
        "SELECT 1 + (p).* FROM patients p",
        // A prefix custom operator, which the parser does not read.
        "SELECT @#@ ssn FROM patients",
        // ROWS FROM with something the rewrite does not know after it.
        "SELECT * FROM ROWS FROM (f(1)) WITH ORDINALITY WITH ORDINALITY",
        // COPY ... WHERE runs an expression on every row: not dropped.
        "COPY t FROM STDIN WHERE a > pg_read_file('x')::int",
        // SEARCH / CYCLE add columns to a recursive query.
        "WITH RECURSIVE r(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM r) \
         SEARCH DEPTH FIRST BY a SET s SELECT * FROM r",
    ] {
        assert!(analyze(sql).is_err(), "{sql:?} should stay unread");
    }
}
