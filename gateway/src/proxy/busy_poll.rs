//! `gateway.busy_poll_us`: after each write a worker keeps polling its sockets for a while
//! instead of sleeping, so an answer that arrives within that time costs no wake-up. A wake-up
//! is the dearest step of a round trip on a VM (an interrupt between cores, a halted core
//! restarted). The price is CPU: a worker serving one agent at a time polls through every wait.
//!
//! Three rules keep it off CPU that others need (without the first two, 10 clients on two
//! cores lost 3 to 6% of their throughput, 4 clients up to 6%):
//! - A worker polls only while at most one session of the whole gateway waits for its server
//!   ([`awaiting`]). With more, answers arrive often enough to keep the workers awake. Counted
//!   across workers, so a host with many workers, each serving one agent, has one polling
//!   worker at most while the servers work (others may poll briefly for their agents' next
//!   requests).
//! - Between two polls the worker yields its core to any thread waiting for it.
//! - A yield that ran another thread for long means the core is wanted: the worker then
//!   sleeps between writes for a while. A thread that polls on, runnable, is not woken when
//!   its answer comes, and could wait out a busy thread's whole time slice.
//!
//! Each worker thread runs one poller task. When the task yields, tokio's current-thread runtime
//! polls the sockets without blocking before it runs the task again. So while the poller
//! keeps yielding, the worker never sleeps in `epoll_wait`. Sessions on the gateway's unix
//! sockets run on the main runtime, which has no poller: they neither poll nor count.

mod awaiting;

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

pub use awaiting::{AwaitingServers, ServerTurn};

/// A yield longer than this ran another thread: the core is wanted.
const CONTENDED_YIELD: Duration = Duration::from_micros(50);
/// Then the worker sleeps between writes for this long.
const REST: Duration = Duration::from_millis(10);

/// What a polling worker knows: its budget after each write, and the gateway's count.
struct Poller {
    budget: Duration,
    awaiting: AwaitingServers,
}

thread_local! {
    /// Where no poller runs, none.
    static POLLER: RefCell<Option<Poller>> = const { RefCell::new(None) };
    /// Poll until then.
    static UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// No polling until then: the core was wanted.
    static RESTING_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The poller, while it waits for a write.
    static WAITING: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// Makes the current thread a polling worker and spawns its poller on the thread's
/// current-thread runtime. Call it on the worker thread before any session starts there.
pub fn start(budget: Duration, awaiting: AwaitingServers) {
    POLLER.set(Some(Poller { budget, awaiting }));
    tokio::spawn(poll_after_writes());
}

fn this_workers_count() -> Option<AwaitingServers> {
    POLLER.with_borrow(|poller| poller.as_ref().map(|poller| poller.awaiting.clone()))
}

/// The budget, where a poller runs and few sessions wait for their servers.
fn budget_now() -> Option<Duration> {
    POLLER.with_borrow(|poller| {
        let poller = poller.as_ref()?;
        poller.awaiting.few().then_some(poller.budget)
    })
}

/// A session on this worker wrote to a peer: its answer is likely to come soon.
pub fn wrote() {
    let Some(budget) = budget_now() else {
        return;
    };
    if resting() {
        return;
    }
    UNTIL.set(Some(Instant::now() + budget));
    if let Some(poller) = WAITING.take() {
        poller.wake();
    }
}

fn resting() -> bool {
    RESTING_UNTIL
        .get()
        .is_some_and(|until| Instant::now() < until)
}

fn polling() -> bool {
    UNTIL.get().is_some_and(|until| Instant::now() < until) && budget_now().is_some()
}

/// The worker's poller: runs as long as the worker does.
async fn poll_after_writes() {
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
            let yielded = Instant::now();
            std::thread::yield_now();
            if yielded.elapsed() > CONTENDED_YIELD {
                UNTIL.set(None);
                RESTING_UNTIL.set(Some(Instant::now() + REST));
            }
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
            start(budget, AwaitingServers::default());
            tokio::task::yield_now().await;
            assert!(!polling(), "no write yet");
            wrote();
            assert!(polling(), "a write starts polling");
            tokio::time::sleep(budget * 2).await;
            assert!(!polling(), "polling ends with the budget");
        });
    }

    #[test]
    fn workers_stop_polling_while_two_sessions_wait_for_their_servers() {
        worker_runtime().block_on(async {
            let count = AwaitingServers::default();
            start(Duration::from_secs(10), count.clone());
            let first = ServerTurn::on_this_worker();
            // A session on another worker: the count is the gateway's.
            let other_worker = count.clone();
            let second = std::thread::spawn(move || {
                worker_runtime().block_on(async {
                    start(Duration::from_secs(10), other_worker);
                    ServerTurn::on_this_worker()
                })
            })
            .join()
            .expect("other worker");
            first.sent();
            wrote();
            assert!(polling(), "one session waiting: polls");
            second.sent();
            assert!(!polling(), "two sessions waiting: sleeps");
            wrote();
            assert!(!polling(), "a write does not restart it either");
            first.heard();
            assert!(polling(), "one waits again: polls (the budget still runs)");
        });
    }

    #[test]
    fn a_resting_worker_does_not_poll() {
        worker_runtime().block_on(async {
            start(Duration::from_secs(10), AwaitingServers::default());
            RESTING_UNTIL.set(Some(Instant::now() + REST));
            wrote();
            assert!(!polling(), "no polling while resting");
            RESTING_UNTIL.set(Some(Instant::now()));
            wrote();
            assert!(polling(), "polling again after the rest");
        });
    }

    #[test]
    fn without_a_poller_a_write_does_nothing() {
        std::thread::spawn(|| {
            wrote();
            assert!(!polling());
            let turn = ServerTurn::on_this_worker();
            turn.sent();
            assert!(this_workers_count().is_none(), "nothing to count");
        })
        .join()
        .expect("thread");
    }
}
