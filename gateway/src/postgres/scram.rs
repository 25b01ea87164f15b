//! SCRAM-SHA-256 client (RFC 5802, RFC 7677) as PostgreSQL speaks it, so the gateway can log in
//! upstream with credentials it holds. Pure message handling, no I/O: no channel binding (gs2
//! header `n,,`) and an empty `n=` because the server takes the user from the startup packet.
//!
//! Password normalisation: the password is used as given, without SASLprep. PostgreSQL's own
//! SASLprep returns pure-ASCII input unchanged, so ASCII passwords (and non-ASCII ones already in
//! NFKC form with nothing to map) derive the same keys; only other non-ASCII passwords would differ.

use std::{fmt, ops::RangeInclusive};

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{digest::KeyInit, Hmac, Mac};
use sha2::{Digest, Sha256};

/// The SASL mechanism name sent in `SASLInitialResponse`.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// `c=` of client-final: base64 of the gs2 header `n,,` (no channel binding).
const CHANNEL_BINDING: &str = "biws";
/// Same nonce size as libpq (18 random bytes, 24 base64 characters).
const NONCE_BYTES: usize = 18;
/// 0 is meaningless and a huge count would let a hostile server pin a CPU core in PBKDF2.
const ITERATIONS: RangeInclusive<u32> = 1..=10_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    #[error("could not generate a SCRAM nonce: {0}")]
    Random(getrandom::Error),
    #[error("SCRAM {message} message is not UTF-8")]
    NotUtf8 { message: &'static str },
    /// Which message, and which attribute of it.
    #[error("SCRAM {0} message: missing or malformed `{1}=` attribute")]
    Malformed(&'static str, char),
    #[error("SCRAM server requires a mandatory extension (`m=`) this client does not support")]
    MandatoryExtension,
    #[error("SCRAM server nonce does not extend the client nonce")]
    NonceMismatch,
    #[error("SCRAM iteration count is not in {}..={}", ITERATIONS.start(), ITERATIONS.end())]
    Iterations,
    #[error("SCRAM salt is empty or not valid base64")]
    BadSalt,
    #[error("SCRAM server reported an error: {0}")]
    Server(String),
    #[error("SCRAM server signature does not match (the server does not know the password)")]
    SignatureMismatch,
}

/// The first round of the exchange: holds the password until the server's salt arrives.
pub struct ScramClient {
    password: String,
    nonce: String,
    client_first_bare: String,
}

/// The parsed `server-first-message`.
#[derive(Debug, Clone)]
pub struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// What is left after client-final: the server signature the server must prove it knows.
pub struct ScramVerifier {
    server_signature: [u8; 32],
}

// Secrets stay out of Debug output.
impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient").finish_non_exhaustive()
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier").finish_non_exhaustive()
    }
}

impl ScramClient {
    pub fn new(password: &str) -> Result<Self, ScramError> {
        let mut raw = [0u8; NONCE_BYTES];
        getrandom::fill(&mut raw).map_err(ScramError::Random)?;
        Ok(Self::with_nonce(password, &STANDARD.encode(raw)))
    }

    /// A client with a fixed nonce (tests, fuzzing). The nonce must be printable ASCII without `,`.
    pub fn with_nonce(password: &str, nonce: &str) -> Self {
        Self::with_user("", password, nonce)
    }

    fn with_user(user: &str, password: &str, nonce: &str) -> Self {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Self {
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
        }
    }

    /// The `client-first-message` for `SASLInitialResponse`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Checks the server's challenge and returns the `client-final-message` with the proof.
    pub fn handle_server_first(
        self,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, ScramVerifier), ScramError> {
        let parsed = parse_server_first(server_first)?;
        // The server must add its own randomness, or a replayed exchange would verify.
        if parsed.nonce.len() <= self.nonce.len() || !parsed.nonce.starts_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(
            self.password.as_bytes(),
            &parsed.salt,
            parsed.iterations,
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c={CHANNEL_BINDING},r={}", parsed.nonce);
        // parse_server_first proved the message is UTF-8.
        let server_first = String::from_utf8_lossy(server_first);
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature) {
            *p ^= s;
        }
        let server_key = hmac_sha256(&salted, b"Server Key");
        let verifier = ScramVerifier {
            server_signature: hmac_sha256(&server_key, auth_message.as_bytes()),
        };
        let client_final = format!("{without_proof},p={}", STANDARD.encode(proof));
        Ok((client_final.into_bytes(), verifier))
    }
}

impl ScramVerifier {
    /// Checks `server-final-message` (from `AuthenticationSASLFinal`).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let signature = parse_server_final(server_final)?;
        // Constant time, so a forged signature cannot be found byte by byte.
        let diff = signature
            .iter()
            .zip(self.server_signature)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if signature.len() != self.server_signature.len() || diff != 0 {
            return Err(ScramError::SignatureMismatch);
        }
        Ok(())
    }
}

/// Parses `server-first-message`: `r=`, `s=`, `i=` in that order, then ignored extensions.
pub fn parse_server_first(message: &[u8]) -> Result<ServerFirst<'_>, ScramError> {
    const MESSAGE: &str = "server-first";
    let text =
        std::str::from_utf8(message).map_err(|_| ScramError::NotUtf8 { message: MESSAGE })?;
    let mut parts = text.split(',');
    let first = parts.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    if let Some(error) = first.strip_prefix("e=") {
        return Err(ScramError::Server(error.to_owned()));
    }
    let nonce = attribute(Some(first), 'r', MESSAGE)?;
    // Printable ASCII except `,` (RFC 5802 `printable`), since it is echoed into client-final.
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ScramError::Malformed(MESSAGE, 'r'));
    }
    let salt = STANDARD
        .decode(attribute(parts.next(), 's', MESSAGE)?)
        .map_err(|_| ScramError::BadSalt)?;
    if salt.is_empty() {
        return Err(ScramError::BadSalt);
    }
    let count = attribute(parts.next(), 'i', MESSAGE)?;
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScramError::Malformed(MESSAGE, 'i'));
    }
    // Digits only, so a parse failure can only be overflow: out of range.
    let iterations = count
        .parse::<u32>()
        .ok()
        .filter(|i| ITERATIONS.contains(i))
        .ok_or(ScramError::Iterations)?;
    if parts.any(|extension| extension.starts_with("m=")) {
        return Err(ScramError::MandatoryExtension);
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// Parses `server-final-message` into the server signature, or the server's `e=` error.
pub fn parse_server_final(message: &[u8]) -> Result<Vec<u8>, ScramError> {
    const MESSAGE: &str = "server-final";
    let text =
        std::str::from_utf8(message).map_err(|_| ScramError::NotUtf8 { message: MESSAGE })?;
    // Anything after the first attribute is an extension and ignored.
    let first = text.split(',').next().unwrap_or_default();
    if let Some(error) = first.strip_prefix("e=") {
        return Err(ScramError::Server(error.to_owned()));
    }
    STANDARD
        .decode(attribute(Some(first), 'v', MESSAGE)?)
        .map_err(|_| ScramError::Malformed(MESSAGE, 'v'))
}

/// The value of `part` if it is the attribute `name=`.
fn attribute<'a>(
    part: Option<&'a str>,
    name: char,
    message: &'static str,
) -> Result<&'a str, ScramError> {
    part.and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix('='))
        .ok_or(ScramError::Malformed(message, name))
}

fn hmac_sha256(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    // HMAC zero-pads keys shorter than the block, so padding here gives the same MAC and makes
    // the constructor infallible (new_from_slice returns a Result for any length).
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3 (user "user", password "pencil").
    const SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_client(password: &str) -> ScramClient {
        ScramClient::with_user("user", password, "rOprNGfwEbeRWgbNEkqO")
    }

    fn error<T>(result: Result<T, ScramError>) -> String {
        result.err().expect("message was accepted").to_string()
    }

    #[test]
    fn rfc7677_vector() {
        let client = rfc_client("pencil");
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let (client_final, verifier) = client.handle_server_first(SERVER_FIRST).unwrap();
        let expected = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(String::from_utf8(client_final).unwrap(), expected);
        verifier.verify_server_final(SERVER_FINAL).unwrap();
    }

    #[test]
    fn empty_user_exchange_as_postgresql_runs_it() {
        // Expected values computed independently (Python hashlib/hmac) for `n=` and i=4.
        let client = ScramClient::with_nonce("pencil", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(client.client_first(), b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL");
        let server_first = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4";
        let (client_final, verifier) = client.handle_server_first(server_first).unwrap();
        let expected = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,\
                        p=LBPNdWFejrNgow59dfD7K/sXkTzrhf8qO1lC+ebFbnU=";
        assert_eq!(String::from_utf8(client_final).unwrap(), expected);
        verifier
            .verify_server_final(b"v=KqkNo5L72NLkvd+jkb4UYiVQ7fMyuKHYwi7uw5m86fw=")
            .unwrap();
    }

    #[test]
    fn production_client_first_has_empty_user_and_fresh_nonce() {
        let a = ScramClient::new("pw").unwrap().client_first();
        let b = ScramClient::new("pw").unwrap().client_first();
        assert!(a.starts_with(b"n,,n=,r=") && a.len() == 8 + 24, "{a:?}");
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_server_signature_is_rejected() {
        let (_, verifier) = rfc_client("pencil")
            .handle_server_first(SERVER_FIRST)
            .unwrap();
        for forged in [
            &b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="[..],
            b"v=6rriTRBi",
        ] {
            assert!(error(verifier.verify_server_final(forged)).contains("signature"));
        }
        let (_, verifier) = rfc_client("pencil2")
            .handle_server_first(SERVER_FIRST)
            .unwrap();
        assert!(error(verifier.verify_server_final(SERVER_FINAL)).contains("signature"));
    }

    #[test]
    fn bad_server_first_is_rejected() {
        // (message, text the error must contain); `r=rOprNGfwEbeRWgbNEkqO%` extends our nonce.
        let cases: &[(&[u8], &str)] = &[
            (b"r=XOprNGfwEbeRWgbNEkqO%,s=AA==,i=4096", "nonce"),
            (b"r=rOprNGfwEbeRWgbNEkqO,s=AA==,i=4096", "nonce"),
            (b"r=rOprNGfwEbeRWgbNEk,s=AA==,i=4096", "nonce"),
            (b"e=other-error", "other-error"),
            (b"", "`r=`"),
            (b"r=", "`r=`"),
            (b"r=rOprNGfwEbeRWgbNEkqO%\x7f,s=AA==,i=1", "`r=`"),
            (b"\xff\xfe", "not UTF-8"),
            (b"s=AA==,r=rOprNGfwEbeRWgbNEkqO%,i=4096", "`r=`"),
            (b"m=ext,r=rOprNGfwEbeRWgbNEkqO%,s=AA==,i=4096", "mandatory"),
            (b"r=rOprNGfwEbeRWgbNEkqO%,s=AA==,i=4096,m=ext", "mandatory"),
            (b"r=rOprNGfwEbeRWgbNEkqO%,i=4096", "`s=`"),
            (b"r=rOprNGfwEbeRWgbNEkqO%,s=AA==", "`i=`"),
            (b"r=rOprNGfwEbeRWgbNEkqO%,s=AA==,", "`i=`"),
            (b"r=rOprNGfwEbeRWgbNEkqO%,s=AA==,i=abc", "`i=`"),
            (b"r=rOprNGfwEbeRWgbNEkqO%,s=AA==,i=+1", "`i=`"),
            (b"r=rOprNGfwEbeRWgbNEkqO%,s=AA==,i=0", "iteration count"),
            (
                b"r=rOprNGfwEbeRWgbNEkqO%,s=AA==,i=10000001",
                "iteration count",
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqO%,s=AA==,i=99999999999999999999",
                "iteration",
            ),
            (b"r=rOprNGfwEbeRWgbNEkqO%,s=not*base64,i=4096", "salt"),
            (b"r=rOprNGfwEbeRWgbNEkqO%,s=,i=4096", "salt"),
            (&SERVER_FIRST[..62], "salt"),
            (&SERVER_FIRST[..45], "`s=`"),
        ];
        for (message, expected) in cases {
            let error = error(rfc_client("pencil").handle_server_first(message));
            let message = String::from_utf8_lossy(message);
            assert!(error.contains(expected), "{message:?}: {error}");
        }
    }

    #[test]
    fn bad_server_final_is_rejected() {
        let (_, verifier) = rfc_client("pencil")
            .handle_server_first(SERVER_FIRST)
            .unwrap();
        let cases: &[(&[u8], &str)] = &[
            (
                b"e=invalid-proof",
                "server reported an error: invalid-proof",
            ),
            (b"", "`v=`"),
            (b"x=abc", "`v=`"),
            (b"v=***", "`v=`"),
            (b"\xc3", "not UTF-8"),
            (&SERVER_FINAL[..9], "`v=`"),
        ];
        for (message, expected) in cases {
            let error = error(verifier.verify_server_final(message));
            assert!(error.contains(expected), "{message:?}: {error}");
        }
    }

    #[test]
    fn server_first_extensions_after_iterations_are_ignored() {
        let parsed = parse_server_first(b"r=abc,s=AA==,i=4096,x=whatever,y").unwrap();
        assert_eq!(
            (parsed.nonce, &parsed.salt[..], parsed.iterations),
            ("abc", &[0][..], 4096)
        );
    }
}
