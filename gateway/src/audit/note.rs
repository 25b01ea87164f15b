//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys, and
//! C2SP tlog checkpoints (<https://c2sp.org/tlog-checkpoint>).
//!
//! The audit log publishes its Merkle root as a signed checkpoint in the same
//! format as Go's `golang.org/x/mod/sumdb/note`, so existing witnesses and
//! monitors can verify it. Notes and keys are untrusted input: parsing is
//! strict and never panics.

use base64::{engine::general_purpose::STANDARD, Engine};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// Signature type byte for Ed25519 in key IDs and encoded keys.
const ALG_ED25519: u8 = 0x01;
/// Bound on signature lines, so a hostile note cannot make us verify forever
/// (the spec requires accepting at least 16; Go's reference accepts 100).
const MAX_SIGNATURES: usize = 100;
/// Every signature line starts with an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key, note or checkpoint was rejected.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("invalid key name: must be non-empty, without spaces, '+' or control characters")]
    InvalidKeyName,
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("unsupported key algorithm {0:#04x}")]
    UnsupportedAlgorithm(u8),
    #[error("key ID does not match the key")]
    KeyIdMismatch,
    #[error("could not generate a key: system random source failed")]
    Random,
    #[error("invalid note text: {0}")]
    InvalidText(&'static str),
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("note has no signature by key {name}+{key_id:08x}")]
    NoSignature { name: String, key_id: u32 },
    #[error("invalid signature by key {name}+{key_id:08x}")]
    BadSignature { name: String, key_id: u32 },
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// A named Ed25519 signing key. The seed is kept so the key can be written
/// back out in the `PRIVATE+KEY+...` form; `Debug` does not print it.
pub struct SigningKey {
    /// Name, key ID and public key derived from the seed.
    verifier: VerifierKey,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

/// A named Ed25519 public key, as configured on the verifying side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    public: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key with a seed from the operating system's CSPRNG.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        let rng = SystemRandom::new();
        rng.fill(&mut seed).map_err(|_| NoteError::Random)?;
        Self::from_seed(name, seed)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`; the key
    /// ID must match the public key derived from the seed, which catches keys
    /// that were corrupted or paired with the wrong name.
    pub fn from_text(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(NoteError::MalformedKey("missing PRIVATE+KEY+ prefix"))?;
        let (name, key_id, seed) = split_key(rest)?;
        let key = Self::from_seed(name, seed)?;
        if key.verifier.key_id != key_id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(key)
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let invalid = NoteError::MalformedKey("invalid Ed25519 seed");
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| invalid.clone())?;
        let public: [u8; 32] = pair.public_key().as_ref().try_into().map_err(|_| invalid)?;
        let key_id = key_id(name, &public);
        let name = name.to_owned();
        let verifier = VerifierKey {
            name,
            key_id,
            public,
        };
        Ok(Self {
            verifier,
            seed,
            pair,
        })
    }

    /// The secret key text; handle it like a password.
    pub fn to_text(&self) -> String {
        format!("{PRIVATE_PREFIX}{}", key_text(&self.verifier, &self.seed))
    }

    /// The matching public key, for distribution to verifiers.
    pub fn verifier(&self) -> VerifierKey {
        self.verifier.clone()
    }

    pub fn name(&self) -> &str {
        &self.verifier.name
    }
}

impl VerifierKey {
    /// Parses `<name>+<hex key id>+<base64(0x01 || public key)>`, checking the
    /// key ID so a key pasted under the wrong name is refused up front.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (name, key_id, public) = split_key(text)?;
        check_name(name)?;
        if key_id != self::key_id(name, &public) {
            return Err(NoteError::KeyIdMismatch);
        }
        let name = name.to_owned();
        Ok(Self {
            name,
            key_id,
            public,
        })
    }

    pub fn to_text(&self) -> String {
        key_text(self, &self.public)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

/// Key ID per the spec: SHA-256(name || '\n' || 0x01 || public key)[:4].
fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Names end up in signature lines, so they must not contain the separators
/// (space, '+') or anything a note may not contain.
fn check_name(name: &str) -> Result<(), NoteError> {
    let bad = |c: char| c.is_whitespace() || c == '+' || c < ' ';
    if name.is_empty() || name.chars().any(bad) {
        return Err(NoteError::InvalidKeyName);
    }
    Ok(())
}

/// `<name>+<hex key id>+<base64(0x01 || key)>`, the shared key text layout.
fn key_text(v: &VerifierKey, key: &[u8; 32]) -> String {
    let mut bytes = [ALG_ED25519; 33];
    bytes[1..].copy_from_slice(key);
    format!("{}+{:08x}+{}", v.name, v.key_id, STANDARD.encode(bytes))
}

/// Whether `s` has an ASCII control character other than newline, which the
/// signed-note format forbids anywhere in a note.
fn has_control(s: &str) -> bool {
    s.chars().any(|c| c < ' ' && c != '\n')
}

/// Splits `<name>+<8 hex digits>+<base64(0x01 || 32 bytes)>`.
fn split_key(text: &str) -> Result<(&str, u32, [u8; 32]), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedKey("expected <name>+<key id>+<key>"));
    };
    // `hex` cannot hold the '+' that from_str_radix would accept as a sign.
    let key_id = (u32::from_str_radix(hex, 16).ok())
        .filter(|_| hex.len() == 8)
        .ok_or(NoteError::MalformedKey("key ID must be 8 hex digits"))?;
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| NoteError::MalformedKey("key is not valid base64"))?;
    match bytes.split_first() {
        Some((&ALG_ED25519, key)) => {
            let key = key
                .try_into()
                .map_err(|_| NoteError::MalformedKey("Ed25519 key must be 32 bytes"))?;
            Ok((name, key_id, key))
        }
        Some((&alg, _)) => Err(NoteError::UnsupportedAlgorithm(alg)),
        None => Err(NoteError::MalformedKey("empty key")),
    }
}

/// Text that `sign` accepts and `open` can give back unchanged: non-empty,
/// newline-terminated, no control characters except newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::InvalidText("must end with a newline"));
    }
    if has_control(text) {
        return Err(NoteError::InvalidText("contains a control character"));
    }
    Ok(())
}

/// Signs `text` and returns the note: text, blank line, one signature line.
pub fn sign(text: &str, key: &SigningKey) -> Result<String, NoteError> {
    check_text(text)?;
    let v = &key.verifier;
    let mut blob = v.key_id.to_be_bytes().to_vec();
    blob.extend_from_slice(key.pair.sign(text.as_bytes()).as_ref());
    let b64 = STANDARD.encode(blob);
    Ok(format!("{text}\n{SIG_PREFIX}{} {b64}\n", v.name))
}

/// Checks `note` and returns its text if `key` signed it. Every signature line
/// must be well-formed; lines from other keys are skipped (they may belong to
/// witnesses or a rotated key), but any line from `key` must verify.
pub fn open(note: &str, key: &VerifierKey) -> Result<String, NoteError> {
    if has_control(note) {
        return Err(NoteError::MalformedNote("contains a control character"));
    }
    // The text may contain blank lines; the last one separates the signatures.
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::MalformedNote("no blank line before signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    let lines = sigs
        .strip_suffix('\n')
        .ok_or(NoteError::MalformedNote("must end with a signature line"))?;
    let (name, key_id) = (key.name.clone(), key.key_id);
    let public = UnparsedPublicKey::new(&ED25519, &key.public);
    let mut verified = false;
    for (i, line) in lines.split('\n').enumerate() {
        if i >= MAX_SIGNATURES {
            return Err(NoteError::MalformedNote("too many signatures"));
        }
        let (line_name, line_id, sig) = parse_signature_line(line)?;
        if line_name != name || line_id != key_id {
            continue;
        }
        if public.verify(text.as_bytes(), &sig).is_err() {
            return Err(NoteError::BadSignature { name, key_id });
        }
        verified = true;
    }
    if !verified {
        return Err(NoteError::NoSignature { name, key_id });
    }
    Ok(text.to_owned())
}

/// Parses `— <name> <base64(key id || signature)>` (without the newline).
fn parse_signature_line(line: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let malformed = || NoteError::MalformedNote("bad signature line");
    let (name, b64) = line
        .strip_prefix(SIG_PREFIX)
        .and_then(|rest| rest.split_once(' '))
        .ok_or_else(malformed)?;
    check_name(name).map_err(|_| malformed())?;
    let blob = STANDARD.decode(b64).map_err(|_| malformed())?;
    match blob.split_first_chunk::<4>() {
        Some((id, sig)) if !sig.is_empty() => Ok((name, u32::from_be_bytes(*id), sig.to_vec())),
        _ => Err(malformed()),
    }
}

/// A tlog checkpoint: the note text a log signs to commit to its tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text to sign. Fields are written as-is: `parse(&c.body())`
    /// round-trips exactly when the fields satisfy the rules `parse` enforces.
    pub fn body(&self) -> String {
        let root = STANDARD.encode(self.root);
        let mut body = format!("{}\n{}\n{root}\n", self.origin, self.size);
        for ext in &self.extensions {
            body.push_str(ext);
            body.push('\n');
        }
        body
    }

    /// Strictly parses a checkpoint body, so that one tree head has exactly
    /// one encoding and cannot be smuggled past a byte-wise comparison.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = NoteError::MalformedCheckpoint;
        let body = text
            .strip_suffix('\n')
            .ok_or(bad("must end with a newline"))?;
        if has_control(body) {
            return Err(bad("contains a control character"));
        }
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("needs origin, size and root hash lines"));
        };
        if origin.is_empty() {
            return Err(bad("empty origin"));
        }
        // Printing back the parsed number rejects "+1", "01" and the like.
        let size = (size.parse::<u64>().ok())
            .filter(|n| n.to_string() == size)
            .ok_or(bad("size must be a decimal u64 without leading zeros"))?;
        let root = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| Hash::try_from(r).ok())
            .ok_or(bad("root must be 32 bytes of base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        let origin = origin.to_owned();
        Ok(Self {
            origin,
            size,
            root,
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from golang.org/x/mod/sumdb/note note_test.go.
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    // A real sum.golang.org checkpoint, from transparency-dev/formats log/note_test.go.
    const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
    const SUMDB_NOTE: &str = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n\
        — sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";

    fn peter() -> (SigningKey, VerifierKey) {
        let sk = SigningKey::from_text(PETER_SKEY).unwrap();
        let vk = sk.verifier();
        (sk, vk)
    }

    fn is_malformed<T>(r: Result<T, NoteError>) -> bool {
        matches!(r, Err(NoteError::MalformedNote(_)))
    }

    fn peter_error(no_sig: bool) -> NoteError {
        let (name, key_id) = ("PeterNeumann".to_owned(), 0xc74f20a3);
        match no_sig {
            true => NoteError::NoSignature { name, key_id },
            false => NoteError::BadSignature { name, key_id },
        }
    }

    #[test]
    fn go_reference_keys() {
        let (sk, vk) = peter();
        assert_eq!((sk.name(), vk.name()), ("PeterNeumann", "PeterNeumann"));
        assert_eq!(
            (sk.to_text().as_str(), vk.key_id()),
            (PETER_SKEY, 0xc74f20a3)
        );
        assert_eq!(vk.to_text(), PETER_VKEY);
        assert_eq!(VerifierKey::parse(PETER_VKEY), Ok(vk));
        assert_eq!(VerifierKey::parse(ENOCH_VKEY).unwrap().key_id(), 0xaf0cfe78);
        // Go's manglings: every proper substring and every single-byte bump.
        let parsers: [fn(&str) -> bool; 2] = [
            |k| VerifierKey::parse(k).is_ok(),
            |k| SigningKey::from_text(k).is_ok(),
        ];
        for (key, parses) in [PETER_VKEY, PETER_SKEY].into_iter().zip(parsers) {
            for i in 0..=key.len() {
                for j in i + 1..=key.len() {
                    assert!((i == 0 && j == key.len()) || !parses(&key[i..j]));
                }
            }
            for i in 0..key.len() {
                let mut b = key.as_bytes().to_vec();
                b[i] += 1;
                assert!(!parses(std::str::from_utf8(&b).unwrap()));
            }
        }
        let wrong_len =
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==";
        assert!(VerifierKey::parse(wrong_len).is_err());
        let wrong_alg = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        assert_eq!(
            VerifierKey::parse(wrong_alg).err(),
            Some(NoteError::UnsupportedAlgorithm(0x65))
        );
    }

    #[test]
    fn go_reference_signatures() {
        let (sk, peter) = peter();
        assert_eq!(sign(TEXT, &sk).unwrap(), format!("{TEXT}\n{PETER_SIG}"));
        let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
        assert_eq!(open(&note, &peter).as_deref(), Ok(TEXT));
        assert_eq!(open(&note, &enoch).as_deref(), Ok(TEXT));
        let bad_sig = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert_eq!(open(&bad_sig, &peter), Err(peter_error(false)));
        let only_enoch = format!("{TEXT}\n{ENOCH_SIG}");
        assert_eq!(open(&only_enoch, &peter), Err(peter_error(true)));
        let blank_between = format!("{TEXT}\n{PETER_SIG}\n{ENOCH_SIG}");
        assert_eq!(open(&blank_between, &peter), Err(peter_error(true)));
        assert!(open(&format!("{TEXT}\n{}", PETER_SIG.repeat(100)), &peter).is_ok());
        let malformed = [
            TEXT.to_string(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!("{TEXT}\n{}", PETER_SIG.replace("PeterNeumann", "Bad Name")),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n{}", PETER_SIG.repeat(101)),
            format!("{TEXT}\n{PETER_SIG}\n"),
            format!("{TEXT}\n— PeterNeumann\n"),
            format!("{TEXT}\n— PeterNeumann x08g\n"),
        ];
        for note in &malformed {
            assert!(is_malformed(open(note, &peter)), "{note:?}");
        }
    }

    #[test]
    fn sumdb_checkpoint() {
        let key = VerifierKey::parse(SUMDB_VKEY).unwrap();
        let text = open(SUMDB_NOTE, &key).unwrap();
        let cp = Checkpoint::parse(&text).unwrap();
        assert_eq!(
            (cp.origin.as_str(), cp.size),
            ("go.sum database tree", 6476701)
        );
        assert!(cp.extensions.is_empty());
        assert_eq!(cp.body(), text);
    }

    #[test]
    fn round_trip_and_tampering() {
        let sk = SigningKey::generate("example.com/audit").unwrap();
        let vk = sk.verifier();
        assert_eq!(SigningKey::from_text(&sk.to_text()).unwrap().verifier(), vk);
        assert_eq!(VerifierKey::parse(&vk.to_text()).as_ref(), Ok(&vk));
        assert!(!format!("{sk:?}").contains(&sk.to_text()[40..]));
        let text = "line one\n\nline three after a blank line\n";
        let note = sign(text, &sk).unwrap();
        assert_eq!(open(&note, &vk).as_deref(), Ok(text));

        let (name, key_id) = (vk.name().to_owned(), vk.key_id());
        let bad = Err(NoteError::BadSignature { name, key_id });
        assert_eq!(open(&note.replacen("one", "0ne", 1), &vk), bad);
        let mut flipped = note.clone().into_bytes();
        let last = flipped.len() - 5; // inside the base64 signature
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(open(std::str::from_utf8(&flipped).unwrap(), &vk), bad);
        assert_eq!(open(&note.replacen("\n\n—", "\n\n\n—", 1), &vk), bad);

        let other = SigningKey::generate("example.com/audit").unwrap();
        let missing = open(&note, &other.verifier());
        assert!(matches!(missing, Err(NoteError::NoSignature { .. })));
        let witness = SigningKey::generate("example.com/witness").unwrap();
        let cosigned = format!("{note}{}", &sign(text, &witness).unwrap()[text.len() + 1..]);
        assert_eq!(open(&cosigned, &vk).as_deref(), Ok(text));
        assert_eq!(open(&cosigned, &witness.verifier()).as_deref(), Ok(text));
        for cut in (0..note.len()).filter(|&i| note.is_char_boundary(i)) {
            assert!(open(&note[..cut], &vk).is_err(), "{cut}");
        }
    }

    #[test]
    fn invalid_names_and_texts() {
        for name in ["", "a b", "a+b", "a\tb", "a\u{a0}b", "a\u{3000}b", "a\x01b"] {
            assert_eq!(
                SigningKey::generate(name).err(),
                Some(NoteError::InvalidKeyName)
            );
        }
        let (sk, _) = peter();
        for text in ["", "abc", "a\x01\n", "tab\there\n", "cr\r\n"] {
            assert!(matches!(sign(text, &sk), Err(NoteError::InvalidText(_))));
        }
    }

    #[test]
    fn checkpoint_parse_and_body() {
        let (root, origin) = ([7u8; 32], "example.com/log".to_owned());
        let r64 = STANDARD.encode(root);
        let cp = Checkpoint {
            origin,
            size: 0,
            root,
            extensions: vec![],
        };
        assert_eq!(cp.body(), format!("example.com/log\n0\n{r64}\n"));
        assert_eq!(Checkpoint::parse(&cp.body()), Ok(cp.clone()));
        let extensions = vec!["a b".to_owned(), "c".to_owned()];
        let ext = Checkpoint {
            size: u64::MAX,
            extensions,
            ..cp
        };
        assert_eq!(Checkpoint::parse(&ext.body()).as_ref(), Ok(&ext));
        let sk = SigningKey::generate("example.com/log").unwrap();
        let opened = open(&sign(&ext.body(), &sk).unwrap(), &sk.verifier()).unwrap();
        assert_eq!(Checkpoint::parse(&opened), Ok(ext));

        let (short, unpadded) = (STANDARD.encode([7u8; 31]), r64.trim_end_matches('='));
        let bad = [
            String::new(),
            "\n".into(),
            format!("o\n1\n{r64}"),
            "o\n1\n".into(),
            format!("\n1\n{r64}\n"),
            format!("o\n01\n{r64}\n"),
            format!("o\n-1\n{r64}\n"),
            format!("o\n+1\n{r64}\n"),
            format!("o\n1 \n{r64}\n"),
            format!("o\n\n{r64}\n"),
            format!("o\n18446744073709551616\n{r64}\n"),
            format!("o\nbananas\n{r64}\n"),
            format!("o\n1\n{short}\n"),
            "o\n1\nThisIsn'tBase64\n".into(),
            format!("o\n1\n{unpadded}\n"),
            format!("o\n1\n{r64}\n\n"),
            format!("o\n1\n{r64}\next\n\n"),
            format!("o\x01\n1\n{r64}\n"),
        ];
        for text in &bad {
            let res = Checkpoint::parse(text);
            assert!(
                matches!(res, Err(NoteError::MalformedCheckpoint(_))),
                "{text:?}"
            );
        }
    }
}
