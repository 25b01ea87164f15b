//! An HTTP/1.1 request read from bytes, for the gateway's own small servers (the approvers'
//! API): request line, headers, and a body framed by `Content-Length` only. Pure, so every
//! refusal is tested without a network; anything unexpected is an error, never a panic.

use super::{find, MAX_HEAD};

const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// `Authorization: Bearer <token>`, if given.
    pub bearer: Option<String>,
    pub body: Vec<u8>,
}

/// Why a request is refused, with the status that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request header larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// Chunked bodies are not needed by any client of these APIs; refusing them keeps one
    /// framing, so a request can never be read two ways.
    #[error("Transfer-Encoding is not accepted; send Content-Length")]
    Coding,
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::HeadTooLarge => 431,
            Self::TooLarge(_) => 413,
            Self::Coding => 501,
        }
    }
}

/// Parses what has been read so far; `Ok(None)`: more bytes are needed.
pub fn parse_request(buf: &[u8], max_body: usize) -> Result<Option<Request>, RequestError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return match buf.len() > MAX_HEAD {
            true => Err(RequestError::HeadTooLarge),
            false => Ok(None),
        };
    };
    if head_end > MAX_HEAD {
        return Err(RequestError::HeadTooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| RequestError::Malformed("header is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let (method, path) = request_line(lines.next().unwrap_or_default())?;
    let mut length: Option<usize> = None;
    let mut bearer = None;
    for (count, line) in lines.enumerate() {
        if count >= MAX_HEADERS {
            return Err(RequestError::Malformed("too many header fields"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(RequestError::Malformed("header line without `:`"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(RequestError::Malformed("bad header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse::<usize>().ok())
                .flatten()
                .ok_or(RequestError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(RequestError::Malformed("conflicting Content-Length"));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::Coding);
        } else if name.eq_ignore_ascii_case("authorization") {
            if bearer.is_some() {
                return Err(RequestError::Malformed("more than one Authorization"));
            }
            bearer = Some(bearer_token(value)?);
        }
    }
    let length = length.unwrap_or(0);
    if length > max_body {
        return Err(RequestError::TooLarge(max_body));
    }
    let body = &buf[head_end + 4..];
    if body.len() < length {
        return Ok(None);
    }
    Ok(Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        bearer,
        body: body[..length].to_vec(),
    }))
}

/// `METHOD /path[?query] HTTP/1.x`; the query is dropped (no route takes one).
fn request_line(line: &str) -> Result<(&str, &str), RequestError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed("bad request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(RequestError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(RequestError::Malformed("the target is not a path"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(RequestError::Malformed("not HTTP/1.x"));
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok((method, path))
}

fn bearer_token(value: &str) -> Result<String, RequestError> {
    let (scheme, token) = value.split_once(' ').ok_or(RequestError::Malformed(
        "Authorization is not `Bearer <token>`",
    ))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(RequestError::Malformed(
            "Authorization is not `Bearer <token>`",
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Request>, RequestError> {
        parse_request(text.as_bytes(), 1024)
    }

    #[test]
    fn a_get_with_a_bearer_token_and_a_query() {
        let request = parse(
            "GET /api/approvals?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc.def\r\n\r\n",
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/api/approvals");
        assert_eq!(request.bearer.as_deref(), Some("abc.def"));
        assert!(request.body.is_empty());
    }

    #[test]
    fn a_post_body_is_read_to_its_length_and_waited_for() {
        let text =
            "POST /api/approvals/3/deny HTTP/1.1\r\nContent-Length: 17\r\n\r\n{\"reason\":\"no\"}";
        assert_eq!(parse(text), Ok(None), "two bytes still to come");
        let request = parse(&format!("{text}\r\n"))
            .expect("valid")
            .expect("complete");
        assert_eq!(request.body, b"{\"reason\":\"no\"}\r\n");
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn framing_that_could_be_read_two_ways_is_refused() {
        let cases = [
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                RequestError::Coding,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                RequestError::Malformed("conflicting Content-Length"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                RequestError::Malformed("bad Content-Length"),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
                RequestError::TooLarge(1024),
            ),
            (
                "GET / HTTP/1.1\r\n Folded: x\r\n\r\n",
                RequestError::Malformed("bad header name"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn bad_request_lines_and_credentials_are_refused() {
        for text in [
            "GET /\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
            "GET / HTTP/1.1\r\nAuthorization: Basic YTpi\r\n\r\n",
            "GET / HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n",
            "GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
        ] {
            assert!(
                matches!(parse(text), Err(RequestError::Malformed(_))),
                "{text:?}"
            );
        }
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&huge), Err(RequestError::HeadTooLarge));
    }
}
