//! Drain, not flags: every connection task holds a [`Watch`]; shutdown signals the drain and
//! waits (bounded) until every watch is dropped.

use std::time::Duration;

use tokio::sync::watch;

pub struct Signal(watch::Sender<bool>);

#[derive(Clone)]
pub struct Watch(watch::Receiver<bool>);

pub fn channel() -> (Signal, Watch) {
    let (tx, rx) = watch::channel(false);
    (Signal(tx), Watch(rx))
}

impl Signal {
    /// Tells every watch that a drain has started.
    pub fn start(&self) {
        let _ = self.0.send(true);
    }

    /// Tells every watch to finish, then waits for them up to `grace`.
    /// Returns false when the grace period ran out with work still in flight.
    pub async fn drain(self, grace: Duration) -> bool {
        let _ = self.0.send(true);
        tokio::time::timeout(grace, self.0.closed()).await.is_ok()
    }
}

impl Watch {
    /// Resolves once a drain has started.
    pub async fn signaled(&mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_watches_and_times_out() {
        let (signal, watch) = channel();
        let mut held = watch.clone();
        drop(watch);
        let task = tokio::spawn(async move {
            held.signaled().await;
            drop(held);
        });
        assert!(
            signal.drain(Duration::from_secs(5)).await,
            "all watches dropped"
        );
        task.await.expect("task");

        let (signal, watch) = channel();
        assert!(
            !signal.drain(Duration::from_millis(20)).await,
            "a held watch keeps the drain open"
        );
        drop(watch);
    }
}
