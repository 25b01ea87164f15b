//! A scripted PostgreSQL backend for in-process session tests. It answers each frontend
//! message as soon as it arrives, as the real server does (it never waits for Sync or Flush),
//! with canned results per SQL text, and follows the protocol's own rules: skip to Sync after
//! an extended-protocol error, one ReadyForQuery per Query, Sync or FunctionCall, transaction
//! status from BEGIN/COMMIT/ROLLBACK and errors.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use pgwire::messages::{
    copy::{CopyData, CopyDone, CopyInResponse, CopyOutResponse},
    data::{DataRow, FieldDescription, NoData, ParameterDescription, RowDescription},
    extendedquery::{BindComplete, CloseComplete, ParseComplete},
    response::{
        CommandComplete, EmptyQueryResponse, ErrorResponse, ReadyForQuery, TransactionStatus,
    },
    startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey},
    PgWireBackendMessage, PgWireFrontendMessage,
};
use tokio::io::{AsyncWriteExt, DuplexStream};

use crate::postgres::{
    codec::{decode_frontend, session_context, Frontend, TextReading},
    encoding::ClientEncoding,
    frame::{FrameKind, FrameReader},
};

/// One result column: name, origin (table OID, attribute number) and type.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    pub table_oid: i32,
    pub attnum: i16,
    pub type_oid: u32,
}

pub fn text_column(name: &'static str) -> Column {
    Column {
        name,
        table_oid: 0,
        attnum: 0,
        type_oid: 25,
    }
}

/// What a statement returns.
#[derive(Debug, Clone)]
pub enum Answer {
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Option<Vec<u8>>>>,
    },
    Command(&'static str),
    /// SQLSTATE and message.
    Error(&'static str, String),
    /// COPY ... FROM STDIN of this many columns: rows until CopyDone.
    CopyIn(i16),
    /// COPY ... TO STDOUT: these text rows (tab-separated, newline-ended).
    CopyOut(i16, Vec<&'static str>),
}

/// Canned answers by SQL text (texts not valid UTF-8 are read byte by byte); anything else
/// is a syntax error, as the server would say. The session's client encoding is reported
/// at login.
#[derive(Debug, Clone)]
pub struct Canned {
    answers: HashMap<String, Answer>,
    encoding: &'static str,
}

impl Default for Canned {
    fn default() -> Self {
        Self {
            answers: HashMap::new(),
            encoding: "UTF8",
        }
    }
}

impl Canned {
    pub fn encoding(mut self, name: &'static str) -> Self {
        self.encoding = name;
        self
    }

    pub fn rows(self, sql: &str, columns: Vec<Column>, rows: &[&[&str]]) -> Self {
        let rows = rows
            .iter()
            .map(|row| row.iter().map(|v| v.as_bytes().to_vec()).collect())
            .collect();
        self.byte_rows(sql, columns, rows)
    }

    /// Rows whose values are bytes in the session's encoding.
    pub fn byte_rows(mut self, sql: &str, columns: Vec<Column>, rows: Vec<Vec<Vec<u8>>>) -> Self {
        let rows = rows
            .into_iter()
            .map(|row| row.into_iter().map(Some).collect())
            .collect();
        self.answers
            .insert(sql.to_owned(), Answer::Rows { columns, rows });
        self
    }

    pub fn command(mut self, sql: &str, tag: &'static str) -> Self {
        self.answers.insert(sql.to_owned(), Answer::Command(tag));
        self
    }

    pub fn copy_in(mut self, sql: &str, columns: i16) -> Self {
        self.answers.insert(sql.to_owned(), Answer::CopyIn(columns));
        self
    }

    pub fn copy_out(mut self, sql: &str, columns: i16, rows: Vec<&'static str>) -> Self {
        self.answers
            .insert(sql.to_owned(), Answer::CopyOut(columns, rows));
        self
    }

    pub fn error(mut self, sql: &str, code: &'static str, message: &str) -> Self {
        self.answers
            .insert(sql.to_owned(), Answer::Error(code, message.to_owned()));
        self
    }

    fn answer(&self, sql: &str) -> Answer {
        if sql.trim().is_empty() {
            return Answer::Command("");
        }
        self.answers.get(sql).cloned().unwrap_or_else(|| {
            let first = sql.split_whitespace().next().unwrap_or_default();
            Answer::Error("42601", format!("syntax error at or near \"{first}\""))
        })
    }
}

struct Backend {
    canned: Canned,
    statements: HashMap<String, String>,
    portals: HashMap<String, String>,
    skipping: bool,
    status: TransactionStatus,
    /// Settings changed by the statements since the last ReadyForQuery.
    reports: Vec<String>,
    /// A COPY FROM STDIN in progress: rows so far, and whether a simple Query started it.
    copying: Option<(u64, bool)>,
    out: BytesMut,
}

/// Serves one session on `stream` until the client terminates or goes away. The startup
/// exchange is assumed done: it begins with what ends a login.
pub async fn serve(mut stream: DuplexStream, canned: Canned) {
    let encoding = canned.encoding;
    let mut backend = Backend {
        canned,
        statements: HashMap::new(),
        portals: HashMap::new(),
        skipping: false,
        status: TransactionStatus::Idle,
        reports: Vec::new(),
        copying: None,
        out: BytesMut::new(),
    };
    backend.send(PgWireBackendMessage::Authentication(Authentication::Ok));
    backend.send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
        "client_encoding".into(),
        encoding.into(),
    )));
    backend.send(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
        4242,
        SecretKey::I32(7),
    )));
    backend.ready();
    let (read, mut write) = tokio::io::split(&mut stream);
    let mut frames = FrameReader::new(read);
    let context = session_context(pgwire::messages::ProtocolVersion::PROTOCOL3_0);
    // Texts as bytes: valid UTF-8 as it is, anything else byte by byte.
    let reading = TextReading {
        encoding: ClientEncoding::from_name("SQL_ASCII").expect("a known encoding"),
        encoding_settled: true,
    };
    loop {
        if !backend.out.is_empty() && write.write_all(&backend.out.split()).await.is_err() {
            return;
        }
        let Ok(Some(frame)) = frames.next(FrameKind::Tagged, 1 << 20).await else {
            return;
        };
        match decode_frontend(&frame, &context, reading) {
            Ok(Frontend::Message(PgWireFrontendMessage::Terminate(_))) => return,
            Ok(Frontend::Message(message)) => backend.on_message(message),
            Ok(Frontend::FunctionCall { .. }) => backend.on_function_call(),
            Err(_) => return,
        }
    }
}

impl Backend {
    fn send(&mut self, message: PgWireBackendMessage) {
        message.encode(&mut self.out).expect("test messages encode");
    }

    fn ready(&mut self) {
        for value in std::mem::take(&mut self.reports) {
            self.send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                "client_encoding".into(),
                value,
            )));
        }
        self.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            self.status,
        )));
    }

    fn error(&mut self, code: &str, message: String) {
        self.send(PgWireBackendMessage::ErrorResponse(ErrorResponse::new(
            vec![
                (b'S', "ERROR".into()),
                (b'V', "ERROR".into()),
                (b'C', code.into()),
                (b'M', message),
            ],
        )));
        if self.status == TransactionStatus::Transaction {
            self.status = TransactionStatus::Error;
        }
    }

    fn on_message(&mut self, message: PgWireFrontendMessage) {
        use PgWireFrontendMessage as F;
        if let Some((rows, simple)) = self.copying {
            // Flush and Sync mean nothing during COPY FROM STDIN.
            match message {
                F::CopyData(_) => self.copying = Some((rows + 1, simple)),
                F::CopyDone(_) => {
                    self.copying = None;
                    self.send(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                        format!("COPY {rows}"),
                    )));
                    if simple {
                        self.ready();
                    }
                }
                F::CopyFail(_) => {
                    self.copying = None;
                    self.error("57014", "COPY from stdin failed".into());
                    if simple {
                        self.ready();
                    } else {
                        self.skipping = true;
                    }
                }
                _ => {}
            }
            return;
        }
        if self.skipping && !matches!(message, F::Sync(_)) {
            return;
        }
        match message {
            F::Query(query) => {
                let sql = query.query;
                match self.canned.answer(&sql) {
                    Answer::Command("") => self.send(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    )),
                    answer => self.run(&sql, answer, true),
                }
                // A COPY FROM STDIN is answered once its data has come.
                if self.copying.is_none() {
                    self.ready();
                }
            }
            F::Parse(parse) => match self.canned.answer(&parse.query) {
                Answer::Error(code, message) => self.fail(code, message),
                _ => {
                    self.statements
                        .insert(parse.name.unwrap_or_default(), parse.query);
                    self.send(PgWireBackendMessage::ParseComplete(ParseComplete::new()));
                }
            },
            F::Bind(bind) => {
                let name = bind.statement_name.unwrap_or_default();
                match self.statements.get(&name).cloned() {
                    Some(sql) => {
                        self.portals
                            .insert(bind.portal_name.unwrap_or_default(), sql);
                        self.send(PgWireBackendMessage::BindComplete(BindComplete::new()));
                    }
                    None => self.fail(
                        "26000",
                        format!("prepared statement \"{name}\" does not exist"),
                    ),
                }
            }
            F::Describe(describe) => {
                let name = describe.name.unwrap_or_default();
                let sql = match describe.target_type {
                    b'S' => self.statements.get(&name),
                    _ => self.portals.get(&name),
                };
                match sql.cloned() {
                    Some(sql) => {
                        if describe.target_type == b'S' {
                            self.send(PgWireBackendMessage::ParameterDescription(
                                ParameterDescription::new(vec![]),
                            ));
                        }
                        self.describe(&sql);
                    }
                    None => self.fail("34000", format!("portal \"{name}\" does not exist")),
                }
            }
            F::Execute(execute) => {
                let name = execute.name.unwrap_or_default();
                match self.portals.get(&name).cloned() {
                    Some(sql) => {
                        let answer = self.canned.answer(&sql);
                        self.run(&sql, answer, false);
                    }
                    None => self.fail("34000", format!("portal \"{name}\" does not exist")),
                }
            }
            F::Close(_) => self.send(PgWireBackendMessage::CloseComplete(CloseComplete::new())),
            F::Sync(_) => {
                self.skipping = false;
                self.ready();
            }
            _ => {}
        }
    }

    /// An extended-protocol error: everything up to Sync is skipped.
    fn fail(&mut self, code: &str, message: String) {
        self.error(code, message);
        self.skipping = true;
    }

    fn describe(&mut self, sql: &str) {
        match self.canned.answer(sql) {
            Answer::Rows { columns, .. } => self.send(row_description(&columns)),
            _ => self.send(PgWireBackendMessage::NoData(NoData::new())),
        }
    }

    /// Runs one statement: rows (with a description for a simple Query) and its tag.
    fn run(&mut self, sql: &str, answer: Answer, simple: bool) {
        match answer {
            Answer::Rows { columns, rows } => {
                if simple {
                    self.send(row_description(&columns));
                }
                for row in &rows {
                    self.send(data_row(row));
                }
                let tag = format!("SELECT {}", rows.len());
                self.send(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                    tag,
                )));
            }
            Answer::Command(tag) => {
                let upper = sql.trim().to_ascii_uppercase();
                // `SET client_encoding = 'X'`: reported just before ReadyForQuery, as the
                // server does (the fake reads every text byte by byte anyway).
                if let Some(value) = upper.strip_prefix("SET CLIENT_ENCODING = ") {
                    self.reports.push(value.trim_matches('\'').to_owned());
                }
                if upper.starts_with("BEGIN") {
                    self.status = TransactionStatus::Transaction;
                } else if upper.starts_with("COMMIT") || upper.starts_with("ROLLBACK") {
                    self.status = TransactionStatus::Idle;
                }
                self.send(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                    tag.to_owned(),
                )));
            }
            Answer::Error(code, message) if simple => self.error(code, message),
            Answer::Error(code, message) => self.fail(code, message),
            Answer::CopyIn(columns) => {
                self.send(PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
                    0,
                    columns,
                    vec![0; columns as usize],
                )));
                self.copying = Some((0, simple));
            }
            Answer::CopyOut(columns, rows) => {
                self.send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                    0,
                    columns,
                    vec![0; columns as usize],
                )));
                for row in &rows {
                    self.send(PgWireBackendMessage::CopyData(CopyData::new(
                        bytes::Bytes::from_static(row.as_bytes()),
                    )));
                }
                self.send(PgWireBackendMessage::CopyDone(CopyDone::new()));
                self.send(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                    format!("COPY {}", rows.len()),
                )));
            }
        }
    }

    /// A FunctionCall: its result is the text `f()`, then ReadyForQuery.
    fn on_function_call(&mut self) {
        if self.skipping {
            return;
        }
        let mut body = BytesMut::new();
        body.put_i32(3);
        body.put_slice(b"f()");
        let mut frame = BytesMut::new();
        frame.put_u8(b'V');
        frame.put_i32(4 + body.len() as i32);
        frame.put_slice(&body);
        self.out.unsplit(frame);
        self.ready();
    }
}

fn row_description(columns: &[Column]) -> PgWireBackendMessage {
    let fields = columns
        .iter()
        .map(|c| {
            FieldDescription::new(
                c.name.to_owned(),
                c.table_oid,
                c.attnum,
                c.type_oid,
                -1,
                -1,
                0,
            )
        })
        .collect();
    PgWireBackendMessage::RowDescription(RowDescription::new(fields))
}

fn data_row(values: &[Option<Vec<u8>>]) -> PgWireBackendMessage {
    let mut data = BytesMut::new();
    for value in values {
        match value {
            Some(value) => {
                data.put_i32(value.len() as i32);
                data.put_slice(value);
            }
            None => data.put_i32(-1),
        }
    }
    PgWireBackendMessage::DataRow(DataRow::new(data, values.len() as i16))
}
