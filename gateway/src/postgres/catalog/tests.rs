//! The cache against a fake server: what is read when, what is forgotten, what is noticed.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{
    cache::Cache,
    known::{ABSENT_FOR, MAX_STALENESS, PROBE_AFTER},
    server::{CatalogServer, Found, Probed, Wanted},
    wanted::Changes,
    CatalogError,
};
use crate::{
    policy::{Catalog, Relation, RelationKind, Resolver},
    sql::{self, RelationName},
};

#[derive(Clone)]
struct Spec {
    oid: u32,
    schema: &'static str,
    name: String,
    columns: Vec<&'static str>,
    view: Option<String>,
    version: u32,
}

impl Spec {
    fn relation(&self) -> Relation {
        Relation::new(
            self.oid,
            self.schema.into(),
            self.name.clone(),
            if self.view.is_some() {
                RelationKind::View
            } else {
                RelationKind::Table
            },
            (1..)
                .zip(self.columns.iter().map(|c| (*c).to_owned()))
                .collect(),
            self.view.clone(),
        )
    }
}

/// A database in memory that counts what is asked of it.
#[derive(Default)]
struct Fake {
    relations: Mutex<Vec<Spec>>,
    locked: Mutex<HashSet<u32>>,
    reads: Mutex<Vec<Wanted>>,
    probes: Mutex<usize>,
    failing: Mutex<bool>,
    /// pg_proc: OID, schema, name.
    functions: Mutex<Vec<(u32, &'static str, String)>>,
}

impl Fake {
    fn add(&self, oid: u32, schema: &'static str, name: &str, columns: &[&'static str]) {
        self.relations.lock().unwrap().push(Spec {
            oid,
            schema,
            name: name.to_owned(),
            columns: columns.to_vec(),
            view: None,
            version: 1,
        });
    }

    fn add_view(&self, oid: u32, name: &str, columns: &[&'static str], sql: &str) {
        self.add(oid, "public", name, columns);
        self.relations.lock().unwrap().last_mut().unwrap().view = Some(sql.to_owned());
    }

    /// CREATE OR REPLACE VIEW, ALTER TABLE ...: a new row version.
    fn replace_view(&self, oid: u32, sql: &str) {
        let mut relations = self.relations.lock().unwrap();
        let spec = relations.iter_mut().find(|s| s.oid == oid).unwrap();
        spec.view = Some(sql.to_owned());
        spec.version += 1;
    }

    fn reads(&self) -> usize {
        self.reads.lock().unwrap().len()
    }

    fn last_read(&self) -> Wanted {
        self.reads.lock().unwrap().last().cloned().unwrap()
    }

    fn check(&self) -> Result<(), CatalogError> {
        match *self.failing.lock().unwrap() {
            true => Err(CatalogError::Connect("refused".into())),
            false => Ok(()),
        }
    }
}

impl CatalogServer for Arc<Fake> {
    async fn read(&self, wanted: &Wanted) -> Result<Vec<Found>, CatalogError> {
        self.check()?;
        self.reads.lock().unwrap().push(wanted.clone());
        let locked = self.locked.lock().unwrap().clone();
        Ok(self
            .relations
            .lock()
            .unwrap()
            .iter()
            .filter(|s| {
                wanted.everywhere.contains(&s.name)
                    || wanted
                        .qualified
                        .iter()
                        .any(|(schema, name)| schema == s.schema && *name == s.name)
                    || wanted.oids.contains(&s.oid)
            })
            .map(|s| Found {
                relation: s.relation(),
                fingerprint: s.version.to_string(),
                in_flux: locked.contains(&s.oid),
            })
            .collect())
    }

    async fn probe(&self, names: &[String]) -> Result<Vec<Probed>, CatalogError> {
        self.check()?;
        *self.probes.lock().unwrap() += 1;
        Ok(self
            .relations
            .lock()
            .unwrap()
            .iter()
            .filter(|s| names.contains(&s.name))
            .map(|s| Probed {
                oid: s.oid,
                schema: s.schema.into(),
                name: s.name.clone(),
                fingerprint: s.version.to_string(),
            })
            .collect())
    }

    async fn function(&self, oid: u32) -> Result<Option<(String, String)>, CatalogError> {
        self.check()?;
        let functions = self.functions.lock().unwrap();
        Ok(functions
            .iter()
            .find(|(known, _, _)| *known == oid)
            .map(|(_, schema, name)| ((*schema).to_owned(), name.clone())))
    }
}

fn clinic() -> (Arc<Fake>, Arc<Cache<Arc<Fake>>>) {
    let fake = Arc::new(Fake::default());
    fake.add(1, "public", "patients", &["id", "full_name", "ssn"]);
    fake.add(2, "public", "visits", &["id", "notes"]);
    fake.add_view(
        3,
        "contacts",
        &["who"],
        "SELECT patients.full_name AS who FROM public.patients",
    );
    fake.add_view(
        4,
        "names",
        &["who"],
        "SELECT contacts.who FROM public.contacts",
    );
    let cache = Arc::new(Cache::new(fake.clone(), "clinic"));
    (fake, cache)
}

fn name(text: &str) -> RelationName {
    match text.split_once('.') {
        Some((schema, name)) => RelationName {
            schema: Some(schema.into()),
            name: name.into(),
        },
        None => RelationName {
            schema: None,
            name: text.into(),
        },
    }
}

fn names(sql: &str) -> Vec<RelationName> {
    let mut names = Vec::new();
    for facts in &sql::analyze(sql).expect("parses").statements {
        Catalog::names_needed(facts, &mut names);
    }
    names
}

fn oids(catalog: &Catalog, text: &str) -> Vec<u32> {
    let name = name(text);
    let mut oids: Vec<u32> = catalog
        .lookup(name.schema.as_deref(), &name.name)
        .iter()
        .map(|r| r.oid)
        .collect();
    oids.sort_unstable();
    oids
}

fn changes(sql: &str) -> Changes {
    let facts = sql::analyze(sql).expect("parses").statements.remove(0);
    Changes::of(&facts).expect("DDL")
}

#[tokio::test]
async fn a_statement_reads_what_it_names_once_whatever_the_database_holds() {
    let (fake, cache) = clinic();
    for oid in 100..10_100 {
        fake.add(oid, "public", &format!("t{oid}"), &["a", "b"]);
    }
    let wanted = names("SELECT ssn FROM patients WHERE id > 0");
    let first = cache.ensure(&wanted).await.expect("a catalog");
    assert_eq!(fake.reads(), 1);
    assert_eq!(fake.last_read().everywhere, ["patients"]);
    assert_eq!(first.relation_count(), 1, "one relation, not the database");
    assert_eq!(oids(&first, "patients"), [1]);
    let again = cache.ensure(&wanted).await.expect("a catalog");
    assert_eq!(fake.reads(), 1, "known: nothing read");
    assert!(
        Arc::ptr_eq(&first, &again),
        "the same snapshot, so decisions are reused"
    );
    // Another statement reads only its own missing name; the old snapshot is unchanged.
    let other = cache
        .ensure(&names("SELECT * FROM t5000, patients"))
        .await
        .unwrap();
    assert_eq!(fake.last_read().everywhere, ["t5000"]);
    assert_eq!((first.relation_count(), other.relation_count()), (1, 2));
}

#[tokio::test]
async fn views_are_followed_one_round_trip_per_level() {
    let (fake, cache) = clinic();
    let catalog = cache.ensure(&names("SELECT who FROM names")).await.unwrap();
    assert_eq!(fake.reads(), 3, "names, then contacts, then patients");
    assert_eq!(
        fake.last_read().qualified,
        [("public".into(), "patients".into())]
    );
    assert_eq!(oids(&catalog, "public.patients"), [1]);
    assert!(
        oids(&catalog, "patients").is_empty(),
        "read in one schema only"
    );
    cache.ensure(&names("SELECT who FROM names")).await.unwrap();
    assert_eq!(fake.reads(), 3);
}

#[tokio::test]
async fn on_demand_resolution_equals_resolution_over_the_whole_catalog() {
    let (fake, cache) = clinic();
    let policy = crate::policy::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/examples/clinic-policy.toml"
    )))
    .expect("the example policy");
    let classes = policy.classification_for("clinic");
    let whole = Catalog::new(fake.relations.lock().unwrap().iter().map(Spec::relation));
    for sql in [
        "SELECT * FROM names",
        "SELECT c.who, v.notes FROM contacts c JOIN visits v ON true",
        "SELECT p FROM patients p",
        "PREPARE q AS SELECT * FROM public.contacts",
        "INSERT INTO visits SELECT id, full_name FROM patients RETURNING *",
        "COPY visits TO STDOUT",
        "SELECT * FROM nowhere",
    ] {
        let catalog = cache.ensure(&names(sql)).await.unwrap();
        for facts in &sql::analyze(sql).unwrap().statements {
            let facts = facts.prepared.as_ref().map_or(facts, |(_, f)| f);
            let resolve = |catalog| {
                Resolver {
                    catalog: Some(catalog),
                    classes: &classes,
                }
                .resolve(facts)
            };
            assert_eq!(resolve(&catalog), resolve(&whole), "{sql}");
        }
    }
}

#[tokio::test]
async fn an_absent_name_is_believed_briefly() {
    let (fake, cache) = clinic();
    let wanted = names("SELECT * FROM later");
    let catalog = cache.ensure(&wanted).await.unwrap();
    assert!(oids(&catalog, "later").is_empty());
    cache.ensure(&wanted).await.unwrap();
    assert_eq!(fake.reads(), 1, "remembered as absent");
    fake.add(9, "public", "later", &["x"]);
    cache.known().age(ABSENT_FOR);
    let catalog = cache.ensure(&wanted).await.unwrap();
    assert_eq!((fake.reads(), oids(&catalog, "later")), (2, vec![9]));
}

#[tokio::test]
async fn ddl_forgets_what_it_names_and_what_reads_through_it() {
    let (fake, cache) = clinic();
    cache
        .ensure(&names("SELECT * FROM names, visits, ghost"))
        .await
        .unwrap();
    let reads = fake.reads();
    fake.replace_view(3, "SELECT patients.ssn AS who FROM public.patients");
    cache.forget(&changes(
        "CREATE OR REPLACE VIEW contacts AS SELECT ssn AS who FROM patients",
    ));
    let catalog = cache.known().snapshot();
    assert!(oids(&catalog, "public.contacts").is_empty() && oids(&catalog, "names").is_empty());
    assert_eq!(oids(&catalog, "visits"), [2], "unrelated relations stay");
    assert_eq!(oids(&catalog, "public.patients"), [1]);
    cache
        .ensure(&names("SELECT * FROM names, visits, ghost"))
        .await
        .unwrap();
    let read: Vec<Wanted> = fake.reads.lock().unwrap()[reads..].to_vec();
    assert_eq!(
        read[0].everywhere.len(),
        2,
        "names and the absent ghost: {read:?}"
    );
    assert!(read
        .iter()
        .all(|w| !w.everywhere.contains(&"visits".into())));
    let contacts = cache.known().snapshot().by_oid(3).unwrap().clone();
    assert_eq!(
        contacts.view_sql.as_deref(),
        Some("SELECT patients.ssn AS who FROM public.patients")
    );
    // DDL on anything but named relations starts over.
    cache.forget(&changes("ALTER SCHEMA public RENAME TO old"));
    assert_eq!(cache.known().snapshot().relation_count(), 0);
}

#[tokio::test]
async fn another_sessions_view_change_is_noticed_within_the_window() {
    let (fake, cache) = clinic();
    let wanted = names("SELECT who FROM contacts");
    cache.ensure(&wanted).await.unwrap();
    fake.replace_view(3, "SELECT patients.ssn AS who FROM public.patients");
    // Within PROBE_AFTER nothing is asked of the server.
    let catalog = cache.ensure(&wanted).await.unwrap();
    assert_eq!(*fake.probes.lock().unwrap(), 0);
    assert!(catalog
        .by_oid(3)
        .unwrap()
        .view_sql
        .as_deref()
        .unwrap()
        .contains("full_name"));
    // Aging: the statement goes on while a probe runs in the background.
    cache.known().age(PROBE_AFTER);
    cache.ensure(&wanted).await.unwrap();
    for _ in 0..100 {
        if *fake.probes.lock().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let catalog = cache.ensure(&wanted).await.unwrap();
    assert!(catalog
        .by_oid(3)
        .unwrap()
        .view_sql
        .as_deref()
        .unwrap()
        .contains("ssn"));
    // Stale: the statement waits for the probe.
    fake.replace_view(3, "SELECT patients.id AS who FROM public.patients");
    cache.known().age(MAX_STALENESS);
    let catalog = cache.ensure(&wanted).await.unwrap();
    assert!(catalog
        .by_oid(3)
        .unwrap()
        .view_sql
        .as_deref()
        .unwrap()
        .contains("id AS"));
}

#[tokio::test]
async fn a_new_relation_of_a_known_name_is_noticed() {
    let (fake, cache) = clinic();
    cache.ensure(&names("SELECT * FROM visits")).await.unwrap();
    fake.add(10, "audit", "visits", &["id", "ssn"]);
    cache.known().age(MAX_STALENESS);
    let catalog = cache.ensure(&names("SELECT * FROM visits")).await.unwrap();
    assert_eq!(oids(&catalog, "visits"), [2, 10]);
}

#[tokio::test]
async fn a_relation_being_changed_stays_unknown() {
    let (fake, cache) = clinic();
    fake.locked.lock().unwrap().insert(3);
    let wanted = names("SELECT who FROM contacts");
    let catalog = cache.ensure(&wanted).await.unwrap();
    assert!(oids(&catalog, "contacts").is_empty());
    fake.locked.lock().unwrap().clear();
    let catalog = cache.ensure(&wanted).await.unwrap();
    assert_eq!(oids(&catalog, "contacts"), [3], "read again once released");
}

#[tokio::test]
async fn a_result_origin_not_known_is_unknown_then_read() {
    let (fake, cache) = clinic();
    let policy = crate::policy::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/examples/clinic-policy.toml"
    )))
    .unwrap();
    let classes = policy.classification_for("clinic");
    let catalog = cache.ensure(&[]).await.unwrap();
    let resolver = Resolver {
        catalog: Some(&catalog),
        classes: &classes,
    };
    let origin = resolver.origin(2, 2).expect("an origin");
    assert!(origin.unknown, "not known yet: masked");
    let catalog = cache.ensure(&[]).await.unwrap();
    assert_eq!(fake.last_read().oids, [2]);
    let resolver = Resolver {
        catalog: Some(&catalog),
        classes: &classes,
    };
    let origin = resolver.origin(2, 2).expect("an origin");
    assert!(
        !origin.unknown && !origin.categories.is_empty(),
        "visits.notes"
    );
}

#[tokio::test]
async fn without_the_server_names_stay_unknown_and_a_stale_cache_is_not_used() {
    let (fake, cache) = clinic();
    cache.ensure(&names("SELECT * FROM visits")).await.unwrap();
    *fake.failing.lock().unwrap() = true;
    let catalog = cache
        .ensure(&names("SELECT * FROM patients"))
        .await
        .unwrap();
    assert!(oids(&catalog, "patients").is_empty());
    cache.known().age(MAX_STALENESS);
    assert!(cache.ensure(&names("SELECT * FROM visits")).await.is_none());
}

#[test]
fn ddl_on_relations_is_told_from_ddl_that_may_change_many() {
    use super::wanted::PRECISE_DDL;
    for (sql, precise) in [
        ("CREATE TABLE t (a int)", true),
        ("CREATE TABLE t AS SELECT 1", true),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", true),
        ("CREATE MATERIALIZED VIEW m AS SELECT 1", true),
        ("ALTER TABLE t RENAME TO u", true),
        ("ALTER TABLE t RENAME COLUMN a TO b", true),
        ("DROP TABLE t CASCADE", true),
        ("DROP VIEW v", true),
        ("DROP MATERIALIZED VIEW m", true),
        ("DROP INDEX i", true),
        ("CREATE INDEX i ON t (a)", true),
        ("DROP SCHEMA s CASCADE", false),
        ("ALTER SCHEMA s RENAME TO r", false),
        ("CREATE SCHEMA s", false),
        ("CREATE EXTENSION hstore", false),
        ("DROP TYPE ty CASCADE", false),
        ("ALTER TYPE ty RENAME TO t2", false),
        ("DROP FUNCTION f CASCADE", false),
    ] {
        let facts = sql::analyze(sql).expect(sql).statements.remove(0);
        assert_eq!(
            PRECISE_DDL.contains(&facts.command.as_str()),
            precise,
            "{sql}: {}",
            facts.command
        );
        assert_eq!(Changes::of(&facts).map(|c| c.everything), Some(!precise));
    }
}

#[tokio::test]
async fn a_request_does_not_trust_what_its_own_ddl_changes() {
    let (fake, cache) = clinic();
    cache
        .ensure(&names("SELECT * FROM names, visits"))
        .await
        .unwrap();
    let held = changes("CREATE OR REPLACE VIEW contacts AS SELECT ssn AS who FROM patients");
    let catalog = cache.known().without(&held);
    assert!(oids(&catalog, "public.contacts").is_empty() && oids(&catalog, "names").is_empty());
    assert!(catalog.by_oid(3).is_none() && catalog.by_oid(4).is_none());
    assert_eq!(oids(&catalog, "visits"), [2]);
    let cached = cache.known().snapshot();
    assert_eq!(
        oids(&cached, "public.contacts"),
        [3],
        "the cache is unchanged"
    );
    let everything = cache.known().without(&changes("DROP SCHEMA s CASCADE"));
    assert_eq!(everything.relation_count(), 0);
    assert_eq!(fake.reads(), 3);
}

#[tokio::test]
async fn a_function_is_named_by_oid_as_it_is_named_now() {
    let (fake, cache) = clinic();
    fake.functions
        .lock()
        .unwrap()
        .push((16400, "public", "export_all".into()));
    let named = cache.function(16400).await;
    assert_eq!(named, Some(("public".into(), "export_all".into())));
    assert_eq!(cache.function(16401).await, None);
    // Renamed, same OID: the call is decided by its name now.
    fake.functions.lock().unwrap()[0].2 = "harmless".into();
    let named = cache.function(16400).await;
    assert_eq!(named, Some(("public".into(), "harmless".into())));
    *fake.failing.lock().unwrap() = true;
    assert_eq!(
        cache.function(16400).await,
        None,
        "unknown when the server cannot say"
    );
}
