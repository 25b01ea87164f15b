//! `gateway.busy_poll_us`: after each write a worker keeps polling its sockets for a while
//! instead of sleeping, so an answer that arrives within that time costs no wake-up. A wake-up
//! is the dearest step of a round trip on a VM (an interrupt between cores, a halted core
//! restarted). The price is CPU: a worker serving one agent at a time polls through every wait.
//! That is why the setting is off unless chosen.
//!
//! Each worker thread runs one poller task. When the task yields, tokio's current-thread runtime
//! polls the sockets without blocking before it runs the task again. So while the poller
//! keeps yielding, the worker never sleeps in `epoll_wait`.

use std::{
    cell::Cell,
    future::poll_fn,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

thread_local! {
    /// This worker's budget after each write; zero where no poller runs.
    static BUDGET: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// Poll until then.
    static UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The poller, while it waits for a write.
    static WAITING: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// A session on this worker wrote to a peer: its answer is likely to come soon.
pub fn wrote() {
    let budget = BUDGET.get();
    if budget.is_zero() {
        return;
    }
    UNTIL.set(Some(Instant::now() + budget));
    if let Some(poller) = WAITING.take() {
        poller.wake();
    }
}

fn polling() -> bool {
    UNTIL.get().is_some_and(|until| Instant::now() < until)
}

/// The worker's poller: runs as long as the worker does.
pub async fn poll_after_writes(budget: Duration) {
    BUDGET.set(budget);
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_starts_polling_for_the_budget_and_no_longer() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let budget = Duration::from_millis(20);
            let poller = tokio::spawn(poll_after_writes(budget));
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
    fn without_a_poller_a_write_does_nothing() {
        std::thread::spawn(|| {
            wrote();
            assert!(!polling());
        })
        .join()
        .expect("thread");
    }
}
