//! `gateway.busy_poll_us`: after each write a worker keeps polling its sockets for a while
//! instead of sleeping, so an answer that arrives within that time costs no wake-up. A wake-up
//! is the dearest step of a round trip on a VM (an interrupt between cores, a halted core
//! restarted). The price is CPU: a worker serving one agent at a time polls through every wait.
//!
//! Two rules keep it from taking CPU that others need (without them, 10 clients on two cores
//! lost 3 to 6% of their throughput, 4 clients up to 6%):
//! - A worker polls only while at most one session of the whole gateway waits for its server.
//!   With more, answers arrive often enough to keep the workers awake anyway. Counted across
//!   workers, so a host with many workers, each serving one agent, has one polling worker at
//!   most while the servers work (others may poll briefly for their agents' next requests).
//! - Between two polls the worker yields its core to any thread waiting for it, as the
//!   kernel's own busy polling stops when another task needs the core.
//!
//! Each worker thread runs one poller task. When the task yields, tokio's current-thread runtime
//! polls the sockets without blocking before it runs the task again. So while the poller
//! keeps yielding, the worker never sleeps in `epoll_wait`.

use std::{
    cell::{Cell, OnceCell},
    future::poll_fn,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    task::{Poll, Waker},
    time::{Duration, Instant},
};

/// Most sessions of the gateway waiting for their servers while workers still poll.
const POLL_WHILE_AWAITING: u32 = 1;

/// The gateway's count of sessions that wrote to their server and have not heard from it
/// since: one for all its workers.
#[derive(Debug, Clone, Default)]
pub struct AwaitingServers(Arc<AtomicU32>);

impl AwaitingServers {
    fn few(&self) -> bool {
        self.0.load(Ordering::Relaxed) <= POLL_WHILE_AWAITING
    }
}

thread_local! {
    /// This worker's budget after each write; zero where no poller runs.
    static BUDGET: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// Poll until then.
    static UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The poller, while it waits for a write.
    static WAITING: Cell<Option<Waker>> = const { Cell::new(None) };
    /// The gateway's count, where a poller runs.
    static AWAITING: OnceCell<AwaitingServers> = const { OnceCell::new() };
}

/// One session's part in the count: whether it waits for its server. Made on the session's
/// worker (where no poller runs, it counts nothing); dropped with the session, it stops
/// counting.
#[derive(Debug)]
pub struct ServerTurn {
    awaiting: AtomicBool,
    count: Option<AwaitingServers>,
}

impl ServerTurn {
    pub fn on_this_worker() -> Self {
        Self {
            awaiting: AtomicBool::new(false),
            count: AWAITING.with(|count| count.get().cloned()),
        }
    }

    /// The session wrote to its server.
    pub fn sent(&self) {
        if let Some(count) = &self.count {
            if !self.awaiting.swap(true, Ordering::Relaxed) {
                count.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Called for every message the server sends: a load, mostly.
    pub fn heard(&self) {
        if self.awaiting.load(Ordering::Relaxed) {
            self.awaiting.store(false, Ordering::Relaxed);
            if let Some(count) = &self.count {
                count.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for ServerTurn {
    fn drop(&mut self) {
        self.heard();
    }
}

/// A session on this worker wrote to a peer: its answer is likely to come soon.
pub fn wrote() {
    let budget = BUDGET.get();
    if budget.is_zero() || !few_awaiting() {
        return;
    }
    UNTIL.set(Some(Instant::now() + budget));
    if let Some(poller) = WAITING.take() {
        poller.wake();
    }
}

fn few_awaiting() -> bool {
    AWAITING.with(|count| count.get().is_none_or(AwaitingServers::few))
}

fn polling() -> bool {
    few_awaiting() && UNTIL.get().is_some_and(|until| Instant::now() < until)
}

/// The worker's poller: runs as long as the worker does.
pub async fn poll_after_writes(budget: Duration, awaiting: AwaitingServers) {
    BUDGET.set(budget);
    let _ = AWAITING.with(|count| count.set(awaiting));
    loop {
        poll_fn(|cx| {
            if polling() {
                Poll::Ready(())
            } else {
                WAITING.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        while polling() {
            tokio::task::yield_now().await;
            // The core goes to any thread waiting for it (a database backend) before the
            // next poll; `sched_yield(2)` returns at once when none is.
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_write_starts_polling_for_the_budget_and_no_longer() {
        worker_runtime().block_on(async {
            let budget = Duration::from_millis(20);
            let poller = tokio::spawn(poll_after_writes(budget, AwaitingServers::default()));
            tokio::task::yield_now().await;
            assert!(!polling(), "no write yet");
            wrote();
            assert!(polling(), "a write starts polling");
            tokio::time::sleep(budget * 2).await;
            assert!(!polling(), "polling ends with the budget");
            poller.abort();
        });
    }

    #[test]
    fn workers_stop_polling_while_two_sessions_wait_for_their_servers() {
        worker_runtime().block_on(async {
            let count = AwaitingServers::default();
            let poller = tokio::spawn(poll_after_writes(Duration::from_secs(10), count.clone()));
            tokio::task::yield_now().await;
            let first = ServerTurn::on_this_worker();
            // A session on another worker: the count is the gateway's.
            let other_worker = count.clone();
            let second = std::thread::spawn(move || {
                worker_runtime().block_on(async {
                    tokio::spawn(poll_after_writes(Duration::from_secs(10), other_worker));
                    tokio::task::yield_now().await;
                    ServerTurn::on_this_worker()
                })
            })
            .join()
            .expect("other worker");
            first.sent();
            first.sent();
            wrote();
            assert!(polling(), "one session waiting: polls");
            second.sent();
            assert!(!polling(), "two sessions waiting: sleeps");
            wrote();
            assert!(!polling(), "a write does not restart it either");
            first.heard();
            assert!(polling(), "one waits again: polls (the budget still runs)");
            first.sent();
            drop(second);
            assert!(polling(), "a session that ends stops counting");
            first.heard();
            first.heard();
            assert_eq!(
                count.0.load(Ordering::Relaxed),
                0,
                "each session counts once"
            );
            poller.abort();
        });
    }

    #[test]
    fn without_a_poller_a_write_does_nothing() {
        std::thread::spawn(|| {
            wrote();
            assert!(!polling());
            let turn = ServerTurn::on_this_worker();
            turn.sent();
            assert!(turn.count.is_none(), "nothing to count");
        })
        .join()
        .expect("thread");
    }
}
