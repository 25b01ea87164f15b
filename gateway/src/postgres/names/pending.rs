//! Releases of names (`DEALLOCATE`, `CLOSE`, a protocol Close, the end of a transaction)
//! wait for the server's word: a message can fail, or be skipped after an earlier error, and
//! then the name still exists. A release counts once the ReadyForQuery that answers its
//! request has arrived with no error since it was recorded; any error drops it, which only
//! keeps names that may be gone.

use std::collections::VecDeque;

use super::super::state::Progress;

/// Releases waiting at most; past this the oldest is dropped.
const MAX_PENDING: usize = 64;

pub struct PendingReleases<R> {
    waiting: VecDeque<Pending<R>>,
    /// The server's progress as the current request is inspected.
    at: Option<Progress>,
}

impl<R> Default for PendingReleases<R> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            at: None,
        }
    }
}

struct Pending<R> {
    release: R,
    /// The number of the ReadyForQuery that answers the request.
    answered_by: u64,
    errors: u64,
}

impl<R> PendingReleases<R> {
    /// Notes how far the server is for the request being inspected, and hands back the
    /// releases it has confirmed since.
    pub fn settle(&mut self, progress: Progress) -> Vec<R> {
        self.at = Some(progress);
        let mut confirmed = Vec::new();
        while let Some(pending) = self.waiting.front() {
            if progress.readies < pending.answered_by {
                break;
            }
            let pending = self.waiting.pop_front().expect("front exists");
            if progress.errors == pending.errors {
                confirmed.push(pending.release);
            }
        }
        confirmed
    }

    /// A release by a message of the request being inspected.
    pub fn record(&mut self, release: R) {
        // Without the server's progress nothing could ever confirm it.
        let Some(at) = self.at else {
            return;
        };
        if self.waiting.len() >= MAX_PENDING {
            self.waiting.pop_front();
        }
        self.waiting.push_back(Pending {
            release,
            // Every request already sent is answered first, each by one ReadyForQuery.
            answered_by: at.sent + 1,
            errors: at.errors,
        });
    }
}
