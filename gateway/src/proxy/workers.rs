//! One accept loop and single-threaded runtime per worker (`gateway.workers`). Each connection
//! lives on the thread that accepted it (the kernel spreads connections over the `SO_REUSEPORT`
//! listeners), so a message never wakes another thread: on a busy host the wake-ups of a
//! work-stealing runtime cost more than the proxying itself.

use std::{net::TcpListener as StdListener, sync::Arc, thread::JoinHandle};

use tokio::{net::TcpListener, sync::watch};

use super::{listener, ProxyContext};
use crate::drain;

pub struct Workers {
    threads: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

/// Starts a thread per group of listeners; they serve until [`Workers::stop`].
pub fn start(
    groups: Vec<Vec<StdListener>>,
    context: &Arc<ProxyContext>,
    drain: &drain::Watch,
) -> std::io::Result<Workers> {
    let (stop, stopped) = watch::channel(false);
    let mut threads = Vec::new();
    let awaiting_servers = super::busy_poll::AwaitingServers::default();
    for (index, listeners) in groups.into_iter().enumerate() {
        let context = context.clone();
        let busy_poll = context.config.gateway.busy_poll;
        let awaiting_servers = awaiting_servers.clone();
        let drain = drain.clone();
        let mut stopped = stopped.clone();
        // Sockets and timers only: the signal and process drivers would be polled on every
        // park for nothing (signals are handled by the main runtime).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("tollgate-worker-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    if !busy_poll.is_zero() {
                        super::busy_poll::start(busy_poll, awaiting_servers);
                    }
                    for listener in listeners {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => {
                                tokio::spawn(listener::serve(
                                    listener,
                                    context.clone(),
                                    drain.clone(),
                                ));
                            }
                            Err(error) => tracing::error!(%error, "listener not usable"),
                        }
                    }
                    drop(drain);
                    // Connection tasks run while this waits; they end on their own during
                    // the drain, and any left when it times out are dropped with the runtime.
                    let _ = stopped.wait_for(|stop| *stop).await;
                });
            })?;
        threads.push(thread);
    }
    Ok(Workers { threads, stop })
}

impl Workers {
    /// Ends every worker runtime (after the drain) and waits for the threads.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
