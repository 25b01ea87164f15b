//! The gateway's count of sessions waiting for their servers, which decides whether workers
//! poll. Only waits that began in the last two windows count: a wait that lasts longer keeps
//! no worker awake, and one that is never answered (data the server ignores after a failed
//! `COPY`) must not stop polling for good.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Most sessions waiting for their servers while workers still poll.
const POLL_WHILE_AWAITING: u32 = 1;
/// A wait counts for one to two of these.
const WINDOW: Duration = Duration::from_millis(10);

/// One count for all the gateway's workers.
#[derive(Debug, Clone)]
pub struct AwaitingServers {
    counts: Arc<AtomicU64>,
    epoch: Instant,
    window_ms: u128,
}

impl Default for AwaitingServers {
    fn default() -> Self {
        Self::with_window(WINDOW)
    }
}

impl AwaitingServers {
    /// Tests that must not see waits expire take a long window.
    pub(crate) fn with_window(window: Duration) -> Self {
        Self {
            counts: Arc::default(),
            epoch: Instant::now(),
            window_ms: window.as_millis().max(1),
        }
    }

    /// Sessions counted as waiting now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> u32 {
        self.load().at(self.window()).total()
    }

    /// So few sessions wait that polling pays.
    pub(super) fn few(&self) -> bool {
        self.load().at(self.window()).total() <= POLL_WHILE_AWAITING
    }

    fn window(&self) -> u32 {
        // Wraps after 16 months; windows are only ever compared by difference.
        (self.epoch.elapsed().as_millis() / self.window_ms) as u32
    }

    fn load(&self) -> Counts {
        Counts::unpack(self.counts.load(Ordering::Relaxed))
    }

    fn update(&self, change: impl Fn(Counts) -> Option<Counts>) {
        let _ = self
            .counts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
                change(Counts::unpack(packed)).map(Counts::pack)
            });
    }

    /// A wait begins in window `now`.
    fn begin(&self, now: u32) {
        self.update(|counts| {
            let mut counts = counts.at(now);
            counts.current = counts.current.saturating_add(1);
            Some(counts)
        });
    }

    /// The wait that began in window `began` ended (nothing to do if it no longer counts).
    fn end(&self, began: u32) {
        let now = self.window();
        self.update(|counts| {
            let mut counts = counts.at(now);
            match now.wrapping_sub(began) {
                0 => counts.current = counts.current.saturating_sub(1),
                1 => counts.previous = counts.previous.saturating_sub(1),
                _ => return None,
            }
            Some(counts)
        });
    }
}

/// Waits begun in the latest window and in the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    window: u32,
    current: u16,
    previous: u16,
}

impl Counts {
    fn unpack(packed: u64) -> Self {
        Self {
            window: (packed >> 32) as u32,
            current: (packed >> 16) as u16,
            previous: packed as u16,
        }
    }

    fn pack(self) -> u64 {
        u64::from(self.window) << 32 | u64::from(self.current) << 16 | u64::from(self.previous)
    }

    /// As of window `now`: older waits drop out.
    fn at(self, now: u32) -> Self {
        match now.wrapping_sub(self.window) {
            0 => self,
            1 => Self {
                window: now,
                current: 0,
                previous: self.current,
            },
            _ => Self {
                window: now,
                current: 0,
                previous: 0,
            },
        }
    }

    fn total(self) -> u32 {
        u32::from(self.current) + u32::from(self.previous)
    }
}

/// Not waiting for the server.
const IDLE: u64 = u64::MAX;

/// One session's part in the count. Made on the session's worker (where no poller runs, it
/// counts nothing); dropped with the session, it stops counting.
#[derive(Debug)]
pub struct ServerTurn {
    /// The window its wait began in, or [`IDLE`].
    waiting_since: AtomicU64,
    count: Option<AwaitingServers>,
}

impl ServerTurn {
    pub fn on_this_worker() -> Self {
        Self::counting(super::this_workers_count())
    }

    pub(super) fn counting(count: Option<AwaitingServers>) -> Self {
        Self {
            waiting_since: AtomicU64::new(IDLE),
            count,
        }
    }

    /// The session wrote to its server. A session that keeps writing with no answer (`COPY
    /// FROM STDIN`) is counted again once its first wait no longer counts.
    pub fn sent(&self) {
        let Some(count) = &self.count else {
            return;
        };
        let now = count.window();
        let since = self.waiting_since.load(Ordering::Relaxed);
        if since == IDLE || now.wrapping_sub(since as u32) > 1 {
            count.begin(now);
            self.waiting_since.store(u64::from(now), Ordering::Relaxed);
        }
    }

    /// Called for every message the server sends: a load, mostly.
    pub fn heard(&self) {
        if self.waiting_since.load(Ordering::Relaxed) == IDLE {
            return;
        }
        let since = self.waiting_since.swap(IDLE, Ordering::Relaxed);
        if let (Some(count), true) = (&self.count, since != IDLE) {
            count.end(since as u32);
        }
    }
}

impl Drop for ServerTurn {
    fn drop(&mut self) {
        self.heard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_sessions(count: &AwaitingServers) -> (ServerTurn, ServerTurn) {
        let session = || ServerTurn::counting(Some(count.clone()));
        (session(), session())
    }

    #[test]
    fn a_session_counts_once_until_its_server_answers() {
        let count = AwaitingServers::default();
        let (first, second) = two_sessions(&count);
        first.sent();
        first.sent();
        assert!(count.few(), "one session waiting, however many writes");
        second.sent();
        assert!(!count.few(), "two sessions waiting");
        first.heard();
        assert!(count.few(), "one answered");
        first.heard();
        first.sent();
        drop(second);
        assert!(count.few(), "a session that ends stops counting");
        first.heard();
        assert_eq!(count.waiting(), 0, "each wait ends once");
    }

    #[test]
    fn waits_count_for_two_windows_at_most() {
        let begun = Counts {
            window: 7,
            current: 3,
            previous: 2,
        };
        assert_eq!(begun.at(7), begun);
        assert_eq!(begun.at(8).total(), 3, "last window's waits still count");
        assert_eq!(begun.at(9).total(), 0, "older ones do not");
        assert_eq!(Counts::unpack(begun.pack()), begun);
    }

    #[test]
    fn a_wait_never_answered_stops_counting() {
        let count = AwaitingServers::default();
        let (silent, other) = two_sessions(&count);
        silent.sent();
        other.sent();
        assert!(!count.few());
        std::thread::sleep(WINDOW * 2 + Duration::from_millis(1));
        assert!(count.few(), "both waits are too old to count");
        other.heard();
        other.sent();
        assert!(count.few(), "a new wait counts alone");
        silent.sent();
        assert!(
            !count.few(),
            "writing again counts the silent session again"
        );
    }
}
