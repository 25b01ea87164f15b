//! The clients' own test suites, run directly and through Tollgate: PostgreSQL 15's regression
//! suite (`pg_regress`) and `libpq_pipeline` from Debian's `postgresql-15` source, and the test
//! suite of the Python driver psycopg2 (the sdist of the version Debian ships). `cargo xtask
//! setup` fetches and builds them once under `target/client-suites/`; this module finds that
//! build and refuses a stale or missing one, saying how to get it.

pub mod bounded;
pub mod regress;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::testbed::PgCluster;

/// The installed server's programs (`psql` for `pg_regress --bindir`).
pub const PG_BINDIR: &str = "/usr/lib/postgresql/15/bin";
/// Debian's interpreter, the one `python3-psycopg2` and `python3-pytest` are installed for.
pub const PYTHON: &str = "/usr/bin/python3";
/// Bumped when the build steps change, so `cargo xtask setup` rebuilds the cache.
const RECIPE: u32 = 1;
/// The Debian packages whose versions the build must match: the server the regression
/// suite's expected files are for, and the driver whose own suite is run.
const MATCHED_PACKAGES: [&str; 2] = ["postgresql-15", "python3-psycopg2"];

/// A throwaway cluster the suites can run on, on 127.0.0.1 and ::1: UTF8 with the C locale
/// whatever the caller's locale (the regression suite's expected files assume it), and
/// prepared transactions on (psycopg2's two-phase commit tests). Its superuser is `postgres`.
pub fn start_cluster() -> anyhow::Result<PgCluster> {
    PgCluster::start_with_initdb(
        "127.0.0.1,::1",
        300,
        "-c max_prepared_transactions=10",
        &["-E", "UTF8", "--locale=C"],
    )
}

/// Starts a program: directly, or as an agent (`AgentCgroup::command`).
pub type Launcher<'a> = &'a dyn Fn(&str) -> Command;

/// A launcher that starts programs as ordinary (non-agent) processes.
pub fn direct(program: &str) -> Command {
    Command::new(program)
}

/// `program` started by `launch` as the `postgres` user: the server reads and writes the files
/// of some regression tests (`COPY ... TO :'filename'`) in the output directory.
pub fn as_postgres(launch: Launcher, program: &Path) -> Command {
    let mut command = launch("setpriv");
    command
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program);
    command
}

/// Where `cargo xtask setup` keeps the fetched and built suites (rebuilt when missing).
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("target/client-suites")
}

/// What the cache must have been built for: the recipe and the installed package versions.
pub fn wanted_stamp() -> anyhow::Result<String> {
    let mut stamp = format!("recipe {RECIPE}\n");
    for package in MATCHED_PACKAGES {
        stamp.push_str(&format!("{package} {}\n", installed_version(package)?));
    }
    Ok(stamp)
}

/// The Debian version of an installed package (`field` e.g. `${Version}`).
pub fn dpkg_field(package: &str, field: &str) -> anyhow::Result<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", &format!("-f={field}"), package])
        .output()
        .context("running dpkg-query")?;
    let value = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || value.is_empty() {
        bail!("the Debian package {package} is not installed: run `cargo xtask setup`");
    }
    Ok(value)
}

fn installed_version(package: &str) -> anyhow::Result<String> {
    dpkg_field(package, "${Version}")
}

pub fn stamp_path() -> PathBuf {
    cache_dir().join("ready")
}

/// The built suites, checked to match the installed packages.
pub struct Suites {
    root: PathBuf,
}

impl Suites {
    /// Fails, saying how to fix it, when `cargo xtask setup` has not built the suites for the
    /// packages installed now.
    pub fn open() -> anyhow::Result<Self> {
        let root = cache_dir();
        let wanted = wanted_stamp()?;
        let found = std::fs::read_to_string(stamp_path()).unwrap_or_default();
        if found != wanted {
            bail!(
                "the client test suites under {} are missing or were built for other package \
                 versions (found {found:?}, want {wanted:?}): run `cargo xtask setup` as root",
                root.display()
            );
        }
        let suites = Self { root };
        for program in [suites.pg_regress(), suites.libpq_pipeline()] {
            if !program.exists() {
                bail!(
                    "{} is missing: remove {} and run `cargo xtask setup`",
                    program.display(),
                    stamp_path().display()
                );
            }
        }
        Ok(suites)
    }

    /// The unpacked, patched and partly built `postgresql-15` source tree.
    pub fn postgres_tree(&self) -> PathBuf {
        self.root.join("postgresql-15")
    }

    pub fn regress_dir(&self) -> PathBuf {
        self.postgres_tree().join("src/test/regress")
    }

    pub fn pg_regress(&self) -> PathBuf {
        self.regress_dir().join("pg_regress")
    }

    pub fn libpq_pipeline(&self) -> PathBuf {
        self.postgres_tree()
            .join("src/test/modules/libpq_pipeline/libpq_pipeline")
    }

    /// The expected traces that PostgreSQL's own TAP test compares.
    pub fn libpq_pipeline_traces(&self) -> PathBuf {
        self.postgres_tree()
            .join("src/test/modules/libpq_pipeline/traces")
    }

    /// The tree's own libpq, which `libpq_pipeline` is run with (`LD_LIBRARY_PATH`).
    pub fn libpq_dir(&self) -> PathBuf {
        self.postgres_tree().join("src/interfaces/libpq")
    }

    /// The directory holding psycopg2's `tests` package (nothing else: `import psycopg2`
    /// finds Debian's package, not a source tree).
    pub fn psycopg2_dir(&self) -> PathBuf {
        self.root.join("psycopg2")
    }
}

/// Statement kinds a policy rule may name (policies/README.md, `kinds`).
const ALL_KINDS: [&str; 28] = [
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "copy_to",
    "copy_from",
    "create",
    "alter",
    "drop",
    "truncate",
    "grant",
    "set",
    "show",
    "transaction",
    "prepare",
    "execute",
    "deallocate",
    "declare",
    "fetch",
    "close",
    "do",
    "call",
    "explain",
    "listen",
    "notify",
    "vacuum",
    "other",
];

/// A policy that lets the agents in cgroups matching `cgroup_glob` run every statement
/// (unparsed ones too) and classifies nothing: the policy and catalog code paths run, and
/// nothing should change what a client sees.
pub fn permissive_policy(cgroup_glob: &str) -> String {
    let kinds: Vec<String> = ALL_KINDS.iter().map(|k| format!("{k:?}")).collect();
    format!(
        r#"version = 1

[[identities]]
id = "suite-agents"
cgroup = [{cgroup_glob:?}]

[[rules]]
id = "suites-run-everything"
effect = "allow"
identities = ["suite-agents"]
kinds = [{}]

[[rules]]
id = "suites-run-unparsed"
effect = "allow"
identities = ["suite-agents"]
unparsed = true
"#,
        kinds.join(", ")
    )
}
