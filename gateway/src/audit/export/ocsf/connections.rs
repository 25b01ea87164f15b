//! The connections open at a point of the log: a statement's record names its connection
//! only by number, and its OCSF event needs the process and endpoints from the connection's
//! opening (and the token from its login). Rebuilt from the log when a sink starts or
//! rewinds, so the events are the same however often they are sent.

use std::{collections::HashMap, path::Path, sync::Arc};

use super::super::super::{
    event::{ConnectionOpened, Event, LoginDecided},
    record::Record,
    segment,
};

/// A connection as its records describe it.
#[derive(Debug)]
pub struct Connection {
    /// The index of its `connection_opened` record: unique in the log (connection numbers
    /// start again with each gateway run), and the session id `tollgate sessions` shows.
    pub session: u64,
    pub opened: ConnectionOpened,
    pub login: Option<LoginDecided>,
}

#[derive(Debug, Default, Clone)]
pub struct Connections {
    open: HashMap<u64, Arc<Connection>>,
}

/// Only these kinds change the map; other lines are not parsed when rebuilding.
const KINDS: [&[u8]; 4] = [
    b"\"kind\":\"connection_opened\"",
    b"\"kind\":\"connection_closed\"",
    b"\"kind\":\"login_decided\"",
    b"\"kind\":\"gateway_started\"",
];

impl Connections {
    /// The connections open just before record `next`.
    pub fn rebuild(dir: &Path, next: u64) -> Result<Self, String> {
        let mut connections = Self::default();
        let mut index = 0u64;
        let scanned = segment::for_each_line(dir, |place, line| {
            if index >= next {
                return Err(None);
            }
            index += 1;
            if !KINDS.iter().any(|kind| contains(line, kind)) {
                return Ok(());
            }
            let record = Record::parse(line).map_err(|e| Some(format!("{place}: {e}")))?;
            connections.apply(record.index, &record.event);
            Ok(())
        });
        match scanned {
            Ok(_) | Err(segment::ScanError::Line(None)) => Ok(connections),
            Err(segment::ScanError::Line(Some(why))) => Err(why),
            Err(segment::ScanError::Io(error)) => Err(format!("reading the audit log: {error}")),
        }
    }

    /// Follows one record.
    pub fn apply(&mut self, index: u64, event: &Event) {
        match event {
            Event::GatewayStarted { .. } => self.open.clear(),
            Event::ConnectionOpened(opened) => {
                self.open.insert(
                    opened.conn_id,
                    Arc::new(Connection {
                        session: index,
                        opened: opened.clone(),
                        login: None,
                    }),
                );
            }
            Event::LoginDecided(login) => {
                if let Some(connection) = self.open.get_mut(&login.conn_id) {
                    *connection = Arc::new(Connection {
                        session: connection.session,
                        opened: connection.opened.clone(),
                        login: Some(login.clone()),
                    });
                }
            }
            Event::ConnectionClosed(closed) => {
                self.open.remove(&closed.conn_id);
            }
            _ => {}
        }
    }

    pub fn get(&self, conn_id: u64) -> Option<Arc<Connection>> {
        self.open.get(&conn_id).cloned()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
