//! Fetches and builds, once, the clients' own test suites that `gateway/tests/client_suites.rs`
//! and the bench's `regress` section run (see `xtask::client_suites`):
//!
//! - `postgresql-15`'s Debian source at the installed version (`apt-get source`, through a
//!   deb-src entry that exists only while fetching, so the host's APT setup is left as it was),
//!   with only what the suites need built: libpq, `pg_regress` with its C test functions, and
//!   `libpq_pipeline`. The expected files must match the installed server.
//! - psycopg2's test suite, from the sdist (PyPI) of the version `python3-psycopg2` packages.
//!   Debian's mirror does not serve the `psycopg3` or `psycopg2` source tarballs, and psycopg 3's
//!   sdists carry no tests, so psycopg2's is the driver suite that can be had here.
//!
//! The result goes under `target/client-suites/` with a stamp of the versions it was built for;
//! a rerun with the same versions does nothing.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context};
use xtask::client_suites::{cache_dir, dpkg_field, stamp_path, wanted_stamp, PYTHON};

use super::run_checked;

/// The host's own Debian entry, whose `deb` lines are copied as `deb-src` for the fetch.
const DEBIAN_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
const TEMPORARY_SOURCES: &str = "/etc/apt/sources.list.d/tollgate-client-suites-src.sources";

/// Only what the suites need; every optional library off keeps the build under a minute.
const CONFIGURE_ARGS: [&str; 20] = [
    "--without-readline",
    "--without-icu",
    "--without-zlib",
    "--without-zstd",
    "--without-lz4",
    "--without-openssl",
    "--without-llvm",
    "--without-gssapi",
    "--without-ldap",
    "--without-pam",
    "--without-perl",
    "--without-python",
    "--without-tcl",
    "--without-libxml",
    "--without-libxslt",
    "--without-systemd",
    "--without-selinux",
    "--disable-nls",
    // libpq_pipeline runs with the tree's libpq through LD_LIBRARY_PATH.
    "--disable-rpath",
    "--quiet",
];
const MAKE_DIRS: [&str; 3] = [
    "src/interfaces/libpq",
    "src/test/regress",
    "src/test/modules/libpq_pipeline",
];

pub fn ensure() -> anyhow::Result<()> {
    let wanted = wanted_stamp()?;
    if std::fs::read_to_string(stamp_path()).is_ok_and(|found| found == wanted) {
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "the client test suites need building (apt-get source): run `sudo cargo xtask setup`"
        );
    }
    let started = Instant::now();
    let cache = cache_dir();
    eprintln!(
        "setup: fetching and building the client test suites under {} (about a minute, once)",
        cache.display()
    );
    if cache.exists() {
        std::fs::remove_dir_all(&cache)
            .with_context(|| format!("removing the stale {}", cache.display()))?;
    }
    let work = cache.join("work");
    std::fs::create_dir_all(&work)?;
    let source_tree = fetch_postgres(&work)?;
    let tree = cache.join("postgresql-15");
    std::fs::rename(&source_tree, &tree)?;
    build_postgres(&tree, &cache.join("build.log"))?;
    fetch_psycopg2_tests(&work, &cache.join("psycopg2"))?;
    std::fs::remove_dir_all(&work)?;
    std::fs::write(stamp_path(), wanted)?;
    eprintln!(
        "setup: client test suites ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `apt-get source postgresql-15=<installed version>` into `work`; returns the unpacked tree.
fn fetch_postgres(work: &Path) -> anyhow::Result<PathBuf> {
    let version = dpkg_field("postgresql-15", "${Version}")?;
    let _sources = TemporarySources::add()?;
    let status = Command::new("apt-get")
        .args(["source", "-qq", "--only-source"])
        .arg(format!("postgresql-15={version}"))
        .current_dir(work)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get source")?;
    if !status.success() {
        bail!(
            "apt-get source postgresql-15={version} failed ({status}): the installed server's \
             source must be on the mirror (after a point release, upgrade the server: \
             `apt-get install --only-upgrade postgresql-15`)"
        );
    }
    let upstream = dpkg_field("postgresql-15", "${source:Upstream-Version}")?;
    let tree = work.join(format!("postgresql-15-{upstream}"));
    if !tree.is_dir() {
        bail!("apt-get source did not unpack {}", tree.display());
    }
    Ok(tree)
}

/// `configure` and `make` of the three directories the suites use, output in `log`.
fn build_postgres(tree: &Path, log: &Path) -> anyhow::Result<()> {
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, usize::from)
    );
    let mut configure = Command::new("./configure");
    configure.args(CONFIGURE_ARGS);
    logged(configure.current_dir(tree), log, "configure")?;
    for dir in MAKE_DIRS {
        let mut make = Command::new("make");
        make.args([&jobs, "-C", dir]);
        logged(make.current_dir(tree), log, &format!("make -C {dir}"))?;
    }
    Ok(())
}

/// Runs `command` with its output appended to `log`; on failure the error shows its end.
fn logged(command: &mut Command, log: &Path, what: &str) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let status = command
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{what} failed ({status}); end of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// The `tests` package of psycopg2's sdist, of the version Debian's `python3-psycopg2` is.
fn fetch_psycopg2_tests(work: &Path, into: &Path) -> anyhow::Result<()> {
    let version = dpkg_field("python3-psycopg2", "${source:Upstream-Version}")?;
    run_checked(
        Command::new(PYTHON)
            .args(["-m", "pip", "download", "-q", "--no-deps"])
            .args(["--no-binary", ":all:", "--dest"])
            .arg(work)
            .arg(format!("psycopg2=={version}")),
    )?;
    let sdist = work.join(format!("psycopg2-{version}.tar.gz"));
    run_checked(
        Command::new("tar")
            .arg("-xzf")
            .arg(&sdist)
            .arg("-C")
            .arg(work),
    )?;
    std::fs::create_dir_all(into)?;
    std::fs::rename(
        work.join(format!("psycopg2-{version}/tests")),
        into.join("tests"),
    )
    .context("psycopg2's sdist has no tests directory")?;
    Ok(())
}

/// A deb-src twin of the host's Debian entry, removed (and the package lists refreshed) on
/// Drop, also when a fetch fails.
struct TemporarySources;

impl TemporarySources {
    fn add() -> anyhow::Result<Self> {
        let entry = std::fs::read_to_string(DEBIAN_SOURCES).with_context(|| {
            format!("reading {DEBIAN_SOURCES} (the deb-src entry is made from it)")
        })?;
        if !entry.lines().any(|line| line.trim() == "Types: deb") {
            bail!("{DEBIAN_SOURCES} has no `Types: deb` entry to copy as deb-src");
        }
        let sources: Vec<&str> = entry
            .lines()
            .map(|line| {
                if line.trim() == "Types: deb" {
                    "Types: deb-src"
                } else {
                    line
                }
            })
            .collect();
        std::fs::write(TEMPORARY_SOURCES, sources.join("\n") + "\n")?;
        let sources = Self;
        apt_update()?;
        Ok(sources)
    }
}

impl Drop for TemporarySources {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(TEMPORARY_SOURCES);
        if let Err(error) = apt_update() {
            eprintln!("setup: refreshing the package lists after removing deb-src: {error:#}");
        }
    }
}

fn apt_update() -> anyhow::Result<()> {
    run_checked(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
