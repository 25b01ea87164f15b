//! Output lineage, rendered as text (see `render`): `ssn = patients.ssn` is a direct
//! reference, `~` a computed value, `?` something unknown, `* rel` an expansion.

use super::{render, single};

const CASES: &[(&str, &[&str])] = &[
    // Plain references, through aliases, derived tables and CTEs.
    ("SELECT ssn FROM patients", &["ssn = patients.ssn"]),
    ("SELECT p.ssn AS s FROM public.patients p", &["s = public.patients.ssn"]),
    ("SELECT public.patients.ssn FROM public.patients", &["ssn = public.patients.ssn"]),
    (
        "SELECT ssn, v.note FROM patients p JOIN visits v ON v.pid = p.id",
        &["ssn = patients|visits.ssn", "note = visits.note"],
    ),
    ("SELECT x.s FROM (SELECT ssn AS s FROM patients) x", &["s = patients.ssn"]),
    ("SELECT s FROM (SELECT upper(ssn) AS s FROM patients) x", &["s ~ patients.ssn"]),
    ("WITH c AS (SELECT ssn FROM patients) SELECT ssn FROM c", &["ssn = patients.ssn"]),
    ("WITH c(s) AS (SELECT ssn FROM patients) SELECT c.s FROM c", &["s = patients.ssn"]),
    ("SELECT e.ssn FROM (SELECT * FROM patients) e", &["ssn = patients.ssn"]),
    ("SELECT \"SSN\", SSN FROM patients", &["SSN = patients.SSN", "ssn = patients.ssn"]),
    ("SELECT ssn COLLATE \"C\", (ssn) FROM patients", &["ssn = patients.ssn", "ssn = patients.ssn"]),
    ("SELECT id FROM a JOIN b USING (id)", &["id = a|b.id"]),
    // Computed values.
    (
        "SELECT upper(ssn), ssn::text, ssn || 'x' FROM patients",
        &["upper ~ patients.ssn", "ssn ~ patients.ssn", "?column? ~ patients.ssn"],
    ),
    ("SELECT coalesce(a.x, b.y) FROM a, b", &["coalesce ~ a.x b.y"]),
    (
        "SELECT CASE WHEN ssn IS NULL THEN name ELSE 'x' END FROM patients",
        &["case ~ patients.ssn patients.name"],
    ),
    (
        "SELECT lag(ssn) OVER (PARTITION BY dob ORDER BY id) FROM patients",
        &["lag ~ patients.ssn patients.dob patients.id"],
    ),
    (
        "SELECT string_agg(name, ',' ORDER BY ssn) FILTER (WHERE dob > $1) FROM patients",
        &["string_agg ~ patients.name patients.ssn patients.dob"],
    ),
    ("SELECT count(ssn), count(*) FROM patients", &["count ~", "count ~"]),
    ("SELECT 1, 'x', $1, current_user, now()", &["?column? ~", "?column? ~", "?column? ~", "current_user ~", "now ~"]),
    // Functions that may read on their own are unknown.
    ("SELECT query_to_xml('select * from patients', true, false, '')", &["query_to_xml ?"]),
    ("SELECT my_func(ssn) FROM patients", &["my_func ? patients.ssn"]),
    ("SELECT public.upper(ssn) FROM patients", &["upper ? patients.ssn"]),
    ("SELECT a OPERATOR(pg_catalog.+) b FROM t", &["?column? ? t.a t.b"]),
    // Whole rows.
    ("SELECT p FROM patients p", &["p ~ row(patients)"]),
    (
        "SELECT row_to_json(p), p::text, to_jsonb(p.*), ROW(p.*) FROM patients p",
        &["row_to_json ~ row(patients)", "p ~ row(patients)", "to_jsonb ~ row(patients)", "row ~ row(patients)"],
    ),
    ("SELECT to_json(x) FROM (SELECT ssn FROM patients) x", &["to_json ~ patients.ssn"]),
    ("SELECT (p).ssn FROM patients p", &["ssn ~ row(patients)"]),
    ("SELECT a FROM patients p(a, b)", &["a ~ row(patients)"]),
    // Expansions.
    ("SELECT * FROM patients", &["* patients"]),
    ("TABLE patients", &["* patients"]),
    ("SELECT p.* FROM patients p JOIN visits v ON true", &["* patients"]),
    ("SELECT * FROM patients p JOIN visits v ON true", &["* patients", "* visits"]),
    ("SELECT * FROM (SELECT ssn, name FROM patients) x", &["ssn = patients.ssn", "name = patients.name"]),
    ("SELECT * FROM a JOIN b USING (id)", &["* ? row(a) row(b)"]),
    ("SELECT * FROM pg_ls_dir('.') d, patients", &["* ?", "* ? row(patients)"]),
    ("SELECT a FROM (SELECT * FROM patients) AS e(a)", &["a ? row(patients)"]),
    // Subqueries.
    ("SELECT (SELECT max(ssn) FROM patients) AS m", &["m ~ patients.ssn"]),
    ("SELECT (SELECT p.ssn) FROM patients p", &["ssn ~ patients.ssn"]),
    ("SELECT id FROM visits WHERE EXISTS (SELECT ssn FROM patients)", &["id = visits.id"]),
    ("SELECT x FROM patients p, LATERAL (SELECT p.ssn AS x) l", &["x = patients.ssn"]),
    // Set operations.
    ("SELECT ssn FROM patients UNION SELECT name FROM staff", &["ssn ~ patients.ssn staff.name"]),
    ("SELECT * FROM patients UNION SELECT * FROM staff", &["* ? row(patients) row(staff)"]),
    (
        "SELECT ssn, id FROM patients UNION ALL SELECT * FROM staff",
        &["ssn ? patients.ssn row(staff)", "id ? patients.id row(staff)"],
    ),
    // VALUES.
    ("VALUES (1, 'a'), (2, 'b')", &["column1 ~", "column2 ~"]),
    ("SELECT v.a FROM (VALUES ($1)) v(a)", &["a ~"]),
    // Recursive CTEs reach a fixed point.
    (
        "WITH RECURSIVE r(n, s) AS (SELECT 1, ssn FROM patients UNION ALL SELECT n + 1, s FROM r WHERE n < 3) SELECT s FROM r",
        &["s ~ patients.ssn"],
    ),
    (
        "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT ssn FROM patients) SELECT * FROM a",
        &["ssn = patients.ssn"],
    ),
    // Names that resolve to nothing.
    ("SELECT nope FROM (SELECT ssn FROM patients) x", &["nope ?"]),
    ("SELECT y.z FROM patients", &["z ?"]),
    ("SELECT nope FROM patients", &["nope = patients.nope"]),
    // Table functions.
    ("SELECT x FROM generate_series(1, 3) x", &["x ~"]),
    ("SELECT u FROM patients p, unnest(p.aliases) u", &["u ~ patients.aliases"]),
    ("SELECT t.a FROM dblink('h', 'select ssn from patients') AS t(a text)", &["a ?"]),
    // RETURNING reads the target back, with what was stored in it.
    ("DELETE FROM patients WHERE id = 1 RETURNING ssn", &["ssn = patients.ssn"]),
    ("DELETE FROM patients RETURNING *", &["* patients"]),
    ("UPDATE visits SET note = 'x' RETURNING *", &["* visits"]),
    (
        "UPDATE visits v SET note = p.ssn FROM patients p WHERE v.pid = p.id RETURNING v.note",
        &["note ~ visits.note patients.ssn"],
    ),
    ("INSERT INTO archive (a) VALUES ($1) RETURNING *", &["* archive"]),
    ("INSERT INTO archive SELECT ssn FROM patients RETURNING a", &["a ~ archive.a patients.ssn"]),
    ("INSERT INTO archive SELECT ssn FROM patients RETURNING *", &["* ? row(archive) patients.ssn"]),
    // Other statements that return rows.
    ("COPY patients (ssn) TO STDOUT", &["ssn = patients.ssn"]),
    ("COPY patients TO STDOUT", &["* patients"]),
    ("COPY (SELECT upper(ssn) FROM patients) TO STDOUT", &["upper ~ patients.ssn"]),
    ("EXPLAIN ANALYZE SELECT ssn FROM patients", &["QUERY PLAN ~"]),
    ("SELECT ssn INTO scratch FROM patients", &[]),
    ("DELETE FROM patients", &[]),
];

#[test]
fn output_lineage() {
    for (sql, expected) in CASES {
        let facts = single(sql);
        let got: Vec<String> = facts.outputs.iter().map(render).collect();
        assert_eq!(&got, expected, "{sql:?}");
    }
}
