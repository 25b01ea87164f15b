//! `auth = "token"`: the agent presents an OIDC access token as its password; the gateway
//! checks it and logs in to the server itself, with credentials only it holds, so the agent
//! never sees the database password.

use std::{os::unix::fs::PermissionsExt, path::Path};

use bytes::BytesMut;
use pgwire::messages::{
    startup::{
        Authentication, Password, PasswordMessageFamily, SASLInitialResponse, SASLResponse, Startup,
    },
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage,
};
use tokio::io::AsyncWriteExt;

use tokio::time::Instant;

use super::send_fatal;
use crate::identity::token::{TokenError, TokenIdentity, TokenValidator};
use crate::identity::{printable, AgentIdentity};
use crate::postgres::{
    codec::{decode_backend, decode_frontend, session_context, Frontend, TextReading},
    errors::{sqlstate, ClientError},
    frame::{read_exact_frame, FrameError, FrameKind, FrameReader, PRE_AUTH_LIMIT},
    hooks::SessionInfo,
    scram::{ScramClient, ScramVerifier},
    startup::StartupInfo,
    tls::PgStream,
};
use crate::proxy::guard::{Outcome, SessionGuard};

/// What the gateway logs in to the server with. The password never appears in Debug output.
pub struct Credentials {
    pub user: String,
    password: String,
}

impl Credentials {
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{field}: {path}: {detail}")]
pub struct CredentialsError {
    field: String,
    path: String,
    detail: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    user: String,
    password: String,
}

/// Reads `user` and `password` from a TOML file that only the gateway's user may read.
pub fn load_credentials(target: &str, path: &Path) -> Result<Credentials, CredentialsError> {
    let error = |detail: String| CredentialsError {
        field: format!("targets[{target}].upstream_credentials_file"),
        path: path.display().to_string(),
        detail,
    };
    let metadata = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(error(format!(
            "readable by group or others (mode {:o}); run chmod 600 on it",
            mode & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let file: CredentialsFile = toml::from_str(&text).map_err(|e| error(e.message().to_owned()))?;
    Ok(Credentials {
        user: file.user,
        password: file.password,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Sent to the agent as FATAL.
    #[error("{}", .0.message)]
    Client(ClientError),
    /// The gateway's own login to the server failed; the detail is only logged.
    #[error("upstream login: {0}")]
    Upstream(String),
    #[error("agent connection: {0}")]
    Agent(std::io::Error),
}

/// Asks the agent for its password (the token) and validates it.
pub async fn authenticate_agent(
    agent: &mut Box<dyn PgStream>,
    startup: &StartupInfo,
    validator: &TokenValidator,
) -> Result<TokenIdentity, (LoginError, Option<TokenError>)> {
    let mut request = BytesMut::new();
    encode(
        PgWireBackendMessage::Authentication(Authentication::CleartextPassword),
        &mut request,
    );
    let sent = async {
        agent.write_all(&request).await?;
        agent.flush().await
    };
    sent.await.map_err(|e| (LoginError::Agent(e), None))?;
    // Exactly one message: nothing the agent sends after it is consumed here.
    let frame = match read_exact_frame(agent, FrameKind::Tagged, PRE_AUTH_LIMIT).await {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            return Err((
                LoginError::Agent(std::io::ErrorKind::UnexpectedEof.into()),
                None,
            ))
        }
        Err(FrameError::Io(error)) => return Err((LoginError::Agent(error), None)),
        Err(error) => {
            let fatal = ClientError::fatal(sqlstate::PROTOCOL_VIOLATION, error.to_string());
            return Err((LoginError::Client(fatal), None));
        }
    };
    let password = match decode_frontend(
        &frame,
        &session_context(startup.protocol),
        TextReading::default(),
    ) {
        Ok(Frontend::Message(PgWireFrontendMessage::PasswordMessageFamily(family))) => family
            .into_password()
            .map(|p| p.password)
            .map_err(|_| (malformed_password(), None))?,
        _ => return Err((malformed_password(), None)),
    };
    validator.validate(password.trim()).await.map_err(|reason| {
        let error = ClientError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("Tollgate refused the access token: {reason}"),
        );
        (LoginError::Client(error), Some(reason))
    })
}

fn malformed_password() -> LoginError {
    LoginError::Client(ClientError::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        "expected a password message carrying the access token",
    ))
}

/// The agent's startup packet with the gateway's database user in place of the agent's.
pub fn upstream_startup(agent_startup: &Startup, credentials: &Credentials) -> BytesMut {
    let mut startup = Startup::new();
    startup.protocol_number_major = agent_startup.protocol_number_major;
    startup.protocol_number_minor = agent_startup.protocol_number_minor;
    startup.parameters = agent_startup.parameters.clone();
    startup
        .parameters
        .insert("user".to_owned(), credentials.user.clone());
    let mut out = BytesMut::new();
    encode_frontend(PgWireFrontendMessage::Startup(startup), &mut out);
    out
}

/// Runs the server's authentication exchange (SCRAM-SHA-256, md5 or password) up to
/// AuthenticationOk. Returns the bytes the server sent after it (parameter status, key data,
/// ReadyForQuery), which the session goes on with.
pub async fn login_upstream(
    upstream: &mut Box<dyn PgStream>,
    context: &DecodeContext,
    credentials: &Credentials,
    password_methods_allowed: bool,
) -> Result<BytesMut, LoginError> {
    let mut reader = FrameReader::new(&mut *upstream);
    let mut scram = Scram::NotStarted;
    loop {
        let frame = reader
            .next(FrameKind::Tagged, PRE_AUTH_LIMIT)
            .await
            .map_err(|e| LoginError::Upstream(e.to_string()))?
            .ok_or_else(|| LoginError::Upstream("server closed during login".into()))?;
        let message =
            decode_backend(&frame, context).map_err(|e| LoginError::Upstream(e.to_string()))?;
        let reply = match message {
            PgWireBackendMessage::Authentication(Authentication::Ok) => {
                // A server that skips SCRAM's final step has not proven it knows the password.
                if !matches!(scram, Scram::NotStarted | Scram::Verified) {
                    return Err(LoginError::Upstream("SCRAM exchange not finished".into()));
                }
                let (_, rest) = reader.into_parts();
                return Ok(rest);
            }
            PgWireBackendMessage::Authentication(Authentication::SASL(mechanisms)) => {
                if !mechanisms
                    .iter()
                    .any(|m| m == crate::postgres::scram::MECHANISM)
                {
                    return Err(LoginError::Upstream(format!(
                        "server offers no SCRAM-SHA-256 ({mechanisms:?})"
                    )));
                }
                let client = ScramClient::new(&credentials.password)
                    .map_err(|e| LoginError::Upstream(e.to_string()))?;
                let first = client.client_first();
                scram = Scram::Started(client);
                PasswordMessageFamily::SASLInitialResponse(SASLInitialResponse::new(
                    crate::postgres::scram::MECHANISM.to_owned(),
                    Some(first.into()),
                ))
            }
            PgWireBackendMessage::Authentication(Authentication::SASLContinue(data)) => {
                let Scram::Started(client) = std::mem::replace(&mut scram, Scram::NotStarted)
                else {
                    return Err(LoginError::Upstream("SASLContinue out of order".into()));
                };
                let (last, verifier) = client
                    .handle_server_first(&data)
                    .map_err(|e| LoginError::Upstream(e.to_string()))?;
                scram = Scram::Continued(verifier);
                PasswordMessageFamily::SASLResponse(SASLResponse::new(last.into()))
            }
            PgWireBackendMessage::Authentication(Authentication::SASLFinal(data)) => {
                let Scram::Continued(verifier) = &scram else {
                    return Err(LoginError::Upstream("SASLFinal out of order".into()));
                };
                verifier
                    .verify_server_final(&data)
                    .map_err(|e| LoginError::Upstream(e.to_string()))?;
                scram = Scram::Verified;
                continue;
            }
            PgWireBackendMessage::Authentication(
                Authentication::MD5Password(_) | Authentication::CleartextPassword,
            ) if !password_methods_allowed => {
                return Err(LoginError::Upstream(
                    "the server asked for an md5 or cleartext password; the gateway sends its \
                     password that way only to a server verified with upstream_tls = \
                     \"verify-full\" (use SCRAM-SHA-256 on the server)"
                        .into(),
                ))
            }
            PgWireBackendMessage::Authentication(Authentication::MD5Password(salt)) => {
                PasswordMessageFamily::Password(Password::new(md5_password(credentials, &salt)))
            }
            PgWireBackendMessage::Authentication(Authentication::CleartextPassword) => {
                PasswordMessageFamily::Password(Password::new(credentials.password.clone()))
            }
            PgWireBackendMessage::ErrorResponse(error) => {
                let text: Vec<String> = error.fields.iter().map(|(_, v)| v.clone()).collect();
                return Err(LoginError::Upstream(text.join(" ")));
            }
            other => {
                return Err(LoginError::Upstream(format!(
                    "unexpected message during login: {other:?}"
                )))
            }
        };
        let mut out = BytesMut::new();
        encode_frontend(
            PgWireFrontendMessage::PasswordMessageFamily(reply),
            &mut out,
        );
        let (stream, rest) = reader.into_parts();
        let sent = async {
            stream.write_all(&out).await?;
            stream.flush().await
        };
        sent.await
            .map_err(|e| LoginError::Upstream(e.to_string()))?;
        reader = FrameReader::with_buffered(stream, rest);
    }
}

/// Where the SCRAM exchange with the server stands.
enum Scram {
    NotStarted,
    Started(ScramClient),
    Continued(ScramVerifier),
    Verified,
}

/// PostgreSQL's md5 scheme: "md5" + md5(md5(password + user) + salt), in hex.
fn md5_password(credentials: &Credentials, salt: &[u8]) -> String {
    use md5::{Digest, Md5};
    let inner = crate::audit::hex(&Md5::digest(format!(
        "{}{}",
        credentials.password, credentials.user
    )));
    let mut outer = Md5::new();
    outer.update(inner.as_bytes());
    outer.update(salt);
    format!("md5{}", crate::audit::hex(&outer.finalize()))
}

fn encode(message: PgWireBackendMessage, out: &mut BytesMut) {
    message.encode(out).expect("authentication requests encode");
}

fn encode_frontend(message: PgWireFrontendMessage, out: &mut BytesMut) {
    message.encode(out).expect("login messages encode");
}

/// What a token target needs: the validator and the credentials the gateway logs in with.
pub struct TokenLogin {
    pub validator: TokenValidator,
    pub credentials: Credentials,
    /// The server's certificate is verified (`upstream_tls = "verify-full"`): only then may
    /// the password itself (md5, cleartext) be sent, since anyone in the middle could ask.
    pub password_methods_allowed: bool,
}

/// Admits the agent if its token is valid. On refusal the agent has been sent FATAL and the
/// close record says why; `None` then ends the session.
pub async fn admit(
    agent: &mut Box<dyn PgStream>,
    tls: bool,
    identity: &AgentIdentity,
    startup: &StartupInfo,
    login: &TokenLogin,
    deadline: Instant,
    guard: &mut SessionGuard,
) -> Option<TokenIdentity> {
    // The session runs as the gateway's user: an agent may not switch it to another role.
    if let Some(setting) = ["role", "session_authorization"]
        .into_iter()
        .find(|name| startup.settings.contains_key(*name))
    {
        let error = ClientError::fatal(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("setting {setting} at startup is not allowed with token authentication"),
        );
        super::record_refused_login(guard, startup, "token", tls, &error.message);
        send_fatal(agent, &error).await;
        guard.outcome = Outcome::Refused("role switch at startup with token authentication");
        return None;
    }
    // A token is a bearer secret: it may cross the network only encrypted.
    if !tls && matches!(identity, AgentIdentity::Remote { .. }) {
        let error = ClientError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "token authentication needs TLS for remote agents (sslmode=require)",
        );
        send_fatal(agent, &error).await;
        guard.outcome = Outcome::Refused("token over plain text from a remote agent");
        return None;
    }
    let checked = tokio::time::timeout_at(
        deadline,
        authenticate_agent(agent, startup, &login.validator),
    )
    .await;
    match checked {
        Ok(Ok(token)) => {
            tracing::info!(
                event = "token.accepted",
                conn_id = guard.id,
                subject = %printable(&token.subject),
                groups = %printable(&token.groups.join(",")),
                issuer = %printable(&token.issuer),
                key_id = token.key_id.as_deref().map(printable),
                declared_user = %printable(&startup.user),
                db_user = %printable(&login.credentials.user),
                expires_at = token.expires_at,
                "access token accepted"
            );
            Some(token)
        }
        Ok(Err((LoginError::Client(error), reason))) => {
            tracing::warn!(
                event = "token.rejected",
                conn_id = guard.id,
                reason = reason.map(|r| r.to_string()),
                "access token rejected"
            );
            super::record_refused_login(guard, startup, "token", tls, &error.message);
            send_fatal(agent, &error).await;
            guard.outcome = Outcome::Refused("access token rejected");
            guard.error = Some(error.message);
            None
        }
        Ok(Err((error, _))) => {
            guard.outcome = Outcome::Failed;
            guard.error = Some(error.to_string());
            None
        }
        Err(_) => {
            guard.outcome = Outcome::Refused("startup not completed in time");
            None
        }
    }
}

/// Logs in upstream as the gateway's user, then tells the agent it is in. Returns what the
/// server sent after its AuthenticationOk.
pub async fn log_in(
    agent: &mut Box<dyn PgStream>,
    upstream: &mut Box<dyn PgStream>,
    agent_startup: &Startup,
    session: &SessionInfo,
    login: &TokenLogin,
    deadline: Instant,
    guard: &mut SessionGuard,
) -> Option<BytesMut> {
    let target = &session.target;
    let mut context = DecodeContext::new(session.startup.protocol);
    context.awaiting_frontend_ssl = false;
    context.awaiting_frontend_startup = false;
    let exchange = async {
        upstream
            .write_all(&upstream_startup(agent_startup, &login.credentials))
            .await
            .map_err(|e| LoginError::Upstream(e.to_string()))?;
        upstream
            .flush()
            .await
            .map_err(|e| LoginError::Upstream(e.to_string()))?;
        login_upstream(
            upstream,
            &context,
            &login.credentials,
            login.password_methods_allowed,
        )
        .await
    };
    let result = tokio::time::timeout_at(deadline, exchange)
        .await
        .unwrap_or_else(|_| Err(LoginError::Upstream("timed out".into())));
    match result {
        Ok(rest) => {
            let mut ok = BytesMut::new();
            encode(
                PgWireBackendMessage::Authentication(Authentication::Ok),
                &mut ok,
            );
            let sent = async {
                agent.write_all(&ok).await?;
                agent.flush().await
            };
            if let Err(error) = sent.await {
                guard.outcome = Outcome::Failed;
                guard.error = Some(format!("agent: {error}"));
                return None;
            }
            Some(rest)
        }
        Err(error) => {
            let client_error = ClientError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!("Tollgate could not log in to the database server of target \"{target}\""),
            );
            send_fatal(agent, &client_error).await;
            guard.outcome = Outcome::UpstreamUnreachable;
            guard.error = Some(error.to_string());
            None
        }
    }
}
