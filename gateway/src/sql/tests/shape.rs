//! Literal shapes: which texts share an analysis, and that sharing never changes the facts.

use std::sync::Arc;

use crate::sql::{analyze, shape::literal_shape, FactsCache};

#[test]
fn numbers_compared_against_are_taken_out() {
    let a = literal_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
    let b = literal_shape("SELECT abalance FROM pgbench_accounts WHERE aid = 7;");
    assert!(a.is_some());
    assert_eq!(a, b);
    let several = literal_shape("select a from t where b>=10 and c <> 2 and d<3 and e != 4");
    let other = literal_shape("select a from t where b>=99 and c <> 0 and d<1 and e != 50");
    assert!(several.is_some());
    assert_eq!(several, other);
    // The placeholder is a control character, which no shaped text can contain.
    assert!(a.is_some_and(|shape| shape.contains('\u{1}') && !shape.contains("48213")));
}

#[test]
fn texts_whose_lexing_or_facts_could_differ_get_no_shape() {
    for sql in [
        // Not a SELECT: SET, EXPLAIN options, writes.
        "SET statement_timeout = 0",
        "EXPLAIN (ANALYZE 0) DELETE FROM patients WHERE id = 1",
        "UPDATE t SET a = 1 WHERE id = 2",
        "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d",
        "DELETE FROM t WHERE id = 1",
        // Lexer state: quotes, dollar quoting, parameters, escapes, comments.
        "SELECT a FROM t WHERE b = 'x' AND c = 1",
        "SELECT a FROM \"t\" WHERE c = 1",
        "SELECT $$x$$, a FROM t WHERE c = 1",
        "SELECT a FROM t WHERE c = $1 AND d = 2",
        "SELECT a FROM t WHERE c = 1 -- x",
        "SELECT a FROM t /* x */ WHERE c = 1",
        "SELECT a FROM t WHERE c = 1 # 2",
        "SELECT a FROM t WHERE c = E\\x41 AND d = 1",
        // Several statements, non-ASCII, control characters.
        "SELECT a FROM t WHERE c = 1; SELECT 2",
        "SELECT a FROM t WHERE c = 1; DROP TABLE t",
        "SELECT a FROM tä WHERE c = 1",
        "SELECT a FROM t WHERE c = 1\u{1}",
        "SELECT\u{c}a FROM t WHERE c = 1",
        // No number after a comparison.
        "SELECT a FROM t LIMIT 5",
        "SELECT a FROM t WHERE c IN (1, 2)",
        "SELECT a FROM t WHERE c = -1",
        "SELECT f(x => 1) FROM t",
        "SELECT a FROM t WHERE c1 = d2",
        "SELECT a FROM t WHERE c = .5",
        "SELECT 1",
    ] {
        assert_eq!(literal_shape(sql), None, "{sql}");
    }
}

#[test]
fn statements_of_one_shape_have_the_same_facts() {
    for template in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
        "SELECT full_name, ssn FROM patients WHERE id >= {} AND id < {} ORDER BY 1",
        "SELECT p FROM patients p WHERE p.id = {}",
        "SELECT row_to_json(p) FROM patients p WHERE id <> {}",
        "SELECT upper(ssn) INTO copy_t FROM patients WHERE id = {}",
        "SELECT count(*) FROM patients WHERE age > {} GROUP BY zip",
        "SELECT pg_read_file(name) FROM files WHERE id = {}",
        "SELECT * FROM patients WHERE id = {} FOR UPDATE",
        "SELECT a FROM t WHERE b = {}e3",
    ] {
        let texts: Vec<String> = ["0", "1", "48213", "99999999999999999999"]
            .iter()
            .map(|n| template.replace("{}", n))
            .collect();
        let shape = literal_shape(&texts[0]);
        assert!(shape.is_some(), "{template} has a shape");
        for text in &texts[1..] {
            assert_eq!(literal_shape(text), shape, "{text}");
            assert_eq!(analyze(text), analyze(&texts[0]), "{text}");
        }
    }
}

#[test]
fn cache_shares_one_analysis_per_shape_and_keeps_texts_apart() {
    let cache = FactsCache::new(8);
    let first = cache.get("SELECT ssn FROM patients WHERE id = 1");
    let second = cache.get("SELECT ssn FROM patients WHERE id = 2");
    assert!(Arc::ptr_eq(&first, &second), "one shape, one analysis");
    assert_eq!(cache.len(), 1);
    // A text spelled like the shape (it cannot parse) is a text, not the shape.
    let spelled = cache.get("SELECT ssn FROM patients WHERE id = \u{1}");
    assert!(!Arc::ptr_eq(&first, &spelled));
    assert!(first.is_ok());
    // A parser error is not shared by a shape: each text is analysed.
    let broken = cache.get("SELECT ssn FROM WHERE id = 1");
    assert!(broken.is_err());
    assert_eq!(cache.len(), 2);
}
