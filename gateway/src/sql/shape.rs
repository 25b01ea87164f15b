//! The shape of a simple SELECT: its text with the numbers it compares against taken out.
//! Clients of the simple protocol put values in the text (`... WHERE aid = 48213`), so each
//! statement would be a new text to parse; statements of one shape share one analysis.
//!
//! A shape is only made where that sharing is provably harmless: a number that is the operand
//! of a comparison operator is a value, and no fact of a SELECT depends on a value. Anything
//! whose lexing could be in doubt (quotes, dollar quotes, escapes, comments, several
//! statements, non-ASCII) gets no shape, and the text is analysed and cached as it is.

/// Stands for a number; texts containing control characters get no shape, so a shape never
/// equals a text that has none.
const NUMBER: char = '\u{1}';

/// Comparison operators whose numeric operand is replaced. Any other operator (`=>` of a
/// named argument, `=-`, ...) keeps its number.
const COMPARISONS: [&str; 7] = ["=", "<", ">", "<=", ">=", "<>", "!="];

const OPERATOR_CHARS: &[u8] = b"+-*/<>=~!@#%^&|`?";

/// The text with each number that directly follows a comparison operator replaced by one
/// placeholder, or `None` when the text is not a plain single SELECT or has no such number.
pub fn literal_shape(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    let body = bytes.trim_ascii_start();
    let starts_with_select = body.len() > 6
        && body[..6].eq_ignore_ascii_case(b"select")
        && body[6].is_ascii_whitespace();
    if !starts_with_select || !lexing_is_plain(bytes) {
        return None;
    }
    let mut shape = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() || !follows_comparison(&bytes[..at]) {
            at += 1;
            continue;
        }
        let end = at
            + bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        shape.push_str(&sql[copied..at]);
        shape.push(NUMBER);
        copied = end;
        at = end;
    }
    if copied == 0 {
        return None;
    }
    shape.push_str(&sql[copied..]);
    Some(shape)
}

/// No character whose meaning depends on lexer state: quotes of any kind, dollar quoting and
/// parameters, backslashes, comments, a statement separator other than one at the end,
/// non-ASCII or control characters.
fn lexing_is_plain(sql: &[u8]) -> bool {
    let body = sql.trim_ascii_end();
    let body = body.strip_suffix(b";").unwrap_or(body);
    let plain = |b: &u8| {
        (b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            && !matches!(b, b'\'' | b'"' | b'$' | b'\\' | b'#' | b';')
    };
    body.iter().all(plain) && !body.windows(2).any(|pair| pair == b"--" || pair == b"/*")
}

/// The digit at the end of `before` starts a token (is not inside a name or another number)
/// and the token before it, across whitespace, is exactly a comparison operator.
fn follows_comparison(before: &[u8]) -> bool {
    if before
        .last()
        .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return false;
    }
    let trimmed = before.trim_ascii_end();
    let operator_len = trimmed
        .iter()
        .rev()
        .take_while(|b| OPERATOR_CHARS.contains(b))
        .count();
    let operator = &trimmed[trimmed.len() - operator_len..];
    COMPARISONS.iter().any(|c| c.as_bytes() == operator)
}
