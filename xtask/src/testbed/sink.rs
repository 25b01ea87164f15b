//! A TCP sink: accepts and drops connections on one port of 127.0.0.1 and ::1, for tests and
//! benchmarks that only make connections.

use std::{
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

pub struct Sink {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Sink {
    pub fn start() -> anyhow::Result<Self> {
        let v4 = TcpListener::bind("127.0.0.1:0")?;
        let port = v4.local_addr()?.port();
        let v6 = TcpListener::bind(("::1", port))?;
        let stop = Arc::new(AtomicBool::new(false));
        for listener in [v4, v6] {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    drop(stream);
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
            });
        }
        Ok(Self { port, stop })
    }
}

impl Drop for Sink {
    /// The accept loops end on their next connection: one each.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = TcpStream::connect(("::1", self.port));
    }
}
