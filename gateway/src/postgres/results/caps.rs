//! Result caps (`max_rows`, `max_bytes` of the allow rule): rows past a cap are dropped, and
//! the agent is told in a notice and a completion tag that counts what it received, so a
//! capped result is never mistaken for a whole one.

use bytes::BytesMut;
use pgwire::messages::{
    response::{CommandComplete, NoticeResponse},
    PgWireBackendMessage,
};

use crate::policy::MaskPlan;

/// SQLSTATE of the notice: a warning.
const WARNING: &str = "01000";

pub struct Caps {
    max_rows: Option<u64>,
    max_bytes: Option<u64>,
    rows: u64,
    bytes: u64,
    truncated: bool,
}

impl Caps {
    pub fn new(plan: &MaskPlan) -> Self {
        Self {
            max_rows: plan.max_rows,
            max_bytes: plan.max_bytes,
            rows: 0,
            bytes: 0,
            truncated: false,
        }
    }

    /// Whether a row of `len` bytes may pass; once one is refused, none after it passes.
    pub fn admit(&mut self, len: usize) -> bool {
        if self.truncated {
            return false;
        }
        let bytes = self.bytes + len as u64;
        let over_rows = self.max_rows.is_some_and(|max| self.rows >= max);
        let over_bytes = self.max_bytes.is_some_and(|max| bytes > max);
        if over_rows || over_bytes {
            self.truncated = true;
            return false;
        }
        self.rows += 1;
        self.bytes = bytes;
        true
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The notice that says why the result is short, then the completion with the count
    /// of rows the agent actually received.
    pub fn write_truncation(&self, rule: &str, tag: &str, out: &mut BytesMut) {
        let limit = match (self.max_rows, self.max_bytes) {
            (Some(rows), _) if self.rows >= rows => format!("max_rows = {rows}"),
            (_, Some(bytes)) => format!("max_bytes = {bytes}"),
            _ => "a result cap".to_owned(),
        };
        let notice = NoticeResponse::new(vec![
            (b'S', "WARNING".into()),
            (b'V', "WARNING".into()),
            (b'C', WARNING.into()),
            (
                b'M',
                format!(
                    "Tollgate: result truncated to {} rows by policy rule \"{rule}\" ({limit})",
                    self.rows
                ),
            ),
        ]);
        let complete = CommandComplete::new(counted_tag(tag, self.rows));
        for message in [
            PgWireBackendMessage::NoticeResponse(notice),
            PgWireBackendMessage::CommandComplete(complete),
        ] {
            message
                .encode(out)
                .expect("notices and completions always encode");
        }
    }
}

/// The completion tag with its row count replaced (`SELECT 5000` → `SELECT 100`).
fn counted_tag(tag: &str, rows: u64) -> String {
    match tag.rsplit_once(' ') {
        Some((command, count)) if count.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{command} {rows}")
        }
        _ => tag.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(max_rows: Option<u64>, max_bytes: Option<u64>) -> MaskPlan {
        MaskPlan {
            rule: "r".into(),
            protect: true,
            methods: Default::default(),
            max_rows,
            max_bytes,
        }
    }

    #[test]
    fn rows_past_the_cap_are_refused_and_stay_refused() {
        let mut caps = Caps::new(&plan(Some(2), None));
        assert!(caps.admit(10));
        assert!(caps.admit(10));
        assert!(!caps.admit(1));
        assert!(caps.truncated());
        assert!(!caps.admit(1));
    }

    #[test]
    fn a_byte_cap_refuses_the_row_that_would_cross_it() {
        let mut caps = Caps::new(&plan(None, Some(25)));
        assert!(caps.admit(10));
        assert!(caps.admit(15));
        assert!(!caps.admit(1));
    }

    #[test]
    fn the_completion_counts_what_was_delivered() {
        assert_eq!(counted_tag("SELECT 5000", 100), "SELECT 100");
        assert_eq!(counted_tag("INSERT 0 7", 3), "INSERT 0 3");
        assert_eq!(counted_tag("COPY 12", 2), "COPY 2");
        assert_eq!(counted_tag("SHOW", 2), "SHOW");
    }
}
