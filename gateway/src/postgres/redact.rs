//! Statement text for logs with every value taken out: string, dollar-quoted and numeric
//! literals and comment bodies become `?`, so the shape of a statement is recorded but no PHI.

/// Replaces literals and comments; identifiers, keywords and operators stay.
pub fn redact_sql(sql: &str) -> String {
    redact_with(sql, &mut || "?".to_owned())
}

/// The statement with each literal a parameter numbered after those it already has (and
/// comments emptied): a text the server can plan without any of the values, e.g. for an
/// estimate of the rows it returns.
pub fn parameterised_sql(sql: &str) -> String {
    let redacted = redact_sql(sql);
    let mut next = highest_parameter(&redacted);
    redact_with(sql, &mut || {
        next += 1;
        format!("${next}")
    })
}

/// The highest `$n` a redacted text refers to (0 for none).
pub fn highest_parameter(redacted: &str) -> u32 {
    let bytes = redacted.as_bytes();
    (0..bytes.len())
        .filter(|&i| bytes[i] == b'$' && !continues_word(bytes, i))
        .filter_map(|i| {
            redacted[i + 1..i + 1 + digits_len(&bytes[i + 1..])]
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

fn redact_with(sql: &str, placeholder: &mut dyn FnMut() -> String) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        match c {
            b'\'' => {
                i = skip_quoted(bytes, i, b'\'', false);
                out.push_str(&placeholder());
            }
            // E'..' is the only string where a backslash escapes the quote.
            b'E' | b'e' if next == Some(b'\'') && !continues_word(bytes, i) => {
                i = skip_quoted(bytes, i + 1, b'\'', true);
                out.push_str(&placeholder());
            }
            // B'..', X'..', N'..': the prefix is a value marker too.
            b'B' | b'b' | b'X' | b'x' | b'N' | b'n'
                if next == Some(b'\'') && !continues_word(bytes, i) =>
            {
                i = skip_quoted(bytes, i + 1, b'\'', false);
                out.push_str(&placeholder());
            }
            b'U' | b'u'
                if next == Some(b'&')
                    && bytes.get(i + 2) == Some(&b'\'')
                    && !continues_word(bytes, i) =>
            {
                i = skip_quoted(bytes, i + 2, b'\'', false);
                out.push_str(&placeholder());
            }
            b'"' => {
                // Quoted identifiers are kept as written.
                let end = skip_quoted(bytes, i, b'"', false);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'$' if !continues_word(bytes, i) => match dollar_tag_end(bytes, i) {
                Some(tag_end) => {
                    i = skip_dollar_quoted(bytes, i, tag_end);
                    out.push_str(&placeholder());
                }
                None => {
                    // A parameter reference such as $1 stays.
                    let end = i + 1 + digits_len(&bytes[i + 1..]);
                    out.push_str(&sql[i..end]);
                    i = end;
                }
            },
            b'-' if next == Some(b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p);
                out.push_str("--?");
            }
            b'/' if next == Some(b'*') => {
                i = skip_block_comment(bytes, i);
                out.push_str("/*?*/");
            }
            b'0'..=b'9' if !continues_word(bytes, i) => {
                i += number_len(&bytes[i..]);
                out.push_str(&placeholder());
            }
            b'.' if next.is_some_and(|b| b.is_ascii_digit()) && !continues_word(bytes, i) => {
                i += number_len(&bytes[i..]);
                out.push_str(&placeholder());
            }
            _ => {
                let len = utf8_len(c);
                let end = (i + len).min(bytes.len());
                out.push_str(&sql[i..end]);
                i = end;
            }
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// True when the byte at `i` continues an identifier (so `t1` or `col$x` is not a literal).
fn continues_word(bytes: &[u8], i: usize) -> bool {
    i > 0 && {
        let prev = bytes[i - 1];
        prev.is_ascii_alphanumeric() || prev == b'_' || prev == b'$' || prev >= 0x80
    }
}

/// End (exclusive) of a quoted run starting at `start`; a doubled quote is an escaped quote.
/// A backslash escapes only in E'' strings (`standard_conforming_strings` is on, the default
/// since PostgreSQL 9.1): treating it as an escape elsewhere would let `'a\'; DROP ...` hide
/// the rest of the statement inside what looks like one string.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// `$tag$` opening a dollar-quoted string: returns the index just past the second `$`.
fn dollar_tag_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if bytes.get(i).is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'$' {
            return Some(i + 1);
        }
        if !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80) {
            return None;
        }
        i += 1;
    }
    None
}

fn skip_dollar_quoted(bytes: &[u8], start: usize, tag_end: usize) -> usize {
    let tag = &bytes[start..tag_end];
    bytes[tag_end..]
        .windows(tag.len())
        .position(|window| window == tag)
        .map_or(bytes.len(), |p| tag_end + p + tag.len())
}

/// Block comments nest in PostgreSQL.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

fn digits_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Numeric literal: digits, one fraction, an exponent, and trailing identifier characters
/// (so `1e5`, `0x1F` and `1_000` are consumed whole).
fn number_len(bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let exponent_sign =
            (b == b'+' || b == b'-') && i > 0 && matches!(bytes[i - 1], b'e' | b'E');
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// One bound parameter as the log shows it: its format and size, never its value.
pub fn describe_parameter(value: Option<&[u8]>, binary: bool) -> String {
    match value {
        None => "null".to_owned(),
        Some(bytes) => format!(
            "{}:{}B",
            if binary { "binary" } else { "text" },
            bytes.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_parameters_numbered_after_the_statement_s_own() {
        let cases = [
            (
                "UPDATE patients SET zip = '99999' WHERE id = 1 -- Jane",
                "UPDATE patients SET zip = $1 WHERE id = $2 --?",
            ),
            (
                "SELECT a FROM t WHERE id = $2 AND b = 'x' AND c = $1",
                "SELECT a FROM t WHERE id = $2 AND b = $3 AND c = $1",
            ),
            ("SELECT col$1, t1.x FROM t1", "SELECT col$1, t1.x FROM t1"),
        ];
        for (sql, expected) in cases {
            assert_eq!(parameterised_sql(sql), expected, "{sql}");
        }
    }

    #[test]
    fn literals_and_comments_are_removed() {
        let cases = [
            (
                "SELECT * FROM patients WHERE ssn = '123-45-6789'",
                "SELECT * FROM patients WHERE ssn = ?",
            ),
            ("select 'it''s', E'a\\'b', 42, 3.5e-3", "select ?, ?, ?, ?"),
            ("SELECT $body$ secret $body$ || $$x$$", "SELECT ? || ?"),
            (
                "SELECT a FROM t1 WHERE id = $1",
                "SELECT a FROM t1 WHERE id = $1",
            ),
            ("SELECT 1 -- note Jane\n, 2", "SELECT ? --?\n, ?"),
            ("SELECT /* a /* nested */ Jane */ 1", "SELECT /*?*/ ?"),
            ("SELECT U&'d\\0061t', x'1F', .5", "SELECT ?, ?, ?"),
            (
                "SELECT \"Name\", col_2 FROM \"t 1\"",
                "SELECT \"Name\", col_2 FROM \"t 1\"",
            ),
            ("SELECT 'unterminated", "SELECT ?"),
            ("SELECT 'é' AS café", "SELECT ? AS café"),
            // A backslash does not escape in a standard string: the DROP stays visible.
            (
                "SELECT 'abc\\'; DROP TABLE phi; --'",
                "SELECT ?; DROP TABLE phi; --?",
            ),
            (
                "SELECT 'a\\' || (SELECT ssn FROM patients) || '\\'",
                "SELECT ? || (SELECT ssn FROM patients) || ?",
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(redact_sql(sql), expected, "for {sql:?}");
        }
    }

    #[test]
    fn parameters_show_format_and_size_only() {
        assert_eq!(describe_parameter(Some(b"Jane Doe"), false), "text:8B");
        assert_eq!(describe_parameter(Some(&[0, 0, 0, 1]), true), "binary:4B");
        assert_eq!(describe_parameter(None, false), "null");
    }
}
