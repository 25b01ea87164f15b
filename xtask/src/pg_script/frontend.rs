//! The script text parsed into steps, with every frontend message encoded up front (see the
//! format in the parent module).

use std::time::Duration;

use anyhow::{bail, Context};

const PROTOCOL_3_0: i32 = 196_608;
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Script {
    /// The startup packet, unless `no-startup`.
    pub startup: Option<Vec<u8>>,
    pub timeout: Duration,
    pub steps: Vec<Step>,
}

pub enum Step {
    Send(Vec<u8>),
    Receive(Until),
    Sleep(Duration),
    CancelAfter(Duration),
}

#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// This many ReadyForQuery messages.
    Ready(usize),
    /// A message of this type.
    Tag(u8),
    /// The server closes the connection.
    Eof,
}

impl Script {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut params = Vec::new();
        let mut startup = true;
        let mut timeout = DEFAULT_TIMEOUT;
        let mut steps = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
            let parsed = match command {
                "param" => rest
                    .split_once('=')
                    .map(|(name, value)| params.push((name.to_owned(), unescape(value))))
                    .context("param wants NAME=VALUE"),
                "no-startup" => {
                    startup = false;
                    Ok(())
                }
                "timeout" => millis(rest).map(|t| timeout = t),
                _ => step(command, rest).map(|s| steps.push(s)),
            };
            parsed.with_context(|| format!("line {}: {line}", index + 1))?;
        }
        Ok(Self {
            startup: startup.then(|| startup_packet(&params)),
            timeout,
            steps,
        })
    }
}

fn step(command: &str, rest: &str) -> anyhow::Result<Step> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let send = |tag: u8, body: Vec<u8>| Ok(Step::Send(message(tag, &body)));
    match command {
        "Q" => send(b'Q', cstr(&unescape(rest))),
        "P" => {
            let (name, sql) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, types) = name.split_once(':').unwrap_or((name, ""));
            let types = types
                .split(',')
                .filter(|t| !t.is_empty())
                .map(|t| t.parse::<i32>().context("parameter type OID"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut body = cstr(object_name(name).as_bytes());
            body.extend(cstr(&unescape(sql)));
            body.extend(i16_len(types.len())?);
            types.iter().for_each(|t| body.extend(t.to_be_bytes()));
            send(b'P', body)
        }
        "B" => send(b'B', bind(&words)?),
        "D" | "C" => {
            let [kind @ ("S" | "P"), name] = words[..] else {
                bail!("{command} wants S|P NAME");
            };
            let mut body = kind.as_bytes().to_vec();
            body.extend(cstr(object_name(name).as_bytes()));
            send(command.as_bytes()[0], body)
        }
        "E" => {
            let (portal, max_rows) = match words[..] {
                [portal] => (portal, 0),
                [portal, rows] => (portal, rows.parse::<i32>().context("MAX_ROWS")?),
                _ => bail!("E wants PORTAL [MAX_ROWS]"),
            };
            let mut body = cstr(object_name(portal).as_bytes());
            body.extend(max_rows.to_be_bytes());
            send(b'E', body)
        }
        "S" => send(b'S', Vec::new()),
        "H" => send(b'H', Vec::new()),
        "X" => send(b'X', Vec::new()),
        "c" => send(b'c', Vec::new()),
        "d" => send(b'd', unescape(rest)),
        "dx" => send(b'd', hex(rest)?),
        "f" => send(b'f', cstr(&unescape(rest))),
        "F" => {
            let (oid, values) = words.split_first().context("F wants OID [VALUE..]")?;
            let mut body = oid
                .parse::<i32>()
                .context("function OID")?
                .to_be_bytes()
                .to_vec();
            body.extend(values_with_formats(values)?);
            body.extend(0i16.to_be_bytes());
            send(b'F', body)
        }
        "raw" => Ok(Step::Send(hex(rest)?)),
        "recv" => Ok(Step::Receive(match rest.trim() {
            "eof" => Until::Eof,
            count => Until::Ready(count.parse().context("recv wants N or eof")?),
        })),
        "recv-until" => match rest.trim().as_bytes() {
            [tag] => Ok(Step::Receive(Until::Tag(*tag))),
            _ => bail!("recv-until wants one message type character"),
        },
        "sleep" => millis(rest).map(Step::Sleep),
        "cancel-after-ms" => millis(rest).map(Step::CancelAfter),
        other => bail!("unknown step `{other}`"),
    }
}

/// Bind: portal, statement, parameter formats and values, result formats.
fn bind(words: &[&str]) -> anyhow::Result<Vec<u8>> {
    let [portal, statement, rest @ ..] = words else {
        bail!("B wants PORTAL STMT [VALUE..] [results=F,F..]");
    };
    let (results, values) = match rest.split_last() {
        Some((last, values)) if last.starts_with("results=") => (
            last.trim_start_matches("results=")
                .split(',')
                .map(|f| f.parse::<i16>().context("result format"))
                .collect::<anyhow::Result<Vec<_>>>()?,
            values,
        ),
        _ => (Vec::new(), rest),
    };
    let mut body = cstr(object_name(portal).as_bytes());
    body.extend(cstr(object_name(statement).as_bytes()));
    body.extend(values_with_formats(values)?);
    body.extend(i16_len(results.len())?);
    results.iter().for_each(|f| body.extend(f.to_be_bytes()));
    Ok(body)
}

/// Format codes (one per value) followed by the values, as Bind and FunctionCall carry them.
fn values_with_formats(values: &[&str]) -> anyhow::Result<Vec<u8>> {
    let mut formats = Vec::new();
    let mut encoded = Vec::new();
    for value in values {
        let (format, bytes) = if *value == "null" {
            (0i16, None)
        } else if let Some(text) = value.strip_prefix("text:") {
            (0, Some(unescape(text)))
        } else if let Some(data) = value.strip_prefix("bin:") {
            (1, Some(hex(data)?))
        } else {
            bail!("a value is text:TEXT, bin:HEX or null, not `{value}`");
        };
        formats.extend(format.to_be_bytes());
        match bytes {
            None => encoded.extend((-1i32).to_be_bytes()),
            Some(bytes) => {
                encoded.extend(i32::try_from(bytes.len())?.to_be_bytes());
                encoded.extend(bytes);
            }
        }
    }
    let mut body = i16_len(values.len())?.to_vec();
    body.extend(formats);
    body.extend(i16_len(values.len())?);
    body.extend(encoded);
    Ok(body)
}

fn startup_packet(params: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    let defaults = [("user", "postgres"), ("database", "postgres")];
    for (name, value) in defaults {
        if !params.iter().any(|(n, _)| n == name) {
            body.extend(cstr(name.as_bytes()));
            body.extend(cstr(value.as_bytes()));
        }
    }
    for (name, value) in params {
        body.extend(cstr(name.as_bytes()));
        body.extend(cstr(value));
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn object_name(name: &str) -> &str {
    if name == "-" {
        ""
    } else {
        name
    }
}

fn cstr(text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    out.push(0);
    out
}

fn i16_len(len: usize) -> anyhow::Result<[u8; 2]> {
    Ok(i16::try_from(len).context("too many items")?.to_be_bytes())
}

fn millis(text: &str) -> anyhow::Result<Duration> {
    Ok(Duration::from_millis(
        text.trim().parse().context("milliseconds")?,
    ))
}

fn hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .context("invalid hex digit")
        })
        .collect()
}

/// `\n`, `\t`, `\r`, `\\` and `\xHH`; anything else is taken as written.
fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1)) {
            (b'\\', Some(b'n')) => Some((b'\n', 2)),
            (b'\\', Some(b't')) => Some((b'\t', 2)),
            (b'\\', Some(b'r')) => Some((b'\r', 2)),
            (b'\\', Some(b'\\')) => Some((b'\\', 2)),
            (b'\\', Some(b'x')) => text
                .get(i + 2..i + 4)
                .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                .map(|byte| (byte, 4)),
            _ => None,
        };
        match escaped {
            Some((byte, len)) => {
                out.push(byte);
                i += len;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(script: &str) -> Vec<u8> {
        let script = Script::parse(script).unwrap();
        script
            .steps
            .iter()
            .flat_map(|step| match step {
                Step::Send(bytes) => bytes.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn messages_are_encoded_as_the_protocol_says() {
        assert_eq!(sent("Q select 1"), b"Q\0\0\0\x0dselect 1\0");
        assert_eq!(sent("Q"), b"Q\0\0\0\x05\0");
        assert_eq!(sent("Q select '\\xff'"), b"Q\0\0\0\x0fselect '\xff'\0");
        assert_eq!(sent("P s1:23 x"), b"P\0\0\0\x0fs1\0x\0\0\x01\0\0\0\x17");
        assert_eq!(
            sent("B - s1 text:42 null results=1"),
            b"B\0\0\0\x1e\0s1\0\0\x02\0\0\0\0\0\x02\0\0\0\x0242\xff\xff\xff\xff\0\x01\0\x01"
        );
        assert_eq!(sent("E p1 2"), b"E\0\0\0\x0bp1\0\0\0\0\x02");
        assert_eq!(sent("D S -\nS"), b"D\0\0\0\x06S\0S\0\0\0\x04");
        assert_eq!(sent("raw 51 00000004"), b"Q\0\0\0\x04");
    }

    #[test]
    fn settings_shape_the_startup_packet() {
        let script = Script::parse("param application_name=a b\ntimeout 500\nrecv 1").unwrap();
        let packet = script.startup.unwrap();
        assert_eq!(&packet[4..8], &PROTOCOL_3_0.to_be_bytes());
        assert!(packet.windows(20).any(|w| w == b"application_name\0a b"));
        assert_eq!(script.timeout, Duration::from_millis(500));
        assert!(Script::parse("no-startup").unwrap().startup.is_none());
        assert!(Script::parse("B onlyportal").is_err());
        assert!(Script::parse("bogus").is_err());
    }
}
