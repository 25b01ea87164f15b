//! Typed messages over whole frames. Decoding works on a copy of the frame, so an unchanged
//! message is forwarded as the exact bytes the peer sent.

// Spelled out so the fuzz crate, which compiles this file by path, finds it too.
#[path = "codec/shape.rs"]
mod shape;

use bytes::BytesMut;
use pgwire::{
    error::PgWireError,
    messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion},
};

/// Message type of `FunctionCall`, which pgwire does not model. It carries no SQL that policy
/// could inspect, so it is recognised only to be refused.
const FUNCTION_CALL_TYPE: u8 = b'F';

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed {direction} message: {detail}")]
    Malformed {
        direction: &'static str,
        detail: String,
    },
    #[error("invalid UTF-8 in SQL text")]
    InvalidUtf8,
    #[error("invalid UTF-8 in a statement or portal name")]
    InvalidUtf8Name,
}

/// A frontend message after framing.
#[derive(Debug)]
pub enum Frontend {
    Message(PgWireFrontendMessage),
    FunctionCall,
}

/// Decode state for messages after the startup packet.
pub fn session_context(protocol: ProtocolVersion) -> DecodeContext {
    let mut context = DecodeContext::new(protocol);
    context.awaiting_frontend_ssl = false;
    context.awaiting_frontend_startup = false;
    context
}

pub fn decode_frontend(frame: &BytesMut, context: &DecodeContext) -> Result<Frontend, CodecError> {
    if frame.len() < 5 || !shape::frontend_body_is_whole(frame[0], &frame[5..]) {
        return Err(malformed("frontend", None));
    }
    let mut scratch = frame.clone();
    let message = match PgWireFrontendMessage::decode(&mut scratch, context) {
        Ok(Some(message)) => message,
        Err(PgWireError::InvalidMessageType(FUNCTION_CALL_TYPE)) => {
            return Ok(Frontend::FunctionCall)
        }
        other => return Err(malformed("frontend", other.err())),
    };
    if !scratch.is_empty() {
        return Err(CodecError::Malformed {
            direction: "frontend",
            detail: format!("{} trailing bytes", scratch.len()),
        });
    }
    check_sql_utf8(frame, &message)?;
    Ok(Frontend::Message(message))
}

pub fn decode_backend(
    frame: &BytesMut,
    context: &DecodeContext,
) -> Result<PgWireBackendMessage, CodecError> {
    if frame.len() < 5 || !shape::backend_body_is_whole(frame[0], &frame[5..]) {
        return Err(malformed("backend", None));
    }
    let mut scratch = frame.clone();
    match PgWireBackendMessage::decode(&mut scratch, context) {
        Ok(Some(message)) => Ok(message),
        other => Err(malformed("backend", other.err())),
    }
}

fn malformed(direction: &'static str, error: Option<PgWireError>) -> CodecError {
    CodecError::Malformed {
        direction,
        detail: error.map_or_else(
            || "body does not hold the fields of its type".to_owned(),
            |e| e.to_string(),
        ),
    }
}

/// pgwire decodes C strings lossily; SQL must reach policy exactly as the server would read
/// it, and two different statement or portal names must not become the same string, so
/// invalid UTF-8 in any of them is refused rather than silently replaced.
fn check_sql_utf8(frame: &[u8], message: &PgWireFrontendMessage) -> Result<(), CodecError> {
    use PgWireFrontendMessage as F;
    let body = &frame[5..];
    let utf8 = |text: &[u8]| std::str::from_utf8(text).map(|_| ());
    let (skip, names, sql) = match message {
        F::Query(_) => (0, 0, true),
        // Statement name, then the query text.
        F::Parse(_) => (0, 1, true),
        // Portal, then statement.
        F::Bind(_) => (0, 2, false),
        F::Execute(_) => (0, 1, false),
        // A target type byte, then the name.
        F::Close(_) | F::Describe(_) => (1, 1, false),
        _ => return Ok(()),
    };
    let mut fields = body[skip..].split(|&b| b == 0);
    for _ in 0..names {
        let name = fields.next().unwrap_or_default();
        utf8(name).map_err(|_| CodecError::InvalidUtf8Name)?;
    }
    if sql {
        utf8(fields.next().unwrap_or_default()).map_err(|_| CodecError::InvalidUtf8)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire::messages::{extendedquery::Parse, simplequery::Query};

    fn encode(message: PgWireFrontendMessage) -> BytesMut {
        let mut buf = BytesMut::new();
        message.encode(&mut buf).unwrap();
        buf
    }

    fn context() -> DecodeContext {
        session_context(ProtocolVersion::PROTOCOL3_0)
    }

    #[test]
    fn queries_decode_to_typed_messages() {
        let frame = encode(PgWireFrontendMessage::Query(Query::new("SELECT 1".into())));
        match decode_frontend(&frame, &context()).unwrap() {
            Frontend::Message(PgWireFrontendMessage::Query(query)) => {
                assert_eq!(query.query, "SELECT 1")
            }
            other => panic!("expected a Query, got {other:?}"),
        }
    }

    #[test]
    fn invalid_utf8_in_sql_is_refused() {
        let mut frame = encode(PgWireFrontendMessage::Query(Query::new(
            "SELECT 'xx'".into(),
        )));
        frame[14] = 0xff;
        assert!(matches!(
            decode_frontend(&frame, &context()),
            Err(CodecError::InvalidUtf8)
        ));
        let parse = Parse::new(Some("s1".into()), "SELECT 'xx'".into(), vec![]);
        let mut frame = encode(PgWireFrontendMessage::Parse(parse));
        let quote = frame.iter().position(|&b| b == b'x').unwrap();
        frame[quote] = 0xc3;
        assert!(matches!(
            decode_frontend(&frame, &context()),
            Err(CodecError::InvalidUtf8)
        ));
        // Portal names \xff and \xfe would both decode to U+FFFD: refused.
        let execute = pgwire::messages::extendedquery::Execute::new(Some("p1".into()), 0);
        let mut frame = encode(PgWireFrontendMessage::Execute(execute));
        frame[5] = 0xff;
        assert!(matches!(
            decode_frontend(&frame, &context()),
            Err(CodecError::InvalidUtf8Name)
        ));
    }

    #[test]
    fn function_call_is_recognised() {
        // FunctionCall: oid 1, no argument formats, no arguments, text result.
        let frame = BytesMut::from(&b"F\0\0\0\x0e\0\0\0\x01\0\0\0\0\0\0"[..]);
        assert!(matches!(
            decode_frontend(&frame, &context()),
            Ok(Frontend::FunctionCall)
        ));
    }

    #[test]
    fn unknown_or_truncated_messages_are_malformed() {
        let frame = BytesMut::from(&b"z\0\0\0\x04"[..]);
        assert!(decode_frontend(&frame, &context()).is_err());
        // A Bind that claims two parameters but carries none.
        let frame = BytesMut::from(&b"B\0\0\0\x0c\0\0\0\0\0\x02\0\0"[..]);
        assert!(decode_frontend(&frame, &context()).is_err());
    }
}
