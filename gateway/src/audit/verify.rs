//! `tollgate audit verify`: recomputes the log from its first byte. Every record must carry
//! its index and link to the record before it (which names a deleted, inserted, moved or
//! modified record exactly); every checkpoint must be signed by the log's key and sign the
//! tree of the records before it (which catches an editor who recomputed the links); and a
//! checkpoint kept elsewhere must be a state this log grew from (which catches a log cut
//! short, rolled back or replaced).

use std::path::Path;

use super::{
    event::Event,
    merkle::{empty_root, leaf_hash, Frontier, Hash},
    note::{self, Checkpoint, VerifierKey},
    record::{link, Record},
    segment::{self, Place},
};

/// What an intact log holds.
#[derive(Debug, Default)]
pub struct Report {
    pub records: u64,
    pub checkpoints: u64,
    /// Records covered by the last checkpoint in the log.
    pub signed: u64,
    /// A record a crash left half-written (the gateway drops it when it starts again).
    pub torn_tail: Option<String>,
    /// Checkpoints from outside the log that it grew from, by size.
    pub outside: Vec<(String, u64)>,
}

/// The first thing wrong, named.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct Problem {
    pub index: Option<u64>,
    pub what: String,
}

fn problem(index: Option<u64>, what: String) -> Problem {
    Problem { index, what }
}

/// A checkpoint kept elsewhere (the latest-checkpoint file, or one exported earlier).
pub struct Outside {
    pub label: String,
    pub note: String,
}

pub fn verify(
    dir: &Path,
    key: &VerifierKey,
    origin: &str,
    outside: &[Outside],
) -> Result<Report, Problem> {
    let wanted: Vec<(String, Checkpoint)> = outside
        .iter()
        .map(|o| {
            Ok((
                o.label.clone(),
                open_checkpoint(&o.note, key, origin, &o.label, None)?,
            ))
        })
        .collect::<Result<_, Problem>>()?;
    let mut roots: Vec<Option<Hash>> = wanted
        .iter()
        .map(|(_, c)| (c.size == 0).then(empty_root))
        .collect();
    let mut report = Report::default();
    let mut frontier = Frontier::new();
    let mut prev: Option<Hash> = None;
    let scanned = segment::for_each_line(dir, |place: &Place, line| {
        let expected = frontier.size();
        let record = Record::parse(line).map_err(|e| {
            problem(
                Some(expected),
                format!("record {expected} ({place}) is not a valid record, it was modified: {e}"),
            )
        })?;
        if record.index != expected {
            return Err(problem(
                Some(expected),
                format!(
                    "record {expected} is not where it belongs: {place} holds record {} (records \
                     were deleted, inserted or reordered there)",
                    record.index
                ),
            ));
        }
        if record.prev != prev.as_ref().map(link).unwrap_or_default() {
            let before = expected.saturating_sub(1);
            return Err(problem(
                Some(before),
                format!(
                    "record {before} was modified, or replaced: record {expected} ({place}) links \
                     to a different record before it"
                ),
            ));
        }
        if let Event::Checkpoint { note } = &record.event {
            let label = format!("the checkpoint at record {expected} ({place})");
            let checkpoint = open_checkpoint(note, key, origin, &label, Some(expected))?;
            if checkpoint.root != frontier.root() {
                return Err(problem(
                    Some(report.signed),
                    format!(
                        "records {} to {} do not match {label}: one of them was modified and the \
                         links recomputed",
                        report.signed,
                        expected.saturating_sub(1)
                    ),
                ));
            }
            report.checkpoints += 1;
        }
        let leaf = leaf_hash(line);
        frontier.push(leaf);
        prev = Some(leaf);
        if matches!(record.event, Event::Checkpoint { .. }) {
            report.signed = frontier.size();
        }
        for ((_, checkpoint), root) in wanted.iter().zip(roots.iter_mut()) {
            if checkpoint.size == frontier.size() {
                *root = Some(frontier.root());
            }
        }
        Ok(())
    })
    .map_err(|e| match e {
        segment::ScanError::Io(error) => {
            problem(None, format!("reading {}: {error}", dir.display()))
        }
        segment::ScanError::Line(problem) => problem,
    })?;
    report.records = frontier.size();
    report.torn_tail = scanned
        .torn
        .map(|t| format!("{} ({} bytes)", t.place, t.bytes));
    for ((label, checkpoint), root) in wanted.into_iter().zip(roots) {
        match root {
            None => {
                return Err(problem(
                    Some(report.records),
                    format!(
                        "the log was cut short or rolled back: {label} signs {} records, the log \
                         holds {}",
                        checkpoint.size, report.records
                    ),
                ))
            }
            Some(root) if root != checkpoint.root => {
                return Err(problem(
                    None,
                    format!(
                        "the log was replaced: its first {} records are not the ones {label} \
                         signs",
                        checkpoint.size
                    ),
                ))
            }
            Some(_) => report.outside.push((label, checkpoint.size)),
        }
    }
    Ok(report)
}

/// A signed checkpoint of this log: the key's signature, the origin, and (inside the log)
/// the size it claims against the records before it.
fn open_checkpoint(
    text: &str,
    key: &VerifierKey,
    origin: &str,
    label: &str,
    at: Option<u64>,
) -> Result<Checkpoint, Problem> {
    let body = note::open(text, key).map_err(|e| {
        problem(
            at,
            format!(
                "{label} does not verify with key {}: {e} (a bad signature, or a log signed by \
                 another key)",
                key.to_text()
            ),
        )
    })?;
    let checkpoint =
        Checkpoint::parse(&body).map_err(|e| problem(at, format!("{label} is malformed: {e}")))?;
    if checkpoint.origin != origin {
        return Err(problem(
            at,
            format!("{label} is for log `{}`, not `{origin}`", checkpoint.origin),
        ));
    }
    if let Some(at) = at {
        if checkpoint.size != at {
            return Err(problem(
                Some(at),
                format!(
                    "{label} signs {} records, but {at} come before it",
                    checkpoint.size
                ),
            ));
        }
    }
    Ok(checkpoint)
}
