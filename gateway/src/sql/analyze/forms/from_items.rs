//! Function FROM items the parser lacks: `ROWS FROM (f(...), g(...)) [WITH ORDINALITY]`
//! and a column definition list without an alias, `f(...) AS (a int, b text)`.

use sqlparser::tokenizer::Token;

use super::{keyword, Forms};

/// Words that start a query, not a column definition list.
const QUERY_START: &[&str] = &[
    "select", "values", "with", "table", "insert", "update", "delete", "merge",
];

impl Forms {
    /// `ROWS FROM (f(a), g(b)) [WITH ORDINALITY]` has the columns of f, then those of g,
    /// then the ordinality: the columns of `LATERAL (SELECT *, 0 AS ordinality FROM f(a),
    /// g(b))`, which reads and calls the same (the functions are lateral either way). Its
    /// rows differ (ROWS FROM zips, the join multiplies), which no fact depends on.
    pub(super) fn rows_from(&mut self) {
        for n in 1..self.len() {
            if !(self.word(n, "rows") && self.word(n + 1, "from") && self.is(n + 2, &Token::LParen))
            {
                continue;
            }
            let Some(close) = self.closing(n + 2) else {
                continue;
            };
            let mut head = Vec::new();
            if !self.word(n - 1, "lateral") {
                head.push(keyword("LATERAL"));
            }
            head.extend([Token::LParen, keyword("SELECT"), Token::Mul]);
            if self.word(close + 1, "with") && self.word(close + 2, "ordinality") {
                self.remove(close + 1, close + 3);
                head.extend([
                    Token::Comma,
                    Token::Number("0".to_owned(), false),
                    keyword("AS"),
                    Token::make_word("ordinality", None),
                ]);
            }
            self.replace(n, head);
            self.remove(n + 2, n + 3);
        }
    }

    /// `FROM f(...) AS (a int, b text)`: PostgreSQL names the item after the function, as
    /// `f(...) AS f(a int, b text)` does.
    pub(super) fn column_definitions(&mut self) {
        for n in 1..self.len() {
            let shape = self.is(n - 1, &Token::RParen)
                && self.word(n, "as")
                && self.is(n + 1, &Token::LParen)
                && self.is_name(n + 2)
                && !self.any_word(n + 2, QUERY_START)
                && self.is_name(n + 3);
            if !shape {
                continue;
            }
            let open = (0..n - 1)
                .rev()
                .find(|&m| self.depth[m] == self.depth[n - 1] && self.is(m, &Token::LParen));
            let Some(open) = open.filter(|&o| o > 0 && self.is_name(o - 1)) else {
                continue;
            };
            // The function's name, and what comes before it (possibly qualified).
            let mut start = open - 1;
            while start >= 2 && self.is(start - 1, &Token::Period) && self.is_name(start - 2) {
                start -= 2;
            }
            let from_item = start > 0
                && (self.any_word(start - 1, &["from", "join", "lateral"])
                    || self.is(start - 1, &Token::Comma)
                    || self.is(start - 1, &Token::LParen));
            if !from_item {
                continue;
            }
            if let Some(name) = self.at(open - 1).map(|t| t.token.clone()) {
                self.insert_after(n, vec![name]);
            }
        }
    }
}
