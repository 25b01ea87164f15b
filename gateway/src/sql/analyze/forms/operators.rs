//! Operators the way PostgreSQL's lexer cuts them. The tokenizer splits `*<` (a record
//! comparison) or `|@|` into several known symbols the parser then cannot read; PostgreSQL
//! reads the longest run of operator characters as one operator, less any trailing `+` or
//! `-` (unless the run holds one of ``~!@#%^&|`?``). Such a run is joined into one custom
//! operator, which the analyzer treats as anybody's operator: its value is unknown.

use sqlparser::tokenizer::{Token, TokenWithSpan};

/// Characters of an operator; `?` is left out, the tokenizer reads it as a parameter.
const OPERATOR: &str = "+-*/<>=~!@#%^&|`";
/// A run holding one of these may end in `+` or `-`.
const KEEPS_SIGN: &str = "~!@#%^&|`?";

pub(super) fn merge(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let texts: Vec<Option<String>> = tokens.iter().map(operator_text).collect();
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let run_end = (i + 1..tokens.len())
            .find(|&j| texts[j].is_none() || tokens[j - 1].span.end != tokens[j].span.start)
            .unwrap_or(tokens.len());
        if texts[i].is_none() || run_end - i < 2 {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let run: String = texts[i..run_end]
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let length = operator_length(&run);
        // The tokens that make up exactly the operator PostgreSQL reads.
        let mut covered = 0;
        let mut count = 0;
        while covered < length {
            covered += texts[i + count].as_ref().map_or(0, |t| t.chars().count());
            count += 1;
        }
        if covered != length {
            // PostgreSQL cuts inside a token: left as the tokenizer read it.
            out.extend(tokens[i..run_end].iter().cloned());
            i = run_end;
            continue;
        }
        if count < 2 {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let operator: String = texts[i..i + count]
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let span = tokens[i].span.union(&tokens[i + count - 1].span);
        out.push(TokenWithSpan::new(
            Token::CustomBinaryOperator(operator),
            span,
        ));
        i += count;
    }
    out
}

/// The text of a token made only of operator characters.
fn operator_text(token: &TokenWithSpan) -> Option<String> {
    let text = token.token.to_string();
    let operator = !text.is_empty() && text.chars().all(|c| OPERATOR.contains(c));
    operator.then_some(text)
}

/// How many characters of `run` PostgreSQL reads as its first operator.
fn operator_length(run: &str) -> usize {
    let chars: Vec<char> = run.chars().collect();
    let mut length = chars.len();
    if !chars.iter().any(|c| KEEPS_SIGN.contains(*c)) {
        while length > 1 && matches!(chars[length - 1], '+' | '-') {
            length -= 1;
        }
    }
    length
}
