//! Grants: an approval given `--for` a while lets the same identity run the same statement
//! shape (literals stripped) on the same target until it expires.

use std::time::{Duration, SystemTime};

use super::hold::{Approver, Ask, Pending, Requester};

#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: u64,
    /// [`Requester::grantee`] of the request approved.
    pub grantee: String,
    pub target: String,
    /// The statement shape, literals replaced by `?`.
    pub statement: String,
    pub approvers: Vec<Approver>,
    /// The request it was first given for.
    pub approval: u64,
    pub expires: SystemTime,
    pub uses: u64,
}

/// A use of a grant, for the caller to record.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantUse {
    pub grant: u64,
    pub approval: u64,
    pub expires: SystemTime,
    /// This use's number (1 for the first).
    pub uses: u64,
}

impl Grant {
    pub(super) fn of(id: u64, pending: &Pending, duration: Duration) -> Self {
        Self {
            id,
            grantee: pending.requester.grantee(),
            target: pending.ask.target.clone(),
            statement: pending.ask.statement.clone(),
            approvers: pending.approved_by.clone(),
            approval: pending.id,
            expires: SystemTime::now() + duration,
            uses: 0,
        }
    }

    pub(super) fn covers(&self, requester: &Requester, ask: &Ask) -> bool {
        self.target == ask.target
            && self.statement == ask.statement
            && self.grantee == requester.grantee()
    }

    pub(super) fn use_once(&mut self) -> GrantUse {
        self.uses += 1;
        GrantUse {
            grant: self.id,
            approval: self.approval,
            expires: self.expires,
            uses: self.uses,
        }
    }
}
