//! How often the SQL analyzer fails to read what PostgreSQL accepts: the SELECT, WITH, INSERT,
//! UPDATE, DELETE, COPY, PREPARE, DECLARE, CREATE ... AS and CREATE FUNCTION statements of
//! PostgreSQL 15's regression suite (the source tree `cargo xtask setup` fetched), run through
//! `tollgate::sql::analyze` by the `parser_corpus` bench target. Each unparsed statement is
//! refused on a target with classified data. Needs no root and no server.
//!
//! Two figures per kind: raw (every statement) and adjusted, without the statements the
//! expected output shows the server rejecting and those using a psql variable whose value the
//! script does not give (neither is SQL PostgreSQL accepts as written). The floor is on the
//! adjusted total. Every unparsed statement is listed in target/bench/parser-unparsed.md.

mod corpus;
mod expected;
mod psql;

use std::fmt::Write as _;

use anyhow::{bail, Context};
use serde_json::Value;
use xtask::client_suites::Suites;

use super::verdict;
use crate::{cargo, workspace_root};
use corpus::{Entry, Kind};
use expected::Verdict;

/// At most this fraction of the adjusted corpus unparsed.
const UNPARSED_FLOOR: f64 = 0.01;

pub fn measure() -> anyhow::Result<String> {
    let suites = Suites::open()?;
    let entries = corpus::collect(&suites.regress_dir())?;
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("parser-corpus.json");
    let output = dir.join("parser-outcomes.json");
    let texts: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
    std::fs::write(&input, serde_json::to_string(&texts)?)?;
    let (input_arg, output_arg) = (input.to_string_lossy(), output.to_string_lossy());
    cargo(&[
        "bench",
        "-p",
        "tollgate",
        "--bench",
        "parser_corpus",
        "--",
        &input_arg,
        &output_arg,
    ])?;
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&output)
            .with_context(|| format!("reading {}", output.display()))?,
    )?;
    let outcomes = report["outcomes"]
        .as_array()
        .context("no outcomes in the parser_corpus output")?;
    if outcomes.len() != entries.len() {
        bail!(
            "{} outcomes for {} statements",
            outcomes.len(),
            entries.len()
        );
    }
    let results: Vec<Outcome<'_>> = entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| Outcome {
            entry,
            parsed: outcome["outcome"] == "parsed",
            what: outcome["message"]
                .as_str()
                .or(outcome["outcome"].as_str())
                .unwrap_or("?")
                .to_owned(),
        })
        .collect();
    std::fs::write(dir.join("parser-unparsed.md"), unparsed_list(&results))?;
    let seconds = report["seconds"].as_f64().unwrap_or(f64::NAN);
    Ok(table(&results, seconds))
}

struct Outcome<'e> {
    entry: &'e Entry,
    parsed: bool,
    what: String,
}

impl Outcome<'_> {
    /// Counted in the adjusted figures.
    fn counted(&self) -> bool {
        self.entry.verdict != Verdict::Rejected && !self.entry.unknown_variable
    }
}

#[derive(Default)]
struct Tally {
    raw: usize,
    raw_unparsed: usize,
    rejected: usize,
    variables: usize,
    adjusted: usize,
    adjusted_unparsed: usize,
    unknown_verdict: usize,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome<'_>) {
        self.raw += 1;
        self.raw_unparsed += usize::from(!outcome.parsed);
        self.rejected += usize::from(outcome.entry.verdict == Verdict::Rejected);
        self.variables += usize::from(outcome.entry.unknown_variable);
        self.unknown_verdict += usize::from(outcome.entry.verdict == Verdict::Unknown);
        if outcome.counted() {
            self.adjusted += 1;
            self.adjusted_unparsed += usize::from(!outcome.parsed);
        }
    }
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "–".to_owned();
    }
    format!("{:.2}%", 100.0 * part as f64 / whole as f64)
}

fn table(results: &[Outcome<'_>], seconds: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## SQL analyzer on PostgreSQL 15's regression suite: unparsed statements\n\n\
         The statements of these kinds in `src/test/regress/sql/*.sql`, cut as psql sends them \
         (meta-commands and copy data are not SQL and are left out), each run through the \
         analyzer; an unparsed statement is refused on a target with classified data. Adjusted: \
         without the statements the expected output shows the server rejecting with an ERROR \
         and those using a psql variable whose value the script does not give. Server verdict \
         unknown (echo off, one error among several statements on a line): counted as \
         accepted. Analysis of the {} statements took {seconds:.2} s (release build). Each \
         unparsed statement: target/bench/parser-unparsed.md.\n\n\
         | kind | statements | unparsed | rejected by the server | psql variables | verdict unknown | adjusted statements | adjusted unparsed |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|",
        results.len()
    );
    let mut total = Tally::default();
    for kind in Kind::ALL {
        let mut tally = Tally::default();
        for outcome in results.iter().filter(|o| o.entry.kind == kind) {
            tally.add(outcome);
            total.add(outcome);
        }
        row(&mut out, kind.label(), &tally);
    }
    row(&mut out, "**all**", &total);
    let fraction = total.adjusted_unparsed as f64 / total.adjusted.max(1) as f64;
    let _ = writeln!(
        out,
        "\nAt most {:.0}% of the adjusted statements unparsed: {} **{}**\n",
        UNPARSED_FLOOR * 100.0,
        percent(total.adjusted_unparsed, total.adjusted),
        verdict(fraction <= UNPARSED_FLOOR)
    );
    out
}

fn row(out: &mut String, label: &str, tally: &Tally) {
    let _ = writeln!(
        out,
        "| {label} | {} | {} ({}) | {} | {} | {} | {} | {} ({}) |",
        tally.raw,
        tally.raw_unparsed,
        percent(tally.raw_unparsed, tally.raw),
        tally.rejected,
        tally.variables,
        tally.unknown_verdict,
        tally.adjusted,
        tally.adjusted_unparsed,
        percent(tally.adjusted_unparsed, tally.adjusted),
    );
}

/// The unparsed statements, counted ones first (the regression suite's own SQL, no PHI).
fn unparsed_list(results: &[Outcome<'_>]) -> String {
    let mut out =
        String::from("# Statements of the regression suite the analyzer did not read\n\n");
    for counted in [true, false] {
        let _ = writeln!(
            out,
            "## {}\n",
            if counted {
                "Counted (accepted by the server, or verdict unknown)"
            } else {
                "Not counted (rejected by the server, or unknown psql variables)"
            }
        );
        for outcome in results
            .iter()
            .filter(|o| !o.parsed && o.counted() == counted)
        {
            let text: String = outcome.entry.text.chars().take(600).collect();
            let _ = writeln!(
                out,
                "- `{}` {} ({}):\n\n```sql\n{text}\n```\n",
                outcome.entry.place,
                outcome.entry.kind.label(),
                outcome.what
            );
        }
    }
    out
}
