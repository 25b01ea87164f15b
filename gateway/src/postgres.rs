//! PostgreSQL targets at message level: framing and typed decoding over `pgwire::messages`,
//! the startup phase, the session state machine, requests gathered for the request hook,
//! server messages through the response hook, and cancel-key mapping.

mod cancel;
mod catalog;
mod codec;
mod encoding;
mod enforce;
mod errors;
mod frame;
mod hooks;
mod masking;
mod names;
mod pipeline;
mod redact;
mod request;
mod results;
mod scram;
mod session;
mod settings;
mod startup;
mod state;
mod tls;

pub use cancel::CancelRegistry;
pub use catalog::CatalogAccess;
pub use enforce::Enforcement;
pub use hooks::RecordingHooks;
pub use session::{
    load_credentials, serve, CredentialsError, PostgresSettings, TokenLogin, BUILTIN_FUNCTIONS,
};
pub use tls::{agent_acceptor, https_acceptor, CertificateSource, TlsError, UpstreamConnector};
