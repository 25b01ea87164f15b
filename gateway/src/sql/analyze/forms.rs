//! PostgreSQL forms the parser does not read, rewritten on the tokens into forms it reads with
//! the same facts. Only words that carry no name, value or expression are removed, so nothing
//! a statement reads, writes or calls is ever lost:
//!
//! - a window frame's `EXCLUDE CURRENT ROW | GROUP | TIES | NO OTHERS` (which rows of the
//!   frame are aggregated, not where they come from);
//! - `WITH [NO] DATA` ending `CREATE TABLE ... AS` / `CREATE MATERIALIZED VIEW` (without it
//!   the rows are stored: the facts cover more, not less);
//! - `VARIADIC` before a function's last argument (the same argument, passed as an array);
//! - constant subscripts of an assigned column, `SET a[1:2] = v`, `INSERT INTO t (a[1])`: the
//!   column written is `a` either way; subscripts with anything but numbers stay (and fail);
//! - `WHERE CURRENT OF cursor` of UPDATE and DELETE becomes `WHERE TRUE`: the cursor only
//!   picks the row, no value flows from it, and the statement still has a WHERE.

use sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::split::is_word;

pub(super) fn rewrite(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut forms = Forms::new(tokens);
    forms.frame_exclusions();
    forms.with_data();
    forms.variadic();
    forms.set_subscripts();
    forms.insert_subscripts();
    forms.current_of();
    forms.finish()
}

struct Forms {
    tokens: Vec<TokenWithSpan>,
    /// Indices of the significant tokens (no whitespace, comments, `;`).
    sig: Vec<usize>,
    /// Parenthesis depth of each significant token.
    depth: Vec<usize>,
    removed: Vec<bool>,
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
        let removed = vec![false; tokens.len()];
        Self {
            tokens,
            sig,
            depth,
            removed,
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

    fn remove(&mut self, from: usize, to: usize) {
        for n in from..to {
            self.removed[self.sig[n]] = true;
        }
    }

    fn first_word(&self, word: &str) -> bool {
        self.word(0, word)
    }

    fn frame_exclusions(&mut self) {
        for n in 1..self.sig.len() {
            let after_bound = ["preceding", "following", "row"]
                .iter()
                .any(|w| self.word(n - 1, w));
            if !after_bound || !self.word(n, "exclude") {
                continue;
            }
            let length = if self.word(n + 1, "current") && self.word(n + 2, "row")
                || self.word(n + 1, "no") && self.word(n + 2, "others")
            {
                3
            } else if self.word(n + 1, "group") || self.word(n + 1, "ties") {
                2
            } else {
                continue;
            };
            self.remove(n, n + length);
        }
    }

    fn with_data(&mut self) {
        let len = self.sig.len();
        if !self.first_word("create") || len < 3 {
            return;
        }
        if self.word(len - 3, "with") && self.word(len - 2, "no") && self.word(len - 1, "data") {
            self.remove(len - 3, len);
        } else if self.word(len - 2, "with") && self.word(len - 1, "data") {
            self.remove(len - 2, len);
        }
    }

    fn variadic(&mut self) {
        // In a routine's parameter list VARIADIC is a parameter mode, left to the parser.
        let routine = self.first_word("create")
            && (1..4).any(|n| {
                ["function", "procedure", "aggregate"]
                    .iter()
                    .any(|w| self.word(n, w))
            });
        if routine {
            return;
        }
        for n in 1..self.sig.len() {
            let after = self
                .at(n - 1)
                .is_some_and(|t| matches!(t.token, Token::LParen | Token::Comma));
            if after && self.word(n, "variadic") {
                self.remove(n, n + 1);
            }
        }
    }

    /// `SET a[1] = v, b[2:3] = w` in UPDATE, `ON CONFLICT ... DO UPDATE` and MERGE.
    fn set_subscripts(&mut self) {
        let mut n = 0;
        while n < self.sig.len() {
            if !self.word(n, "set") {
                n += 1;
                continue;
            }
            let depth = self.depth[n];
            let mut target = n + 1;
            loop {
                if let Some(end) = self.subscripts_after_name(target) {
                    if self.is(end, &Token::Eq) {
                        self.remove(target + 1, end);
                    }
                }
                // The next assignment starts after a comma at the SET's depth.
                let next = (target..self.sig.len()).find(|&m| {
                    self.depth[m] < depth
                        || self.depth[m] == depth
                            && (self.is(m, &Token::Comma)
                                || ["from", "where", "returning", "when"]
                                    .iter()
                                    .any(|w| self.word(m, w)))
                });
                match next {
                    Some(m) if self.depth[m] == depth && self.is(m, &Token::Comma) => {
                        target = m + 1;
                    }
                    Some(m) => {
                        n = m;
                        break;
                    }
                    None => {
                        n = self.sig.len();
                        break;
                    }
                }
            }
        }
    }

    /// `INSERT INTO t [AS a] (a[1], b)`.
    fn insert_subscripts(&mut self) {
        if !self.first_word("insert") || !self.word(1, "into") {
            return;
        }
        // The name, possibly qualified, then an optional alias.
        let mut n = 2;
        while self.is(n + 1, &Token::Period) {
            n += 2;
        }
        n += 1;
        if self.word(n, "as") {
            n += 2;
        }
        if !self.is(n, &Token::LParen) {
            return;
        }
        let depth = self.depth[n] + 1;
        let mut column = n + 1;
        while self.depth.get(column) == Some(&depth) {
            if let Some(end) = self.subscripts_after_name(column) {
                let ends_column = self
                    .at(end)
                    .is_some_and(|t| matches!(t.token, Token::Comma | Token::RParen));
                if ends_column {
                    self.remove(column + 1, end);
                }
            }
            match (column..self.sig.len()).find(|&m| {
                self.depth[m] == depth && self.is(m, &Token::Comma) || self.depth[m] < depth
            }) {
                Some(m) if self.depth[m] == depth => column = m + 1,
                _ => break,
            }
        }
    }

    /// For a name at `n` followed by constant subscripts, the significant index after them.
    fn subscripts_after_name(&self, n: usize) -> Option<usize> {
        if !matches!(self.at(n)?.token, Token::Word(_)) {
            return None;
        }
        let mut m = n + 1;
        let mut found = false;
        while self.is(m, &Token::LBracket) {
            m += 1;
            while self.at(m).is_some_and(|t| {
                matches!(
                    t.token,
                    Token::Number(..) | Token::Colon | Token::Minus | Token::Plus
                )
            }) {
                m += 1;
            }
            if !self.is(m, &Token::RBracket) {
                return None;
            }
            m += 1;
            found = true;
        }
        found.then_some(m)
    }

    fn current_of(&mut self) {
        if !(self.first_word("update") || self.first_word("delete")) {
            return;
        }
        for n in 0..self.sig.len() {
            let shape = self.depth[n] == 0
                && self.word(n, "where")
                && self.word(n + 1, "current")
                && self.word(n + 2, "of")
                && self
                    .at(n + 3)
                    .is_some_and(|t| matches!(t.token, Token::Word(_)));
            let ends = self.at(n + 4).is_none() || self.word(n + 4, "returning");
            if shape && ends {
                self.remove(n + 2, n + 4);
                let current = self.sig[n + 1];
                self.tokens[current].token = Token::make_keyword("TRUE");
            }
        }
    }

    fn finish(self) -> Vec<TokenWithSpan> {
        let Self {
            tokens, removed, ..
        } = self;
        tokens
            .into_iter()
            .zip(removed)
            .map(|(token, removed)| {
                if removed {
                    // A space keeps the words around it apart.
                    TokenWithSpan::new(Token::Whitespace(Whitespace::Space), token.span)
                } else {
                    token
                }
            })
            .collect()
    }
}
