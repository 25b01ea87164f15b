//! Backend messages printed as one normalised line each (see the parent module), with the
//! values that change between runs (backend pid, secret key, table OIDs) left out.

use std::io::Write;

/// What a CancelRequest needs, from BackendKeyData.
#[derive(Debug, Clone)]
pub struct BackendKey {
    pub pid: i32,
    pub secret: Vec<u8>,
}

/// Prints one message; returns the key when it was BackendKeyData.
pub fn print_message(tag: u8, body: &[u8]) -> Option<BackendKey> {
    let mut key = None;
    let line = describe(tag, body, &mut key)
        .unwrap_or_else(|| format!("? {} malformed: {}", escape(&[tag]), escape(body)));
    print_line(&line);
    key
}

/// Written and flushed at once, so a run that is killed still shows how far it got.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn describe(tag: u8, body: &[u8], key: &mut Option<BackendKey>) -> Option<String> {
    let mut r = Reader(body);
    let line = match tag {
        b'R' => match r.i32()? {
            0 => "R ok".to_owned(),
            3 => "R cleartext".to_owned(),
            5 => "R md5".to_owned(),
            10 => {
                let mut mechanisms = Vec::new();
                while let Some(m) = r.cstr().filter(|m| !m.is_empty()) {
                    mechanisms.push(escape(m));
                }
                format!("R sasl {}", mechanisms.join(" "))
            }
            11 => "R sasl-continue".to_owned(),
            12 => "R sasl-final".to_owned(),
            other => format!("R {other}"),
        },
        b'S' => format!("S {}={}", escape(r.cstr()?), escape(r.cstr()?)),
        b'K' => {
            *key = Some(BackendKey {
                pid: r.i32()?,
                secret: r.rest().to_vec(),
            });
            "K".to_owned()
        }
        b'Z' => format!("Z {}", escape(r.take(1)?)),
        b'T' => {
            let count = r.i16()?;
            let mut columns = Vec::new();
            for _ in 0..count {
                let name = escape(r.cstr()?);
                let (_table, _attnum) = (r.i32()?, r.i16()?);
                let type_oid = r.i32()?;
                let (_len, _typmod) = (r.i16()?, r.i32()?);
                let binary = if r.i16()? == 1 { ":b" } else { "" };
                columns.push(format!("{name}:{type_oid}{binary}"));
            }
            with_items("T", &columns)
        }
        b'D' => {
            let count = r.i16()?;
            let mut values = Vec::new();
            for _ in 0..count {
                let len = r.i32()?;
                values.push(match usize::try_from(len) {
                    Ok(len) => escape(r.take(len)?),
                    Err(_) => "NULL".to_owned(),
                });
            }
            format!("D {}", values.join("|"))
        }
        b'C' => format!("C {}", escape(r.cstr()?)),
        b'E' | b'N' => notice(tag, &mut r)?,
        b'A' => {
            let _pid = r.i32()?;
            format!("A {} {}", escape(r.cstr()?), escape(r.cstr()?))
        }
        b'G' | b'H' | b'W' => {
            let overall = r.take(1)?[0];
            let count = r.i16()?;
            let formats = (0..count)
                .map(|_| r.i16().map(|f| f.to_string()))
                .collect::<Option<Vec<_>>>()?;
            format!("{} {overall} {}", tag as char, formats.join(","))
                .trim_end()
                .to_owned()
        }
        b'd' => format!("d {}", escape(r.rest())),
        b't' => {
            let count = r.i16()?;
            let oids = (0..count)
                .map(|_| r.i32().map(|o| o.to_string()))
                .collect::<Option<Vec<_>>>()?;
            with_items("t", &oids)
        }
        b'V' => {
            let len = r.i32()?;
            match usize::try_from(len) {
                Ok(len) => format!("V {}", escape(r.take(len)?)),
                Err(_) => "V NULL".to_owned(),
            }
        }
        b'v' => {
            let minor = r.i32()?;
            let count = r.i32()?;
            let options = (0..count)
                .map(|_| r.cstr().map(escape))
                .collect::<Option<Vec<_>>>()?;
            with_items(&format!("v {minor}"), &options)
        }
        b'c' | b'1' | b'2' | b'3' | b'n' | b's' | b'I' => (tag as char).to_string(),
        other => format!("? {} {}", escape(&[other]), escape(body)),
    };
    Some(line)
}

/// `E|N severity sqlstate message`: the non-localised severity when the server sends one.
fn notice(tag: u8, r: &mut Reader<'_>) -> Option<String> {
    let (mut severity, mut localized, mut code, mut message) = (None, None, None, None);
    loop {
        let field = r.take(1)?[0];
        if field == 0 {
            break;
        }
        let value = escape(r.cstr()?);
        match field {
            b'V' => severity = Some(value),
            b'S' => localized = Some(value),
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            _ => {}
        }
    }
    Some(format!(
        "{} {} {} {}",
        tag as char,
        severity.or(localized).unwrap_or_default(),
        code.unwrap_or_default(),
        message.unwrap_or_default()
    ))
}

fn with_items(head: &str, items: &[String]) -> String {
    if items.is_empty() {
        head.to_owned()
    } else {
        format!("{head} {}", items.join(" "))
    }
}

/// Printable ASCII as is (but `\` and `|`, which separate values); everything else escaped.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'|' => out.push_str("\\|"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.0.len() < len {
            return None;
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Some(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let text = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(tag: u8, body: &[u8]) -> String {
        describe(tag, body, &mut None).unwrap()
    }

    #[test]
    fn messages_print_without_run_specific_values() {
        assert_eq!(line(b'Z', b"I"), "Z I");
        assert_eq!(line(b'C', b"SELECT 1\0"), "C SELECT 1");
        let mut key = None;
        assert_eq!(describe(b'K', b"\0\0\x01\0abcd", &mut key).unwrap(), "K");
        assert_eq!(key.unwrap().pid, 256);
        let row = b"a\0\0\0\x40\x00\0\x01\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0";
        let mut description = b"\0\x01".to_vec();
        description.extend_from_slice(row);
        assert_eq!(line(b'T', &description), "T a:23");
        assert_eq!(
            line(b'D', b"\0\x03\0\0\0\x01x\xff\xff\xff\xff\0\0\0\x02a|"),
            "D x|NULL|a\\|"
        );
        assert_eq!(
            line(b'E', b"SERROR\0VERROR\0C42P01\0Mno \"t\"\0Fparse.c\0\0"),
            "E ERROR 42P01 no \"t\""
        );
        assert_eq!(line(b'A', b"\0\0\0\x07chan\0hi\0"), "A chan hi");
        assert_eq!(line(b'G', b"\0\0\x01\0\0"), "G 0 0");
        assert_eq!(line(b'H', b"\0\0\0"), "G 0".replace('G', "H"));
        assert_eq!(line(b'd', b"1\t\xff\n"), "d 1\\t\\xff\\n");
        assert!(describe(b'D', b"\0\x01\0\0\0\x09x", &mut None).is_none());
    }
}
