//! PostgreSQL forms the parser does not read, rewritten on the tokens into forms it reads with
//! the same facts. The text sent to the server is never changed: these rewrites only shape
//! what is analysed. Nothing a statement reads, writes or calls may be lost, and its result
//! columns must stay the same in number and order, so a rewrite only
//!
//! - removes words that carry no name, value or expression (`WITH CHECK OPTION`, `COST 10`,
//!   `BY REF`, constant subscripts of an assigned column, ...);
//! - respells a construct as one the parser knows that reads the same operands
//!   (`SUBSTRING(a SIMILAR b ESCAPE c)` as `SUBSTRING(a FROM b FOR c)`, `x ISNULL` as
//!   `x IS NULL`, `xmlpi(NAME n)` as `xmlpi('n')`);
//! - adds parentheses, a placeholder type or a default alias that changes no fact.
//!
//! Each group of forms lives in its own module; anything not recognized exactly is left as
//! it is, and the parser refuses it.

mod assignments;
mod clauses;
mod copy_options;
mod creation;
mod from_items;
mod operators;
mod xml;

use sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::{fallback, split::is_word};

pub(super) fn rewrite(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut forms = Forms::new(operators::merge(tokens));
    forms.frame_exclusions();
    forms.frame_bounds();
    forms.with_data();
    forms.variadic();
    forms.set_subscripts();
    forms.insert_subscripts();
    forms.current_of();
    forms.between_symmetric();
    forms.isnull();
    forms.group_by();
    forms.substring_similar();
    forms.field_star();
    forms.check_option();
    forms.table_as();
    forms.materialized_view_options();
    forms.recursive_view();
    forms.routine_options();
    forms.copy_options();
    forms.xml_functions();
    forms.xmltable();
    forms.rows_from();
    forms.column_definitions();
    forms.finish()
}

struct Forms {
    tokens: Vec<TokenWithSpan>,
    /// Indices of the significant tokens (no whitespace, comments, `;`).
    sig: Vec<usize>,
    /// Parenthesis depth of each significant token.
    depth: Vec<usize>,
    removed: Vec<bool>,
    /// Tokens written in place of a token (which is then removed), by token index.
    replaced: Vec<Vec<Token>>,
    /// Tokens written before and after a token, by token index.
    before: Vec<Vec<Token>>,
    after: Vec<Vec<Token>>,
}

impl Forms {
    fn new(tokens: Vec<TokenWithSpan>) -> Self {
        let sig: Vec<usize> = (0..tokens.len())
            .filter(|&i| {
                !matches!(
                    tokens[i].token,
                    Token::Whitespace(_) | Token::SemiColon | Token::EOF
                )
            })
            .collect();
        let mut depth = Vec::with_capacity(sig.len());
        let mut level = 0_usize;
        for &i in &sig {
            if tokens[i].token == Token::RParen {
                level = level.saturating_sub(1);
            }
            depth.push(level);
            if tokens[i].token == Token::LParen {
                level += 1;
            }
        }
        let count = tokens.len();
        Self {
            tokens,
            sig,
            depth,
            removed: vec![false; count],
            replaced: vec![Vec::new(); count],
            before: vec![Vec::new(); count],
            after: vec![Vec::new(); count],
        }
    }

    /// The `n`th significant token.
    fn at(&self, n: usize) -> Option<&TokenWithSpan> {
        self.sig.get(n).map(|&i| &self.tokens[i])
    }

    fn is(&self, n: usize, token: &Token) -> bool {
        self.at(n).is_some_and(|t| t.token == *token)
    }

    fn word(&self, n: usize, word: &str) -> bool {
        self.at(n).is_some_and(|t| is_word(t, word))
    }

    fn any_word(&self, n: usize, words: &[&str]) -> bool {
        words.iter().any(|w| self.word(n, w))
    }

    /// A name: any word, quoted or not.
    fn is_name(&self, n: usize) -> bool {
        self.at(n)
            .is_some_and(|t| matches!(t.token, Token::Word(_)))
    }

    fn is_string(&self, n: usize) -> bool {
        self.at(n).is_some_and(fallback::is_string)
    }

    fn len(&self) -> usize {
        self.sig.len()
    }

    fn remove(&mut self, from: usize, to: usize) {
        for n in from..to {
            self.removed[self.sig[n]] = true;
        }
    }

    fn replace(&mut self, n: usize, tokens: Vec<Token>) {
        let i = self.sig[n];
        self.removed[i] = true;
        self.replaced[i] = tokens;
    }

    fn insert_before(&mut self, n: usize, tokens: Vec<Token>) {
        let i = self.sig[n];
        self.before[i].extend(tokens);
    }

    fn insert_after(&mut self, n: usize, tokens: Vec<Token>) {
        let i = self.sig[n];
        self.after[i].extend(tokens);
    }

    fn first_word(&self, word: &str) -> bool {
        self.word(0, word)
    }

    /// For a possibly qualified name starting at `n`, the index after it.
    fn after_name(&self, mut n: usize) -> Option<usize> {
        if !self.is_name(n) {
            return None;
        }
        while self.is(n + 1, &Token::Period) && self.is_name(n + 2) {
            n += 2;
        }
        Some(n + 1)
    }

    /// For a `(` at `n`, the index of its `)`.
    fn closing(&self, n: usize) -> Option<usize> {
        if !self.is(n, &Token::LParen) {
            return None;
        }
        (n + 1..self.len()).find(|&m| self.depth[m] == self.depth[n] && self.is(m, &Token::RParen))
    }

    /// The significant indices inside the parentheses opening at `open` that are at the
    /// parentheses' own level (the call's arguments, not what is nested in them).
    fn level_inside(&self, open: usize) -> Vec<usize> {
        let Some(close) = self.closing(open) else {
            return Vec::new();
        };
        let inner = self.depth[open] + 1;
        (open + 1..close)
            .filter(|&m| self.depth[m] == inner)
            .collect()
    }

    /// The index of the word after the statement's leading `CREATE [OR REPLACE]`, or None
    /// when the statement does not start so.
    fn after_create(&self) -> Option<usize> {
        if !self.first_word("create") {
            return None;
        }
        Some(if self.word(1, "or") && self.word(2, "replace") {
            3
        } else {
            1
        })
    }

    fn finish(self) -> Vec<TokenWithSpan> {
        let Self {
            tokens,
            removed,
            replaced,
            before,
            after,
            ..
        } = self;
        let mut out = Vec::with_capacity(tokens.len());
        let space = |span| TokenWithSpan::new(Token::Whitespace(Whitespace::Space), span);
        for (i, token) in tokens.into_iter().enumerate() {
            let span = token.span;
            let emit = |words: &[Token], out: &mut Vec<TokenWithSpan>| {
                for word in words {
                    out.push(space(span));
                    out.push(TokenWithSpan::new(word.clone(), span));
                }
                if !words.is_empty() {
                    out.push(space(span));
                }
            };
            emit(&before[i], &mut out);
            if removed[i] {
                // A space keeps the words around it apart.
                out.push(space(span));
                emit(&replaced[i], &mut out);
            } else {
                out.push(token);
            }
            emit(&after[i], &mut out);
        }
        out
    }
}

fn keyword(word: &str) -> Token {
    Token::make_keyword(word)
}
