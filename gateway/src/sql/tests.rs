//! Table-driven tests of the SQL facts: statement kinds and effects here, lineage and the
//! rest in the submodules. Each case states every flag, so a flag set by mistake fails too.

mod lineage;
mod other;
mod postgres_forms;
mod rewritten_forms;
mod shape;
mod stores;

use super::{
    analyze, Analysis, Lineage, OutputItem, RelationName, Source, SqlError, StatementFacts,
    StatementKind as K,
};

/// `"name"` or `"schema.name"`.
fn relation(text: &str) -> RelationName {
    match text.split_once('.') {
        Some((schema, name)) => RelationName {
            schema: Some(schema.to_owned()),
            name: name.to_owned(),
        },
        None => RelationName {
            schema: None,
            name: text.to_owned(),
        },
    }
}

fn show(relation: &RelationName) -> String {
    match &relation.schema {
        Some(schema) => format!("{schema}.{}", relation.name),
        None => relation.name.clone(),
    }
}

/// One output item as text: `* rel` for an expansion, else `name F sources...` where F is
/// `=` (direct), `~` (computed) or `?` (unknown); sources are `rel.column` (`a|b.column`
/// for several candidate relations) or `row(rel)`.
fn render(item: &OutputItem) -> String {
    match item {
        OutputItem::Expand(relation) => format!("* {}", show(relation)),
        OutputItem::Column { name, lineage } => format!("{name} {}", render_lineage(lineage)),
    }
}

fn render_lineage(lineage: &Lineage) -> String {
    let flag = if lineage.unknown {
        "?"
    } else if lineage.direct {
        "="
    } else {
        "~"
    };
    let mut text = flag.to_owned();
    for source in &lineage.sources {
        text.push(' ');
        match source {
            Source::Column { relations, column } => {
                let names: Vec<String> = relations.iter().map(show).collect();
                text.push_str(&format!("{}.{column}", names.join("|")));
            }
            Source::WholeRow(relation) => text.push_str(&format!("row({})", show(relation))),
        }
    }
    text
}

fn analyze_ok(sql: &str) -> Analysis {
    match analyze(sql) {
        Ok(analysis) => analysis,
        Err(error) => panic!("{sql:?} did not analyse: {error}"),
    }
}

/// The only statement of `sql`.
fn single(sql: &str) -> StatementFacts {
    let mut analysis = analyze_ok(sql);
    assert_eq!(analysis.statements.len(), 1, "{sql:?}: statement count");
    analysis.statements.remove(0)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flag {
    Where,
    Limit,
    Hidden,
    Analyze,
    Role,
}

struct Case {
    sql: &'static str,
    kind: K,
    command: &'static str,
    reads: &'static [&'static str],
    writes: &'static [&'static str],
    functions: &'static [&'static str],
    flags: &'static [Flag],
}

const fn case(sql: &'static str, kind: K, command: &'static str) -> Case {
    Case {
        sql,
        kind,
        command,
        reads: &[],
        writes: &[],
        functions: &[],
        flags: &[],
    }
}

impl Case {
    const fn reads(mut self, reads: &'static [&'static str]) -> Self {
        self.reads = reads;
        self
    }
    const fn writes(mut self, writes: &'static [&'static str]) -> Self {
        self.writes = writes;
        self
    }
    const fn calls(mut self, functions: &'static [&'static str]) -> Self {
        self.functions = functions;
        self
    }
    const fn flags(mut self, flags: &'static [Flag]) -> Self {
        self.flags = flags;
        self
    }

    fn check(&self) {
        let facts = single(self.sql);
        let sql = self.sql;
        assert_eq!(facts.kind, self.kind, "{sql:?}: kind");
        assert_eq!(facts.command, self.command, "{sql:?}: command");
        let mut reads: Vec<RelationName> = self.reads.iter().map(|r| relation(r)).collect();
        reads.sort();
        assert_eq!(facts.reads, reads, "{sql:?}: reads");
        let mut writes: Vec<RelationName> = self.writes.iter().map(|r| relation(r)).collect();
        writes.sort();
        assert_eq!(facts.writes, writes, "{sql:?}: writes");
        let mut functions: Vec<&str> = self.functions.to_vec();
        functions.sort_unstable();
        assert_eq!(facts.functions, functions, "{sql:?}: functions");
        let flags = [
            (Flag::Where, facts.has_where),
            (Flag::Limit, facts.has_limit),
            (Flag::Hidden, facts.hidden_write),
            (Flag::Analyze, facts.explain_analyze),
            (Flag::Role, facts.role_change),
        ];
        for (flag, set) in flags {
            assert_eq!(set, self.flags.contains(&flag), "{sql:?}: flag {flag:?}");
        }
    }
}

use Flag::*;

const CASES: &[Case] = &[
    case("SELECT ssn FROM patients WHERE id = $1 LIMIT 5", K::Select, "SELECT")
        .reads(&["patients"])
        .flags(&[Where, Limit]),
    case("SELECT ssn FROM patients FETCH FIRST 3 ROWS ONLY", K::Select, "SELECT")
        .reads(&["patients"])
        .flags(&[Limit]),
    case("SELECT ssn FROM patients LIMIT ALL", K::Select, "SELECT").reads(&["patients"]),
    // A set operation is filtered when every branch is.
    case(
        "SELECT ssn FROM patients WHERE id = 1 UNION SELECT ssn FROM intake WHERE id = 2",
        K::Select,
        "SELECT",
    )
    .reads(&["intake", "patients"])
    .flags(&[Where]),
    case(
        "SELECT ssn FROM patients WHERE id = 1 UNION SELECT ssn FROM intake",
        K::Select,
        "SELECT",
    )
    .reads(&["intake", "patients"]),
    case("SELECT /* a /* b */ c */ ssn FROM patients", K::Select, "SELECT").reads(&["patients"]),
    case("SELECT $t$ ; DROP TABLE x; $t$ FROM patients", K::Select, "SELECT")
        .reads(&["patients"]),
    case("SELECT U&'\\0041', E'a\\'; b' FROM patients", K::Select, "SELECT").reads(&["patients"]),
    case("TABLE patients", K::Select, "SELECT").reads(&["patients"]),
    case("TABLE \"Patients\"", K::Select, "SELECT").reads(&["Patients"]),
    case("SELECT * FROM (TABLE public.patients) p", K::Select, "SELECT")
        .reads(&["public.patients"]),
    case("SELECT * FROM PATIENTS, \"Visits\"", K::Select, "SELECT").reads(&["patients", "Visits"]),
    case("SELECT * INTO scratch FROM patients", K::Select, "SELECT INTO")
        .reads(&["patients"])
        .writes(&["scratch"])
        .flags(&[Hidden]),
    case("WITH x AS (DELETE FROM patients RETURNING *) SELECT * FROM x", K::Select, "SELECT")
        .writes(&["patients"])
        .flags(&[Hidden]),
    case("WITH x AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM x)", K::Delete, "DELETE")
        .writes(&["t"])
        .flags(&[Where]),
    case("EXPLAIN ANALYZE DELETE FROM patients", K::Explain, "EXPLAIN")
        .writes(&["patients"])
        .flags(&[Hidden, Analyze]),
    case("EXPLAIN (ANALYZE, FORMAT JSON) UPDATE patients SET a = 1", K::Explain, "EXPLAIN")
        .writes(&["patients"])
        .flags(&[Hidden, Analyze]),
    case("EXPLAIN (ANALYSE) DELETE FROM patients", K::Explain, "EXPLAIN")
        .writes(&["patients"])
        .flags(&[Hidden, Analyze]),
    case("EXPLAIN ANALYSE VERBOSE INSERT INTO t VALUES (1)", K::Explain, "EXPLAIN")
        .writes(&["t"])
        .flags(&[Hidden, Analyze]),
    case("EXPLAIN ANALYZE SELECT ssn FROM patients", K::Explain, "EXPLAIN")
        .reads(&["patients"])
        .flags(&[Analyze]),
    case("EXPLAIN DELETE FROM patients", K::Explain, "EXPLAIN"),
    case("EXPLAIN (ANALYZE false) DELETE FROM patients", K::Explain, "EXPLAIN"),
    case("EXPLAIN SELECT pg_read_file('x')", K::Explain, "EXPLAIN").calls(&["pg_read_file"]),
    case("DO $$ BEGIN PERFORM 1; END $$", K::Do, "DO"),
    case("do language plpgsql 'BEGIN NULL; END'", K::Do, "DO"),
    case("SET ROLE admin", K::Set, "SET ROLE").flags(&[Role]),
    case("SET LOCAL ROLE admin", K::Set, "SET ROLE").flags(&[Role]),
    case("SET role TO admin", K::Set, "SET ROLE").flags(&[Role]),
    case("RESET ROLE", K::Set, "RESET ROLE").flags(&[Role]),
    case("SET SESSION AUTHORIZATION bob", K::Set, "SET SESSION AUTHORIZATION").flags(&[Role]),
    case("SET LOCAL SESSION AUTHORIZATION bob", K::Set, "SET SESSION AUTHORIZATION")
        .flags(&[Role]),
    case("RESET SESSION AUTHORIZATION", K::Set, "RESET SESSION AUTHORIZATION").flags(&[Role]),
    case("DISCARD ALL", K::Set, "DISCARD").flags(&[Role]),
    case("SET search_path = public", K::Set, "SET"),
    case("RESET ALL", K::Set, "RESET"),
    case("select set_config('role', 'x', false)", K::Select, "SELECT")
        .calls(&["set_config"])
        .flags(&[Role]),
    case("SELECT pg_catalog.SET_CONFIG('Session_Authorization', 'x', false)", K::Select, "SELECT")
        .calls(&["pg_catalog.set_config"])
        .flags(&[Role]),
    case("SELECT set_config(current_setting('x'), 'y', true)", K::Select, "SELECT")
        .calls(&["current_setting", "set_config"])
        .flags(&[Role]),
    case("SELECT set_config('work_mem', '1MB', true)", K::Select, "SELECT").calls(&["set_config"]),
    case("PREPARE p AS SELECT ssn FROM patients", K::Prepare, "PREPARE").reads(&["patients"]),
    case("EXECUTE p(pg_read_file('x'))", K::Execute, "EXECUTE").calls(&["pg_read_file"]),
    case("DEALLOCATE p", K::Deallocate, "DEALLOCATE"),
    case("DECLARE c CURSOR FOR SELECT ssn FROM patients", K::Declare, "DECLARE CURSOR")
        .reads(&["patients"]),
    case("FETCH 10 FROM c", K::Fetch, "FETCH"),
    case("MOVE 10 IN c", K::Fetch, "MOVE"),
    case("CLOSE c", K::ClosePortal, "CLOSE"),
    case("CALL archive.patients_purge(1)", K::Call, "CALL").calls(&["archive.patients_purge"]),
    case("SELECT * FROM dblink('db', 'select ssn from patients') AS t(a text)", K::Select, "SELECT")
        .calls(&["dblink"]),
    case("SELECT * FROM pg_ls_dir('.')", K::Select, "SELECT").calls(&["pg_ls_dir"]),
    case("SELECT Pg_Catalog.PG_READ_FILE('/etc/passwd')", K::Select, "SELECT")
        .calls(&["pg_catalog.pg_read_file"]),
    case("SELECT id FROM visits WHERE pid IN (SELECT id FROM patients)", K::Select, "SELECT")
        .reads(&["visits", "patients"])
        .flags(&[Where]),
    case("SELECT (SELECT max(ssn) FROM patients) FROM visits", K::Select, "SELECT")
        .reads(&["visits", "patients"])
        .calls(&["max"]),
    case("SELECT v.id FROM visits v JOIN LATERAL (SELECT ssn FROM patients p WHERE p.id = v.pid) x ON true", K::Select, "SELECT")
        .reads(&["visits", "patients"]),
    case("SELECT 1 FROM t ORDER BY (SELECT count(*) FROM secrets)", K::Select, "SELECT")
        .reads(&["t", "secrets"])
        .calls(&["count"]),
    case("SELECT a FROM t GROUP BY a HAVING a > (SELECT min(x) FROM audit)", K::Select, "SELECT")
        .reads(&["t", "audit"])
        .calls(&["min"]),
    case("SELECT upper(md5(x)) FROM t JOIN u ON t.id = (SELECT id FROM w)", K::Select, "SELECT")
        .reads(&["t", "u", "w"])
        .calls(&["md5", "upper"]),
    case("WITH patients AS (SELECT 1 AS id) SELECT id FROM patients", K::Select, "SELECT"),
    case("WITH RECURSIVE r AS (SELECT id FROM org UNION ALL SELECT o.id FROM org o JOIN r ON o.parent = r.id) SELECT * FROM r", K::Select, "SELECT")
        .reads(&["org"]),
    case("INSERT INTO archive SELECT * FROM patients", K::Insert, "INSERT")
        .reads(&["patients"])
        .writes(&["archive"]),
    case("INSERT INTO archive TABLE patients", K::Insert, "INSERT")
        .reads(&["patients"])
        .writes(&["archive"]),
    case("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a RETURNING *", K::Insert, "INSERT")
        .writes(&["t"]),
    case("UPDATE patients p SET name = s.name FROM staging s WHERE p.id = s.id", K::Update, "UPDATE")
        .reads(&["staging"])
        .writes(&["patients"])
        .flags(&[Where]),
    case("DELETE FROM patients USING blocked b WHERE patients.id = b.id", K::Delete, "DELETE")
        .reads(&["blocked"])
        .writes(&["patients"])
        .flags(&[Where]),
    case("DELETE FROM patients", K::Delete, "DELETE").writes(&["patients"]),
    // The parser reads `UPDATE ONLY t` as a table named "only"; ONLY is dropped first.
    case("UPDATE ONLY patients SET a = 1", K::Update, "UPDATE").writes(&["patients"]),
    case("DELETE FROM ONLY patients WHERE id = 1", K::Delete, "DELETE")
        .writes(&["patients"])
        .flags(&[Where]),
    case("SELECT * FROM ONLY patients FETCH FIRST 1 ROWS ONLY", K::Select, "SELECT")
        .reads(&["patients"])
        .flags(&[Limit]),
    case("MERGE INTO patients t USING staging s ON t.id = s.id WHEN MATCHED THEN UPDATE SET name = s.name WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)", K::Merge, "MERGE")
        .reads(&["staging"])
        .writes(&["patients"]),
    case("COPY patients TO PROGRAM 'curl x'", K::CopyTo, "COPY").reads(&["patients"]),
    case("COPY (DELETE FROM patients RETURNING *) TO STDOUT", K::CopyTo, "COPY")
        .writes(&["patients"])
        .flags(&[Hidden]),
    case("COPY patients FROM STDIN", K::CopyFrom, "COPY").writes(&["patients"]),
    case("DROP TABLE patients, public.visits", K::Drop, "DROP TABLE"),
    case("ALTER TABLE patients ADD COLUMN x int DEFAULT nextval('s')", K::Alter, "ALTER TABLE")
        .calls(&["nextval"]),
    case("CREATE TABLE t (a text DEFAULT pg_read_file('x'))", K::Create, "CREATE TABLE")
        .calls(&["pg_read_file"]),
    case("CREATE TABLE dump AS SELECT * FROM patients", K::Create, "CREATE TABLE AS")
        .reads(&["patients"])
        .writes(&["dump"]),
    case("CREATE VIEW v AS SELECT ssn FROM patients", K::Create, "CREATE VIEW")
        .reads(&["patients"]),
    case("CREATE MATERIALIZED VIEW mv AS SELECT ssn FROM patients", K::Create, "CREATE MATERIALIZED VIEW")
        .reads(&["patients"])
        .writes(&["mv"]),
    case("TRUNCATE patients", K::Truncate, "TRUNCATE").writes(&["patients"]),
    case("GRANT SELECT ON patients TO bob", K::Grant, "GRANT"),
    case("BEGIN", K::Transaction, "BEGIN"),
    case("COMMIT", K::Transaction, "COMMIT"),
    case("SHOW search_path", K::Show, "SHOW"),
    case("LISTEN ch", K::Listen, "LISTEN"),
    case("NOTIFY ch, 'x'", K::Notify, "NOTIFY"),
    case("VACUUM patients", K::Vacuum, "VACUUM"),
    case("ALTER SYSTEM SET work_mem = '1MB'", K::Alter, "ALTER SYSTEM"),
    case("VALUES (1, 'a'), (2, lower('B'))", K::Select, "SELECT").calls(&["lower"]),
    case("SELECT query_to_xml('select * from patients', true, false, '')", K::Select, "SELECT")
        .calls(&["query_to_xml"]),
    case("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM patients p WHERE p.id = t.id)", K::Select, "SELECT")
        .reads(&["t", "patients"])
        .flags(&[Where]),
];

#[test]
fn statement_facts() {
    for case in CASES {
        case.check();
    }
}

#[test]
fn statements_are_split_as_postgres_splits_them() {
    let cases: &[(&str, &[K])] = &[
        ("SELECT 1; SELECT 2;", &[K::Select, K::Select]),
        (";;SELECT 1;;", &[K::Select]),
        (
            "COPY patients FROM STDIN; DROP TABLE patients",
            &[K::CopyFrom, K::Drop],
        ),
        (
            "SELECT 1 AS a$$; DROP TABLE patients; --$$",
            &[K::Select, K::Drop],
        ),
        ("SELECT 'a'';' ; DROP TABLE x", &[K::Select, K::Drop]),
        (
            "SELECT 1 /* ; */ ; -- ; \nSELECT 2",
            &[K::Select, K::Select],
        ),
        (
            "PREPARE p AS SELECT 1; EXECUTE p",
            &[K::Prepare, K::Execute],
        ),
        (
            "DECLARE c CURSOR FOR SELECT 1; FETCH 10 FROM c",
            &[K::Declare, K::Fetch],
        ),
        (
            "BEGIN; DO $$ BEGIN END $$; COMMIT",
            &[K::Transaction, K::Do, K::Transaction],
        ),
    ];
    for (sql, kinds) in cases {
        let got: Vec<K> = analyze_ok(sql).statements.iter().map(|s| s.kind).collect();
        assert_eq!(&got, kinds, "{sql:?}");
    }
}

#[test]
fn unreadable_text_is_an_error_without_the_text() {
    let cases = [
        "SELECT 'secret-value' FROM",
        "SELECT * FROM patients WHERE ssn = 'secret-value' AND",
        "SELECT 'secret-value",
        "SELECT * FROM patients WHERE ssn = secret_value value2",
        "CREATE TABLE t AS EXECUTE secret_value",
        "SELECT 1 + (secret_value).* FROM patients p",
        "DO secret_value",
        "COPY patients TO STDOUT (FORMAT secret_value)",
        "SELECT U&\"secret_value\" FROM patients",
    ];
    for sql in cases {
        match analyze(sql) {
            Err(SqlError::Unreadable(message)) => {
                assert!(
                    !message.contains("secret"),
                    "{sql:?} leaked into {message:?}"
                );
            }
            other => panic!("{sql:?} should be unreadable, got {other:?}"),
        }
    }
}

/// Runs `test` on a thread with the stack a gateway worker has (2 MiB). The parser's debug
/// build needs several times the stack of its release build, so debug runs get more.
fn on_worker_stack(test: impl FnOnce() + Send + 'static) {
    let stack = if cfg!(debug_assertions) {
        32 << 20
    } else {
        2 << 20
    };
    let worker = std::thread::Builder::new().stack_size(stack).spawn(test);
    match worker.map(std::thread::JoinHandle::join) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(error) => panic!("cannot start the test thread: {error}"),
    }
}

#[test]
fn deep_or_long_text_is_refused() {
    on_worker_stack(|| {
        let nested = format!("SELECT {}1{}", "(SELECT ".repeat(80), ")".repeat(80));
        assert_eq!(
            analyze(&nested),
            Err(SqlError::TooDeep),
            "nested subqueries"
        );
        let parens = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(
            analyze(&parens),
            Err(SqlError::TooDeep),
            "nested parentheses"
        );
        let chain = format!("SELECT 1{}", " + 1".repeat(1_001));
        assert_eq!(
            analyze(&chain),
            Err(SqlError::TooDeep),
            "long operator chain"
        );
        let half = " + 1".repeat(600);
        let case = format!("SELECT 1{half} + CASE WHEN true THEN 1 END{half}");
        assert_eq!(
            analyze(&case),
            Err(SqlError::TooDeep),
            "a chain around CASE"
        );
        let casts = format!("SELECT x{} FROM t", "::text".repeat(100));
        assert_eq!(analyze(&casts), Err(SqlError::TooDeep), "nested casts");
        let cte = format!(
            "WITH RECURSIVE {} SELECT 1",
            (0..40)
                .map(|i| format!("r{i} AS (SELECT * FROM r{} UNION SELECT 1)", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(
            analyze(&cte).is_ok(),
            "chained recursive CTEs settle or give up in time"
        );
    });
}

#[test]
fn long_flat_text_is_read() {
    on_worker_stack(|| {
        let chain = format!("SELECT ssn{} FROM patients", " || 'x'".repeat(999));
        assert_eq!(
            single(&chain).reads,
            vec![relation("patients")],
            "chain at the limit"
        );
        let deep = format!(
            "SELECT {}ssn{} FROM patients",
            "(SELECT ".repeat(12),
            ")".repeat(12)
        );
        assert_eq!(
            single(&deep).reads,
            vec![relation("patients")],
            "12 nested subqueries"
        );
        let rows = format!(
            "INSERT INTO t VALUES (1::int){}",
            ", (1::int)".repeat(2_000)
        );
        assert_eq!(single(&rows).writes, vec![relation("t")]);
        let ors = format!("SELECT 1 FROM t WHERE {}", vec!["id = 1"; 400].join(" OR "));
        assert!(single(&ors).has_where);
        let unions = format!(
            "SELECT ssn FROM patients{}",
            " UNION SELECT name FROM staff".repeat(100)
        );
        assert_eq!(single(&unions).reads.len(), 2);
    });
}
