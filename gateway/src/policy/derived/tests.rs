//! Derived classification: what a statement's stores classify, how reading the destination
//! back is then masked, chains of derived tables, and the store on disk.

use std::{collections::BTreeSet, path::Path, sync::Arc};

use super::{store::ForgetSpec, *};
use crate::{
    policy::{
        catalog::{Catalog, Relation, RelationKind},
        evaluate::{evaluate, Decision, StatementView},
        load::parse,
        mask::MaskMethod,
        provenance::Resolver,
        rules::{Policy, TargetClassification},
        IdentityFacts,
    },
    sql,
};

const POLICY: &str = r#"
version = 1

[[identities]]
id = "agents"
uid = [1000]

[[classify]]
table = "public.patients"
columns = { ssn = "ssn", zip = "zip", full_name = "name" }

[masking]
ssn = "keep_last_4"
zip = "zip3"
name = "tokenize"

[[rules]]
id = "agents-work"
effect = "allow"
identities = ["agents"]
"#;

fn policy() -> Policy {
    parse(Path::new("policy.toml"), POLICY).unwrap()
}

fn table(oid: u32, name: &str, columns: &[&str]) -> Relation {
    let columns = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (i as i16 + 1, (*c).to_owned()))
        .collect();
    Relation::new(
        oid,
        "public".into(),
        name.into(),
        RelationKind::Table,
        columns,
        None,
    )
}

fn catalog() -> Catalog {
    Catalog::new([
        table(1, "patients", &["id", "full_name", "ssn", "zip"]),
        table(2, "clinics", &["id", "city"]),
        table(3, "copies", &["id", "a", "b"]),
        table(4, "copies2", &["a"]),
        Relation::new(
            5,
            "pg_temp_3".into(),
            "scratch".into(),
            RelationKind::Table,
            vec![(1, "x".into())],
            None,
        ),
    ])
}

/// What `sql` stores as derived columns: `schema.table.column categories flag` with flag `=`
/// (stored as is), `~` (computed) or `?` (untraceable).
fn stored(classes: &TargetClassification, sql: &str) -> Vec<String> {
    let catalog = catalog();
    let resolver = Resolver {
        catalog: Some(&catalog),
        classes,
    };
    let analysis = sql::analyze(sql).unwrap();
    resolver
        .stored(&analysis.statements[0])
        .iter()
        .map(|c| {
            let categories: Vec<&str> = c.class.categories.iter().map(|c| &**c).collect();
            let flag = match (c.class.unknown, c.class.direct) {
                (true, _) => "?",
                (false, true) => "=",
                (false, false) => "~",
            };
            format!(
                "{}.{}.{} {} {flag}",
                c.schema,
                c.table,
                c.column,
                categories.join(",")
            )
        })
        .collect()
}

fn declared() -> TargetClassification {
    policy().classification_for("clinic")
}

#[test]
fn stores_classify_the_columns_they_fill_from_classified_data() {
    let classes = declared();
    let cases: &[(&str, &[&str])] = &[
        ("INSERT INTO copies (a) SELECT ssn FROM patients", &["public.copies.a ssn ="]),
        (
            "INSERT INTO copies SELECT id, upper(full_name), zip FROM patients",
            &["public.copies.a name ~", "public.copies.b zip ="],
        ),
        (
            "UPDATE copies SET b = p.ssn, a = 'x' FROM patients p WHERE p.id = copies.id",
            &["public.copies.b ssn ="],
        ),
        ("CREATE TABLE fresh AS SELECT ssn AS s, id FROM patients", &["*.fresh.s ssn ="]),
        (
            "CREATE TABLE archive.fresh AS SELECT zip FROM patients",
            &["archive.fresh.zip zip ="],
        ),
        (
            "CREATE TEMP TABLE t AS SELECT * FROM patients",
            &["pg_temp.t.full_name name =", "pg_temp.t.ssn ssn =", "pg_temp.t.zip zip ="],
        ),
        ("INSERT INTO scratch SELECT ssn FROM patients", &["pg_temp.scratch.x ssn ="]),
        (
            "MERGE INTO copies c USING patients p ON c.id = p.id WHEN MATCHED THEN UPDATE SET a = p.ssn",
            &["public.copies.* ssn ~"],
        ),
        // A function Tollgate cannot trace may return anything it reads.
        ("INSERT INTO copies (a) SELECT my_func(id) FROM clinics", &["public.copies.a  ?"]),
        // Nothing classified stored.
        ("INSERT INTO copies (a) SELECT city FROM clinics", &[]),
        ("INSERT INTO copies (a, b) VALUES ($1, 'x')", &[]),
        ("DELETE FROM copies WHERE a IN (SELECT ssn FROM patients)", &[]),
    ];
    let mut failures = Vec::new();
    for (sql, expected) in cases {
        let got = stored(&classes, sql);
        if got != *expected {
            failures.push(format!(
                "{sql}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The mask each output column of `sql` gets under `classes`.
fn masks(classes: &TargetClassification, sql: &str) -> Vec<Option<MaskMethod>> {
    let policy = policy();
    let catalog = catalog();
    let resolver = Resolver {
        catalog: Some(&catalog),
        classes,
    };
    let analysis = sql::analyze(sql).unwrap();
    let statement = &analysis.statements[0];
    let resolved = resolver.resolve(statement);
    let identity = IdentityFacts {
        uid: Some(1000),
        ..Default::default()
    };
    let identities = policy.identities_of(&identity);
    let view = StatementView::Parsed {
        facts: statement,
        resolved: &resolved,
    };
    let Decision::Allow(plan) = evaluate(&policy, "clinic", &identities, true, view) else {
        panic!("{sql:?} is allowed");
    };
    resolved
        .outputs
        .unwrap()
        .iter()
        .map(|c| plan.method_for(c))
        .collect()
}

/// The declared classification with what `sqls` derive, in turn (each under the last).
fn after(sqls: &[&str]) -> TargetClassification {
    let mut derived = Derived::default();
    let mut classes = declared();
    for sql in sqls {
        let catalog = catalog();
        let resolver = Resolver {
            catalog: Some(&catalog),
            classes: &classes,
        };
        let analysis = sql::analyze(sql).unwrap();
        derived.add(resolver.stored(&analysis.statements[0]));
        classes = declared().with_derived(derived.clone());
    }
    classes
}

#[test]
fn a_derived_column_is_masked_as_its_source_and_a_computed_one_whole() {
    let clean = declared();
    assert_eq!(masks(&clean, "SELECT a, b FROM copies"), [None, None]);
    let classes = after(&["INSERT INTO copies (a, b) SELECT ssn, left(ssn, 5) FROM patients"]);
    // Stored as is: the source's own mask. Computed: a partial reveal of a computed value
    // could show another part of the source, so it is masked whole.
    assert_eq!(
        masks(&classes, "SELECT id, a, b FROM copies"),
        [
            None,
            Some(MaskMethod::KeepLast(4)),
            Some(MaskMethod::Redact)
        ]
    );
    assert_eq!(
        masks(&classes, "SELECT * FROM copies"),
        [
            None,
            Some(MaskMethod::KeepLast(4)),
            Some(MaskMethod::Redact)
        ]
    );
    assert_eq!(
        masks(&classes, "SELECT c.a FROM public.copies c"),
        [Some(MaskMethod::KeepLast(4))]
    );
}

#[test]
fn chains_of_derived_tables_stay_classified() {
    let classes = after(&[
        "INSERT INTO copies (a) SELECT ssn FROM patients",
        "INSERT INTO copies2 SELECT a FROM copies",
        "CREATE TABLE third AS SELECT a AS z FROM copies2",
    ]);
    assert_eq!(
        masks(&classes, "SELECT a FROM copies2"),
        [Some(MaskMethod::KeepLast(4))]
    );
    // `third` is not in this catalog yet: found by name in any schema.
    let catalog_less = Resolver {
        catalog: None,
        classes: &classes,
    };
    let analysis = sql::analyze("SELECT z FROM third").unwrap();
    let resolved = catalog_less.resolve(&analysis.statements[0]);
    let column = &resolved.outputs.unwrap()[0];
    assert_eq!(column.categories, BTreeSet::from([Arc::from("ssn")]));
}

#[test]
fn a_write_of_clean_values_never_declassifies() {
    let classes = after(&[
        "INSERT INTO copies (a) SELECT ssn FROM patients",
        "UPDATE copies SET a = 'clean'",
    ]);
    assert_eq!(
        masks(&classes, "SELECT a FROM copies"),
        [Some(MaskMethod::KeepLast(4))]
    );
}

#[test]
fn temporary_and_any_schema_entries_match_where_they_may_live() {
    let mut derived = Derived::default();
    let class = class_of(&["ssn".into()], true, false);
    let column = |schema: &str, table: &str, column: &str| DerivedColumn {
        schema: schema.into(),
        table: table.into(),
        column: column.into(),
        class: class.clone(),
    };
    let columns = [
        column(TEMP_SCHEMA, "t", "x"),
        column(ANY, "u", "y"),
        column("public", "v", ANY),
    ];
    assert!(derived.add(columns.clone()), "new columns");
    assert!(!derived.add(columns), "the same again changes nothing");
    assert!(derived.column(Some("pg_temp_7"), "t", "x").is_some());
    assert!(derived.column(Some("public"), "t", "x").is_none());
    assert!(derived.column(Some("archive"), "u", "y").is_some());
    assert!(derived.column(Some("public"), "v", "anything").is_some());
    assert!(derived.column(Some("archive"), "v", "anything").is_none());
    assert!(
        derived.column(None, "v", "w").is_some(),
        "unqualified: any schema"
    );
}

fn record(table: &str, column: &str, category: &str) -> DerivedRecord {
    DerivedRecord::new(
        "clinic",
        DerivedColumn {
            schema: "public".into(),
            table: table.into(),
            column: column.into(),
            class: class_of(&[category.into()], true, false),
        },
        Provenance {
            sources: vec!["public.patients".into()],
            statement: "INSERT".into(),
            identity: "uid 1000".into(),
            at: "2026-12-02T20:25:38Z".into(),
        },
    )
}

#[test]
fn the_store_survives_a_restart_and_an_admin_can_forget() {
    let dir = std::env::temp_dir().join(format!("tollgate-derived-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = DerivedStore::open(&dir).unwrap();
    store.record(vec![record("copies", "a", "ssn")]).unwrap();
    let generation = store.generation();
    // The same again changes nothing; a new category does.
    store.record(vec![record("copies", "a", "ssn")]).unwrap();
    assert_eq!(store.generation(), generation);
    store
        .record(vec![
            record("copies", "a", "zip"),
            record("copies", "b", "ssn"),
        ])
        .unwrap();
    assert!(store.generation() > generation);

    let reopened = DerivedStore::open(&dir).unwrap();
    let columns = reopened.columns("clinic");
    assert_eq!(columns.len(), 2);
    assert_eq!(columns[0].class.categories.len(), 2, "ssn and zip");
    assert!(reopened.columns("other-target").is_empty());

    let spec = ForgetSpec::parse("public.copies.a").unwrap();
    let removed = forget(&dir, None, &spec).unwrap();
    assert_eq!(removed.len(), 1);
    // The running gateway notices (the file's modification time moved on).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let _ = filetime_touch(&dir.join(FILE_NAME));
    assert!(reopened.reload_if_changed().unwrap());
    assert_eq!(reopened.columns("clinic").len(), 1);
    // A record after the admin's change keeps it (read-modify-write of the file).
    store.record(vec![record("other", "c", "ssn")]).unwrap();
    let tables: Vec<String> = list(&dir)
        .unwrap()
        .columns
        .into_iter()
        .map(|r| r.table)
        .collect();
    assert_eq!(tables, ["copies", "other"]);
    assert!(ForgetSpec::parse("a..b").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites the file unchanged, so its modification time moves on even where the clock's
/// resolution is coarse.
fn filetime_touch(path: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    std::fs::write(path, bytes)
}
