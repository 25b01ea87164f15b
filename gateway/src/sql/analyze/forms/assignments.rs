//! Assigned columns with subscripts or fields: `SET a[1] = v`, `SET j['k'][0] = v`,
//! `SET c[1].f = v`, `INSERT INTO t (c.f[1], a[2:3])`. The column written is the leading
//! name either way, so when the subscripts are constants the indirection is written as one
//! field named `[]`: the analyzer takes the first part of a dotted target as the column, and
//! knows from the second that only part of it is assigned (the column's value is then
//! computed, not a copy). A subscript with anything else in it may read or call, and stays
//! (the parser refuses it).

use sqlparser::tokenizer::Token;

use super::Forms;

impl Forms {
    /// `SET a[1] = v, b[2:3] = w` in UPDATE, `ON CONFLICT ... DO UPDATE` and MERGE.
    pub(super) fn set_subscripts(&mut self) {
        let mut n = 0;
        while n < self.len() {
            if !self.word(n, "set") {
                n += 1;
                continue;
            }
            let depth = self.depth[n];
            let mut target = n + 1;
            loop {
                if let Some(end) = self.indirection_after_name(target) {
                    if self.is(end, &Token::Eq) {
                        self.part_of(target, end);
                    }
                }
                // The next assignment starts after a comma at the SET's depth.
                let next = (target..self.len()).find(|&m| {
                    self.depth[m] < depth
                        || self.depth[m] == depth
                            && (self.is(m, &Token::Comma)
                                || self.any_word(m, &["from", "where", "returning", "when"]))
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
                        n = self.len();
                        break;
                    }
                }
            }
        }
    }

    /// `INSERT INTO t [AS a] (a[1], c.f[2], b)`.
    pub(super) fn insert_subscripts(&mut self) {
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
            if let Some(end) = self.indirection_after_name(column) {
                let ends_column = self
                    .at(end)
                    .is_some_and(|t| matches!(t.token, Token::Comma | Token::RParen));
                if ends_column {
                    self.part_of(column, end);
                }
            }
            match (column..self.len()).find(|&m| {
                self.depth[m] == depth && self.is(m, &Token::Comma) || self.depth[m] < depth
            }) {
                Some(m) if self.depth[m] == depth => column = m + 1,
                _ => break,
            }
        }
    }

    /// The name at `n` with its indirection up to `end`, written `name."[]"`.
    fn part_of(&mut self, n: usize, end: usize) {
        self.remove(n + 1, end);
        self.insert_after(n, vec![Token::Period, Token::make_word("[]", Some('"'))]);
    }

    /// For a name at `n` followed by fields and constant subscripts (at least one
    /// subscript), the significant index after them.
    fn indirection_after_name(&self, n: usize) -> Option<usize> {
        if !self.is_name(n) {
            return None;
        }
        let mut m = n + 1;
        let mut subscripted = false;
        loop {
            if self.is(m, &Token::Period) && self.is_name(m + 1) {
                m += 2;
                continue;
            }
            if !self.is(m, &Token::LBracket) {
                break;
            }
            m += 1;
            while self.is_string(m)
                || self.at(m).is_some_and(|t| {
                    matches!(
                        t.token,
                        Token::Number(..) | Token::Colon | Token::Minus | Token::Plus
                    )
                })
            {
                m += 1;
            }
            if !self.is(m, &Token::RBracket) {
                return None;
            }
            m += 1;
            subscripted = true;
        }
        subscripted.then_some(m)
    }
}
