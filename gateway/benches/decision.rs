//! The policy decision for one statement whose analysis is cached (the steady state of an
//! agent that repeats its queries): analysis lookup by text, provenance through the catalog,
//! and evaluation of the example policy. `cargo xtask bench` runs this and checks the floor.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::{
    policy::{
        evaluate, load, Catalog, Decision, IdentityFacts, Relation, RelationKind, Resolver,
        StatementView,
    },
    sql::FactsCache,
};

const STATEMENTS: [(&str, &str); 2] = [
    (
        "phi-read",
        "SELECT full_name, ssn, birth_date, zip FROM patients WHERE id = $1",
    ),
    (
        "pgbench-select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    ),
];

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
            16_384,
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
            16_390,
            "public".into(),
            "pgbench_accounts".into(),
            RelationKind::Table,
            columns(&["aid", "bid", "abalance", "filler"]),
            None,
        ),
    ])
}

fn decision(c: &mut Criterion) {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/examples/clinic-policy.toml"
    );
    let policy = load(std::path::Path::new(example)).expect("the example policy loads");
    let identity = IdentityFacts {
        cgroup: Some("/ai-agents.slice/agent-1".into()),
        ..Default::default()
    };
    let identities = policy.identities_of(&identity);
    let classes = policy.classification_for("clinic");
    let catalog = catalog();
    let resolver = Resolver {
        catalog: Some(&catalog),
        classes: &classes,
    };
    let cache = FactsCache::new(4096);
    let decide = |sql: &str| {
        let analysis = cache.get(black_box(sql));
        let analysis = analysis.as_ref().as_ref().expect("parses");
        let facts = &analysis.statements[0];
        let resolved = resolver.resolve(facts);
        evaluate(
            &policy,
            "clinic",
            &identities,
            true,
            StatementView::Parsed {
                facts,
                resolved: &resolved,
            },
        )
    };
    for (name, sql) in STATEMENTS {
        // The measured path is the one an allowed agent query takes.
        assert!(
            matches!(decide(sql), Decision::Allow(_)),
            "{name} is allowed"
        );
        c.bench_function(&format!("decision/{name}"), |b| {
            b.iter(|| black_box(decide(sql)))
        });
    }
    // Simple-protocol clients put the value in the text (pgbench -S -M simple): a new text
    // each time, one literal shape.
    let mut aid = 0u32;
    c.bench_function("decision/pgbench-select-literal", |b| {
        b.iter(|| {
            aid = aid.wrapping_add(1);
            let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
            black_box(decide(&sql))
        })
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
