//! The audit log's speed, from the `audit_log` bench target: batched appends on one thread
//! (floor: 50,000 records/s), strict appends from concurrent sessions, `audit verify` over
//! 1,000,000 records (floor: 10 s) and the size of RFC 9162 proofs. Needs no root.

use std::fmt::Write as _;

use anyhow::Context;
use serde_json::Value;

use super::verdict;
use crate::{cargo, workspace_root};

const APPEND_FLOOR: f64 = 50_000.0;
const VERIFY_CEILING_S: f64 = 10.0;

pub fn measure() -> anyhow::Result<String> {
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let output = dir.join("audit-log.json");
    cargo(&[
        "bench",
        "-p",
        "tollgate",
        "--bench",
        "audit_log",
        "--",
        &output.to_string_lossy(),
    ])?;
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(&output)
            .with_context(|| format!("reading {}", output.display()))?,
    )?;
    let number = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let records = number("batched_records");
    let per_second = records / number("append_seconds");
    let cpu_us = number("append_cpu_seconds") * 1e6 / records;
    let verify_s = number("verify_seconds");
    let strict_per_second = number("strict_records") / number("strict_seconds");
    let mut text = String::from("## Audit log\n\n");
    let _ = writeln!(text, "| measure | value | floor |\n|---|---:|---|");
    let _ = writeln!(
        text,
        "| batched appends, one thread | {per_second:.0} records/s ({cpu_us:.1} µs CPU each) | ≥ {APPEND_FLOOR:.0}/s {} |",
        verdict(per_second >= APPEND_FLOOR)
    );
    let _ = writeln!(
        text,
        "| strict appends, {} sessions (group commit) | {strict_per_second:.0} records/s | |",
        r["strict_sessions"]
    );
    let _ = writeln!(
        text,
        "| `audit verify`, {records:.0} records ({:.0} MiB) | {verify_s:.2} s | < {VERIFY_CEILING_S:.0} s {} |",
        number("log_bytes") / 1048576.0,
        verdict(verify_s < VERIFY_CEILING_S)
    );
    let _ = writeln!(
        text,
        "| SIEM export of those records as OCSF to a file sink | {:.0} records/s ({:.2} s, {:.0} MiB of NDJSON) | |",
        records / number("export_seconds"),
        number("export_seconds"),
        number("export_bytes") / 1048576.0
    );
    let _ = writeln!(
        text,
        "| inclusion proof, tree of {records:.0} | {} hashes, {} bytes of JSON | |",
        r["inclusion_hashes"], r["inclusion_json_bytes"]
    );
    let _ = writeln!(
        text,
        "| consistency proof from half the tree | {} hashes, {} bytes of JSON | |",
        r["consistency_hashes"], r["consistency_json_bytes"]
    );
    text.push('\n');
    Ok(text)
}
