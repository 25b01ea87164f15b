//! Errors the gateway itself sends to a client, as PostgreSQL would word them: severity,
//! SQLSTATE and a message that names the cause but never internal details.

use bytes::BytesMut;
use pgwire::messages::{response::ErrorResponse, PgWireBackendMessage};

/// SQLSTATE codes Tollgate uses.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const QUERY_CANCELED: &str = "57014";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }
}

/// An error to send to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
}

impl ClientError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Fatal,
            code,
            message: message.into(),
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
        }
    }

    pub fn encode_into(&self, out: &mut BytesMut) {
        let severity = self.severity.as_str().to_owned();
        let response = ErrorResponse::new(vec![
            (b'S', severity.clone()),
            (b'V', severity),
            (b'C', self.code.to_owned()),
            (b'M', self.message.clone()),
        ]);
        PgWireBackendMessage::ErrorResponse(response)
            .encode(out)
            .expect("short error messages always encode");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::codec::decode_backend;
    use pgwire::messages::{DecodeContext, ProtocolVersion};

    #[test]
    fn errors_carry_severity_and_sqlstate() {
        let mut out = BytesMut::new();
        ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, "bad message").encode_into(&mut out);
        let context = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        match decode_backend(&out, &context).unwrap() {
            PgWireBackendMessage::ErrorResponse(error) => {
                assert!(error.fields.contains(&(b'S', "FATAL".into())));
                assert!(error.fields.contains(&(b'C', "08P01".into())));
                assert!(error.fields.contains(&(b'M', "bad message".into())));
            }
            other => panic!("expected an ErrorResponse, got {other:?}"),
        }
    }
}
