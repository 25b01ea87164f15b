//! PostgreSQL targets at message level: framing and typed decoding over `pgwire::messages`,
//! the startup phase, the session state machine, requests gathered for the request hook,
//! server messages through the response hook, and cancel-key mapping.

mod cancel;
mod codec;
mod errors;
mod frame;
mod hooks;
mod redact;
mod request;
mod session;
mod startup;
mod state;
mod tls;

pub use cancel::CancelRegistry;
pub use hooks::RecordingHooks;
pub use session::{serve, PostgresSettings};
pub use tls::{agent_acceptor, CertificateSource, TlsError, UpstreamConnector};
