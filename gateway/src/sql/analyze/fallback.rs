//! PostgreSQL statements the parser does not read, recognized from their tokens. Only shapes
//! simple enough to be sure of are accepted: their arguments are names and literals, never
//! expressions, so there is nothing in them to read or call.

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{
    blank,
    split::{self, is_word},
    unreadable_at, SqlError, StatementFacts, StatementKind,
};

/// `DO [LANGUAGE l] 'code' [LANGUAGE l]`: an anonymous block, whose body is not analysed.
pub(super) fn do_block(tokens: &[TokenWithSpan]) -> Result<StatementFacts, SqlError> {
    let words = words(tokens);
    let mut rest = words.get(1..).unwrap_or_default();
    let mut code = false;
    loop {
        match rest {
            [] => break,
            [language, name, tail @ ..]
                if is_word(language, "language") && (is_name(name) || is_string(name)) =>
            {
                rest = tail;
            }
            [body, tail @ ..] if !code && is_string(body) => {
                code = true;
                rest = tail;
            }
            _ => return Err(unreadable_at("a malformed DO block", split::start(tokens))),
        }
    }
    if !code {
        return Err(unreadable_at(
            "a DO block without code",
            split::start(tokens),
        ));
    }
    Ok(blank(StatementKind::Do, "DO"))
}

/// Could these tokens be one of the forms [`recognize`] accepts?
pub(super) fn may_recognize(tokens: &[TokenWithSpan]) -> bool {
    let mut words = tokens.iter().filter(|t| is_significant(t));
    words
        .next()
        .is_some_and(|t| is_word(t, "set") || is_word(t, "reset") || is_word(t, "alter"))
}

/// `ALTER SYSTEM`, `RESET SESSION AUTHORIZATION`, `SET [LOCAL] SESSION AUTHORIZATION ...`,
/// `SET role TO ...`: read without the parser, or None.
pub(super) fn recognize(tokens: &[TokenWithSpan]) -> Option<StatementFacts> {
    let words = words(tokens);
    match words.as_slice() {
        [alter, system, verb, rest @ ..]
            if is_word(alter, "alter")
                && is_word(system, "system")
                && (is_word(verb, "set") || is_word(verb, "reset"))
                && all_simple(rest) =>
        {
            Some(blank(StatementKind::Alter, "ALTER SYSTEM"))
        }
        [reset, session, authorization]
            if is_word(reset, "reset")
                && is_word(session, "session")
                && is_word(authorization, "authorization") =>
        {
            Some(role_change("RESET SESSION AUTHORIZATION"))
        }
        [set, rest @ ..] if is_word(set, "set") => set_role(rest),
        _ => None,
    }
}

fn set_role(words: &[&TokenWithSpan]) -> Option<StatementFacts> {
    // An optional SESSION / LOCAL scope, unless SESSION starts SESSION AUTHORIZATION.
    let words = match words {
        [session, authorization, ..]
            if is_word(session, "session") && is_word(authorization, "authorization") =>
        {
            words
        }
        [scope, rest @ ..] if is_word(scope, "session") || is_word(scope, "local") => rest,
        _ => words,
    };
    match words {
        [session, authorization, value @ ..]
            if is_word(session, "session")
                && is_word(authorization, "authorization")
                && !value.is_empty()
                && all_simple(value) =>
        {
            Some(role_change("SET SESSION AUTHORIZATION"))
        }
        [name, assign, value @ ..]
            if (is_word(assign, "to") || assign.token == Token::Eq)
                && !value.is_empty()
                && all_simple(value) =>
        {
            match variable(name)? {
                Variable::Role => Some(role_change("SET ROLE")),
                Variable::SessionAuthorization => Some(role_change("SET SESSION AUTHORIZATION")),
            }
        }
        [role, value @ ..] if is_word(role, "role") && !value.is_empty() && all_simple(value) => {
            Some(role_change("SET ROLE"))
        }
        _ => None,
    }
}

enum Variable {
    Role,
    SessionAuthorization,
}

fn variable(token: &TokenWithSpan) -> Option<Variable> {
    let Token::Word(word) = &token.token else {
        return None;
    };
    let name = match word.quote_style {
        None => word.value.to_ascii_lowercase(),
        Some(_) => word.value.clone(),
    };
    match name.as_str() {
        "role" => Some(Variable::Role),
        "session_authorization" => Some(Variable::SessionAuthorization),
        _ => None,
    }
}

fn role_change(command: &str) -> StatementFacts {
    let mut facts = blank(StatementKind::Set, command);
    facts.role_change = true;
    facts
}

fn is_significant(token: &TokenWithSpan) -> bool {
    !matches!(
        token.token,
        Token::Whitespace(_) | Token::SemiColon | Token::EOF
    )
}

fn words(tokens: &[TokenWithSpan]) -> Vec<&TokenWithSpan> {
    tokens.iter().filter(|t| is_significant(t)).collect()
}

fn is_name(token: &TokenWithSpan) -> bool {
    matches!(token.token, Token::Word(_))
}

pub(super) fn is_string(token: &TokenWithSpan) -> bool {
    matches!(
        token.token,
        Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
    )
}

/// Names, literals and the punctuation of a value list: nothing that could call or read.
fn all_simple(tokens: &[&TokenWithSpan]) -> bool {
    tokens.iter().all(|t| {
        is_name(t)
            || is_string(t)
            || matches!(
                t.token,
                Token::Number(..) | Token::Comma | Token::Period | Token::Eq | Token::Minus
            )
    })
}
