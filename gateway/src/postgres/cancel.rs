//! Cancel keys. The agent sees the server's real backend pid (so `pg_backend_pid()` and
//! `pg_terminate_backend` keep meaning the same process) with a secret the gateway issued;
//! a CancelRequest carrying that pair is forwarded upstream with the server's real secret.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::{Bytes, BytesMut};
use pgwire::messages::{cancel::CancelRequest, startup::SecretKey, PgWireFrontendMessage};

use crate::proxy::addrs::UpstreamAddr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IssuedKey {
    pid: i32,
    secret: Bytes,
}

/// Where a cancel for one session must go.
#[derive(Debug, Clone)]
pub struct CancelRoute {
    pub conn_id: u64,
    pub target: String,
    pub upstream: UpstreamAddr,
    pub pid: i32,
    server_secret: SecretKey,
    /// Changed by each cancel, to withdraw a request of the session that waits for
    /// approval (the server has nothing of it to cancel).
    pub withdraw: Option<Arc<tokio::sync::watch::Sender<u64>>>,
}

impl CancelRoute {
    /// The CancelRequest the server expects, with its own secret.
    pub fn upstream_request(&self) -> BytesMut {
        let mut out = BytesMut::new();
        PgWireFrontendMessage::CancelRequest(CancelRequest::new(
            self.pid,
            self.server_secret.clone(),
        ))
        .encode(&mut out)
        .expect("cancel requests always encode");
        out
    }
}

#[derive(Debug, Default)]
pub struct CancelRegistry {
    routes: Mutex<HashMap<IssuedKey, CancelRoute>>,
}

impl CancelRegistry {
    /// Issues the secret the agent will see for this session's backend; the route is removed
    /// when the returned registration is dropped (the session ended).
    pub fn register(
        self: &Arc<Self>,
        conn_id: u64,
        target: &str,
        upstream: UpstreamAddr,
        pid: i32,
        server_secret: SecretKey,
        withdraw: Option<Arc<tokio::sync::watch::Sender<u64>>>,
    ) -> Result<(SecretKey, CancelRegistration), getrandom::Error> {
        let issued = random_secret(&server_secret)?;
        let key = IssuedKey {
            pid,
            secret: issued.to_bytes(),
        };
        let route = CancelRoute {
            conn_id,
            target: target.to_owned(),
            upstream,
            pid,
            server_secret,
            withdraw,
        };
        self.lock().insert(key.clone(), route);
        Ok((
            issued,
            CancelRegistration {
                registry: self.clone(),
                key,
            },
        ))
    }

    /// The route for a CancelRequest, if it carries a key this gateway issued.
    pub fn route(&self, request: &CancelRequest) -> Option<CancelRoute> {
        let key = IssuedKey {
            pid: request.pid,
            secret: request.secret_key.to_bytes(),
        };
        self.lock().get(&key).cloned()
    }

    #[cfg(test)]
    pub fn registered(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IssuedKey, CancelRoute>> {
        self.routes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Removes the session's cancel route on drop.
#[derive(Debug)]
pub struct CancelRegistration {
    registry: Arc<CancelRegistry>,
    key: IssuedKey,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

/// A fresh secret of the same shape as the server's (an int32 in protocol 3.0, bytes in 3.2).
fn random_secret(like: &SecretKey) -> Result<SecretKey, getrandom::Error> {
    match like {
        SecretKey::I32(_) => {
            let mut bytes = [0u8; 4];
            getrandom::fill(&mut bytes)?;
            Ok(SecretKey::I32(i32::from_be_bytes(bytes)))
        }
        SecretKey::Bytes(server) => {
            let mut bytes = vec![0u8; server.len()];
            getrandom::fill(&mut bytes)?;
            Ok(SecretKey::Bytes(bytes.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn upstream() -> UpstreamAddr {
        UpstreamAddr("127.0.0.1:5432".parse::<SocketAddr>().unwrap())
    }

    #[test]
    fn issued_keys_route_to_the_server_secret_until_the_session_ends() {
        let registry = Arc::new(CancelRegistry::default());
        let (issued, registration) = registry
            .register(7, "db", upstream(), 4242, SecretKey::I32(99), None)
            .unwrap();
        assert_ne!(
            issued,
            SecretKey::I32(99),
            "the server's secret is never shown"
        );
        let route = registry
            .route(&CancelRequest::new(4242, issued.clone()))
            .expect("issued key routes");
        assert_eq!(route.conn_id, 7);
        let mut expected = BytesMut::new();
        PgWireFrontendMessage::CancelRequest(CancelRequest::new(4242, SecretKey::I32(99)))
            .encode(&mut expected)
            .unwrap();
        assert_eq!(route.upstream_request(), expected);

        // The server's own secret, or the right secret with another pid, route nowhere.
        assert!(registry
            .route(&CancelRequest::new(4242, SecretKey::I32(99)))
            .is_none());
        assert!(registry
            .route(&CancelRequest::new(4243, issued.clone()))
            .is_none());
        // A protocol 3.2 client sends the same 4 bytes as a byte string.
        let as_bytes = SecretKey::Bytes(issued.to_bytes());
        assert!(registry
            .route(&CancelRequest::new(4242, as_bytes))
            .is_some());

        drop(registration);
        assert!(registry.route(&CancelRequest::new(4242, issued)).is_none());
        assert_eq!(registry.registered(), 0);
    }
}
