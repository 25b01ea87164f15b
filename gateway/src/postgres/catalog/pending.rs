//! A session's own DDL until the server has answered it: a later request (pipelined, or the
//! rest of the same one) may be decided before the change is made, and the catalog would
//! then describe the relations as they were. They are unknown until the answer arrives, and
//! read again after it; a change still uncommitted then shows as a relation in flux (see
//! `server`), and is read again once its transaction has ended.

use std::collections::VecDeque;

use super::wanted::{Changes, RequestNames};
use crate::postgres::pipeline::{Position, RequestId};

/// Requests with DDL remembered at most; past this the oldest is dropped, and everything
/// is held until its answer (see [`PendingChanges::settle`]).
const MAX_PENDING: usize = 64;

/// What the catalog does about a session's changes as it decides a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Unknown for this request: its own changes and those not answered yet.
    pub held: Changes,
    /// Answered since the last request: to be forgotten (and read again when used).
    pub answered: Changes,
}

#[derive(Debug, Default)]
pub struct PendingChanges {
    /// (the request, what it may change).
    waiting: VecDeque<(RequestId, Changes)>,
    /// A dropped entry's request: until it is answered everything is held.
    overflow_until: Option<RequestId>,
    /// Changed since the session's transaction began: seen by others only once it ends.
    in_transaction: Changes,
}

impl PendingChanges {
    /// `position`: how far the server has answered; the request decided now is numbered
    /// `position.next`.
    pub fn settle(&mut self, position: Position, request: &RequestNames) -> Settled {
        let mut settled = Settled::default();
        while let Some((_, changes)) = self
            .waiting
            .pop_front_if(|(id, _)| *id < position.answered_below)
        {
            settled.answered.add(&changes);
        }
        let own = &request.changes;
        settled.held = own.clone();
        settled.held.everything |= self
            .overflow_until
            .is_some_and(|id| id >= position.answered_below);
        for (_, changes) in &self.waiting {
            settled.held.add(changes);
        }
        self.in_transaction.add(own);
        let mut recorded = own.clone();
        if request.ends_transaction {
            recorded.add(&std::mem::take(&mut self.in_transaction));
        }
        if !recorded.is_empty() {
            if self.waiting.len() == MAX_PENDING {
                self.overflow_until = self.waiting.pop_front().map(|(id, _)| id);
            }
            self.waiting.push_back((position.next, recorded));
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sent` requests sent before this one, the first `answered` of them answered.
    fn progress(sent: u64, answered: u64) -> Position {
        Position {
            next: sent,
            answered_below: answered,
        }
    }

    fn names(names: &[&str]) -> Changes {
        Changes {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            everything: false,
        }
    }

    fn request(changes: &[&str], ends_transaction: bool) -> RequestNames {
        RequestNames {
            wanted: Vec::new(),
            changes: names(changes),
            ends_transaction,
        }
    }

    #[test]
    fn changes_are_held_until_answered_then_forgotten() {
        let mut pending = PendingChanges::default();
        let settled = pending.settle(progress(0, 0), &request(&["v"], false));
        assert_eq!(
            (settled.held, settled.answered),
            (names(&["v"]), names(&[]))
        );
        // Pipelined: sent before the first was answered.
        let settled = pending.settle(progress(1, 0), &request(&[], false));
        assert_eq!(settled.held, names(&["v"]));
        let settled = pending.settle(progress(2, 0), &request(&["w"], false));
        assert_eq!(settled.held, names(&["w", "v"]));
        let settled = pending.settle(progress(3, 1), &request(&[], false));
        assert_eq!(
            (settled.held, settled.answered),
            (names(&["w"]), names(&["v"]))
        );
        let settled = pending.settle(progress(3, 3), &request(&[], false));
        assert_eq!(
            (settled.held, settled.answered),
            (names(&[]), names(&["w"]))
        );
    }

    #[test]
    fn a_transaction_end_forgets_again_what_the_transaction_changed() {
        let mut pending = PendingChanges::default();
        pending.settle(progress(0, 0), &request(&["t"], false));
        let settled = pending.settle(progress(1, 1), &request(&[], true));
        assert_eq!(settled.answered, names(&["t"]), "the CREATE was answered");
        assert_eq!(settled.held, names(&[]));
        let settled = pending.settle(progress(2, 2), &request(&[], false));
        assert_eq!(settled.answered, names(&["t"]), "and then the COMMIT");
        let settled = pending.settle(progress(3, 3), &request(&[], true));
        assert!(settled.answered.is_empty() && settled.held.is_empty());
    }
}
