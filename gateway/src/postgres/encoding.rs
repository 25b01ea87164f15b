//! Client encodings. The server converts everything a client sends from the session's
//! `client_encoding` and everything it returns into it; the gateway reads statements and
//! masks values the same way, and writes masked values back in that encoding.
//!
//! Every PostgreSQL client encoding is accepted. Most are decoded exactly (encoding_rs, or
//! by hand for LATIN1); EUC_TW and MULE_INTERNAL, whose multibyte characters consist of high
//! bytes only, are read byte by byte (SQL structure is exact, the characters are opaque);
//! JOHAB's two-byte characters are kept as opaque private-use characters.

use std::borrow::Cow;

use encoding_rs::Encoding;

/// The bytes are not valid in the session's encoding: the server refuses them (22021), in
/// these words (the offending character's bytes as PostgreSQL lists them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid byte sequence for encoding \"{encoding}\": {bytes}")]
pub struct InvalidSequence {
    pub encoding: &'static str,
    pub bytes: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Utf8,
    /// No conversion by the server: bytes above 0x7F are whatever the client meant.
    /// Read as UTF-8 where they are valid UTF-8, else byte by byte.
    SqlAscii,
    /// Every byte is the code point of the same number.
    Latin1,
    Table(&'static Encoding),
    /// Multibyte characters made of high bytes only: read byte by byte.
    HighBytes,
    /// Two-byte characters led by a high byte, the second byte possibly ASCII.
    Johab,
}

/// The first code point of the private-use plane that JOHAB's characters are kept in.
const JOHAB_BASE: u32 = 0xF_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEncoding {
    /// PostgreSQL's name, as the server reports it.
    name: &'static str,
    kind: Kind,
}

impl Default for ClientEncoding {
    fn default() -> Self {
        Self::UTF8
    }
}

impl ClientEncoding {
    pub const UTF8: Self = Self {
        name: "UTF8",
        kind: Kind::Utf8,
    };

    /// The encoding the server names in its `client_encoding` ParameterStatus (its canonical
    /// names; aliases the server accepts are reported by their canonical name).
    pub fn from_name(name: &str) -> Option<Self> {
        let upper = name.to_ascii_uppercase();
        let (name, kind): (&'static str, Kind) = match upper.as_str() {
            "UTF8" | "UNICODE" => ("UTF8", Kind::Utf8),
            "SQL_ASCII" => ("SQL_ASCII", Kind::SqlAscii),
            "LATIN1" => ("LATIN1", Kind::Latin1),
            "EUC_TW" => ("EUC_TW", Kind::HighBytes),
            "MULE_INTERNAL" => ("MULE_INTERNAL", Kind::HighBytes),
            "JOHAB" => ("JOHAB", Kind::Johab),
            other => {
                let (name, label) = table_encoding(other)?;
                (name, Kind::Table(Encoding::for_label(label.as_bytes())?))
            }
        };
        Some(Self { name, kind })
    }

    pub fn name(self) -> &'static str {
        self.name
    }

    pub fn is_utf8(self) -> bool {
        matches!(self.kind, Kind::Utf8 | Kind::SqlAscii)
    }

    /// Text as the server reads it.
    pub fn decode(self, bytes: &[u8]) -> Result<Cow<'_, str>, InvalidSequence> {
        if bytes.is_ascii() {
            return std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|e| self.invalid(bytes, e.valid_up_to()));
        }
        let invalid = || self.invalid(bytes, self.first_invalid(bytes));
        match self.kind {
            Kind::Utf8 => std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|e| self.invalid(bytes, e.valid_up_to())),
            Kind::SqlAscii => Ok(match std::str::from_utf8(bytes) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
            }),
            Kind::Latin1 | Kind::HighBytes => {
                Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()))
            }
            Kind::Table(encoding) => encoding
                .decode_without_bom_handling_and_without_replacement(bytes)
                .ok_or_else(invalid),
            Kind::Johab => decode_johab(bytes).map(Cow::Owned).ok_or_else(invalid),
        }
    }

    /// Where the first character that does not decode starts.
    fn first_invalid(self, bytes: &[u8]) -> usize {
        match self.kind {
            Kind::Table(encoding) => {
                let mut decoder = encoding.new_decoder_without_bom_handling();
                let mut text = String::with_capacity(bytes.len() * 3 + 16);
                match decoder.decode_to_string_without_replacement(bytes, &mut text, true) {
                    (encoding_rs::DecoderResult::Malformed(bad, after), read) => {
                        read - usize::from(after) - usize::from(bad)
                    }
                    _ => 0,
                }
            }
            // A JOHAB lead byte without its second byte.
            _ => bytes.len().saturating_sub(1),
        }
    }

    /// The error for the character at `at`, listing its bytes as PostgreSQL does (as many as
    /// its first byte announces, as far as there are any).
    fn invalid(self, bytes: &[u8], at: usize) -> InvalidSequence {
        let lead = bytes.get(at).copied().unwrap_or(0);
        let announced = match self.kind {
            Kind::Utf8 | Kind::SqlAscii => match lead {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            },
            _ if lead >= 0x80 => 2,
            _ => 1,
        };
        let end = (at + announced).min(bytes.len());
        let listed: Vec<String> = bytes[at.min(end)..end]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect();
        InvalidSequence {
            encoding: self.name,
            bytes: listed.join(" "),
        }
    }

    /// Text written back in this encoding; a character it cannot hold becomes `?`.
    pub fn encode(self, text: &str) -> Cow<'_, [u8]> {
        if text.is_ascii() || self.is_utf8() {
            return Cow::Owned(text.as_bytes().to_vec());
        }
        let mut out = Vec::with_capacity(text.len());
        match self.kind {
            Kind::Latin1 | Kind::HighBytes => {
                out.extend(text.chars().map(|c| u8::try_from(c).unwrap_or(b'?')))
            }
            Kind::Johab => {
                for c in text.chars() {
                    match u32::from(c).checked_sub(JOHAB_BASE) {
                        Some(pair @ 0..=0xFFFF) => {
                            out.extend_from_slice(&(pair as u16).to_be_bytes())
                        }
                        _ => out.push(u8::try_from(c).ok().filter(u8::is_ascii).unwrap_or(b'?')),
                    }
                }
            }
            Kind::Table(encoding) => encode_table(encoding, text, &mut out),
            Kind::Utf8 | Kind::SqlAscii => unreachable!("handled above"),
        }
        Cow::Owned(out)
    }
}

/// PostgreSQL's name and the WHATWG label of the table encodings.
fn table_encoding(upper: &str) -> Option<(&'static str, &'static str)> {
    Some(match upper {
        "LATIN2" => ("LATIN2", "iso-8859-2"),
        "LATIN3" => ("LATIN3", "iso-8859-3"),
        "LATIN4" => ("LATIN4", "iso-8859-4"),
        "LATIN5" => ("LATIN5", "windows-1254"),
        "LATIN6" => ("LATIN6", "iso-8859-10"),
        "LATIN7" => ("LATIN7", "iso-8859-13"),
        "LATIN8" => ("LATIN8", "iso-8859-14"),
        "LATIN9" => ("LATIN9", "iso-8859-15"),
        "LATIN10" => ("LATIN10", "iso-8859-16"),
        "ISO_8859_5" => ("ISO_8859_5", "iso-8859-5"),
        "ISO_8859_6" => ("ISO_8859_6", "iso-8859-6"),
        "ISO_8859_7" => ("ISO_8859_7", "iso-8859-7"),
        "ISO_8859_8" => ("ISO_8859_8", "iso-8859-8"),
        "WIN866" => ("WIN866", "ibm866"),
        "WIN874" => ("WIN874", "windows-874"),
        "WIN1250" => ("WIN1250", "windows-1250"),
        "WIN1251" => ("WIN1251", "windows-1251"),
        "WIN1252" => ("WIN1252", "windows-1252"),
        "WIN1253" => ("WIN1253", "windows-1253"),
        "WIN1254" => ("WIN1254", "windows-1254"),
        "WIN1255" => ("WIN1255", "windows-1255"),
        "WIN1256" => ("WIN1256", "windows-1256"),
        "WIN1257" => ("WIN1257", "windows-1257"),
        "WIN1258" => ("WIN1258", "windows-1258"),
        "KOI8R" => ("KOI8R", "koi8-r"),
        "KOI8U" => ("KOI8U", "koi8-u"),
        "EUC_JP" => ("EUC_JP", "euc-jp"),
        "EUC_JIS_2004" => ("EUC_JIS_2004", "euc-jp"),
        "EUC_CN" => ("EUC_CN", "gbk"),
        "EUC_KR" => ("EUC_KR", "euc-kr"),
        "UHC" => ("UHC", "euc-kr"),
        "SJIS" => ("SJIS", "shift_jis"),
        "SHIFT_JIS_2004" => ("SHIFT_JIS_2004", "shift_jis"),
        "BIG5" => ("BIG5", "big5"),
        "GBK" => ("GBK", "gbk"),
        "GB18030" => ("GB18030", "gb18030"),
        _ => return None,
    })
}

fn encode_table(encoding: &'static Encoding, text: &str, out: &mut Vec<u8>) {
    let mut encoder = encoding.new_encoder();
    let mut rest = text;
    let mut buffer = [0u8; 256];
    loop {
        let (result, read, written) =
            encoder.encode_from_utf8_without_replacement(rest, &mut buffer, true);
        out.extend_from_slice(&buffer[..written]);
        rest = &rest[read..];
        match result {
            encoding_rs::EncoderResult::InputEmpty => return,
            encoding_rs::EncoderResult::OutputFull => {}
            encoding_rs::EncoderResult::Unmappable(_) => out.push(b'?'),
        }
    }
}

/// A JOHAB character is a high byte and the byte after it.
fn decode_johab(bytes: &[u8]) -> Option<String> {
    let mut text = String::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte.is_ascii() {
            text.push(char::from(byte));
            at += 1;
            continue;
        }
        let trail = *bytes.get(at + 1).filter(|&&b| b != 0)?;
        let pair = u32::from(u16::from_be_bytes([byte, trail]));
        text.push(char::from_u32(JOHAB_BASE + pair)?);
        at += 2;
    }
    Some(text)
}

/// Whether some client encoding would read an ASCII byte of `bytes` as part of a multibyte
/// character (SJIS, BIG5, GBK, UHC, GB18030 and JOHAB take second bytes from the ASCII
/// range): a text whose structure depends on the encoding, which the gateway can only read
/// safely while it knows the encoding in force on the server.
pub fn structure_depends_on_encoding(bytes: &[u8]) -> bool {
    // Any such reading needs a high byte directly followed by an ASCII byte that a second
    // byte may be (0x30..=0x7E covers every one of these encodings' ranges).
    bytes
        .windows(2)
        .any(|pair| pair[0] >= 0x80 && (0x30..=0x7E).contains(&pair[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_encoding_postgresql_accepts_is_known() {
        for name in [
            "UTF8",
            "SQL_ASCII",
            "LATIN1",
            "LATIN2",
            "LATIN3",
            "LATIN4",
            "LATIN5",
            "LATIN6",
            "LATIN7",
            "LATIN8",
            "LATIN9",
            "LATIN10",
            "ISO_8859_5",
            "ISO_8859_6",
            "ISO_8859_7",
            "ISO_8859_8",
            "WIN866",
            "WIN874",
            "WIN1250",
            "WIN1251",
            "WIN1252",
            "WIN1253",
            "WIN1254",
            "WIN1255",
            "WIN1256",
            "WIN1257",
            "WIN1258",
            "KOI8R",
            "KOI8U",
            "EUC_JP",
            "EUC_JIS_2004",
            "EUC_CN",
            "EUC_KR",
            "EUC_TW",
            "UHC",
            "SJIS",
            "SHIFT_JIS_2004",
            "BIG5",
            "GBK",
            "GB18030",
            "JOHAB",
            "MULE_INTERNAL",
        ] {
            let encoding = ClientEncoding::from_name(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(encoding.name(), name);
            assert_eq!(encoding.decode(b"SELECT 1").unwrap(), "SELECT 1", "{name}");
        }
        assert!(ClientEncoding::from_name("EBCDIC").is_none());
    }

    #[test]
    fn latin1_and_win1252_round_trip_their_letters() {
        let latin1 = ClientEncoding::from_name("LATIN1").unwrap();
        assert_eq!(latin1.decode(b"Jos\xe9").unwrap(), "José");
        assert_eq!(&*latin1.encode("José"), b"Jos\xe9");
        assert_eq!(&*latin1.encode("€"), b"?");
        let win1252 = ClientEncoding::from_name("WIN1252").unwrap();
        assert_eq!(win1252.decode(b"\x80 5").unwrap(), "€ 5");
        assert_eq!(&*win1252.encode("€ 5"), b"\x80 5");
        assert_eq!(&*win1252.encode("日"), b"?");
    }

    #[test]
    fn invalid_sequences_are_refused_as_the_server_refuses_them() {
        let utf8 = ClientEncoding::UTF8;
        assert_eq!(
            utf8.decode(b"SELECT '\xff'").unwrap_err().to_string(),
            "invalid byte sequence for encoding \"UTF8\": 0xff"
        );
        // As many bytes as the lead byte announces.
        assert_eq!(
            utf8.decode(b"'caf\xc3'").unwrap_err().to_string(),
            "invalid byte sequence for encoding \"UTF8\": 0xc3 0x27"
        );
        let sjis = ClientEncoding::from_name("SJIS").unwrap();
        assert!(sjis.decode(b"SELECT '\x81'").is_err(), "a lead byte alone");
        let johab = ClientEncoding::from_name("JOHAB").unwrap();
        assert!(johab.decode(b"\x88").is_err());
    }

    #[test]
    fn a_second_byte_in_the_ascii_range_stays_inside_its_character() {
        // SJIS 0x955C is one character whose second byte is a backslash.
        let sjis = ClientEncoding::from_name("SJIS").unwrap();
        let text = sjis.decode(b"SELECT E'\x95\x5c'").unwrap();
        assert_eq!(text, "SELECT E'表'");
        let johab = ClientEncoding::from_name("JOHAB").unwrap();
        let text = johab.decode(b"'\x88\x27'").unwrap();
        assert_eq!(text.chars().filter(|&c| c == '\'').count(), 2, "{text:?}");
        assert_eq!(&*johab.encode(&text), b"'\x88\x27'");
    }

    #[test]
    fn texts_whose_structure_may_depend_on_the_encoding_are_told() {
        assert!(!structure_depends_on_encoding(b"SELECT 'caf\xc3\xa9'"));
        assert!(!structure_depends_on_encoding(b"SELECT 1"));
        assert!(structure_depends_on_encoding(
            b"SELECT E'\x95\\' OR 1=1 --'"
        ));
        assert!(structure_depends_on_encoding("SELECT '€a'".as_bytes()));
    }
}
