//! The requests of a session from the moment they are sent until the server has answered
//! them, oldest first: one entry per request decided (a Query, a FunctionCall, or
//! extended-protocol messages up to Sync, Flush or a pause in what the client sends). Each
//! entry carries its decision, the answers it expects (its result plan, with a policy in
//! force), the denials standing in for its refused statements, and what it does to the
//! session's names once answered. Everything the session counts (requests awaiting a
//! ReadyForQuery, how far the server has answered) is read off this queue, never kept
//! beside it.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use pgwire::messages::response::TransactionStatus;

use crate::audit::event::ClassifiedColumn;

use super::{
    enforce::Verdict,
    errors::ClientError,
    names::{Answered, Effect, Marks},
    request::RequestEnd,
    results::Step,
};

/// Requests are numbered in the order they are sent.
pub type RequestId = u64;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Forwarded; the server has not answered any of it yet.
    Sent,
    Answering,
    /// Answered (by its ReadyForQuery, or a later one for messages sent ahead of a Sync),
    /// or skipped by the server without an answer.
    Done,
}

/// A request as the frontend hands it on.
#[derive(Debug)]
pub struct Sent {
    pub end: RequestEnd,
    /// Per statement, for the record.
    pub verdicts: Vec<Verdict>,
    /// The answers it expects, with a policy in force (see [`Step`]).
    pub steps: Vec<Step>,
    /// Refused statements: the marker each stand-in makes the server quote, and the error
    /// the client gets instead.
    pub denials: Vec<(u32, ClientError)>,
    pub effects: Vec<Effect>,
    pub marks: Marks,
    /// Its target has classified data (as of its decision).
    pub protect: bool,
    /// The index of its audit record: its answer is recorded too.
    pub record: Option<u64>,
}

impl Sent {
    /// A request that expects no answers of its own, refuses nothing and touches no names
    /// (as relayed without a policy); the caller fills in what it has.
    pub fn new(end: RequestEnd) -> Self {
        Self {
            end,
            verdicts: Vec::new(),
            steps: Vec::new(),
            denials: Vec::new(),
            effects: Vec::new(),
            marks: (0, 0),
            protect: false,
            record: None,
        }
    }
}

/// What a recorded request got back, tallied while the server answers it.
#[derive(Debug)]
pub struct Tally {
    pub record: u64,
    pub sent_at: std::time::Instant,
    pub rows: u64,
    pub row_bytes: u64,
    pub sqlstate: Option<String>,
    pub classified: Vec<ClassifiedColumn>,
}

#[derive(Debug)]
pub struct InFlight {
    pub id: RequestId,
    pub end: RequestEnd,
    pub stage: Stage,
    /// An error answered or skipped one of its messages.
    pub failed: bool,
    /// The transaction status reported by the ReadyForQuery that answered it.
    pub status: Option<TransactionStatus>,
    pub verdicts: Vec<Verdict>,
    effects: Vec<Effect>,
    marks: Marks,
    steps: VecDeque<Step>,
    denials: Vec<(u32, ClientError)>,
    tally: Option<Box<Tally>>,
}

impl InFlight {
    /// What its answer confirms of the session's names.
    pub fn answered(&self) -> Answered<'_> {
        Answered {
            effects: &self.effects,
            failed: self.failed,
            marks: self.marks,
            status: self.status,
        }
    }

    fn awaits_ready(&self) -> bool {
        self.stage != Stage::Done && self.end.answered_by_ready()
    }
}

/// How far the server has answered, read off the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// The number the next request sent gets.
    pub next: RequestId,
    /// Every request numbered below this is done.
    pub answered_below: RequestId,
}

#[derive(Debug, Default)]
pub struct Pipeline {
    /// Requests not yet done, oldest first.
    entries: VecDeque<InFlight>,
    /// Where the answers owed begin: the requests before it have none left (relayed ones
    /// never had any; extended-protocol messages answered ahead of their Sync wait for it).
    /// Kept by the queue's own methods, so a long pipeline costs nothing per message.
    answered: usize,
    /// How many of `entries` a ReadyForQuery will answer, kept likewise.
    awaiting: usize,
    /// Done requests whose effects on names the frontend has not applied yet, in order
    /// (consecutive ones without effects folded into one).
    done: VecDeque<InFlight>,
    next: RequestId,
    /// An extended-protocol error with no Sync sent yet: the server skips every message
    /// until the client's Sync, so requests sent until then get no answer.
    skipping: bool,
    /// The target has classified data (as of the latest request's decision).
    protect: bool,
    /// Tallies of recorded requests done, for their answer records.
    tallied: Vec<Tally>,
}

impl Pipeline {
    /// A request was forwarded.
    pub fn push(&mut self, sent: Sent) -> RequestId {
        let id = self.next;
        self.next += 1;
        self.protect = sent.protect;
        let mut entry = InFlight {
            id,
            end: sent.end,
            stage: Stage::Sent,
            failed: false,
            status: None,
            verdicts: sent.verdicts,
            effects: sent.effects,
            marks: sent.marks,
            steps: sent.steps.into(),
            denials: sent.denials,
            tally: sent.record.map(|record| {
                Box::new(Tally {
                    record,
                    sent_at: std::time::Instant::now(),
                    rows: 0,
                    row_bytes: 0,
                    sqlstate: None,
                    classified: Vec::new(),
                })
            }),
        };
        if self.skipping {
            entry.failed = true;
            self.skipping = !skip_to_sync(&mut entry);
            if entry.end == RequestEnd::Query && self.skipping {
                // Skipped whole: no ReadyForQuery will answer it.
                self.finish(entry);
                return id;
            }
        }
        self.awaiting += usize::from(entry.awaits_ready());
        self.entries.push_back(entry);
        self.advance();
        id
    }

    pub fn position(&self) -> Position {
        Position {
            next: self.next,
            answered_below: self.entries.front().map_or(self.next, |e| e.id),
        }
    }

    /// Whether a request a ReadyForQuery will answer is in flight.
    pub fn awaiting_ready(&self) -> bool {
        self.awaiting > 0
    }

    /// The oldest request a ReadyForQuery will answer, and whether another follows it.
    pub fn oldest_awaiting_ready(&self) -> Option<(&InFlight, bool)> {
        let oldest = self.entries.iter().find(|e| e.awaits_ready())?;
        Some((oldest, self.awaiting > 1))
    }

    pub fn protect(&self) -> bool {
        self.protect
    }

    /// The answer the server owes next, with a policy in force.
    pub fn step(&self) -> Option<&Step> {
        self.entries.get(self.answered)?.steps.front()
    }

    pub fn step_mut(&mut self) -> Option<&mut Step> {
        self.entries.get_mut(self.answered)?.steps.front_mut()
    }

    /// The next answer arrived whole.
    pub fn pop_step(&mut self) -> Option<Step> {
        let entry = self.entries.get_mut(self.answered)?;
        entry.stage = Stage::Answering;
        let step = entry.steps.pop_front();
        self.advance();
        step
    }

    /// A server message that answers a request, other than ReadyForQuery.
    pub fn on_answer(&mut self) {
        if let Some(at) = self.answering() {
            let entry = &mut self.entries[at];
            if entry.stage == Stage::Sent {
                entry.stage = Stage::Answering;
            }
        }
    }

    /// A ReadyForQuery answers the oldest request awaiting one, and every request sent
    /// before it (extended-protocol messages handed on ahead of their Sync).
    pub fn on_ready(&mut self, status: TransactionStatus) {
        let Some(at) = self.entries.iter().position(InFlight::awaits_ready) else {
            return;
        };
        self.awaiting -= 1;
        self.answered = self.answered.saturating_sub(at + 1);
        for mut entry in self.entries.drain(..=at).collect::<Vec<_>>() {
            if entry.end.answered_by_ready() {
                entry.status = Some(status);
            }
            self.finish(entry);
        }
        self.advance();
    }

    /// An ErrorResponse: the request answering fails; after an extended-protocol message
    /// the server skips everything until the next Sync.
    pub fn on_error(&mut self) {
        let Some(at) = self.answering() else {
            return;
        };
        let entry = &mut self.entries[at];
        entry.failed = true;
        entry.stage = Stage::Answering;
        let simple = match entry.steps.front() {
            Some(step) => matches!(step, Step::Query { .. } | Step::FunctionCall(_)),
            None => entry.end == RequestEnd::Query,
        };
        if simple {
            return;
        }
        let mut index = at;
        let reached_sync = loop {
            let Some(entry) = self.entries.get_mut(index) else {
                break false;
            };
            entry.failed = true;
            if skip_to_sync(entry) {
                break true;
            }
            if entry.end == RequestEnd::Query {
                // Skipped whole: no ReadyForQuery will answer it.
                let skipped = self.entries.remove(index).expect("the entry exists");
                self.awaiting -= 1;
                if index < self.answered {
                    self.answered -= 1;
                }
                self.finish(skipped);
            } else {
                index += 1;
            }
        };
        self.skipping = !reached_sync;
        self.advance();
    }

    /// The error a denied statement's stand-in stands for, by the marker the server quoted.
    pub fn take_denial(&mut self, marker: u32) -> Option<ClientError> {
        self.entries.iter_mut().find_map(|entry| {
            let at = entry.denials.iter().position(|(id, _)| *id == marker)?;
            Some(entry.denials.swap_remove(at).1)
        })
    }

    /// Rows the agent got for the request being answered.
    pub fn note_rows(&mut self, rows: u64, bytes: u64) {
        if let Some(tally) = self.tally_mut() {
            tally.rows += rows;
            tally.row_bytes += bytes;
        }
    }

    /// The classified columns of a result of the request being answered.
    pub fn note_classified(&mut self, columns: Vec<ClassifiedColumn>) {
        if columns.is_empty() {
            return;
        }
        if let Some(tally) = self.tally_mut() {
            tally.classified.extend(columns);
        }
    }

    /// The SQLSTATE of an error answering the request being answered (its first).
    pub fn note_error(&mut self, sqlstate: &str) {
        if let Some(tally) = self.tally_mut() {
            tally.sqlstate.get_or_insert_with(|| sqlstate.to_owned());
        }
    }

    /// Tallies of the recorded requests done since the last call.
    pub fn take_tallied(&mut self) -> Vec<Tally> {
        std::mem::take(&mut self.tallied)
    }

    fn tally_mut(&mut self) -> Option<&mut Tally> {
        let at = self.answering()?;
        self.entries[at].tally.as_deref_mut()
    }

    /// The oldest request done and not yet taken (its effects are applied in order).
    pub fn pop_done(&mut self) -> Option<InFlight> {
        self.done.pop_front()
    }

    fn finish(&mut self, mut entry: InFlight) {
        if let Some(tally) = entry.tally.take() {
            self.tallied.push(*tally);
        }
        entry.stage = Stage::Done;
        entry.steps.clear();
        entry.denials.clear();
        // A client that pipelines without reading waits to send more: requests that change
        // no names fold into one, so what waits for the frontend stays small. Of their
        // transaction ends only the latest matters (it covers every portal before it).
        if let Some(last) = self.done.back_mut() {
            if last.effects.is_empty() && entry.effects.is_empty() {
                if entry.status == Some(TransactionStatus::Idle) {
                    last.status = entry.status;
                    last.marks = entry.marks;
                }
                return;
            }
        }
        self.done.push_back(entry);
    }

    /// Moves past the requests with no answers left to match.
    fn advance(&mut self) {
        while self
            .entries
            .get(self.answered)
            .is_some_and(|e| e.steps.is_empty())
        {
            self.answered += 1;
        }
    }

    /// The request the server is answering now: the oldest with answers still expected
    /// (with a policy in force), else the oldest.
    fn answering(&self) -> Option<usize> {
        match self.answered < self.entries.len() {
            true => Some(self.answered),
            false => (!self.entries.is_empty()).then_some(0),
        }
    }
}

/// Drops the answers the server skips after an extended-protocol error: every message up to
/// the request's Sync. True once the Sync is reached.
fn skip_to_sync(entry: &mut InFlight) -> bool {
    while let Some(step) = entry.steps.front() {
        if matches!(step, Step::Sync) {
            return true;
        }
        entry.steps.pop_front();
    }
    entry.end == RequestEnd::Sync
}
