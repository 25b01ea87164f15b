//! Tokenizes the text once and cuts it into statements at top-level semicolons, so each
//! statement is parsed on its own: the parser reads everything after `COPY ... FROM STDIN;`
//! as inline data, which would hide the statements that follow.
//!
//! PostgreSQL forms the parser lacks or misreads are rewritten on the way: `TABLE t` becomes
//! `SELECT * FROM t` (the parser's own `TABLE` form drops quoting and swallows the tokens
//! after the name), `ONLY t` becomes `t` (the parser reads `UPDATE ONLY t` as an update of a
//! table named "only" aliased t; without ONLY the statement covers more, not less),
//! `ANALYSE` is spelled `ANALYZE`, and `MOVE` is parsed as the `FETCH` it mirrors; `forms`
//! rewrites a few more.

use sqlparser::{
    dialect::PostgreSqlDialect,
    keywords::Keyword,
    tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer, Whitespace},
};

use super::{forms, unreadable_at, SqlError};

/// Operators in one chain (`a + b + ...`, `x::t::t`, `NOT NOT ...`, `UNION ...`), summed over
/// the enclosing parentheses. The parser builds such chains as nested trees and its own
/// walkers (and drop) recurse through them: a longer chain could exhaust a worker's stack.
const MAX_CHAIN: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lead {
    Statement,
    /// `DO ...`: the parser has no DO statement.
    Do,
    /// `MOVE ...`, parsed as FETCH.
    Move,
}

pub(super) struct Segment {
    /// The statement's tokens, ending with a `;` (added at the end of the text).
    pub tokens: Vec<TokenWithSpan>,
    pub lead: Lead,
}

pub(super) fn segments(sql: &str) -> Result<Vec<Segment>, SqlError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|error| unreadable_at("an unreadable token", error.location))?;
    let mut segments = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    let mut depth = 0_usize;
    // Inside a routine's `BEGIN ATOMIC ... END` body: the CASE ... END still open, plus one.
    let mut body = 0_usize;
    for (index, token) in tokens.iter().enumerate() {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::SemiColon if body > 0 => {
                // Empty statements of the body, which the parser does not take.
                let previous = current
                    .iter()
                    .rev()
                    .find(|t| significant(t) || t.token == Token::SemiColon);
                if previous.is_some_and(|t| t.token == Token::SemiColon || is_word(t, "atomic")) {
                    continue;
                }
            }
            Token::SemiColon if depth == 0 => {
                current.push(token.clone());
                segments.extend(segment(std::mem::take(&mut current))?);
                continue;
            }
            _ if body > 0 && is_word(token, "case") => body += 1,
            _ if body > 0 && is_word(token, "end") => body -= 1,
            _ if depth == 0 && opens_atomic_body(&current, &tokens[index..]) => body = 1,
            _ => {}
        }
        current.push(token.clone());
    }
    segments.extend(segment(current)?);
    Ok(segments)
}

/// `BEGIN ATOMIC` at `rest` in `CREATE [OR REPLACE] FUNCTION | PROCEDURE`: the routine's
/// body is a list of statements up to its END, which the server reads as part of the one
/// statement (as psql does when it sends them). Should this be misjudged, the text cut
/// differently does not parse as one statement, and is refused.
fn opens_atomic_body(current: &[TokenWithSpan], rest: &[TokenWithSpan]) -> bool {
    let mut before = current.iter().filter(|t| significant(t));
    let routine = match (before.next(), before.next(), before.next(), before.next()) {
        (Some(create), Some(or), Some(replace), Some(kind))
            if is_word(or, "or") && is_word(replace, "replace") =>
        {
            is_word(create, "create") && (is_word(kind, "function") || is_word(kind, "procedure"))
        }
        (Some(create), Some(kind), ..) => {
            is_word(create, "create") && (is_word(kind, "function") || is_word(kind, "procedure"))
        }
        _ => false,
    };
    let mut after = rest.iter().filter(|t| significant(t));
    routine
        && after.next().is_some_and(|t| is_word(t, "begin"))
        && after.next().is_some_and(|t| is_word(t, "atomic"))
}

fn significant(token: &TokenWithSpan) -> bool {
    !matches!(
        token.token,
        Token::Whitespace(_) | Token::SemiColon | Token::EOF
    )
}

fn segment(mut tokens: Vec<TokenWithSpan>) -> Result<Option<Segment>, SqlError> {
    let Some(first) = tokens.iter().position(significant) else {
        return Ok(None);
    };
    check_chains(&tokens)?;
    check_unicode_identifiers(&tokens)?;
    let lead = if is_word(&tokens[first], "do") {
        Lead::Do
    } else if is_word(&tokens[first], "move") {
        tokens[first].token = Token::make_keyword("FETCH");
        Lead::Move
    } else {
        Lead::Statement
    };
    if !matches!(tokens.iter().rev().find(|t| !is_space(t)), Some(t) if t.token == Token::SemiColon)
    {
        let end = tokens
            .last()
            .map_or(Span::empty(), |t| Span::new(t.span.end, t.span.end));
        tokens.push(TokenWithSpan::new(Token::SemiColon, end));
    }
    for token in &mut tokens {
        // PostgreSQL's other spelling, a reserved word like ANALYZE; the parser knows one.
        if is_word(token, "analyse") {
            token.token = Token::make_keyword("ANALYZE");
        }
    }
    if lead == Lead::Statement {
        tokens = forms::rewrite(drop_only(rewrite_table(tokens)));
    }
    Ok(Some(Segment { tokens, lead }))
}

fn is_space(token: &TokenWithSpan) -> bool {
    matches!(token.token, Token::Whitespace(_))
}

/// An unquoted word, compared case-insensitively.
pub(super) fn is_word(token: &TokenWithSpan, word: &str) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn keyword(token: &TokenWithSpan) -> Option<Keyword> {
    match &token.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}

/// `TABLE name` where a query may start becomes `SELECT * FROM name`.
fn rewrite_table(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_insert = tokens
        .iter()
        .find(|t| significant(t))
        .is_some_and(|t| keyword(t) == Some(Keyword::INSERT));
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for token in tokens {
        // In INSERT, TABLE can only start the source query.
        if keyword(&token) == Some(Keyword::TABLE) && (is_insert || starts_query(out.iter().rev()))
        {
            let span = token.span;
            for word in [
                Token::make_keyword("SELECT"),
                Token::Mul,
                Token::make_keyword("FROM"),
            ] {
                out.push(TokenWithSpan::new(word, span));
                out.push(TokenWithSpan::new(
                    Token::Whitespace(Whitespace::Space),
                    span,
                ));
            }
            continue;
        }
        out.push(token);
    }
    out
}

/// Drops `ONLY` before a relation name; keeps it in `FETCH FIRST n ROWS ONLY`.
fn drop_only(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let dropped: Vec<bool> = (0..tokens.len())
        .map(|i| {
            if keyword(&tokens[i]) != Some(Keyword::ONLY) {
                return false;
            }
            let after_rows = tokens[..i]
                .iter()
                .rev()
                .find(|t| significant(t))
                .is_some_and(|t| matches!(keyword(t), Some(Keyword::ROW | Keyword::ROWS)));
            let before_name = tokens[i + 1..]
                .iter()
                .find(|t| significant(t))
                .is_some_and(|t| matches!(t.token, Token::Word(_) | Token::LParen));
            !after_rows && before_name
        })
        .collect();
    tokens
        .into_iter()
        .zip(dropped)
        .filter_map(|(token, dropped)| (!dropped).then_some(token))
        .collect()
}

/// Can a query start after these (reversed) tokens?
fn starts_query<'t>(mut before: impl Iterator<Item = &'t TokenWithSpan>) -> bool {
    let Some(previous) = before.find(|t| significant(t)) else {
        return true;
    };
    match &previous.token {
        Token::LParen | Token::RParen => true,
        Token::Word(word) if word.quote_style.is_none() => matches!(
            word.keyword,
            Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::ALL
                | Keyword::DISTINCT
                | Keyword::AS
                | Keyword::FOR
                | Keyword::EXPLAIN
                | Keyword::ANALYZE
                | Keyword::VERBOSE
        ),
        _ => false,
    }
}

/// Bounds the depth of operator chains (see [`MAX_CHAIN`]). A group in parentheses, brackets
/// or CASE ... END is one operand of the chain around it; inside a group, commas, CASE
/// branches and clauses start a new chain. Only the parser's own groups end a chain early,
/// so the count cannot be reset in the middle of a chain the parser builds.
fn check_chains(tokens: &[TokenWithSpan]) -> Result<(), SqlError> {
    let mut levels = vec![0_usize];
    let mut total = 0_usize;
    for token in tokens {
        let operator = match &token.token {
            Token::LParen | Token::LBracket => {
                levels.push(0);
                token.token == Token::LBracket
            }
            Token::RParen | Token::RBracket => {
                close(&mut levels, &mut total);
                false
            }
            Token::Comma => {
                restart(&mut levels, &mut total);
                false
            }
            Token::Word(word) if word.quote_style.is_none() => match word.keyword {
                Keyword::CASE => {
                    levels.push(0);
                    false
                }
                Keyword::END => {
                    close(&mut levels, &mut total);
                    false
                }
                Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::SELECT
                | Keyword::WHERE
                | Keyword::HAVING
                | Keyword::VALUES
                | Keyword::RETURNING => {
                    restart(&mut levels, &mut total);
                    false
                }
                Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::OVERLAPS
                | Keyword::NOTNULL
                | Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT => true,
                _ => false,
            },
            Token::Word(_)
            | Token::Number(..)
            | Token::Whitespace(_)
            | Token::SemiColon
            | Token::Period
            | Token::Placeholder(_)
            | Token::EOF => false,
            token if is_literal(token) => false,
            _ => true,
        };
        if operator {
            if let Some(level) = levels.last_mut() {
                *level += 1;
            }
            total += 1;
            if total > MAX_CHAIN {
                return Err(SqlError::TooDeep);
            }
        }
    }
    Ok(())
}

/// `U&"d\0061ta"` is one identifier to PostgreSQL; the tokenizer reads `U & "d\0061ta"`,
/// names that would not match the catalog's. Refused rather than misread.
fn check_unicode_identifiers(tokens: &[TokenWithSpan]) -> Result<(), SqlError> {
    for window in tokens.windows(3) {
        if let [u, Token::Ampersand, Token::Word(name)] =
            [&window[0].token, &window[1].token, &window[2].token]
        {
            if matches!(u, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u"))
                && name.quote_style == Some('"')
            {
                return Err(unreadable_at(
                    "a Unicode-escaped identifier",
                    window[0].span.start,
                ));
            }
        }
    }
    Ok(())
}

fn close(levels: &mut Vec<usize>, total: &mut usize) {
    if levels.len() > 1 {
        *total -= levels.pop().unwrap_or_default();
    }
}

fn restart(levels: &mut [usize], total: &mut usize) {
    if let Some(level) = levels.last_mut() {
        *total -= *level;
        *level = 0;
    }
}

fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
    )
}

/// The start of a statement's text, for messages that must not quote it.
pub(super) fn start(tokens: &[TokenWithSpan]) -> Location {
    tokens
        .iter()
        .find(|t| significant(t))
        .map_or(Location::new(0, 0), |t| t.span.start)
}
