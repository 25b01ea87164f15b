//! One held request: who asks, what, and the wait for its outcome.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::oneshot;

use super::Approvals;
use crate::audit::event::{Actor, ClassifiedColumn};

/// Who made a request: the process the kernel saw and the token it presented, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Requester {
    pub actor: Actor,
    pub token_subject: Option<String>,
    pub token_groups: Vec<String>,
}

impl Requester {
    /// Whom a grant is given to: the token's subject when the agent presented one (the
    /// identity a person vouched for), otherwise the uid with the executable.
    pub fn grantee(&self) -> String {
        match &self.token_subject {
            Some(subject) => format!("token:{subject}"),
            None => format!(
                "uid:{}:{}",
                self.actor.uid.map_or("?".to_owned(), |u| u.to_string()),
                self.actor.exe.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// What is asked, as an approver sees it: never a literal value.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The connection it came on, and the index of its `request_decided` record.
    pub conn_id: u64,
    pub request_record: Option<u64>,
    pub target: String,
    pub db_user: String,
    pub database: String,
    /// The statement with every literal replaced by `?`: also the shape a grant covers.
    pub statement: String,
    /// The rule that asked for approval.
    pub rule: String,
    pub tables: Vec<String>,
    pub classified_columns: Vec<ClassifiedColumn>,
    /// The planner's estimate of the rows it returns, if one was made.
    pub row_estimate: Option<u64>,
    /// SHA-256 of the exact request: an approval is given for this one and no other.
    pub request_hash: [u8; 32],
    pub timeout: Duration,
}

/// Someone deciding: a local user (checked by the admin socket) or a token's subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Approver {
    /// As recorded: a user name or a token subject.
    pub name: String,
    pub uid: Option<u32>,
    pub token_subject: Option<String>,
}

impl Approver {
    /// The same uid, or the same token subject, as the request's maker.
    pub fn is_requester(&self, requester: &Requester) -> bool {
        let same_uid = self.uid.is_some() && self.uid == requester.actor.uid;
        let same_subject =
            self.token_subject.is_some() && self.token_subject == requester.token_subject;
        same_uid || same_subject
    }

    /// Two approvals by the same person count once, however they reached the gateway.
    pub fn same_person(&self, other: &Approver) -> bool {
        self.name == other.name
            || (self.uid.is_some() && self.uid == other.uid)
            || (self.token_subject.is_some() && self.token_subject == other.token_subject)
    }
}

/// A request waiting, as listed to approvers.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: u64,
    pub requester: Requester,
    pub ask: Ask,
    pub since: SystemTime,
    pub deadline: SystemTime,
    /// Approvals so far, under a rule that needs more than one.
    pub approved_by: Vec<Approver>,
}

/// How a hold ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Approved {
        approvers: Vec<Approver>,
        reason: Option<String>,
        /// The grant the approval came with.
        grant: Option<u64>,
    },
    Denied {
        approver: Approver,
        reason: String,
    },
    TimedOut,
    /// The gateway is stopping.
    Abandoned {
        reason: String,
    },
}

/// A request on hold. [`Held::outcome`] waits for its decision or its timeout; dropping it
/// first (the client cancelled or went away) withdraws it.
pub struct Held {
    approvals: Arc<Approvals>,
    id: u64,
    timeout: Duration,
    outcome: Option<oneshot::Receiver<Outcome>>,
}

impl Held {
    pub(super) fn new(
        approvals: Arc<Approvals>,
        id: u64,
        timeout: Duration,
        outcome: oneshot::Receiver<Outcome>,
    ) -> Self {
        Self {
            approvals,
            id,
            timeout,
            outcome: Some(outcome),
        }
    }

    /// The approval id shown to the client and to approvers.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits until the request is decided or times out. Woken by the decision itself: no
    /// polling.
    pub async fn outcome(&mut self) -> Outcome {
        let Some(receiver) = self.outcome.as_mut() else {
            return Outcome::TimedOut;
        };
        let decided = tokio::time::timeout(self.timeout, &mut *receiver).await;
        let outcome = match decided {
            Ok(Ok(outcome)) => outcome,
            // Timed out (or the sender vanished): out of the queue, unless a decision won
            // the race, which then stands.
            _ => match self.approvals.forget(self.id, "timed_out") {
                true => Outcome::TimedOut,
                false => match receiver.try_recv() {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::TimedOut,
                },
            },
        };
        self.outcome = None;
        outcome
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Withdrawn: still waiting when its client stopped waiting.
        if self.outcome.is_some() {
            self.approvals.forget(self.id, "withdrawn");
        }
    }
}
