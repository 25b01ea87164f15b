//! The agent's side of an in-process session: frontend messages written in one piece, backend
//! messages read back as short normalised lines (the `xtask pg-script` output style), with a
//! timeout so a gateway that waits for something the client never sends fails, not hangs.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use pgwire::messages::{DecodeContext, PgWireBackendMessage, PgWireFrontendMessage};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use crate::postgres::{
    frame::{FrameKind, FrameReader},
    tls::PgStream,
};

/// How long a test waits for an answer the gateway owes.
pub const ANSWER_WAIT: Duration = Duration::from_secs(2);

pub struct Client {
    reader: FrameReader<ReadHalf<Box<dyn PgStream>>>,
    writer: WriteHalf<Box<dyn PgStream>>,
}

impl Client {
    pub fn new(stream: Box<dyn PgStream>) -> Self {
        let (read, writer) = tokio::io::split(stream);
        Self {
            reader: FrameReader::new(read),
            writer,
        }
    }

    /// Writes the messages as one piece, as a pipelining driver does.
    pub async fn send(&mut self, messages: Vec<PgWireFrontendMessage>) {
        let mut out = BytesMut::new();
        for message in messages {
            message.encode(&mut out).expect("test messages encode");
        }
        self.send_raw(&out).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .await
            .expect("the gateway reads the agent's messages");
    }

    /// Closes the agent's writing side (a half-close).
    pub async fn shut_write(&mut self) {
        let _ = self.writer.shutdown().await;
    }

    /// Lines until `count` ReadyForQuery have arrived; `TIMEOUT` or `EOF` ends the list early.
    pub async fn until_ready(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let mut seen = 0;
        while seen < count {
            let line = self.next_line().await;
            let done = line == "TIMEOUT" || line == "EOF";
            seen += usize::from(line.starts_with("Z "));
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    }

    /// Lines until one starts with `prefix` (included).
    pub async fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.next_line().await;
            let done = line.starts_with(prefix) || line == "TIMEOUT" || line == "EOF";
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Everything up to the end of the connection.
    pub async fn until_eof(&mut self) -> Vec<String> {
        self.until("EOF").await
    }

    /// The lines of the login (up to the first ReadyForQuery), read and dropped.
    pub async fn after_login(&mut self) {
        let lines = self.until_ready(1).await;
        assert_eq!(lines.last().map(String::as_str), Some("Z I"), "{lines:?}");
    }

    pub async fn next_line(&mut self) -> String {
        let frame =
            tokio::time::timeout(ANSWER_WAIT, self.reader.next(FrameKind::Tagged, 1 << 24)).await;
        match frame {
            Err(_) => "TIMEOUT".to_owned(),
            Ok(Ok(Some(frame))) => normalise(frame),
            Ok(Ok(None)) => "EOF".to_owned(),
            Ok(Err(error)) => format!("BROKEN {error}"),
        }
    }
}

fn normalise(frame: BytesMut) -> String {
    let mut context = DecodeContext::new(pgwire::messages::ProtocolVersion::PROTOCOL3_0);
    context.awaiting_frontend_ssl = false;
    context.awaiting_frontend_startup = false;
    if frame[0] == b'V' {
        return format!("V {}", fields(&frame[5..], 1).join("|"));
    }
    let mut scratch = frame.clone();
    let Ok(Some(message)) = PgWireBackendMessage::decode(&mut scratch, &context) else {
        return format!("UNDECODABLE {:?}", &frame[..]);
    };
    use PgWireBackendMessage as B;
    match message {
        B::Authentication(_) => "R".into(),
        B::ParameterStatus(status) => format!("S {}={}", status.name, status.value),
        B::BackendKeyData(_) => "K".into(),
        B::ReadyForQuery(ready) => format!("Z {}", status_letter(ready.status)),
        B::ParseComplete(_) => "1".into(),
        B::BindComplete(_) => "2".into(),
        B::CloseComplete(_) => "3".into(),
        B::NoData(_) => "n".into(),
        B::PortalSuspended(_) => "s".into(),
        B::EmptyQueryResponse(_) => "I".into(),
        B::ParameterDescription(description) => format!("t {:?}", description.types),
        B::RowDescription(description) => {
            let names: Vec<String> = description.fields.iter().map(|f| f.name.clone()).collect();
            format!("T {}", names.join(" "))
        }
        B::DataRow(row) => {
            let mut data = row.data.clone();
            let count = row.field_count as usize;
            let mut values = Vec::with_capacity(count);
            for _ in 0..count {
                let len = data.get_i32();
                if len < 0 {
                    values.push("NULL".to_owned());
                } else {
                    let value = data.split_to(len as usize);
                    values.push(String::from_utf8_lossy(&value).into_owned());
                }
            }
            format!("D {}", values.join("|"))
        }
        B::CommandComplete(complete) => format!("C {}", complete.tag),
        B::CopyInResponse(_) => "G".into(),
        B::CopyOutResponse(_) => "H".into(),
        B::CopyData(data) => format!("d {}", String::from_utf8_lossy(&data.data)),
        B::CopyDone(_) => "c".into(),
        B::ErrorResponse(error) => notice_line('E', &error.fields),
        B::NoticeResponse(notice) => notice_line('N', &notice.fields),
        other => format!("OTHER {other:?}"),
    }
}

/// `count` length-prefixed values (a FunctionCallResponse carries one).
fn fields(mut body: &[u8], count: usize) -> Vec<String> {
    let mut values = Vec::new();
    for _ in 0..count {
        let len = body.get_i32();
        if len < 0 {
            values.push("NULL".to_owned());
            continue;
        }
        let (value, rest) = body.split_at(len as usize);
        values.push(String::from_utf8_lossy(value).into_owned());
        body = rest;
    }
    values
}

fn status_letter(status: pgwire::messages::response::TransactionStatus) -> char {
    use pgwire::messages::response::TransactionStatus as T;
    match status {
        T::Idle => 'I',
        T::Transaction => 'T',
        T::Error => 'E',
    }
}

fn notice_line(kind: char, fields: &[(u8, String)]) -> String {
    let field = |code: u8| {
        fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    format!("{kind} {} {} {}", field(b'S'), field(b'C'), field(b'M'))
}
