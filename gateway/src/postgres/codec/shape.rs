//! Structural check of a message body before pgwire decodes it. pgwire's decoders read fixed
//! fields without checking that the body holds them (the fuzz target found an empty `Close`
//! and an empty `NotificationResponse` reading past the end), so every field is bounds-checked
//! here first and a short or inconsistent body is reported as malformed.

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count of following items: never negative.
    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.i16()?).ok()
    }

    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|&b| b == 0)?;
        let text = self.take(end + 1)?;
        Some(&text[..end])
    }

    /// C strings up to an empty one (SASL mechanism lists).
    fn cstr_list(&mut self) -> Option<()> {
        while !self.cstr()?.is_empty() {}
        Some(())
    }

    fn repeat(
        &mut self,
        times: usize,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        (0..times).try_for_each(|_| item(self))
    }

    /// Length-prefixed value (-1 is NULL).
    fn value(&mut self) -> Option<()> {
        match self.i32()? {
            -1 => Some(()),
            len => self.take(usize::try_from(len).ok()?).map(|_| ()),
        }
    }

    fn end(&self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
}

/// Whether a client message body (after type and length) holds every field its type has,
/// and nothing more.
pub fn frontend_body_is_whole(tag: u8, body: &[u8]) -> bool {
    let mut c = Cursor { rest: body };
    let whole = match tag {
        b'Q' | b'f' => c.cstr().and_then(|_| c.end()),
        b'P' => (|| {
            c.cstr()?;
            c.cstr()?;
            let types = c.count()?;
            c.repeat(types, |c| c.i32().map(|_| ()))?;
            c.end()
        })(),
        b'B' => (|| {
            c.cstr()?;
            c.cstr()?;
            let formats = c.count()?;
            c.repeat(formats, |c| c.i16().map(|_| ()))?;
            let values = c.count()?;
            c.repeat(values, Cursor::value)?;
            let results = c.count()?;
            c.repeat(results, |c| c.i16().map(|_| ()))?;
            c.end()
        })(),
        b'D' | b'C' => (|| {
            matches!(c.u8()?, b'S' | b'P').then_some(())?;
            c.cstr()?;
            c.end()
        })(),
        b'E' => (|| {
            c.cstr()?;
            c.i32()?;
            c.end()
        })(),
        b'S' | b'H' | b'X' | b'c' => c.end(),
        // CopyData and the password family carry opaque bytes.
        b'd' | b'p' => Some(()),
        b'F' => function_call(body).map(|_| ()),
        _ => None,
    };
    whole.is_some()
}

/// The function a FunctionCall body names and its number of arguments (the body is OID,
/// argument formats, arguments, result format), if the body holds exactly those fields.
pub fn function_call(body: &[u8]) -> Option<(u32, usize)> {
    let mut c = Cursor { rest: body };
    let oid = c.i32()?;
    let formats = c.count()?;
    c.repeat(formats, |c| c.i16().map(|_| ()))?;
    let arguments = c.count()?;
    c.repeat(arguments, Cursor::value)?;
    c.i16()?;
    c.end()?;
    Some((oid as u32, arguments))
}

/// Whether a server message body holds the fields pgwire will read.
pub fn backend_body_is_whole(tag: u8, body: &[u8]) -> bool {
    let mut c = Cursor { rest: body };
    let whole = match tag {
        b'R' => (|| match c.i32()? {
            5 => c.take(4).map(|_| ()),
            10 => c.cstr_list(),
            0 | 2 | 3 | 7 | 8 | 9 | 11 | 12 => Some(()),
            _ => None,
        })(),
        b'S' => c.cstr().and_then(|_| c.cstr()).map(|_| ()),
        b'K' => (|| {
            c.i32()?;
            (4..=256).contains(&c.rest.len()).then_some(())
        })(),
        b'v' => (|| {
            c.i32()?;
            let options = usize::try_from(c.i32()?).ok()?;
            c.repeat(options, |c| c.cstr().map(|_| ()))
        })(),
        b'C' => c.cstr().map(|_| ()),
        b'Z' => c.u8().map(|_| ()),
        b'E' | b'N' => (|| {
            while c.u8()? != 0 {
                c.cstr()?;
            }
            Some(())
        })(),
        b'A' => (|| {
            c.i32()?;
            c.cstr()?;
            c.cstr().map(|_| ())
        })(),
        b't' => (|| {
            let types = c.count()?;
            c.repeat(types, |c| c.i32().map(|_| ()))
        })(),
        b'T' => (|| {
            let fields = c.count()?;
            c.repeat(fields, |c| {
                c.cstr()?;
                c.take(18).map(|_| ())
            })
        })(),
        b'D' => (|| {
            let values = c.count()?;
            c.repeat(values, Cursor::value)
        })(),
        b'G' | b'H' | b'W' => (|| {
            c.u8()?;
            let columns = c.count()?;
            c.repeat(columns, |c| c.i16().map(|_| ()))
        })(),
        b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c' | b'd' => Some(()),
        _ => None,
    };
    whole.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_bodies_are_not_whole() {
        assert!(!frontend_body_is_whole(b'C', b""));
        assert!(!frontend_body_is_whole(b'C', b"Xname\0"));
        assert!(frontend_body_is_whole(b'C', b"Sname\0"));
        assert!(!frontend_body_is_whole(b'Q', b"SELECT 1"));
        assert!(!frontend_body_is_whole(b'Q', b"SELECT 1\0extra"));
        assert!(!frontend_body_is_whole(b'E', b"\0\0\0"));
        // Bind: one text parameter claiming 5 bytes but holding 2.
        assert!(!frontend_body_is_whole(
            b'B',
            b"\0\0\0\0\0\x01\0\0\0\x05ab\0\0"
        ));
        assert!(frontend_body_is_whole(
            b'B',
            b"\0\0\0\0\0\x01\0\0\0\x02ab\0\0"
        ));
        assert!(!backend_body_is_whole(b'A', b""));
        assert!(!backend_body_is_whole(b'D', b"\0\x01\0\0\0\x09abc"));
        assert!(backend_body_is_whole(
            b'D',
            b"\0\x02\xff\xff\xff\xff\0\0\0\x01x"
        ));
        assert!(!backend_body_is_whole(b'R', b"\0\0\0\x05ab"));
    }
}
