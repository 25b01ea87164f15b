//! COPY details, nested statements, DDL objects, name folding and the cache.

use std::sync::Arc;

use super::{analyze, relation, render, single};
use crate::sql::{
    CopyDirection as D, CopyEndpoint as E, CopyFormat as F, FactsCache, Released as R,
};

#[test]
fn copy_facts() {
    type Expected = (D, E, Option<&'static str>, &'static [&'static str], F);
    let cases: &[(&str, Expected)] = &[
        (
            "COPY patients TO STDOUT",
            (D::To, E::Client, Some("patients"), &[], F::Text),
        ),
        (
            "COPY patients (ssn, name) TO STDOUT WITH CSV HEADER",
            (D::To, E::Client, Some("patients"), &["ssn", "name"], F::Csv),
        ),
        (
            "COPY patients FROM STDIN BINARY",
            (D::From, E::Client, Some("patients"), &[], F::Binary),
        ),
        (
            "COPY public.patients FROM '/tmp/x' WITH (FORMAT binary)",
            (
                D::From,
                E::File("/tmp/x".into()),
                Some("public.patients"),
                &[],
                F::Binary,
            ),
        ),
        (
            "COPY patients TO PROGRAM 'gzip > /tmp/x' (FORMAT 'csv')",
            (
                D::To,
                E::Program("gzip > /tmp/x".into()),
                Some("patients"),
                &[],
                F::Csv,
            ),
        ),
        (
            "COPY (SELECT ssn FROM patients) TO STDOUT (FORMAT csv, HEADER true)",
            (D::To, E::Client, None, &[], F::Csv),
        ),
        (
            "COPY patients TO STDOUT (FORMAT csv, FORMAT text)",
            (D::To, E::Client, Some("patients"), &[], F::Text),
        ),
    ];
    for (sql, (direction, endpoint, copied, columns, format)) in cases {
        let facts = single(sql);
        let Some(copy) = facts.copy else {
            panic!("{sql:?}: no COPY facts");
        };
        assert_eq!(copy.direction, *direction, "{sql:?}");
        assert_eq!(&copy.endpoint, endpoint, "{sql:?}");
        assert_eq!(copy.relation, copied.map(relation), "{sql:?}");
        assert_eq!(copy.columns, *columns, "{sql:?}");
        assert_eq!(copy.format, *format, "{sql:?}");
    }
    let query = single("COPY (SELECT ssn FROM patients) TO STDOUT");
    assert_eq!(query.reads, vec![relation("patients")]);
}

#[test]
fn nested_statements_keep_their_facts() {
    let prepare = single("PREPARE q (int) AS DELETE FROM patients WHERE id = $1 RETURNING ssn");
    let Some((name, inner)) = &prepare.prepared else {
        panic!("PREPARE without prepared facts");
    };
    assert_eq!(name, "q");
    assert_eq!(inner.kind, crate::sql::StatementKind::Delete);
    assert_eq!(
        inner.outputs.iter().map(render).collect::<Vec<_>>(),
        ["ssn = patients.ssn"]
    );
    assert_eq!(
        prepare.writes,
        vec![relation("patients")],
        "merged into PREPARE"
    );
    assert!(prepare.outputs.is_empty(), "PREPARE returns nothing");

    let role = single("PREPARE r AS SELECT set_config('role', 'admin', false)");
    assert!(
        role.role_change,
        "a role change inside PREPARE is visible outside"
    );

    let execute = single("EXECUTE Q(1)");
    assert_eq!(execute.executes.as_deref(), Some("q"));

    let declare = single("DECLARE \"C\" CURSOR FOR SELECT upper(ssn) FROM patients");
    let Some((cursor, inner)) = &declare.cursor_query else {
        panic!("DECLARE without the cursor's query");
    };
    assert_eq!(cursor, "C");
    assert_eq!(
        inner.outputs.iter().map(render).collect::<Vec<_>>(),
        ["upper ~ patients.ssn"]
    );
    assert_eq!(declare.functions, ["upper"]);

    assert_eq!(single("FETCH NEXT FROM c").cursor.as_deref(), Some("c"));
    assert_eq!(single("MOVE FORWARD 5 FROM c").cursor.as_deref(), Some("c"));
    assert_eq!(single("CLOSE c").cursor.as_deref(), Some("c"));
    assert_eq!(single("CLOSE ALL").cursor, None);

    assert!(!declare.cursor_holds);
    assert!(single("DECLARE h CURSOR WITH HOLD FOR SELECT 1").cursor_holds);
    assert!(!single("DECLARE h CURSOR WITHOUT HOLD FOR SELECT 1").cursor_holds);

    let explain = single("EXPLAIN ANALYZE EXECUTE p");
    assert!(explain.explain_analyze);
    assert_eq!(
        explain.executes.as_deref(),
        Some("p"),
        "the caller must look p up"
    );
}

#[test]
fn ddl_objects() {
    let cases: &[(&str, &[&str])] = &[
        (
            "DROP TABLE patients, public.visits",
            &["patients", "public.visits"],
        ),
        ("DROP VIEW IF EXISTS v CASCADE", &["v"]),
        ("ALTER TABLE patients DROP COLUMN ssn", &["patients"]),
        ("CREATE INDEX i ON patients (ssn)", &["i", "patients"]),
        ("CREATE TABLE dump AS SELECT * FROM patients", &["dump"]),
        ("TRUNCATE patients, visits", &["patients", "visits"]),
        ("GRANT SELECT ON patients TO bob", &["patients"]),
        ("CREATE SCHEMA s", &["s"]),
        ("DROP FUNCTION f(int)", &["f"]),
        ("CREATE EXTENSION dblink", &["dblink"]),
        ("COMMENT ON TABLE patients IS 'x'", &["patients"]),
    ];
    for (sql, expected) in cases {
        let mut expected: Vec<_> = expected.iter().map(|r| relation(r)).collect();
        expected.sort();
        assert_eq!(single(sql).ddl_objects, expected, "{sql:?}");
    }
}

#[test]
fn names_fold_like_postgres() {
    let long = "a".repeat(70);
    let facts = single(&format!("SELECT * FROM {long}"));
    assert_eq!(
        facts.reads,
        vec![relation(&"a".repeat(63))],
        "truncated to 63 bytes"
    );
    let facts = single("SELECT * FROM \"Public\".\"PATIENTS\", PUBLIC.Visits, db.s.t");
    let mut expected = vec![
        relation("Public.PATIENTS"),
        relation("public.visits"),
        relation("s.t"),
    ];
    expected.sort();
    assert_eq!(facts.reads, expected);
    // Only ASCII folds: PostgreSQL leaves other letters as written.
    assert_eq!(single("SELECT * FROM ÄRZTE").reads, vec![relation("Ärzte")]);
}

#[test]
fn cache_hits_share_one_analysis() {
    let cache = FactsCache::new(8);
    let first = cache.get("SELECT ssn FROM patients");
    let second = cache.get("SELECT ssn FROM patients");
    assert!(Arc::ptr_eq(&first, &second), "a hit is the same analysis");
    let error = cache.get("SELECT 'secret' FROM");
    assert!(error.is_err());
    assert!(
        Arc::ptr_eq(&error, &cache.get("SELECT 'secret' FROM")),
        "errors are cached too"
    );
    assert_eq!(*first, analyze("SELECT ssn FROM patients"));
    let debug = format!("{cache:?}");
    assert!(
        !debug.contains("patients") && !debug.contains("secret"),
        "{debug}"
    );
}

#[test]
fn cache_stays_bounded() {
    let cache = FactsCache::new(10);
    for i in 0..1_000 {
        cache.get(&format!("SELECT {i}"));
        assert!(cache.len() <= 10, "grew to {}", cache.len());
    }
    // Shapes have a map of their own, bounded alike.
    for i in 0..1_000 {
        cache.get(&format!("SELECT a{i} FROM t WHERE b = {i}"));
        assert!(cache.len() <= 20, "grew to {}", cache.len());
    }
    let none = FactsCache::new(0);
    none.get("SELECT 1");
    assert_eq!(none.len(), 0);
    let huge = format!("SELECT 1{}", ", 1".repeat(40_000));
    cache.get(&huge);
    assert!(cache.len() <= 20);
}

#[test]
fn cache_is_shared_between_threads() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let cache = Arc::new(FactsCache::new(64));
    shareable(&*cache);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let analysis = cache.get(&format!("SELECT a{} FROM t", i % 50));
                    assert!(analysis.is_ok());
                }
            })
        })
        .collect();
    for worker in workers {
        assert!(worker.join().is_ok(), "a worker panicked");
    }
    assert_eq!(cache.len(), 50);
}

#[test]
fn what_a_statement_releases_and_which_statements_end_the_transaction() {
    let cases: &[(&str, Option<R>)] = &[
        ("DEALLOCATE q", Some(R::Prepared("q".into()))),
        ("DEALLOCATE PREPARE \"Q\"", Some(R::Prepared("Q".into()))),
        ("DEALLOCATE ALL", Some(R::AllPrepared)),
        ("deallocate prepare all", Some(R::AllPrepared)),
        ("DEALLOCATE \"ALL\"", Some(R::Prepared("ALL".into()))),
        ("CLOSE c", Some(R::Cursor("c".into()))),
        ("CLOSE ALL", Some(R::AllCursors)),
        ("DISCARD ALL", Some(R::Everything)),
        ("DISCARD PLANS", None),
        ("FETCH NEXT FROM c", None),
    ];
    for (sql, released) in cases {
        assert_eq!(&single(sql).released, released, "{sql}");
    }
    for sql in ["COMMIT", "END", "ROLLBACK", "COMMIT AND CHAIN"] {
        assert!(single(sql).ends_transaction, "{sql}");
    }
    for sql in [
        "BEGIN",
        "ROLLBACK TO SAVEPOINT s",
        "SAVEPOINT s",
        "RELEASE s",
    ] {
        assert!(!single(sql).ends_transaction, "{sql}");
    }
}
