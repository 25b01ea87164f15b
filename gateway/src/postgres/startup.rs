//! The startup phase: SSL/GSS negotiation, then either a `StartupMessage` (whose user,
//! database and run-time settings become part of the session identity) or a `CancelRequest`.

use std::collections::BTreeMap;

use bytes::BytesMut;
use pgwire::messages::{
    cancel::CancelRequest, startup::Startup, DecodeContext, PgWireFrontendMessage, ProtocolVersion,
    SslNegotiationMetaMessage,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{
    errors::{sqlstate, ClientError},
    frame::{read_exact_frame, FrameError, FrameKind, PRE_AUTH_LIMIT},
};

/// Answer to GSSENCRequest: "not supported, continue in plain text".
const NEGOTIATION_REFUSED: u8 = b'N';

/// At most one GSSENCRequest precedes an SSLRequest or the startup packet.
const MAX_NEGOTIATIONS: usize = 1;

/// What the client opened the connection for.
#[derive(Debug)]
pub enum Opening {
    /// SSLRequest: the caller answers and, if it accepts, reads the opening again over TLS.
    EncryptionRequested,
    Session {
        startup: StartupInfo,
        /// The packet exactly as the client sent it, forwarded upstream unchanged.
        packet: BytesMut,
        /// The same packet decoded, for a gateway login that rewrites it.
        message: Startup,
    },
    Cancel(CancelRequest),
}

/// The identity-bearing parts of a startup packet, exposed to policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupInfo {
    pub protocol: ProtocolVersion,
    pub user: String,
    pub database: String,
    pub application_name: Option<String>,
    /// Run-time settings the client asked for at startup: extra startup parameters plus the
    /// `-c name=value` / `--name=value` entries of `options` (e.g. `role`, `search_path`).
    pub settings: BTreeMap<String, String>,
    /// Words of `options` that are not settings (other server switches).
    pub other_options: Vec<String>,
    pub replication_requested: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("client closed the connection before the startup packet")]
    Closed,
    #[error("{}", .0.message)]
    Refused(ClientError),
}

/// Reads packets until an SSLRequest, the startup packet or a cancel request, answering
/// GSS encryption requests with "N". Reads exactly one packet at a time, so nothing the
/// client sends later (such as a TLS handshake) is consumed here.
pub async fn read_opening<S>(stream: &mut S) -> Result<Opening, StartupError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..=MAX_NEGOTIATIONS {
        let packet = read_exact_frame(stream, FrameKind::Untagged, PRE_AUTH_LIMIT)
            .await?
            .ok_or(StartupError::Closed)?;
        match decode_opening(&packet)? {
            Decoded::Ssl => return Ok(Opening::EncryptionRequested),
            Decoded::Gss => stream
                .write_all(&[NEGOTIATION_REFUSED])
                .await
                .map_err(FrameError::Io)?,
            Decoded::Cancel(cancel) => return Ok(Opening::Cancel(cancel)),
            Decoded::Startup(startup) => {
                return Ok(Opening::Session {
                    startup: startup_info(&startup)?,
                    packet,
                    message: startup,
                })
            }
        }
    }
    Err(protocol_violation("more than one GSSENCRequest"))
}

enum Decoded {
    Ssl,
    Gss,
    Cancel(CancelRequest),
    Startup(Startup),
}

fn decode_opening(packet: &BytesMut) -> Result<Decoded, StartupError> {
    let mut context = DecodeContext::new(ProtocolVersion::PROTOCOL3_2);
    let mut scratch = packet.clone();
    match PgWireFrontendMessage::decode(&mut scratch, &context) {
        Ok(Some(PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None))) => {}
        Ok(Some(PgWireFrontendMessage::SslNegotiation(
            SslNegotiationMetaMessage::PostgresSsl(_),
        ))) => return Ok(Decoded::Ssl),
        Ok(Some(PgWireFrontendMessage::SslNegotiation(_))) => return Ok(Decoded::Gss),
        _ => return Err(protocol_violation("invalid startup packet")),
    }
    context.awaiting_frontend_ssl = false;
    let mut scratch = packet.clone();
    match PgWireFrontendMessage::decode(&mut scratch, &context) {
        Ok(Some(PgWireFrontendMessage::CancelRequest(cancel))) => Ok(Decoded::Cancel(cancel)),
        Ok(Some(PgWireFrontendMessage::Startup(startup))) => Ok(Decoded::Startup(startup)),
        _ => Err(protocol_violation(
            "unsupported frontend protocol or invalid startup packet",
        )),
    }
}

fn protocol_violation(message: &str) -> StartupError {
    StartupError::Refused(ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, message))
}

fn startup_info(startup: &Startup) -> Result<StartupInfo, StartupError> {
    let protocol = ProtocolVersion::from_version_number(
        startup.protocol_number_major,
        startup.protocol_number_minor,
    )
    // Newer minor versions are negotiated down by the server; decode as 3.2 meanwhile.
    .unwrap_or(ProtocolVersion::PROTOCOL3_2);
    let mut parameters = startup.parameters.clone();
    let user = parameters.remove("user").ok_or_else(|| {
        StartupError::Refused(ClientError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "no PostgreSQL user name specified in startup packet",
        ))
    })?;
    let database = parameters
        .remove("database")
        .unwrap_or_else(|| user.clone());
    let replication_requested = parameters
        .remove("replication")
        .is_some_and(|value| !is_false(&value));
    let (mut settings, other_options) = parameters
        .remove("options")
        .map(|options| parse_options(&options))
        .unwrap_or_default();
    let application_name = parameters.get("application_name").cloned();
    for (name, value) in parameters {
        // `_pq_.*` are protocol extensions, not settings.
        if !name.starts_with("_pq_.") {
            settings.entry(name).or_insert(value);
        }
    }
    Ok(StartupInfo {
        protocol,
        user,
        database,
        application_name,
        settings,
        other_options,
        replication_requested,
    })
}

/// PostgreSQL's boolean spellings for "off"; anything else asks for replication (fail closed).
fn is_false(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "false" | "off" | "no" | "0" | "f" | "n"
    )
}

/// Splits `options` as the server does (whitespace separates, backslash escapes) and picks
/// out `-c name=value`, `-cname=value` and `--name=value`.
pub fn parse_options(options: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let words = split_words(options);
    let mut settings = BTreeMap::new();
    let mut other = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let assignment = if word == "-c" {
            words.next()
        } else if let Some(rest) = word.strip_prefix("-c") {
            Some(rest.to_owned())
        } else {
            word.strip_prefix("--").map(str::to_owned)
        };
        match assignment.as_deref().and_then(|a| a.split_once('=')) {
            // The server folds `-` to `_` in setting names given this way.
            Some((name, value)) => {
                settings.insert(name.replace('-', "_").to_lowercase(), value.to_owned());
            }
            None => other.push(assignment.unwrap_or(word)),
        }
    }
    (settings, other)
}

fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_settings() {
        let (settings, other) =
            parse_options("-c role=admin  -csearch_path=phi,public --statement-timeout=5 -B 8");
        assert_eq!(settings["role"], "admin");
        assert_eq!(settings["search_path"], "phi,public");
        assert_eq!(settings["statement_timeout"], "5");
        assert_eq!(other, vec!["-B", "8"]);
        let (settings, _) = parse_options(r"-c application_name=my\ agent");
        assert_eq!(settings["application_name"], "my agent");
    }

    #[test]
    fn startup_parameters_are_split_into_identity_and_settings() {
        let mut startup = Startup::new();
        for (k, v) in [
            ("user", "agent"),
            ("application_name", "psql"),
            ("options", "-c role=dba"),
            ("DateStyle", "ISO"),
            ("_pq_.extension", "1"),
        ] {
            startup.parameters.insert(k.into(), v.into());
        }
        let info = startup_info(&startup).unwrap();
        assert_eq!(info.user, "agent");
        assert_eq!(info.database, "agent", "database defaults to the user");
        assert_eq!(info.application_name.as_deref(), Some("psql"));
        assert_eq!(info.settings["role"], "dba");
        assert_eq!(info.settings["DateStyle"], "ISO");
        assert!(!info.settings.contains_key("_pq_.extension"));
        assert!(!info.replication_requested);
    }

    #[test]
    fn replication_is_detected_unless_explicitly_off() {
        for (value, requested) in [
            ("database", true),
            ("true", true),
            ("bogus", true),
            ("off", false),
            ("0", false),
        ] {
            let mut startup = Startup::new();
            startup.parameters.insert("user".into(), "u".into());
            startup
                .parameters
                .insert("replication".into(), value.into());
            assert_eq!(
                startup_info(&startup).unwrap().replication_requested,
                requested,
                "replication={value}"
            );
        }
    }

    #[test]
    fn a_startup_packet_without_user_is_refused() {
        let startup = Startup::new();
        assert!(matches!(
            startup_info(&startup),
            Err(StartupError::Refused(ClientError { code: "28000", .. }))
        ));
    }
}

#[cfg(test)]
mod opening_tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn startup_packet(user: &str) -> Vec<u8> {
        let mut startup = Startup::new();
        startup.parameters.insert("user".into(), user.into());
        let mut buf = BytesMut::new();
        PgWireFrontendMessage::Startup(startup)
            .encode(&mut buf)
            .unwrap();
        buf.to_vec()
    }

    #[tokio::test]
    async fn gss_is_answered_no_ssl_is_handed_back_then_startup_is_read() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let mut sent = Vec::new();
        sent.extend_from_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]); // GSSENCRequest
        sent.extend_from_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]); // SSLRequest
        sent.extend_from_slice(&startup_packet("agent"));
        client.write_all(&sent).await.unwrap();
        assert!(matches!(
            read_opening(&mut server).await.unwrap(),
            Opening::EncryptionRequested
        ));
        let opening = read_opening(&mut server).await.unwrap();
        let mut answer = [0u8; 1];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
        match opening {
            Opening::Session {
                startup, packet, ..
            } => {
                assert_eq!(startup.user, "agent");
                assert_eq!(&packet[..], &startup_packet("agent")[..]);
            }
            other => panic!("expected a session, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn oversized_or_garbage_packets_are_refused() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(&[0, 0, 0x27, 0x11]).await.unwrap(); // 10,001 bytes
        assert!(matches!(
            read_opening(&mut server).await,
            Err(StartupError::Frame(FrameError::TooLarge { .. }))
        ));
        let (mut client, mut server) = tokio::io::duplex(4096);
        client
            .write_all(&[0, 0, 0, 12, 0, 2, 0, 0, b'x', 0, 0, 0])
            .await
            .unwrap();
        assert!(matches!(
            read_opening(&mut server).await,
            Err(StartupError::Refused(ClientError { code: "08P01", .. }))
        ));
    }
}
