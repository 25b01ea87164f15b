//! Just-in-time approvals, for every protocol: a request a rule sends for approval is held
//! here until enough approvers approve it, one denies it, it times out or its client
//! withdraws it; an approval given `--for` a while also grants its requester the same
//! statement shape until then. A protocol module only adapts its wire format: it asks
//! [`Approvals::granted`], else [`Approvals::hold`]s the request and waits on the [`Held`]
//! it gets back. Approvers (the CLI, the HTTP API, the web page) call
//! [`Approvals::approve`] and [`Approvals::deny`].

mod approver;
mod grant;
mod hold;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio::sync::{broadcast, oneshot};

pub use approver::{local_approver, NotAnApprover};
pub use grant::{Grant, GrantUse};
pub use hold::{Approver, Ask, Held, Outcome, Pending, Requester};

/// How long a request waits when its rule names no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What an approver's call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Enough approvals: the request goes on (and `grant`, when one was given).
    Approved { grant: Option<u64> },
    /// Recorded; more approvers are needed (a two-person rule).
    Waiting { have: usize, need: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("no request {0} is waiting for approval (decided, timed out or withdrawn)")]
    NotPending(u64),
    #[error("the identity that made a request cannot approve it")]
    SelfApproval,
    #[error("{0} has already approved this request; another approver is needed")]
    AlreadyApproved(String),
    #[error("the request changed since it was shown (its hash differs): look at it again")]
    Mismatch,
    #[error("no grant {0}")]
    NoGrant(u64),
}

/// A change to the pending requests, pushed to whoever shows them live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Waiting(u64),
    /// Approved, denied, timed out or withdrawn.
    Gone(u64),
}

/// The holds, grants and rules of approval of one gateway.
pub struct Approvals {
    state: Mutex<State>,
    /// Distinct approvers a request needs (`[approvals] required`).
    required: usize,
    changes: broadcast::Sender<Change>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    pending: BTreeMap<u64, Entry>,
    grants: Vec<Grant>,
}

struct Entry {
    pending: Pending,
    /// Wakes the held request with its outcome.
    wake: oneshot::Sender<Outcome>,
}

impl Approvals {
    pub fn new(required: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            required: required.max(1),
            changes: broadcast::channel(256).0,
        })
    }

    /// Holds a request until it is decided: nothing of it may run before the [`Held`]
    /// resolves to [`Outcome::Approved`]. Dropping the `Held` withdraws it.
    pub fn hold(self: &Arc<Self>, requester: Requester, ask: Ask) -> Held {
        let (wake, outcome) = oneshot::channel();
        let since = SystemTime::now();
        let timeout = ask.timeout;
        let id = {
            let mut state = self.lock();
            let id = state.next_id;
            state.next_id += 1;
            let pending = Pending {
                id,
                requester,
                ask,
                since,
                deadline: since + timeout,
                approved_by: Vec::new(),
            };
            state.pending.insert(id, Entry { pending, wake });
            id
        };
        let _ = self.changes.send(Change::Waiting(id));
        Held::new(Arc::clone(self), id, timeout, outcome)
    }

    /// Requests waiting, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        self.lock()
            .pending
            .values()
            .map(|e| e.pending.clone())
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<Pending> {
        self.lock().pending.get(&id).map(|e| e.pending.clone())
    }

    /// Live changes to [`Approvals::pending`].
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Approves request `id` as `approver`. `seen`: the hash of the request the approver
    /// was shown, which must still be the one waiting. With `grant_for`, once approved, its
    /// requester may run the same statement shape on the same target until then.
    pub fn approve(
        &self,
        id: u64,
        approver: &Approver,
        reason: Option<String>,
        grant_for: Option<Duration>,
        seen: Option<[u8; 32]>,
    ) -> Result<Decided, ApprovalError> {
        let mut state = self.lock();
        let entry = state
            .pending
            .get_mut(&id)
            .ok_or(ApprovalError::NotPending(id))?;
        let pending = &mut entry.pending;
        if seen.is_some_and(|hash| hash != pending.ask.request_hash) {
            return Err(ApprovalError::Mismatch);
        }
        if approver.is_requester(&pending.requester) {
            return Err(ApprovalError::SelfApproval);
        }
        if pending.approved_by.iter().any(|a| a.same_person(approver)) {
            return Err(ApprovalError::AlreadyApproved(approver.name.clone()));
        }
        pending.approved_by.push(approver.clone());
        let have = pending.approved_by.len();
        if have < self.required {
            return Ok(Decided::Waiting {
                have,
                need: self.required,
            });
        }
        let Some(entry) = state.pending.remove(&id) else {
            return Err(ApprovalError::NotPending(id));
        };
        let grant = grant_for.map(|duration| {
            let grant_id = state.next_id;
            state.next_id += 1;
            state
                .grants
                .push(Grant::of(grant_id, &entry.pending, duration));
            grant_id
        });
        drop(state);
        let outcome = Outcome::Approved {
            approvers: entry.pending.approved_by.clone(),
            reason,
            grant,
        };
        // A request withdrawn just now is gone either way.
        let _ = entry.wake.send(outcome);
        let _ = self.changes.send(Change::Gone(id));
        Ok(Decided::Approved { grant })
    }

    /// Denies request `id`: one denial is enough, whoever else approved.
    pub fn deny(&self, id: u64, approver: &Approver, reason: String) -> Result<(), ApprovalError> {
        let entry = self
            .lock()
            .pending
            .remove(&id)
            .ok_or(ApprovalError::NotPending(id))?;
        let _ = entry.wake.send(Outcome::Denied {
            approver: approver.clone(),
            reason,
        });
        let _ = self.changes.send(Change::Gone(id));
        Ok(())
    }

    /// A grant covering this request, if one is in force: it runs without waiting, and the
    /// use is the caller's to record.
    pub fn granted(&self, requester: &Requester, ask: &Ask) -> Option<GrantUse> {
        let now = SystemTime::now();
        let mut state = self.lock();
        state.grants.retain(|g| g.expires > now);
        state
            .grants
            .iter_mut()
            .find(|g| g.covers(requester, ask))
            .map(|g| g.use_once())
    }

    /// Grants in force.
    pub fn grants(&self) -> Vec<Grant> {
        let now = SystemTime::now();
        let mut state = self.lock();
        state.grants.retain(|g| g.expires > now);
        state.grants.clone()
    }

    pub fn revoke(&self, grant: u64) -> Result<Grant, ApprovalError> {
        let mut state = self.lock();
        let at = state
            .grants
            .iter()
            .position(|g| g.id == grant)
            .ok_or(ApprovalError::NoGrant(grant))?;
        Ok(state.grants.remove(at))
    }

    /// Takes a request out of the queue without waking it (it timed out, or its client
    /// withdrew it); true if it was still waiting.
    fn forget(&self, id: u64) -> bool {
        let removed = self.lock().pending.remove(&id).is_some();
        if removed {
            let _ = self.changes.send(Change::Gone(id));
        }
        removed
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
