//! A session's enforcement over several requests: decisions repeated from the session's
//! recent ones must be the decisions a fresh evaluation would make.

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::Arc,
};

use bytes::BytesMut;
use pgwire::messages::{
    extendedquery::Parse, response::TransactionStatus, simplequery::Query, PgWireFrontendMessage,
};

use super::{Enforcement, SessionEnforcement};
use crate::{
    policy::{derived::DerivedStore, IdentityFacts, PolicyStore},
    postgres::{
        names::SessionNames,
        pipeline::{Pipeline, Sent},
        request::{Request, RequestEnd, Statement},
        results::StatementResults,
    },
};

const POLICY: &str = r#"version = 1
[[identities]]
id = "agent"
uid = [1000]

[[classify]]
table = "public.patients"
columns = { ssn = "ssn" }

[masking]
ssn = "redact"

[[rules]]
id = "read-anything"
effect = "allow"
identities = ["agent"]
"#;

const DENY_VISITS: &str = r#"
[[rules]]
id = "no-visits"
effect = "deny"
tables = ["public.visits"]
"#;

struct Fixture {
    dir: PathBuf,
    store: Arc<PolicyStore>,
    session: SessionEnforcement,
    names: SessionNames,
    pipeline: Pipeline,
    /// The answers the server owes, oldest first: (an error, the transaction status).
    owed: VecDeque<(bool, TransactionStatus)>,
    /// The server is inside a transaction block.
    in_block: bool,
    /// The server answers the next request with an error.
    fail_next: bool,
    /// Requests are sent without waiting for their answers.
    pipelining: bool,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tollgate-enforce-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
        let store = Arc::new(PolicyStore::open(&dir.join("policy.toml"), &dir).unwrap());
        let derived = Arc::new(DerivedStore::open(&dir).unwrap());
        let enforcement = Arc::new(Enforcement::new(store.clone(), HashMap::new(), derived));
        let identity = IdentityFacts {
            uid: Some(1000),
            ..Default::default()
        };
        let server = "127.0.0.1:5432".parse().unwrap();
        let session = enforcement
            .admit("clinic", server, "postgres", identity, Default::default())
            .unwrap_or_else(|_| panic!("the agent is admitted"));
        Fixture {
            dir,
            store,
            session,
            names: SessionNames::default(),
            pipeline: Pipeline::default(),
            owed: VecDeque::new(),
            in_block: false,
            fail_next: false,
            pipelining: false,
        }
    }

    /// The rule that decided `sql`, and whether its result columns are masked.
    async fn run(&mut self, sql: &str) -> (String, bool) {
        let message = PgWireFrontendMessage::Query(Query::new(sql.to_owned()));
        let (rule, results) = self
            .inspect(Statement::Simple { sql: sql.into() }, message, sql)
            .await;
        let masked = match results {
            StatementResults::Query(rules) => rules
                .statements
                .first()
                .cloned()
                .flatten()
                .is_some_and(|rule| rule.mask_columns),
            _ => panic!("a Query has query results"),
        };
        (rule, masked)
    }

    /// A protocol-level Parse of `sql` under `name` (and Sync); the rule that decided it.
    async fn parse(&mut self, name: &str, sql: &str) -> String {
        let message =
            PgWireFrontendMessage::Parse(Parse::new(Some(name.to_owned()), sql.to_owned(), vec![]));
        // As the request assembler notes it.
        self.names.parse(name, sql.into());
        self.names.sync();
        let statement = Statement::Prepare {
            name: name.to_owned(),
            sql: sql.into(),
        };
        self.inspect(statement, message, "").await.0
    }

    async fn inspect(
        &mut self,
        statement: Statement,
        message: PgWireFrontendMessage,
        sql: &str,
    ) -> (String, StatementResults) {
        self.settle();
        let mut frames = BytesMut::new();
        message.encode(&mut frames).unwrap();
        let end = match statement {
            Statement::Simple { .. } => RequestEnd::Query,
            _ => RequestEnd::Sync,
        };
        let mut request = Request {
            end,
            statements: vec![statement],
            spans: std::iter::once(0..frames.len()).collect(),
            frames,
        };
        let position = self.pipeline.position();
        let inspected = self
            .session
            .inspect(&mut request, &mut self.names, position)
            .await;
        let Ok(mut inspection) = inspected else {
            panic!("the session stays admitted");
        };
        self.sent(end, sql);
        let results = inspection.results.pop().expect("one statement, one result");
        (inspection.verdicts[0].rule.to_string(), results)
    }

    /// The request is entered in the pipeline, and the server's answer to it worked out.
    fn sent(&mut self, end: RequestEnd, sql: &str) {
        self.pipeline.push(Sent {
            effects: self.names.take_effects(),
            marks: self.names.marks(),
            ..Sent::new(end)
        });
        let failed = std::mem::take(&mut self.fail_next);
        let upper = sql.trim().to_ascii_uppercase();
        if !failed && upper.starts_with("BEGIN") {
            self.in_block = true;
        }
        let ends = ["COMMIT", "END", "ROLLBACK"];
        if !failed && ends.iter().any(|e| upper.starts_with(e)) && !upper.starts_with("ROLLBACK TO")
        {
            self.in_block = false;
        }
        let status = match (self.in_block, failed) {
            (false, _) => TransactionStatus::Idle,
            (true, false) => TransactionStatus::Transaction,
            (true, true) => TransactionStatus::Error,
        };
        self.owed.push_back((failed, status));
        if !self.pipelining {
            self.answers_arrive();
        }
    }

    /// The frontend applies what the server has confirmed before each request.
    fn settle(&mut self) {
        while let Some(answered) = self.pipeline.pop_done() {
            self.names.settle(answered.answered());
        }
    }
}

impl Fixture {
    /// A Bind of a named portal (no Execute), as the request assembler notes it.
    async fn bind(&mut self, portal: &str) {
        self.settle();
        self.names.bind(portal, "", Vec::new());
        self.names.sync();
        let mut request = Request {
            end: RequestEnd::Sync,
            statements: Vec::new(),
            spans: Vec::new(),
            frames: BytesMut::new(),
        };
        let position = self.pipeline.position();
        let inspected = self
            .session
            .inspect(&mut request, &mut self.names, position)
            .await;
        assert!(inspected.is_ok(), "the session stays admitted");
        self.sent(RequestEnd::Sync, "");
    }

    fn answers_arrive(&mut self) {
        while let Some((failed, status)) = self.owed.pop_front() {
            if failed {
                self.pipeline.on_error();
            }
            self.pipeline.on_ready(status);
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_repeated_text_is_decided_again_under_a_reloaded_policy() {
    let mut fixture = Fixture::new("reload");
    let sql = "SELECT count(*) FROM public.visits";
    for _ in 0..2 {
        assert_eq!(fixture.run(sql).await.0, "read-anything");
    }
    assert!(fixture.session.recent.remembers(sql));
    let long = format!(
        "SELECT count(*) FROM public.visits WHERE {} true",
        "true AND ".repeat(200)
    );
    assert_eq!(fixture.run(&long).await.0, "read-anything");
    assert!(
        !fixture.session.recent.remembers(&long),
        "long texts are not kept"
    );

    std::fs::write(
        fixture.dir.join("policy.toml"),
        format!("{POLICY}{DENY_VISITS}"),
    )
    .unwrap();
    fixture.store.reload().unwrap();
    assert_eq!(fixture.run(sql).await.0, "no-visits");
}

#[tokio::test]
async fn sql_level_execute_is_decided_by_what_is_prepared_now() {
    let mut fixture = Fixture::new("execute");
    assert_eq!(
        fixture.run("PREPARE q AS SELECT 1").await.0,
        "read-anything"
    );
    assert!(!fixture.run("EXECUTE q").await.1, "SELECT 1 is not masked");
    fixture.run("DEALLOCATE q").await;
    fixture
        .run("PREPARE q AS SELECT ssn FROM public.patients")
        .await;
    assert!(
        fixture.run("EXECUTE q").await.1,
        "the same EXECUTE text now returns SSNs"
    );
    assert!(!fixture.session.recent.remembers("EXECUTE q"));
    assert!(!fixture.session.recent.remembers("PREPARE q AS SELECT 1"));
}

#[tokio::test]
async fn texts_of_one_literal_shape_share_a_decision_and_others_do_not() {
    let mut fixture = Fixture::new("shape");
    let masked = "SELECT ssn FROM public.patients WHERE id = 1";
    let plain = "SELECT 7 FROM public.visits WHERE id = 1";
    assert!(fixture.run(masked).await.1);
    assert!(!fixture.run(plain).await.1);
    assert!(fixture.run(&masked.replace('1', "2")).await.1);
    assert!(!fixture.run(&plain.replace('1', "2")).await.1);
}

#[tokio::test]
async fn explain_analyze_execute_is_decided_by_the_statement_it_runs() {
    let mut fixture = Fixture::new("explain");
    let explain = "EXPLAIN ANALYZE EXECUTE wipe";
    fixture
        .run("PREPARE wipe AS DELETE FROM public.visits")
        .await;
    assert_eq!(fixture.run(explain).await.0, "read-anything");
    assert!(!fixture.session.recent.remembers(explain));

    std::fs::write(
        fixture.dir.join("policy.toml"),
        format!("{POLICY}{DENY_VISITS}"),
    )
    .unwrap();
    fixture.store.reload().unwrap();
    assert_eq!(fixture.run("EXECUTE wipe").await.0, "no-visits");
    assert_eq!(
        fixture.run(explain).await.0,
        "no-visits",
        "EXPLAIN ANALYZE runs the DELETE"
    );
    assert_eq!(
        fixture
            .run("EXPLAIN ANALYZE EXECUTE never_prepared")
            .await
            .0,
        "default-deny",
        "what it would run is unknown"
    );
}

const SSN: &str = "SELECT ssn FROM public.patients";

#[tokio::test]
async fn a_name_prepared_again_while_it_exists_stands_for_an_unknown_statement() {
    let mut fixture = Fixture::new("prepare-twice");
    fixture.run(&format!("PREPARE q AS {SSN}")).await;
    // The server refuses this one (q exists) and EXECUTE q still returns SSNs.
    fixture.run("PREPARE q AS SELECT 1").await;
    assert_eq!(fixture.run("EXECUTE q").await.0, "default-deny");

    fixture.run("DEALLOCATE q").await;
    fixture.run("PREPARE q AS SELECT 1").await;
    assert_eq!(
        fixture.run("EXECUTE q").await,
        ("read-anything".into(), false)
    );

    fixture.run("DEALLOCATE ALL").await;
    fixture.run(&format!("PREPARE q AS {SSN}")).await;
    assert_eq!(
        fixture.run("EXECUTE q").await,
        ("read-anything".into(), true)
    );
}

#[tokio::test]
async fn a_statement_prepared_through_the_protocol_is_unknown_to_sql_execute() {
    let mut fixture = Fixture::new("protocol-name");
    assert_eq!(fixture.parse("p1", SSN).await, "read-anything");
    fixture.run("PREPARE p1 AS SELECT 1").await;
    assert_eq!(fixture.run("EXECUTE p1").await.0, "default-deny");
    fixture.run("DISCARD ALL").await;
    fixture.run("PREPARE p1 AS SELECT 1").await;
    assert_eq!(
        fixture.run("EXECUTE p1").await,
        ("read-anything".into(), false)
    );
}

#[tokio::test]
async fn a_cursor_declared_again_in_its_transaction_stands_for_an_unknown_query() {
    let mut fixture = Fixture::new("cursor-twice");
    fixture.run("BEGIN").await;
    fixture.run(&format!("DECLARE c CURSOR FOR {SSN}")).await;
    fixture.run("SAVEPOINT s").await;
    // Refused by the server (c exists); the rollback keeps the first c open.
    fixture.run("DECLARE c CURSOR FOR SELECT 1").await;
    fixture.run("ROLLBACK TO SAVEPOINT s").await;
    assert_eq!(fixture.run("FETCH 10 FROM c").await.0, "default-deny");
    fixture.run("COMMIT").await;

    // The transaction closed c: the name is free again.
    fixture.run("BEGIN").await;
    fixture.run("DECLARE c CURSOR FOR SELECT 1").await;
    assert_eq!(
        fixture.run("FETCH 10 FROM c").await,
        ("read-anything".into(), false)
    );
    fixture.run("CLOSE c").await;
    fixture.run(&format!("DECLARE c CURSOR FOR {SSN}")).await;
    assert_eq!(
        fixture.run("FETCH 10 FROM c").await,
        ("read-anything".into(), true)
    );

    // A cursor WITH HOLD outlives the transaction.
    fixture
        .run(&format!("DECLARE h CURSOR WITH HOLD FOR {SSN}"))
        .await;
    fixture.run("COMMIT").await;
    fixture.run("DECLARE h CURSOR FOR SELECT 1").await;
    assert_eq!(fixture.run("FETCH 10 FROM h").await.0, "default-deny");
}

#[tokio::test]
async fn a_release_the_server_did_not_carry_out_keeps_the_name() {
    let mut fixture = Fixture::new("release-failed");
    fixture.run(&format!("PREPARE q AS {SSN}")).await;
    // Skipped by the server after an earlier error in the same request.
    fixture.fail_next = true;
    fixture.run("DEALLOCATE q").await;
    fixture.run("PREPARE q AS SELECT 1").await;
    assert_eq!(fixture.run("EXECUTE q").await.0, "default-deny");

    // Once a release is confirmed, the name is free again.
    fixture.run("DEALLOCATE q").await;
    fixture.run("SELECT 1").await;
    fixture.run("PREPARE q AS SELECT 1").await;
    assert_eq!(
        fixture.run("EXECUTE q").await,
        ("read-anything".into(), false)
    );

    // A cursor whose transaction end failed is still open.
    fixture.run("BEGIN").await;
    fixture.run(&format!("DECLARE c CURSOR FOR {SSN}")).await;
    fixture.fail_next = true;
    fixture.run("COMMIT").await;
    fixture.run("DECLARE c CURSOR FOR SELECT 1").await;
    assert_eq!(fixture.run("FETCH 10 FROM c").await.0, "default-deny");
}

#[tokio::test]
async fn a_release_covers_only_what_was_defined_before_it() {
    let mut fixture = Fixture::new("release-pipelined");
    fixture.run("PREPARE q AS SELECT 1").await;
    // Sent without waiting: the new PREPARE is decided before the DEALLOCATE is answered.
    fixture.pipelining = true;
    fixture.run("DEALLOCATE q").await;
    fixture.run(&format!("PREPARE q AS {SSN}")).await;
    assert_eq!(fixture.run("EXECUTE q").await.0, "default-deny");
    fixture.answers_arrive();
    fixture.pipelining = false;
    // The server holds q as the SSN query; this PREPARE fails, and q is still unknown.
    fixture.run("PREPARE q AS SELECT 1").await;
    assert_eq!(fixture.run("EXECUTE q").await.0, "default-deny");
}

#[tokio::test]
async fn a_parse_alone_runs_nothing() {
    let mut fixture = Fixture::new("parse-alone");
    fixture.run(&format!("PREPARE q AS {SSN}")).await;
    assert_eq!(fixture.parse("", "DEALLOCATE q").await, "read-anything");
    fixture.run("SELECT 1").await;
    fixture.run("PREPARE q AS SELECT 1").await;
    assert_eq!(fixture.run("EXECUTE q").await.0, "default-deny");
}

#[tokio::test]
async fn a_named_portal_can_be_fetched_as_a_cursor_tollgate_cannot_name() {
    let mut fixture = Fixture::new("portal");
    fixture.run("BEGIN").await;
    fixture.run("DECLARE c CURSOR FOR SELECT 1").await;
    // Closed through the protocol, and bound again to another query.
    fixture.bind("c").await;
    assert_eq!(fixture.run("FETCH 5 FROM c").await.0, "default-deny");
}
