//! The SQL/XML forms. Their keywords name no data: an element's or attribute's name is a
//! label in the output document (passed on as a string), `CONTENT` / `DOCUMENT` and
//! `BY REF` / `BY VALUE` say how a value is taken, and the type of XMLSERIALIZE is the
//! result's. Every operand expression stays, as an argument of the same function.

use sqlparser::tokenizer::Token;

use super::{keyword, Forms};

impl Forms {
    pub(super) fn xml_functions(&mut self) {
        for n in 0..self.len() {
            if !self.is(n + 1, &Token::LParen) {
                continue;
            }
            if self.any_word(n, &["xmlelement", "xmlpi"]) {
                self.element_name(n + 1);
            } else if self.any_word(n, &["xmlattributes", "xmlforest"]) {
                self.attribute_names(n + 1);
            } else if self.word(n, "xmlroot") {
                self.root_options(n + 1);
            } else if self.word(n, "xmlserialize") {
                self.serialize(n + 1);
            } else if self.word(n, "xmlexists") {
                self.passing(n + 1, true);
            }
        }
        for n in 1..self.len() {
            let after_is = self.word(n - 1, "is")
                || n > 1 && self.word(n - 2, "is") && self.word(n - 1, "not");
            if after_is && self.word(n, "document") {
                self.replace(n, vec![keyword("NULL")]);
            }
        }
    }

    /// `XMLTABLE` is a FROM item that is always lateral; the parser reads it only without
    /// the word. `BY REF` of its PASSING argument goes as in `xmlexists`.
    pub(super) fn xmltable(&mut self) {
        for n in 0..self.len() {
            if self.word(n, "xmltable") && self.is(n + 1, &Token::LParen) {
                if n > 0 && self.word(n - 1, "lateral") {
                    self.remove(n - 1, n);
                }
                self.passing(n + 1, false);
            }
        }
    }

    /// `xmlelement(NAME e, ...)`, `xmlpi(NAME p, ...)`: the name as a string.
    fn element_name(&mut self, open: usize) {
        if !self.word(open + 1, "name") {
            return;
        }
        let Some(Token::Word(name)) = self.at(open + 2).map(|t| t.token.clone()) else {
            return;
        };
        self.remove(open + 1, open + 2);
        self.replace(open + 2, vec![Token::SingleQuotedString(name.value)]);
    }

    /// `xmlattributes(v AS a, ...)`, `xmlforest(v AS a, ...)`: the names go.
    fn attribute_names(&mut self, open: usize) {
        let level = self.level_inside(open);
        for (k, &m) in level.iter().enumerate() {
            let ends = level
                .get(k + 2)
                .map_or(self.closing(open) == Some(m + 2), |&next| {
                    next == m + 2 && self.is(next, &Token::Comma)
                });
            if self.word(m, "as") && self.is_name(m + 1) && ends {
                self.remove(m, m + 2);
            }
        }
    }

    /// `xmlroot(x, VERSION v | NO VALUE [, STANDALONE YES | NO | NO VALUE])`: the version
    /// expression stays, the constants become NULL, TRUE and FALSE.
    fn root_options(&mut self, open: usize) {
        let level = self.level_inside(open);
        for &m in &level {
            if !self.is(m, &Token::Comma) {
                continue;
            }
            let option = m + 1;
            let no_value = self.word(option + 1, "no") && self.word(option + 2, "value");
            if self.word(option, "version") {
                self.remove(option, option + 1);
                if no_value {
                    self.replace(option + 1, vec![keyword("NULL")]);
                    self.remove(option + 2, option + 3);
                }
            } else if self.word(option, "standalone") {
                self.remove(option, option + 1);
                if no_value {
                    self.replace(option + 1, vec![keyword("NULL")]);
                    self.remove(option + 2, option + 3);
                } else if self.word(option + 1, "yes") {
                    self.replace(option + 1, vec![keyword("TRUE")]);
                } else if self.word(option + 1, "no") {
                    self.replace(option + 1, vec![keyword("FALSE")]);
                }
            }
        }
    }

    /// `xmlserialize(CONTENT | DOCUMENT v AS type)`: the value stays.
    fn serialize(&mut self, open: usize) {
        let Some(close) = self.closing(open) else {
            return;
        };
        if !self.any_word(open + 1, &["content", "document"]) {
            return;
        }
        let level = self.level_inside(open);
        let Some(&as_word) = level.iter().find(|&&m| self.word(m, "as")) else {
            return;
        };
        self.remove(open + 1, open + 2);
        self.remove(as_word, close);
    }

    /// `PASSING [BY REF | BY VALUE] doc [BY REF | BY VALUE]`: the passing modes go; in
    /// `xmlexists` (`as_argument`) the document becomes the second argument.
    fn passing(&mut self, open: usize, as_argument: bool) {
        let level = self.level_inside(open);
        let Some(&passing) = level.iter().find(|&&m| self.word(m, "passing")) else {
            return;
        };
        if as_argument {
            self.replace(passing, vec![Token::Comma]);
        }
        for &m in level.iter().filter(|&&m| m > passing) {
            let mode = self.word(m + 1, "ref") || as_argument && self.word(m + 1, "value");
            if self.word(m, "by") && mode {
                self.remove(m, m + 2);
            }
        }
    }
}
