//! The SQL analyzer over a corpus of statements (`cargo xtask bench --only parser` builds the
//! corpus from PostgreSQL's regression suite and runs this): reads a JSON array of statement
//! texts from the file named by the first argument and writes, to the second, one outcome per
//! statement (`parsed`, `unreadable`, `too_deep` or `panic`, with the analyzer's message) and
//! the time the analysis took.

use std::{panic, time::Instant};

use serde_json::{json, Value};
use tollgate::sql::{analyze, SqlError};

fn main() {
    let paths: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [input, output] = paths.as_slice() else {
        panic!("usage: parser_corpus STATEMENTS.json OUTCOMES.json");
    };
    let texts: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(input).unwrap_or_else(|e| panic!("reading {input}: {e}")),
    )
    .unwrap_or_else(|e| panic!("{input} is not a JSON array of strings: {e}"));
    // A panic is an outcome to report, not the end of the run.
    panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let outcomes: Vec<Value> = texts
        .iter()
        .map(|text| match panic::catch_unwind(|| analyze(text)) {
            Ok(Ok(_)) => json!({ "outcome": "parsed" }),
            Ok(Err(SqlError::TooDeep)) => json!({ "outcome": "too_deep" }),
            Ok(Err(error)) => json!({ "outcome": "unreadable", "message": error.to_string() }),
            Err(_) => json!({ "outcome": "panic" }),
        })
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let report = json!({ "seconds": seconds, "outcomes": outcomes });
    std::fs::write(output, report.to_string()).unwrap_or_else(|e| panic!("writing {output}: {e}"));
}
