//! Typed messages over whole frames. Decoding works on a copy of the frame, so an unchanged
//! message is forwarded as the exact bytes the peer sent.

// Spelled out so the fuzz crate, which compiles this file by path, finds it too.
#[path = "codec/shape.rs"]
mod shape;

use bytes::BytesMut;

use super::encoding::{structure_depends_on_encoding, ClientEncoding};
use pgwire::{
    error::PgWireError,
    messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion},
};

/// Message type of `FunctionCall`, which pgwire does not model: it names a function by OID,
/// which policy decides as a `SELECT` of that function.
const FUNCTION_CALL_TYPE: u8 = b'F';

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed {direction} message: {detail}")]
    Malformed {
        direction: &'static str,
        detail: String,
    },
    #[error("invalid byte sequence for encoding \"{0}\" in a statement or portal name")]
    InvalidName(&'static str),
}

/// How the client's texts are read: in the session's client encoding, known to be the one
/// in force on the server unless a request that could change it is still unanswered.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextReading {
    pub encoding: ClientEncoding,
    pub encoding_settled: bool,
}

/// SQL text the gateway cannot read stands as this character followed by the reason: no
/// client can send it (texts are C strings), and it parses as nothing, so the statement is
/// decided as unparsed. The client's own bytes are what is forwarded, if anything.
pub const UNREADABLE: char = '\0';

/// Why a statement text could not be read, if it is such a stand-in.
pub fn unreadable_reason(sql: &str) -> Option<&str> {
    sql.strip_prefix(UNREADABLE)
}

/// A frontend message after framing.
#[derive(Debug)]
pub enum Frontend {
    Message(PgWireFrontendMessage),
    /// The function's OID and how many arguments the frame holds.
    FunctionCall {
        oid: u32,
        arguments: usize,
    },
}

/// Decode state for messages after the startup packet.
pub fn session_context(protocol: ProtocolVersion) -> DecodeContext {
    let mut context = DecodeContext::new(protocol);
    context.awaiting_frontend_ssl = false;
    context.awaiting_frontend_startup = false;
    context
}

pub fn decode_frontend(
    frame: &BytesMut,
    context: &DecodeContext,
    reading: TextReading,
) -> Result<Frontend, CodecError> {
    if frame.len() < 5 || !shape::frontend_body_is_whole(frame[0], &frame[5..]) {
        return Err(malformed("frontend", None));
    }
    let mut scratch = frame.clone();
    let message = match PgWireFrontendMessage::decode(&mut scratch, context) {
        Ok(Some(message)) => message,
        Err(PgWireError::InvalidMessageType(FUNCTION_CALL_TYPE)) => {
            return shape::function_call(&frame[5..])
                .map(|(oid, arguments)| Frontend::FunctionCall { oid, arguments })
                .ok_or_else(|| malformed("frontend", None));
        }
        other => return Err(malformed("frontend", other.err())),
    };
    if !scratch.is_empty() {
        return Err(CodecError::Malformed {
            direction: "frontend",
            detail: format!("{} trailing bytes", scratch.len()),
        });
    }
    let mut message = message;
    read_texts(frame, &mut message, reading)?;
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

/// pgwire decodes C strings lossily and as UTF-8; SQL must reach policy exactly as the server
/// reads it, so texts are read again from the frame in the session's encoding. A name that is
/// invalid there is refused (two names must never become the same string); SQL that is
/// invalid, or whose structure depends on an encoding change not yet confirmed, becomes an
/// [`UNREADABLE`] stand-in.
fn read_texts(
    frame: &[u8],
    message: &mut PgWireFrontendMessage,
    reading: TextReading,
) -> Result<(), CodecError> {
    use PgWireFrontendMessage as F;
    let body = &frame[5..];
    let skip = usize::from(matches!(message, F::Close(_) | F::Describe(_)));
    let mut fields = body[skip..].split(|&b| b == 0);
    let mut name = |slot: &mut Option<String>| -> Result<(), CodecError> {
        let raw = fields.next().unwrap_or_default();
        if !raw.is_ascii() {
            let text = reading
                .encoding
                .decode(raw)
                .map_err(|e| CodecError::InvalidName(e.encoding))?;
            *slot = Some(text.into_owned()).filter(|t| !t.is_empty());
        }
        Ok(())
    };
    match message {
        F::Query(_) => {}
        F::Parse(parse) => name(&mut parse.name)?,
        F::Bind(bind) => {
            name(&mut bind.portal_name)?;
            name(&mut bind.statement_name)?;
        }
        F::Execute(execute) => name(&mut execute.name)?,
        F::Close(close) => name(&mut close.name)?,
        F::Describe(describe) => name(&mut describe.name)?,
        _ => return Ok(()),
    }
    let sql = match message {
        F::Query(query) => &mut query.query,
        F::Parse(parse) => &mut parse.query,
        _ => return Ok(()),
    };
    let raw = fields.next().unwrap_or_default();
    if raw.is_ascii() {
        return Ok(());
    }
    *sql = if !reading.encoding_settled && structure_depends_on_encoding(raw) {
        format!(
            "{UNREADABLE}its structure depends on a client encoding change the server has not \
             confirmed yet"
        )
    } else {
        match reading.encoding.decode(raw) {
            // Valid UTF-8 read as UTF-8: pgwire's text is already exactly this.
            Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
            Ok(text) => text.into_owned(),
            Err(invalid) => format!("{UNREADABLE}{invalid}"),
        }
    };
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

    fn settled(encoding: ClientEncoding) -> TextReading {
        TextReading {
            encoding,
            encoding_settled: true,
        }
    }

    fn query_text(frame: &BytesMut, reading: TextReading) -> String {
        match decode_frontend(frame, &context(), reading).unwrap() {
            Frontend::Message(PgWireFrontendMessage::Query(query)) => query.query,
            other => panic!("expected a Query, got {other:?}"),
        }
    }

    #[test]
    fn queries_decode_to_typed_messages() {
        let frame = encode(PgWireFrontendMessage::Query(Query::new("SELECT 1".into())));
        match decode_frontend(&frame, &context(), settled(ClientEncoding::UTF8)).unwrap() {
            Frontend::Message(PgWireFrontendMessage::Query(query)) => {
                assert_eq!(query.query, "SELECT 1")
            }
            other => panic!("expected a Query, got {other:?}"),
        }
    }

    #[test]
    fn sql_invalid_in_the_encoding_becomes_unreadable() {
        let mut frame = encode(PgWireFrontendMessage::Query(Query::new(
            "SELECT 'xx'".into(),
        )));
        frame[14] = 0xff;
        let text = query_text(&frame, settled(ClientEncoding::UTF8));
        assert_eq!(
            unreadable_reason(&text),
            Some("invalid byte sequence for encoding \"UTF8\": 0xff")
        );
        // The same byte is a letter in LATIN1.
        let latin1 = ClientEncoding::from_name("LATIN1").unwrap();
        assert_eq!(query_text(&frame, settled(latin1)), "SELECT 'xÿ'");
        // Portal names \xff and \xfe would both decode to U+FFFD in UTF-8: refused.
        let execute = pgwire::messages::extendedquery::Execute::new(Some("p1".into()), 0);
        let mut frame = encode(PgWireFrontendMessage::Execute(execute));
        frame[5] = 0xff;
        assert!(matches!(
            decode_frontend(&frame, &context(), settled(ClientEncoding::UTF8)),
            Err(CodecError::InvalidName("UTF8"))
        ));
    }

    #[test]
    fn sql_read_in_the_sessions_encoding() {
        let parse = Parse::new(Some("s1".into()), "SELECT 'xx'".into(), vec![]);
        let mut frame = encode(PgWireFrontendMessage::Parse(parse));
        let quote = frame.iter().position(|&b| b == b'x').unwrap();
        // SJIS 0x955C: one character whose second byte is a backslash.
        frame[quote] = 0x95;
        frame[quote + 1] = 0x5c;
        let sjis = ClientEncoding::from_name("SJIS").unwrap();
        match decode_frontend(&frame, &context(), settled(sjis)).unwrap() {
            Frontend::Message(PgWireFrontendMessage::Parse(parse)) => {
                assert_eq!(parse.query, "SELECT '表'")
            }
            other => panic!("expected a Parse, got {other:?}"),
        }
        // While an encoding change may be pending, such a text cannot be read safely.
        let pending = TextReading {
            encoding: sjis,
            encoding_settled: false,
        };
        match decode_frontend(&frame, &context(), pending).unwrap() {
            Frontend::Message(PgWireFrontendMessage::Parse(parse)) => {
                assert!(unreadable_reason(&parse.query).is_some())
            }
            other => panic!("expected a Parse, got {other:?}"),
        }
    }

    #[test]
    fn function_call_is_recognised() {
        // FunctionCall: oid 1, no argument formats, no arguments, text result.
        let frame = BytesMut::from(&b"F\0\0\0\x0e\0\0\0\x01\0\0\0\0\0\0"[..]);
        assert!(matches!(
            decode_frontend(&frame, &context(), settled(ClientEncoding::UTF8)),
            Ok(Frontend::FunctionCall {
                oid: 1,
                arguments: 0
            })
        ));
    }

    #[test]
    fn unknown_or_truncated_messages_are_malformed() {
        let frame = BytesMut::from(&b"z\0\0\0\x04"[..]);
        assert!(decode_frontend(&frame, &context(), settled(ClientEncoding::UTF8)).is_err());
        // A Bind that claims two parameters but carries none.
        let frame = BytesMut::from(&b"B\0\0\0\x0c\0\0\0\0\0\x02\0\0"[..]);
        assert!(decode_frontend(&frame, &context(), settled(ClientEncoding::UTF8)).is_err());
    }
}
