//! An HTTP/1.1 response read from bytes: status line, headers, and a body framed by
//! `Content-Length`, `Transfer-Encoding: chunked` or the end of the connection. Pure, so each
//! framing is tested without a network; anything unexpected is an error, never a panic.

use std::time::Duration;

/// Status line and headers together.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// A chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("HTTP status {0} (expected 200)")]
    Status(u16),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("response header larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    #[error("connection closed before the response was complete")]
    Truncated,
    #[error("unsupported transfer coding `{0}`")]
    Coding(String),
}

/// A complete 200 response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub body: Vec<u8>,
    /// From `Cache-Control`: `max-age`, or zero for `no-cache` / `no-store`.
    pub max_age: Option<Duration>,
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parses what has been read so far. `Ok(None)`: more bytes are needed (never once `eof`).
/// A status other than 200 is an error as soon as the status line is complete.
pub fn parse_response(
    buf: &[u8],
    eof: bool,
    max_body: usize,
) -> Result<Option<Response>, HttpError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HttpError::HeadTooLarge)
        } else if eof {
            Err(HttpError::Truncated)
        } else {
            Ok(None)
        };
    };
    if head_end > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| HttpError::Malformed("header is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    status(lines.next().unwrap_or_default())?;
    let (framing, max_age) = headers(lines, max_body)?;
    let body = &buf[head_end + 4..];
    let complete = match framing {
        Framing::Length(length) => body.get(..length).map(<[u8]>::to_vec),
        Framing::Chunked => dechunk(body, max_body)?,
        Framing::UntilClose if body.len() > max_body => return Err(HttpError::TooLarge(max_body)),
        Framing::UntilClose => eof.then(|| body.to_vec()),
    };
    match complete {
        Some(body) => Ok(Some(Response { body, max_age })),
        None if eof => Err(HttpError::Truncated),
        None => Ok(None),
    }
}

/// `HTTP/1.x 200 reason`.
fn status(line: &str) -> Result<(), HttpError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("no HTTP/1.x status line"));
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::Malformed("status code is not three digits"));
    }
    match code.parse::<u16>() {
        Ok(200) => Ok(()),
        Ok(other) => Err(HttpError::Status(other)),
        Err(_) => Err(HttpError::Malformed("status code is not three digits")),
    }
}

fn headers<'a>(
    lines: impl Iterator<Item = &'a str>,
    max_body: usize,
) -> Result<(Framing, Option<Duration>), HttpError> {
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    let mut max_age = None;
    for (count, line) in lines.enumerate() {
        if count >= MAX_HEADERS {
            return Err(HttpError::Malformed("too many header fields"));
        }
        if line.starts_with([' ', '\t']) {
            return Err(HttpError::Malformed("folded header line"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line without `:`"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(HttpError::Malformed("bad header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = digits(value).ok_or(HttpError::Malformed("bad Content-Length"))?;
            // Two different lengths: one of them is a lie, and which one is unknowable.
            if length.is_some_and(|seen| seen != parsed) {
                return Err(HttpError::Malformed("conflicting Content-Length"));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(
                value
                    .split(',')
                    .map(|c| c.trim_matches([' ', '\t']).to_ascii_lowercase())
                    .filter(|c| !c.is_empty()),
            );
        } else if name.eq_ignore_ascii_case("cache-control") {
            max_age = cache_max_age(value).or(max_age);
        }
    }
    let framing = match (codings.as_slice(), length) {
        ([], None) => Framing::UntilClose,
        ([], Some(length)) => match usize::try_from(length) {
            Ok(length) if length <= max_body => Framing::Length(length),
            _ => return Err(HttpError::TooLarge(max_body)),
        },
        // A message framed two ways is how request smuggling starts: refuse it.
        (_, Some(_)) => {
            return Err(HttpError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ))
        }
        ([only], None) if only == "chunked" => Framing::Chunked,
        (codings, None) => {
            let other = codings.iter().find(|c| *c != "chunked");
            return Err(HttpError::Coding(other.map_or("chunked", |c| c).to_owned()));
        }
    };
    Ok((framing, max_age))
}

/// The body of a chunked message, once its last chunk and trailers are in.
fn dechunk(mut rest: &[u8], max_body: usize) -> Result<Option<Vec<u8>>, HttpError> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return if rest.len() > MAX_CHUNK_LINE {
                Err(HttpError::Malformed("chunk size line too long"))
            } else {
                Ok(None)
            };
        };
        if line_end > MAX_CHUNK_LINE {
            return Err(HttpError::Malformed("chunk size line too long"));
        }
        let line = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| HttpError::Malformed("chunk size is not text"))?;
        let size_text = line.split(';').next().unwrap_or_default();
        let size_text = size_text.trim_matches([' ', '\t']);
        if size_text.is_empty()
            || size_text.len() > 15
            || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(HttpError::Malformed("bad chunk size"));
        }
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(trailers_end(rest)?.map(|()| body));
        }
        if size > max_body.saturating_sub(body.len()) {
            return Err(HttpError::TooLarge(max_body));
        }
        let Some(data) = rest.get(..size) else {
            return Ok(None);
        };
        match rest.get(size..size + 2) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err(HttpError::Malformed("chunk data not followed by CRLF")),
        }
        body.extend_from_slice(data);
        rest = &rest[size + 2..];
    }
}

/// Trailer fields after the last chunk are skipped up to the empty line.
fn trailers_end(mut rest: &[u8]) -> Result<Option<()>, HttpError> {
    let mut seen = 0;
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return if rest.len() > MAX_HEAD {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        if line_end == 0 {
            return Ok(Some(()));
        }
        seen += line_end + 2;
        if seen > MAX_HEAD {
            return Err(HttpError::HeadTooLarge);
        }
        rest = &rest[line_end + 2..];
    }
}

/// `no-cache`/`no-store` mean "ask again" (zero; the caller clamps), else `max-age=N`.
fn cache_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(|d| d.trim_matches([' ', '\t'])) {
        let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            let argument = argument.trim_matches('"');
            if !argument.is_empty() && argument.bytes().all(|b| b.is_ascii_digit()) {
                // Too many digits for u64 is "very long": the caller clamps.
                max_age = Some(Duration::from_secs(argument.parse().unwrap_or(u64::MAX)));
            }
        }
    }
    max_age
}

fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

pub mod client;
pub mod request;
#[cfg(test)]
mod tests;
