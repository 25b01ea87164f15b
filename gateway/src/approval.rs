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
mod kept;
#[cfg(test)]
mod tests;
pub mod view;
pub mod webhook;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use tokio::sync::{broadcast, oneshot};

use crate::audit::{
    event::{ApprovalDecided, ApprovalRequested, GrantUsed},
    Audit, AuditError, Event,
};

pub use approver::{local_approver, NotAnApprover};
pub use grant::{Grant, GrantUse};
pub use hold::{Approver, Ask, Held, Outcome, Pending, Requester};

/// Why a request a previous run left waiting is closed.
const RESTARTED: &str =
    "the gateway stopped while it waited; its client's connection closed with it";

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
    /// Still waiting, with one more approval (a two-person rule).
    Updated(u64),
    /// Approved, denied, timed out or withdrawn.
    Gone(u64),
}

/// The holds, grants and rules of approval of one gateway.
pub struct Approvals {
    state: Mutex<State>,
    /// Distinct approvers a request needs (`[approvals] required`).
    required: usize,
    changes: broadcast::Sender<Change>,
    /// Where requests, decisions and grant uses are recorded (None only in unit tests).
    audit: Option<Audit>,
    /// Where waiting requests are kept across a restart (None only in unit tests).
    kept: Option<kept::Kept>,
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

impl State {
    /// Approvals and grants share one numbering, so an id names one thing.
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

fn requested_event(id: u64, requester: &Requester, ask: &Ask) -> Event {
    Event::ApprovalRequested(ApprovalRequested {
        approval: id,
        conn_id: ask.conn_id,
        request: ask.request_record,
        target: ask.target.clone(),
        db_user: ask.db_user.clone(),
        database: ask.database.clone(),
        actor: requester.actor.clone(),
        token_subject: requester.token_subject.clone(),
        token_groups: requester.token_groups.clone(),
        rule: ask.rule.clone(),
        statement: ask.statement.clone(),
        tables: ask.tables.clone(),
        classified_columns: ask.classified_columns.clone(),
        row_estimate: ask.row_estimate,
        request_hash: crate::audit::hex(&ask.request_hash),
        timeout_s: ask.timeout.as_secs(),
    })
}

fn decided_event(id: u64, conn_id: u64, outcome: &str, by: Option<&Approver>) -> ApprovalDecided {
    ApprovalDecided {
        approval: id,
        conn_id,
        outcome: outcome.to_owned(),
        approver: by.map(|a| a.name.clone()),
        approver_uid: by.and_then(|a| a.uid),
        approver_subject: by.and_then(|a| a.token_subject.clone()),
        reason: None,
        grant: None,
        grant_expires: None,
    }
}

impl Approvals {
    pub fn new(required: usize, audit: Option<Audit>) -> Arc<Self> {
        Arc::new(Self {
            kept: None,
            audit,
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            required: required.max(1),
            changes: broadcast::channel(256).0,
        })
    }

    /// The approvals of a gateway whose waiting requests are kept in `dir`. Those a previous
    /// run left are recorded as abandoned (their connections closed with it).
    pub fn open(
        required: usize,
        audit: Audit,
        dir: &std::path::Path,
    ) -> Result<Arc<Self>, AuditError> {
        let (kept, leftovers) = kept::Kept::open(dir)
            .map_err(|e| AuditError::io(format!("approvals directory {}", dir.display()), e))?;
        for requested in leftovers.abandoned {
            if let Event::ApprovalRequested(asked) = requested {
                let mut event = decided_event(asked.approval, asked.conn_id, "abandoned", None);
                event.reason = Some(RESTARTED.to_owned());
                audit.append(Event::ApprovalDecided(event))?;
            }
        }
        let approvals = Self::new(required, Some(audit));
        let mut approvals = Arc::into_inner(approvals).expect("not shared yet");
        approvals.kept = Some(kept);
        approvals.lock().next_id = leftovers.next_id;
        Ok(Arc::new(approvals))
    }

    /// Fails every waiting request with `reason` (the gateway is stopping): their clients
    /// are told, and the records say why.
    pub fn abandon_all(&self, reason: &str) {
        let entries = std::mem::take(&mut self.lock().pending);
        for (id, entry) in entries {
            self.forgotten(id, entry.pending.ask.conn_id, "abandoned", Some(reason));
            let _ = entry.wake.send(Outcome::Abandoned {
                reason: reason.to_owned(),
            });
        }
    }

    /// Holds a request until it is decided: nothing of it may run before the [`Held`]
    /// resolves to [`Outcome::Approved`]. Dropping the `Held` withdraws it. Fails when the
    /// hold cannot be recorded: the request must then be refused.
    pub fn hold(self: &Arc<Self>, requester: Requester, ask: Ask) -> Result<Held, AuditError> {
        let (wake, outcome) = oneshot::channel();
        let since = SystemTime::now();
        let timeout = ask.timeout;
        let id = self.lock().take_id();
        let requested = requested_event(id, &requester, &ask);
        if let Some(kept) = &self.kept {
            let keep = kept
                .ids_given(id + 1)
                .and_then(|()| kept.waiting(id, &requested));
            keep.map_err(|e| AuditError::io("keeping a waiting request".to_owned(), e))?;
        }
        if let Some(audit) = &self.audit {
            if let Err(error) = audit.append(requested) {
                self.forgotten_file(id);
                return Err(error);
            }
        }
        {
            let mut state = self.lock();
            let pending = Pending {
                id,
                requester,
                ask,
                since,
                deadline: since + timeout,
                approved_by: Vec::new(),
            };
            state.pending.insert(id, Entry { pending, wake });
        }
        let _ = self.changes.send(Change::Waiting(id));
        Ok(Held::new(Arc::clone(self), id, timeout, outcome))
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
        let conn_id = pending.ask.conn_id;
        if have < self.required {
            let mut event = decided_event(id, conn_id, "approved_in_part", Some(approver));
            event.reason = reason;
            self.record(Event::ApprovalDecided(event));
            let _ = self.changes.send(Change::Updated(id));
            return Ok(Decided::Waiting {
                have,
                need: self.required,
            });
        }
        let Some(entry) = state.pending.remove(&id) else {
            return Err(ApprovalError::NotPending(id));
        };
        self.forgotten_file(id);
        let grant = grant_for.map(|duration| {
            let grant = Grant::of(state.take_id(), &entry.pending, duration);
            state.grants.push(grant.clone());
            grant
        });
        drop(state);
        let mut event = decided_event(id, conn_id, "approved", Some(approver));
        event.reason = reason.clone();
        event.grant = grant.as_ref().map(|g| g.id);
        event.grant_expires = grant.as_ref().map(|g| crate::clock::rfc3339_utc(g.expires));
        self.record(Event::ApprovalDecided(event));
        let grant = grant.map(|g| g.id);
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
        self.forgotten_file(id);
        let mut event = decided_event(id, entry.pending.ask.conn_id, "denied", Some(approver));
        event.reason = Some(reason.clone());
        self.record(Event::ApprovalDecided(event));
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
        let used = state
            .grants
            .iter_mut()
            .find(|g| g.covers(requester, ask))
            .map(|g| g.use_once())?;
        drop(state);
        self.record(Event::GrantUsed(GrantUsed {
            grant: used.grant,
            approval: used.approval,
            conn_id: ask.conn_id,
            request: ask.request_record,
            uses: used.uses,
            expires: crate::clock::rfc3339_utc(used.expires),
        }));
        Some(used)
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

    /// Takes a request out of the queue without waking it (`outcome`: it timed out, or its
    /// client withdrew it); true if it was still waiting.
    fn forget(&self, id: u64, outcome: &str) -> bool {
        let Some(entry) = self.lock().pending.remove(&id) else {
            return false;
        };
        self.forgotten(id, entry.pending.ask.conn_id, outcome, None);
        true
    }

    /// A request left the queue without an approver's decision: recorded, and gone.
    fn forgotten(&self, id: u64, conn_id: u64, outcome: &str, reason: Option<&str>) {
        self.forgotten_file(id);
        let mut event = decided_event(id, conn_id, outcome, None);
        event.reason = reason.map(str::to_owned);
        self.record(Event::ApprovalDecided(event));
        let _ = self.changes.send(Change::Gone(id));
    }

    fn forgotten_file(&self, id: u64) {
        if let Some(kept) = &self.kept {
            kept.decided(id);
        }
    }

    /// Decisions are recorded whatever the log's state: refusing an approver would not
    /// unmake the decision.
    fn record(&self, event: Event) {
        if let Some(audit) = &self.audit {
            audit.record_anyway(event);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
