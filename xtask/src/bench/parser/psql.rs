//! Cuts a psql script (a regression test's `.sql` file) into the statements psql would send,
//! following psql's own lexer (`src/fe_utils/psqlscan.l`): a `;` ends a statement only outside
//! quotes, dollar quotes, comments and parentheses, and outside the `BEGIN ... END` of a
//! `CREATE FUNCTION`/`PROCEDURE` body; a backslash starts a meta-command, which is not SQL and
//! runs to the end of its line (`\g`, `\gset`, `\gdesc`, ... send what came before it; `\;` puts
//! a `;` in the buffer without sending); `COPY ... FROM STDIN` is followed by data up to `\.`.
//! psql variables are substituted where the script gives their value (`\set`); a quoted use of
//! one whose value is unknown (`:'x'`, `:"x"`) becomes a literal of that shape, and a bare use
//! (`:x`) marks the statement as not knowable from the file.

use std::collections::HashMap;

/// One statement as psql would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Line (1-based) where the statement's text starts and where its terminator is.
    pub first_line: usize,
    pub last_line: usize,
    pub text: String,
    /// Lower-cased unquoted words outside literals, with the parenthesis depth they are at.
    pub words: Vec<(String, usize)>,
    /// A bare psql variable whose value the script does not give (`\gset`, `\getenv`).
    pub unknown_variable: bool,
}

/// Every statement of `script`, and the lines (0-based) psql echoes as it reads them (every
/// line but copy data), for matching the expected output.
pub fn split(script: &str) -> (Vec<Statement>, Vec<bool>) {
    let mut lexer = Lexer::new(script);
    lexer.run();
    (lexer.statements, lexer.echoed)
}

/// psql meta-commands that send the query buffer.
const SENDING: [&str; 8] = [
    "g",
    "gx",
    "gset",
    "gexec",
    "gdesc",
    "crosstabview",
    "watch",
    "G",
];

struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: usize,
    /// Whether psql echoes each line (false for copy data).
    echoed: Vec<bool>,
    buf: String,
    first_line: usize,
    words: Vec<(String, usize)>,
    depth: usize,
    begin_depth: usize,
    unknown_variable: bool,
    /// `\set` values; None for variables set from elsewhere (`\getenv`).
    variables: HashMap<String, Option<String>>,
    /// After `\gset`, any variable name may be defined with a value the file does not give.
    gset: bool,
    /// `COPY ... FROM STDIN` statements in the buffer: their data follows once it is sent.
    pending_copies: usize,
    statements: Vec<Statement>,
}

impl Lexer {
    fn new(script: &str) -> Self {
        Self {
            chars: script.chars().collect(),
            at: 0,
            line: 1,
            echoed: vec![true; script.lines().count() + 1],
            buf: String::new(),
            first_line: 1,
            words: Vec::new(),
            depth: 0,
            begin_depth: 0,
            unknown_variable: false,
            variables: HashMap::new(),
            gset: false,
            pending_copies: 0,
            statements: Vec::new(),
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    /// Moves one character, into the buffer when `keep`.
    fn take(&mut self, keep: bool) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
        }
        if keep {
            self.push(c);
        }
        Some(c)
    }

    fn push(&mut self, c: char) {
        if self.buf.is_empty() {
            if c.is_whitespace() {
                return;
            }
            self.first_line = self.line;
        }
        self.buf.push(c);
    }

    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                '-' if self.peek(1) == Some('-') => {
                    // Leading whitespace and `--` comments are not sent.
                    let keep = !self.buf.is_empty();
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.take(keep);
                    }
                }
                '/' if self.peek(1) == Some('*') => self.block_comment(),
                '\'' => {
                    let escapes = self.buf.ends_with(['e', 'E']) && !self.word_before(1);
                    self.quoted('\'', escapes);
                }
                '"' => self.quoted('"', false),
                '$' if !self.word_before(0) => self.dollar(),
                '(' => {
                    self.depth += 1;
                    self.take(true);
                }
                ')' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.take(true);
                }
                ';' => {
                    self.take(true);
                    if self.depth == 0 && self.begin_depth == 0 {
                        self.send();
                    }
                }
                '\\' => self.backslash(),
                ':' if self.peek(1) == Some(':') => {
                    self.take(true);
                    self.take(true);
                }
                ':' if self
                    .peek(1)
                    .is_some_and(|c| is_variable_char(c) || c == '\'' || c == '"') =>
                {
                    self.variable()
                }
                c if is_word_start(c) => self.word(),
                c if c.is_ascii_digit() => {
                    while self.peek(0).is_some_and(is_variable_char) {
                        self.take(true);
                    }
                }
                _ => {
                    self.take(true);
                }
            }
        }
        // psql sends what is left at the end of a script.
        self.send();
    }

    /// Is the character `back` places before the end of the buffer part of a word?
    fn word_before(&self, back: usize) -> bool {
        self.buf
            .chars()
            .rev()
            .nth(back)
            .is_some_and(is_variable_char)
    }

    fn block_comment(&mut self) {
        let mut level = 0_usize;
        while let Some(c) = self.peek(0) {
            if c == '/' && self.peek(1) == Some('*') {
                level += 1;
                self.take(true);
            } else if c == '*' && self.peek(1) == Some('/') {
                level -= 1;
                self.take(true);
                self.take(true);
                if level == 0 {
                    return;
                }
                continue;
            }
            self.take(true);
        }
    }

    fn quoted(&mut self, quote: char, escapes: bool) {
        self.take(true);
        while let Some(c) = self.take(true) {
            if escapes && c == '\\' {
                self.take(true);
            } else if c == quote {
                if self.peek(0) == Some(quote) {
                    self.take(true);
                } else {
                    return;
                }
            }
        }
    }

    /// `$tag$ ... $tag$`, or a lone `$` (a parameter such as `$1`).
    fn dollar(&mut self) {
        let mut end = self.at + 1;
        while self.chars.get(end).is_some_and(|&c| is_variable_char(c)) {
            end += 1;
        }
        let tag_ok = self.chars.get(end) == Some(&'$')
            && !self
                .chars
                .get(self.at + 1)
                .is_some_and(char::is_ascii_digit);
        if !tag_ok {
            self.take(true);
            return;
        }
        let delimiter: Vec<char> = self.chars[self.at..=end].to_vec();
        for _ in 0..delimiter.len() {
            self.take(true);
        }
        while self.peek(0).is_some() {
            if self.chars[self.at..].starts_with(&delimiter) {
                for _ in 0..delimiter.len() {
                    self.take(true);
                }
                return;
            }
            self.take(true);
        }
    }

    fn word(&mut self) {
        let mut word = String::new();
        while let Some(c) = self.peek(0).filter(|&c| is_variable_char(c) || c == '$') {
            word.push(c);
            self.take(true);
        }
        let word = word.to_lowercase();
        self.begin_end(&word);
        self.words.push((word, self.depth));
    }

    /// psql's heuristic for SQL-standard function bodies: after `CREATE [OR REPLACE]
    /// FUNCTION|PROCEDURE`, `BEGIN` (and `CASE` inside it) opens a block `END` closes.
    fn begin_end(&mut self, word: &str) {
        if self.depth != 0 {
            return;
        }
        let first: Vec<&str> = self.words.iter().take(4).map(|(w, _)| w.as_str()).collect();
        let routine = |w: &&str| *w == "function" || *w == "procedure";
        let in_routine = match first.as_slice() {
            ["create", second, ..] if routine(second) => true,
            ["create", "or", "replace", fourth, ..] if routine(fourth) => true,
            _ => false,
        };
        if !in_routine {
            return;
        }
        match word {
            "begin" => self.begin_depth += 1,
            "case" if self.begin_depth >= 1 => self.begin_depth += 1,
            "end" => self.begin_depth = self.begin_depth.saturating_sub(1),
            _ => {}
        }
    }

    /// `:name`, `:'name'`, `:"name"`.
    fn variable(&mut self) {
        let quote = self.peek(1).filter(|&c| c == '\'' || c == '"');
        let start = self.at + 1 + usize::from(quote.is_some());
        let mut end = start;
        while self.chars.get(end).is_some_and(|&c| is_variable_char(c)) {
            end += 1;
        }
        let name: String = self.chars[start..end].iter().collect();
        if let Some(q) = quote {
            if self.chars.get(end) != Some(&q) || name.is_empty() {
                self.take(true);
                return;
            }
            end += 1;
        }
        let defined = self.variables.get(&name).cloned();
        let known = match (&defined, self.gset) {
            (Some(value), _) => Some(value.clone()),
            (None, true) if !name.chars().all(|c| c.is_ascii_digit()) => Some(None),
            (None, _) => None,
        };
        let Some(value) = known else {
            // Not a variable: psql sends the text as it is.
            self.take(true);
            return;
        };
        while self.at < end {
            self.take(false);
        }
        match (quote, value) {
            (Some('\''), value) => {
                let value = value.unwrap_or_else(|| "psql_variable".to_owned());
                self.push_str(&format!("'{}'", value.replace('\'', "''")));
            }
            (Some(_), value) => {
                let value = value.unwrap_or_else(|| "psql_variable".to_owned());
                self.push_str(&format!("\"{}\"", value.replace('"', "\"\"")));
            }
            (None, Some(value)) => self.push_str(&value),
            (None, None) => {
                self.unknown_variable = true;
                self.push_str(&format!(":{name}"));
            }
        }
    }

    fn push_str(&mut self, text: &str) {
        for c in text.chars() {
            self.push(c);
        }
    }

    fn backslash(&mut self) {
        match self.peek(1) {
            Some(';') => {
                self.take(false);
                self.take(true);
                // The buffer holds several statements, sent together later: each counts.
                self.cut();
                return;
            }
            Some(':') => {
                self.take(false);
                self.take(true);
                return;
            }
            _ => {}
        }
        self.take(false);
        let mut command = String::new();
        while let Some(c) = self.peek(0).filter(|c| !c.is_whitespace() && *c != '\\') {
            command.push(c);
            self.take(false);
        }
        let mut args = String::new();
        while let Some(c) = self.peek(0).filter(|&c| c != '\n') {
            args.push(c);
            self.take(false);
        }
        if SENDING.contains(&command.as_str()) {
            self.send();
        }
        let arguments: Vec<&str> = args.split_whitespace().collect();
        match (command.as_str(), arguments.as_slice()) {
            ("set", [name, value @ ..]) => {
                let value = value.join("");
                let value = value.trim_matches('\'').to_owned();
                self.variables.insert((*name).to_owned(), Some(value));
            }
            ("getenv", [name, ..]) => {
                self.variables.insert((*name).to_owned(), None);
            }
            ("gset", _) => self.gset = true,
            ("copy", _) if is_copy_from_stdin(&args.to_lowercase()) => self.skip_copy_data(),
            _ => {}
        }
    }

    /// Sends the buffer: its statements end, and the data of its COPY FROM STDINs follows.
    fn send(&mut self) {
        self.cut();
        for _ in 0..std::mem::take(&mut self.pending_copies) {
            self.skip_copy_data();
        }
    }

    /// Ends the statement in the buffer, if any.
    fn cut(&mut self) {
        let text = std::mem::take(&mut self.buf);
        let words = std::mem::take(&mut self.words);
        let unknown_variable = std::mem::take(&mut self.unknown_variable);
        self.depth = 0;
        self.begin_depth = 0;
        let text = text.trim().to_owned();
        if text.is_empty() || text == ";" {
            return;
        }
        let copy_in = matches!(words.first(), Some((w, 0)) if w == "copy")
            && words
                .windows(2)
                .any(|w| w[0].0 == "from" && w[1].0 == "stdin");
        self.statements.push(Statement {
            first_line: self.first_line,
            last_line: self.line,
            text,
            words,
            unknown_variable,
        });
        self.pending_copies += usize::from(copy_in);
    }

    /// Copy data starts on the next line and ends with a line `\.` (or the script).
    fn skip_copy_data(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.take(false);
        }
        self.take(false);
        loop {
            let mut line = String::new();
            if self.peek(0).is_none() {
                return;
            }
            if let Some(echoed) = self.echoed.get_mut(self.line - 1) {
                *echoed = false;
            }
            while let Some(c) = self.peek(0).filter(|&c| c != '\n') {
                line.push(c);
                self.take(false);
            }
            self.take(false);
            if line.trim_end() == "\\." {
                return;
            }
        }
    }
}

fn is_copy_from_stdin(args: &str) -> bool {
    let words: Vec<&str> = args.split_whitespace().collect();
    words.windows(2).any(|w| w[0] == "from" && w[1] == "stdin")
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_variable_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::split;

    fn texts(script: &str) -> Vec<String> {
        split(script).0.into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn semicolons_inside_literals_comments_and_parentheses_do_not_split() {
        let script = "SELECT 'a;b', \"c;d\", $x$ e; $x$, E'\\';' /* f; /* g; */ */;\n\
                      CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); DELETE FROM v);\n\
                      -- a comment; with a semicolon\nSELECT 2";
        assert_eq!(
            texts(script),
            [
                "SELECT 'a;b', \"c;d\", $x$ e; $x$, E'\\';' /* f; /* g; */ */;",
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); DELETE FROM v);",
                "SELECT 2",
            ]
        );
    }

    #[test]
    fn meta_commands_are_not_sql_and_some_send_the_buffer() {
        let script = "\\pset null '(null)'\nSELECT 1 AS x \\gset\nSELECT 2 \\; SELECT 3;\n\\d t\nSELECT :x;\nSELECT a[1:2] FROM t;";
        let (statements, _) = split(script);
        let found: Vec<(&str, bool)> = statements
            .iter()
            .map(|s| (s.text.as_str(), s.unknown_variable))
            .collect();
        assert_eq!(
            found,
            [
                ("SELECT 1 AS x", false),
                ("SELECT 2 ;", false),
                ("SELECT 3;", false),
                ("SELECT :x;", true),
                ("SELECT a[1:2] FROM t;", false),
            ]
        );
    }

    #[test]
    fn variables_with_known_values_are_substituted_and_quoted_ones_keep_their_shape() {
        let script = "\\set n 42\n\\getenv dir PG_DIR\nSELECT :n, :'dir', :\"dir\", x::int;";
        assert_eq!(
            texts(script),
            ["SELECT 42, 'psql_variable', \"psql_variable\", x::int;"]
        );
    }

    #[test]
    fn copy_data_is_skipped_and_not_echoed() {
        let script = "COPY t FROM stdin;\n1\t2;\n\\.\nSELECT 1;\n";
        let (statements, echoed) = split(script);
        let found: Vec<(&str, usize)> = statements
            .iter()
            .map(|s| (s.text.as_str(), s.first_line))
            .collect();
        assert_eq!(found, [("COPY t FROM stdin;", 1), ("SELECT 1;", 4)]);
        assert_eq!(&echoed[..4], [true, false, false, true]);
    }

    #[test]
    fn copy_data_follows_the_whole_buffer() {
        let script = "select 0\\; copy t from stdin\\; copy t from stdin\\; select 1;\n1\n\\.\n2\n\\.\nselect 2;";
        assert_eq!(
            texts(script),
            [
                "select 0;",
                "copy t from stdin;",
                "copy t from stdin;",
                "select 1;",
                "select 2;"
            ]
        );
    }

    #[test]
    fn begin_atomic_bodies_of_sql_functions_hold_semicolons() {
        let script = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;\nSELECT 3;";
        assert_eq!(
            texts(script),
            [
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;",
                "SELECT 3;",
            ]
        );
    }
}
