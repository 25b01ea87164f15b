//! Response framing, table-driven: every case is whole bytes, then the same bytes fed in
//! pieces as a socket would deliver them.

use std::time::Duration;

use super::*;

const CAP: usize = 64;

/// What a case is, its bytes, whether the connection has closed, and the expected outcome.
type Case = (
    &'static str,
    &'static [u8],
    bool,
    Result<Option<Response>, HttpError>,
);

fn ok(body: &[u8]) -> Result<Option<Response>, HttpError> {
    Ok(Some(Response {
        body: body.to_vec(),
        max_age: None,
    }))
}

#[test]
fn complete_responses_parse_in_every_framing() {
    let cases: &[Case] = &[
        (
            "content-length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"keys\":[]}",
            false,
            ok(b"{\"keys\":[]}"),
        ),
        (
            "content-length, bytes after the body are ignored",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}junk",
            false,
            ok(b"{}"),
        ),
        (
            "content-length zero",
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
            ok(b""),
        ),
        (
            "chunked with an extension and a trailer",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n{\"ke\r\nA\r\nys\":[1,2]}\r\n0\r\nX-Trailer: 1\r\n\r\n",
            false,
            ok(b"{\"keys\":[1,2]}"),
        ),
        (
            "read to the end of the connection",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"keys\":[]}",
            true,
            ok(b"{\"keys\":[]}"),
        ),
        (
            "cache-control max-age",
            b"HTTP/1.1 200 OK\r\nCache-Control: public, max-age=3600\r\nContent-Length: 2\r\n\r\n{}",
            false,
            Ok(Some(Response {
                body: b"{}".to_vec(),
                max_age: Some(Duration::from_secs(3600)),
            })),
        ),
        (
            "cache-control no-store",
            b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n\r\n{}",
            false,
            Ok(Some(Response {
                body: b"{}".to_vec(),
                max_age: Some(Duration::ZERO),
            })),
        ),
    ];
    for (what, bytes, eof, expected) in cases {
        assert_eq!(&parse_response(bytes, *eof, CAP), expected, "{what}");
        // Any prefix is either incomplete or (for a status error) already final.
        for cut in 0..bytes.len() {
            let partial = parse_response(&bytes[..cut], false, CAP);
            assert!(
                matches!(partial, Ok(None)) || partial == *expected,
                "{what}: prefix of {cut} bytes gave {partial:?}"
            );
        }
    }
}

#[test]
fn bad_responses_are_errors() {
    let big_body = [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &[b'x'; 65]].concat();
    let big_head = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
    let cases: &[(&str, &[u8], bool, HttpError)] = &[
        (
            "not found",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            false,
            HttpError::Status(404),
        ),
        (
            "redirect is not followed",
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\n\r\n",
            false,
            HttpError::Status(302),
        ),
        (
            "server error",
            b"HTTP/1.1 500 Internal Server Error\r\n\r\n",
            true,
            HttpError::Status(500),
        ),
        (
            "content-length over the cap",
            b"HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n",
            false,
            HttpError::TooLarge(CAP),
        ),
        (
            "chunks over the cap",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n",
            false,
            HttpError::TooLarge(CAP),
        ),
        (
            "body to the end of the connection over the cap",
            &big_body,
            false,
            HttpError::TooLarge(CAP),
        ),
        (
            "header over the limit",
            &big_head,
            false,
            HttpError::HeadTooLarge,
        ),
        (
            "closed inside the body",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"ke",
            true,
            HttpError::Truncated,
        ),
        (
            "closed before the last chunk",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
            true,
            HttpError::Truncated,
        ),
        (
            "closed inside the header",
            b"HTTP/1.1 200 OK\r\nContent-Le",
            true,
            HttpError::Truncated,
        ),
        (
            "not HTTP",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            false,
            HttpError::Malformed("no HTTP/1.x status line"),
        ),
        (
            "status not three digits",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            false,
            HttpError::Malformed("status code is not three digits"),
        ),
        (
            "bad chunk size",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            false,
            HttpError::Malformed("bad chunk size"),
        ),
        (
            "chunk without its CRLF",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx",
            false,
            HttpError::Malformed("chunk data not followed by CRLF"),
        ),
        (
            "both framings",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            HttpError::Malformed("both Transfer-Encoding and Content-Length"),
        ),
        (
            "conflicting lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            false,
            HttpError::Malformed("conflicting Content-Length"),
        ),
        (
            "negative length",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            false,
            HttpError::Malformed("bad Content-Length"),
        ),
        (
            "compressed body",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
            HttpError::Coding("gzip".into()),
        ),
        (
            "folded header",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\n\r\n",
            false,
            HttpError::Malformed("folded header line"),
        ),
    ];
    for (what, bytes, eof, expected) in cases {
        assert_eq!(
            parse_response(bytes, *eof, CAP),
            Err(expected.clone()),
            "{what}"
        );
    }
}

#[test]
fn incomplete_responses_ask_for_more() {
    for bytes in [
        b"".as_slice(),
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\n\r\n{\"keys\":",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n",
    ] {
        assert_eq!(
            parse_response(bytes, false, CAP),
            Ok(None),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic generator: enough to walk odd paths through every parser branch.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let alphabet =
        b"HTTP/1.1 200 OK\r\n:;0123456789abcdefxContent-Length Transfer-Encoding chunked";
    for _ in 0..20_000 {
        let len = (state % 120) as usize;
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        let _ = parse_response(&bytes, state.is_multiple_of(2), CAP);
    }
}
