//! Text to facts: split into statements, parse each with the PostgreSQL dialect, and describe
//! it. Error messages keep only a position: parser messages quote the text they stumbled on,
//! which may be a value.

mod copy;
mod ddl;
mod fallback;
mod forms;
mod kinds;
mod split;
mod statements;
mod sweep;

use sqlparser::{
    dialect::PostgreSqlDialect,
    parser::{Parser, ParserError},
    tokenizer::{Location, Token, TokenWithSpan},
};

use super::{Analysis, SqlError, StatementFacts, StatementKind};
use split::{Lead, Segment};

pub(super) use statements::explain_analyze_of;

pub(super) fn analyze(sql: &str) -> Result<Analysis, SqlError> {
    let mut statements = Vec::new();
    for segment in split::segments(sql)? {
        statements.push(statement(segment)?);
    }
    Ok(Analysis { statements })
}

fn statement(segment: Segment) -> Result<StatementFacts, SqlError> {
    let Segment { tokens, lead } = segment;
    if lead == Lead::Do {
        return fallback::do_block(&tokens);
    }
    let size = tokens.len();
    // Kept for the forms recognized without the parser (SET / RESET / ALTER SYSTEM).
    let backup = fallback::may_recognize(&tokens).then(|| tokens.clone());
    match parse(tokens) {
        Ok(parsed) => {
            let mut facts = statements::facts(&parsed, size)?;
            if lead == Lead::Move {
                "MOVE".clone_into(&mut facts.command);
            }
            Ok(facts)
        }
        Err(error) => backup
            .as_deref()
            .and_then(fallback::recognize)
            .ok_or_else(|| unreadable(&error)),
    }
}

/// The parser's nesting limit (its default is 50). It recurses with large frames; at 32 its
/// worst case stays well inside a worker's 2 MiB stack in release builds, and the lineage
/// walk gives up on less nesting than that anyway.
const PARSER_RECURSION_LIMIT: usize = 32;

/// One statement from its tokens (which end with `;`).
fn parse(tokens: Vec<TokenWithSpan>) -> Result<sqlparser::ast::Statement, ParserError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let statement = parser.parse_statement()?;
    while parser.consume_token(&Token::SemiColon) {}
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "Expected: end of statement{}",
            next.span.start
        )));
    }
    Ok(statement)
}

/// A parser error without the text it quotes.
fn unreadable(error: &ParserError) -> SqlError {
    match error {
        ParserError::RecursionLimitExceeded => SqlError::TooDeep,
        ParserError::TokenizerError(message) | ParserError::ParserError(message) => {
            match position(message) {
                Some(location) => unreadable_at("a syntax error", location),
                None => SqlError::Unreadable("a syntax error".to_owned()),
            }
        }
    }
}

/// The " at Line: L, Column: C" the parser appends, read as numbers only.
fn position(message: &str) -> Option<Location> {
    let (_, rest) = message.rsplit_once(" at Line: ")?;
    let (line, column) = rest.split_once(", Column: ")?;
    Some(Location::new(
        line.trim().parse().ok()?,
        column.trim().parse().ok()?,
    ))
}

fn unreadable_at(what: &str, location: Location) -> SqlError {
    if location.line == 0 {
        return SqlError::Unreadable(what.to_owned());
    }
    SqlError::Unreadable(format!(
        "{what} at line {}, column {}",
        location.line, location.column
    ))
}

/// Facts with nothing in them yet.
fn blank(kind: StatementKind, command: impl Into<String>) -> StatementFacts {
    StatementFacts {
        kind,
        command: command.into(),
        reads: Vec::new(),
        writes: Vec::new(),
        ddl_objects: Vec::new(),
        functions: Vec::new(),
        has_where: false,
        has_limit: false,
        hidden_write: false,
        explain_analyze: false,
        role_change: false,
        copy: None,
        prepared: None,
        executes: None,
        cursor_query: None,
        cursor_holds: false,
        cursor: None,
        released: None,
        ends_transaction: false,
        outputs: Vec::new(),
        stores: Vec::new(),
        settings_set: Vec::new(),
        shows: None,
    }
}
