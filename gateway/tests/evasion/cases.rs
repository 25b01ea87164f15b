//! The evasion cases: what an agent sends (SQL as a simple Query, or a message script for the
//! extended protocol, see xtask/src/pg_script.rs) and what must come of it under the example
//! policy. `{m}` in a script is where the case's marker comment goes.

pub struct Case {
    pub id: &'static str,
    pub send: Send,
    pub expect: Expect,
}

pub enum Send {
    /// One Query message (possibly several statements).
    Sql(&'static str),
    /// A pg-script (extended protocol, COPY, several requests).
    Script(&'static str),
}

pub enum Expect {
    /// Runs, returns rows (or COPY data), every PHI value in them masked.
    Masked,
    /// Refused with 42501 naming this rule, before the server sees it.
    Denied(&'static str),
    /// Held for approval under this rule (the client is told), never approved in this
    /// suite: it times out with 57014, and the server never sees it.
    Held(&'static str),
    /// The server's own error with this SQLSTATE, its text scrubbed of values.
    Error(&'static str),
}

impl Case {
    /// A comment naming the case, sent with its SQL: a denied case's marker must never
    /// show up in the server's log.
    pub fn marker(&self) -> String {
        format!("evasion:{}", self.id)
    }

    pub fn script(&self) -> String {
        let comment = format!("/* {} */", self.marker());
        match self.send {
            // pg-script reads one step per line: newlines inside SQL are written escaped.
            Send::Sql(sql) => format!("Q {comment} {}\nrecv 1\n", sql.replace('\n', "\\n")),
            Send::Script(script) => script.replace("{m}", &comment),
        }
    }
}

impl Expect {
    pub fn check(&self, output: &str) -> Result<(), String> {
        let lines: Vec<&str> = output.lines().collect();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("E ")).collect();
        match self {
            Expect::Masked => {
                if let Some(error) = errors.first() {
                    return Err(format!("expected masked rows, got {error}"));
                }
                if !lines
                    .iter()
                    .any(|l| l.starts_with("D ") || l.starts_with("d "))
                {
                    return Err("expected rows, got none".into());
                }
            }
            Expect::Denied(rule) => {
                let wanted = format!("policy rule \"{rule}\"");
                if !errors
                    .iter()
                    .any(|l| l.starts_with("E ERROR 42501 ") && l.contains(&wanted))
                {
                    return Err(format!("expected a 42501 naming {rule}"));
                }
            }
            Expect::Held(rule) => {
                let wanted = format!("rule \"{rule}\"");
                let told = lines.iter().any(|l| {
                    l.starts_with(
                        "N NOTICE 00000 Tollgate: this statement waits for a person's approval",
                    ) && l.contains(&wanted)
                });
                if !told {
                    return Err(format!("expected a notice that it waits under {rule}"));
                }
                if !errors
                    .iter()
                    .any(|l| l.starts_with("E ERROR 57014 Tollgate: approval "))
                {
                    return Err("expected the wait to time out with 57014".into());
                }
            }
            Expect::Error(code) => {
                let wanted = format!("E ERROR {code} ");
                if !errors.iter().any(|l| l.starts_with(&wanted)) {
                    return Err(format!("expected the server's error {code}"));
                }
            }
        }
        Ok(())
    }
}

const fn sql(id: &'static str, sql: &'static str, expect: Expect) -> Case {
    Case {
        id,
        send: Send::Sql(sql),
        expect,
    }
}

const fn script(id: &'static str, script: &'static str, expect: Expect) -> Case {
    Case {
        id,
        send: Send::Script(script),
        expect,
    }
}

use Expect::{Denied, Error, Held, Masked};

const BULK: &str = "approve-bulk-phi-reads";
const COPIES: &str = "approve-phi-copies";
const DDL: &str = "deny-ddl-on-phi";
const FILES: &str = "deny-server-files-and-links";
const ROLE: &str = "deny-role-switch";
const HIDDEN: &str = "deny-hidden-writes";

pub const CASES: &[Case] = &[
    // Plain reads, spelled every way.
    sql("plain", "SELECT ssn FROM patients WHERE id > 0", Masked),
    sql("mixed-case", "select SSN, Full_Name from PATIENTS where ID > 0", Masked),
    sql("quoted", r#"SELECT "ssn" FROM "public"."patients" WHERE "id" > 0"#, Masked),
    sql("alias", "SELECT ssn AS harmless, mrn AS id2 FROM patients WHERE id > 0", Masked),
    sql("qualified", "SELECT p.full_name, p.ssn FROM patients AS p WHERE p.id > 0", Masked),
    sql("star", "SELECT * FROM patients WHERE id > 0", Masked),
    sql("table-limit", "TABLE patients LIMIT 5", Masked),
    sql("table-unbounded", "TABLE patients", Held(BULK)),
    sql("unbounded", "SELECT ssn FROM patients", Held(BULK)),
    // Whole rows.
    sql("whole-row", "SELECT p FROM patients p WHERE id > 0", Masked),
    sql("row-to-json", "SELECT row_to_json(p) FROM patients p WHERE id > 0", Masked),
    sql("row-cast-text", "SELECT p::text FROM patients p WHERE id > 0", Masked),
    sql("to-jsonb", "SELECT to_jsonb(p) FROM patients p LIMIT 10", Masked),
    sql("field-of-row", "SELECT (p).ssn FROM patients p WHERE id > 0", Masked),
    // Values derived from PHI.
    sql("upper", "SELECT upper(ssn) FROM patients WHERE id > 0", Masked),
    sql("substr-concat", "SELECT substr(ssn, 1, 3) || 'x' FROM patients WHERE id > 0", Masked),
    sql("string-agg", "SELECT string_agg(full_name, ',') FROM patients WHERE id > 0", Masked),
    sql("coalesce", "SELECT coalesce(ssn, 'none') FROM patients WHERE id > 0", Masked),
    sql("reverse", "SELECT reverse(ssn) FROM patients WHERE id > 0", Masked),
    sql("md5", "SELECT md5(ssn) FROM patients WHERE id > 0", Masked),
    sql("hex", "SELECT encode(convert_to(ssn, 'UTF8'), 'hex') FROM patients WHERE id > 0", Masked),
    sql("format", "SELECT format('%s', ssn) FROM patients WHERE id > 0", Masked),
    sql("collate", r#"SELECT ssn COLLATE "C" FROM patients WHERE id > 0"#, Masked),
    sql("case", "SELECT CASE WHEN id > 0 THEN ssn ELSE 'x' END FROM patients WHERE id > 0", Masked),
    sql("array", "SELECT ARRAY[ssn, full_name] FROM patients WHERE id > 0", Masked),
    sql("array-agg", "SELECT array_agg(email) FROM patients WHERE id > 0", Masked),
    sql("jsonb-object", "SELECT jsonb_build_object('s', ssn) FROM patients WHERE id > 0", Masked),
    sql("group-by", "SELECT ssn, count(*) FROM patients WHERE id > 0 GROUP BY ssn", Masked),
    // Comments, quoting and escapes.
    sql("comments", "SELECT ssn /* hidden */ FROM patients -- trailing\n WHERE id > 0", Masked),
    sql("nested-comment", "SELECT /* a /* nested */ comment */ ssn FROM patients WHERE id > 0", Masked),
    sql("dollar-quote", "SELECT $tag$ a; quoted $tag$ AS d, ssn FROM patients WHERE id > 0", Masked),
    sql("unicode-string", r"SELECT U&'\\0041' || ssn FROM patients WHERE id > 0", Masked),
    sql("unicode-ident", r#"SELECT U&"\\0073sn" FROM patients WHERE id > 0"#, Denied("default-deny")),
    // Subqueries, CTEs, set operations, joins.
    sql("cte", "WITH t AS (SELECT ssn FROM patients) SELECT * FROM t WHERE true", Masked),
    sql("scalar-subquery", "SELECT (SELECT ssn FROM patients ORDER BY id LIMIT 1) AS s LIMIT 1", Masked),
    sql("derived-table", "SELECT x FROM (SELECT ssn AS x FROM patients) s WHERE true", Masked),
    sql("union", "SELECT 'none' AS v UNION ALL SELECT ssn FROM patients WHERE id > 0 LIMIT 100", Masked),
    sql("union-unbounded", "SELECT 'none' AS v UNION ALL SELECT ssn FROM patients WHERE id > 0", Held(BULK)),
    sql("join", "SELECT v.notes, p.full_name FROM visits v JOIN patients p ON p.id = v.patient_id WHERE v.id > 0", Masked),
    sql("lateral", "SELECT x.s FROM patients p, LATERAL (SELECT p.ssn AS s) x WHERE p.id > 0", Masked),
    // Several statements in one Query.
    sql("multi", "SELECT 1 AS one; SELECT ssn FROM patients WHERE id > 0; SELECT full_name FROM patients WHERE id > 0", Masked),
    sql("multi-denied", "SELECT 1; DROP TABLE visits", Denied(DDL)),
    // Views and functions.
    sql("view", "SELECT * FROM patient_contacts WHERE true", Masked),
    sql("view-of-view", "SELECT who FROM contact_names WHERE true", Masked),
    sql("user-function", "SELECT patient_ssn(id) FROM patients WHERE id > 0", Masked),
    sql("raise-notice", "SELECT noisy(id) FROM patients WHERE id = 1", Masked),
    // Side channels: notifications, planner statistics.
    sql("notify", "LISTEN leak; SELECT pg_notify('leak', ssn) FROM patients WHERE id = 1", Masked),
    sql("pg-stats", "SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'patients'", Masked),
    // SQL-level prepared statements and cursors.
    sql("sql-prepare", "PREPARE q AS SELECT ssn FROM patients WHERE id > $1; EXECUTE q(0)", Masked),
    sql("cursor", "BEGIN; DECLARE c CURSOR FOR SELECT full_name, ssn FROM patients WHERE id > 0; FETCH ALL FROM c; CLOSE c; COMMIT", Masked),
    sql("binary-cursor", "BEGIN; DECLARE c BINARY CURSOR FOR SELECT ssn, birth_date FROM patients WHERE id > 0; FETCH 5 FROM c; COMMIT", Masked),
    sql("cursor-unbounded", "BEGIN; DECLARE c CURSOR FOR SELECT ssn FROM patients; FETCH ALL FROM c; COMMIT", Held(BULK)),
    sql("execute-unknown", "EXECUTE never_prepared", Denied("default-deny")),
    // A name defined again while it exists: the server keeps the first definition.
    script("prepare-twice", "Q PREPARE q AS SELECT ssn FROM patients WHERE id > $1\nrecv 1\nQ PREPARE q AS SELECT 1\nrecv 1\nQ {m} EXECUTE q(0)\nrecv 1\n", Denied("default-deny")),
    script("protocol-name-then-prepare", "P p1 SELECT ssn FROM patients WHERE id > $1\nS\nrecv 1\nQ PREPARE p1 AS SELECT 1\nrecv 1\nQ {m} EXECUTE p1(0)\nrecv 1\n", Denied("default-deny")),
    script("deallocate-skipped-after-error", "Q PREPARE q AS SELECT ssn FROM patients WHERE id > $1\nrecv 1\nQ SELECT 1/0; DEALLOCATE q\nrecv 1\nQ PREPARE q AS SELECT 1\nrecv 1\nQ {m} EXECUTE q(0)\nrecv 1\n", Denied("default-deny")),
    script("parse-alone-runs-nothing", "Q PREPARE q AS SELECT ssn FROM patients WHERE id > $1\nrecv 1\nP - DEALLOCATE q\nS\nrecv 1\nQ PREPARE q AS SELECT 1\nrecv 1\nQ {m} EXECUTE q(0)\nrecv 1\n", Denied("default-deny")),
    script("portal-fetched-as-cursor", "Q BEGIN\nrecv 1\nQ DECLARE c CURSOR FOR SELECT 1\nrecv 1\nC P c\nP - SELECT ssn FROM patients WHERE id > $1\nB c - text:0\nS\nrecv 1\nQ {m} FETCH 5 FROM c\nrecv 1\nQ COMMIT\nrecv 1\n", Denied("default-deny")),
    // Protocol-level names: a Parse that failed, a Close skipped after an error.
    script("parse-failed-then-redefined", "P s9 SELECT 'x'::int\nS\nrecv 1\nP s9 {m} SELECT ssn FROM patients WHERE id > $1\nS\nrecv 1\nB - s9 text:0\nE -\nS\nrecv 1\n", Denied("default-deny")),
    script("close-skipped-after-error", "P s8 {m} SELECT ssn FROM patients WHERE id > $1\nS\nrecv 1\nP - SELECT 1/0\nB - -\nE -\nC S s8\nP s8 SELECT 1\nS\nrecv 1\nB - s8 text:0\nE -\nS\nrecv 1\n", Denied("default-deny")),
    script("sql-prepare-then-parse", "Q PREPARE s7 AS SELECT ssn FROM patients WHERE id > $1\nrecv 1\nP s7 SELECT $1::int\nS\nrecv 1\nB - s7 text:0\nE -\nS\nrecv 1\n", Denied("default-deny")),
    script("unnamed-parse-skipped-after-error", "P - SELECT ssn FROM patients WHERE id > $1\nS\nrecv 1\nP s6 SELEC\nP - SELECT $1::int\nS\nrecv 1\nB - - text:0\nE -\nS\nrecv 1\n", Denied("default-deny")),
    script("cursor-declared-twice", "Q BEGIN; DECLARE c CURSOR FOR SELECT ssn FROM patients WHERE id > 0; SAVEPOINT s\nrecv 1\nQ DECLARE c CURSOR FOR SELECT 1\nrecv 1\nQ ROLLBACK TO SAVEPOINT s\nrecv 1\nQ {m} FETCH ALL FROM c\nrecv 1\nQ COMMIT\nrecv 1\n", Denied("default-deny")),
    // Protocol-level prepared statements, portals and binary results.
    script("extended", "P - {m} SELECT ssn, birth_date FROM patients WHERE id > $1\nB - - text:0\nE -\nS\nrecv 1\n", Masked),
    script("extended-describe", "P - {m} SELECT full_name FROM patients WHERE id > $1\nB - - text:0\nD P -\nE -\nS\nrecv 1\n", Masked),
    script("statement-describe-then-run", "P s1 {m} SELECT full_name, email FROM patients WHERE id > $1\nD S s1\nS\nrecv 1\nB - s1 text:0\nE -\nS\nrecv 1\n", Masked),
    script("binary-results", "P - {m} SELECT ssn, birth_date, full_name FROM patients WHERE id > $1\nB - - text:0 results=1,1,1\nE -\nS\nrecv 1\n", Masked),
    script("parameter-echo", "P - {m} SELECT $1::text AS echoed, ssn FROM patients WHERE id = $2::int\nB - - text:hello text:1\nE -\nS\nrecv 1\n", Masked),
    script("portal-suspended", "P - {m} SELECT ssn FROM patients WHERE id > $1\nB p1 - text:0\nE p1 2\nE p1 0\nS\nrecv 1\n", Masked),
    script("pipelined", "P s2 {m} SELECT mrn FROM patients WHERE id = $1\nB a s2 text:1\nE a\nB b s2 text:2\nE b\nS\nrecv 1\n", Masked),
    script("extended-denied", "P - {m} DROP TABLE patients\nB - -\nE -\nS\nrecv 1\n", Denied(DDL)),
    // A Sync after a simple-protocol COPY FROM STDIN gets a ReadyForQuery of its own.
    script("sync-after-simple-copy", "Q CREATE TEMP TABLE t9 (x int)\nrecv 1\nQ COPY t9 FROM STDIN\nrecv-until G\nd 1\\n\nc\nS\nQ {m} SELECT ssn FROM patients WHERE id > 0\nQ SELECT 1\nQ SELECT 2\nrecv 5\n", Masked),
    // COPY out, every format.
    sql("copy-text", "COPY patients (id, email, phone, zip) TO STDOUT", Masked),
    sql("copy-csv", "COPY patients (id, email, street) TO STDOUT WITH (FORMAT csv)", Masked),
    sql("copy-csv-options", "COPY patients (id, email, street) TO STDOUT WITH (FORMAT csv, DELIMITER ';', HEADER)", Masked),
    sql("copy-binary", "COPY patients (id, phone) TO STDOUT (FORMAT binary)", Masked),
    sql("copy-query", "COPY (SELECT email FROM patients WHERE id > 0) TO STDOUT", Masked),
    sql("copy-unbounded", "COPY patients TO STDOUT", Held(BULK)),
    sql("copy-program", "COPY patients TO PROGRAM 'cat > /dev/null'", Denied("deny-copy-on-server")),
    sql("copy-file", "COPY patients TO '/tmp/patients.csv'", Denied("deny-copy-on-server")),
    // Writes that hand PHI back (intake holds copies of the SSNs, and is classified too).
    // A computed copy of PHI is a copy (held); what RETURNING gives back is masked (the
    // permissive run below lets it through).
    sql("insert-returning", "BEGIN; INSERT INTO intake SELECT id + 100, ssn || 'x' FROM intake WHERE id > 0 RETURNING *; ROLLBACK", Held(COPIES)),
    sql("update-returning", "BEGIN; UPDATE intake SET ssn = ssn WHERE id > 0 RETURNING ssn; ROLLBACK", Masked),
    sql("delete-returning", "BEGIN; DELETE FROM intake WHERE id > 0 RETURNING *; ROLLBACK", Masked),
    sql("launder-into-new-table", "CREATE TABLE laundered AS SELECT ssn FROM patients WHERE id > 0", Held(COPIES)),
    sql("phi-table-write", "INSERT INTO intake SELECT id + 100, ssn FROM patients WHERE id > 0 RETURNING *", Held("approve-agent-writes-to-phi")),
    // Errors that quote values.
    sql("cast-error", "SELECT ssn::int FROM patients WHERE id > 0", Error("22P02")),
    sql("date-cast-error", "SELECT full_name::date FROM patients WHERE id > 0", Error("22007")),
    sql("where-cast-error", "SELECT 1 AS one FROM patients WHERE ssn::int > 0", Error("22P02")),
    sql("unique-violation", "INSERT INTO intake SELECT id + 1000, ssn FROM intake WHERE id = 1", Error("23505")),
    // Guardrails.
    sql("drop", "DROP TABLE patients", Denied(DDL)),
    sql("truncate", "TRUNCATE patients", Denied(DDL)),
    sql("alter", "ALTER TABLE patients ADD COLUMN leak text", Denied(DDL)),
    sql("read-file", "SELECT pg_read_file('/etc/passwd')", Denied(FILES)),
    sql("read-file-qualified", "SELECT PG_CATALOG.PG_READ_FILE('/etc/hostname')", Denied(FILES)),
    sql("ls-dir", "SELECT * FROM pg_ls_dir('.')", Denied(FILES)),
    sql("lo-import", "SELECT lo_import('/etc/passwd')", Denied(FILES)),
    sql("lo-export", "SELECT lo_export(1, '/tmp/x')", Denied(FILES)),
    sql("dblink", "SELECT * FROM dblink('host=10.0.0.1', 'SELECT 1') AS t(a int)", Denied(FILES)),
    sql("query-to-xml", "SELECT query_to_xml('SELECT ssn FROM patients', true, true, '')", Denied(FILES)),
    sql("alter-system", "ALTER SYSTEM SET log_statement = 'none'", Denied("deny-alter-system")),
    sql("set-role", "SET ROLE postgres", Denied(ROLE)),
    sql("session-authorization", "SET SESSION AUTHORIZATION postgres", Denied(ROLE)),
    sql("set-config-role", "SELECT set_config('role', 'postgres', false)", Denied(ROLE)),
    sql("do-block", "DO $$ BEGIN PERFORM 1; END $$", Denied("deny-anonymous-code")),
    sql("cte-write", "WITH gone AS (DELETE FROM visits RETURNING *) SELECT count(*) FROM gone", Denied(HIDDEN)),
    sql("select-into", "SELECT ssn INTO leaked FROM patients WHERE id > 0", Denied(HIDDEN)),
    sql("explain-analyze-write", "EXPLAIN ANALYZE DELETE FROM visits", Denied(HIDDEN)),
    sql("phi-write", "UPDATE patients SET zip = '00000' WHERE id = 1", Held("approve-agent-writes-to-phi")),
    sql("grant", "GRANT SELECT ON patients TO PUBLIC", Denied("default-deny")),
    sql("call", "CALL some_procedure()", Denied("default-deny")),
    sql("lock", "LOCK patients", Denied("default-deny")),
    sql("typo", "SELEC ssn FROM patients", Denied("default-deny")),
    // Messages raised by code Tollgate cannot read, quoting PHI.
    sql("do-raise-notice", "DO $$ BEGIN RAISE NOTICE 'n: %', (SELECT ssn FROM patients WHERE id = 1); END $$", Denied("deny-anonymous-code")),
    sql("do-raise-exception", "DO $$ BEGIN RAISE EXCEPTION 'e: %', (SELECT full_name FROM patients WHERE id = 1); END $$", Denied("deny-anonymous-code")),
    sql("do-raise-detail", "DO $$ DECLARE v text; BEGIN SELECT mrn INTO v FROM patients WHERE id = 1; RAISE WARNING 'w' USING DETAIL = v, HINT = v; END $$", Denied("deny-anonymous-code")),
    sql("function-raise-no-phi-read", "SELECT noisy(1) WHERE 1 = 1", Masked),
    // PHI kept in a setting and read back: SHOW, current_setting, pg_settings, and the server's
    // own ParameterStatus report of application_name. (`recv 1` reads to ReadyForQuery.)
    script("setting-show", "Q {m} SELECT set_config('my.kept', ssn, false) FROM patients WHERE id = 1\nrecv 1\nQ SHOW my.kept\nrecv 1\nQ SELECT current_setting('my.kept')\nrecv 1\nQ SELECT setting FROM pg_settings WHERE name = 'my.kept'\nrecv 1\n", Masked),
    script("setting-reported", "Q {m} SELECT set_config('application_name', full_name, false) FROM patients WHERE id = 1\nrecv 1\nQ SELECT 1\nrecv 1\n", Masked),
    script("setting-in-transaction", "Q BEGIN\nrecv 1\nQ {m} SELECT set_config('my.local', email, true) FROM patients WHERE id = 1\nrecv 1\nQ SHOW my.local\nrecv 1\nQ COMMIT\nrecv 1\n", Masked),
];
