//! A small Splunk HTTP Event Collector with indexer acknowledgement for the export
//! end-to-end test: plain HTTP/1.1 with keep-alive on loopback, std threads, blocking IO.
#![allow(
    dead_code,
    reason = "each test crate that includes this receiver uses a different subset of it"
)]

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::{self, BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// How long a posted HEC batch stays pending before the indexer thread indexes it.
const INDEX_DELAY: Duration = Duration::from_millis(100);
/// Rebinding the port after a stop.
const STARTUP: Duration = Duration::from_secs(10);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A posted batch waiting for the indexer.
struct Batch {
    channel: String,
    ack_id: u64,
    received: Instant,
    envelopes: Vec<Value>,
}

#[derive(Default)]
struct Channel {
    next_ack: u64,
    indexed: HashSet<u64>,
}

#[derive(Default)]
struct Hec {
    token: String,
    /// Bumped on every stop: connections and acceptors of an older generation are dead.
    generation: u64,
    pending: VecDeque<Batch>,
    indexed: Vec<Value>,
    channels: HashMap<String, Channel>,
    batches: u64,
    ack_queries: u64,
    conns: Vec<(TcpStream, JoinHandle<()>)>,
}

fn lock(hec: &Mutex<Hec>) -> MutexGuard<'_, Hec> {
    hec.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A small Splunk HTTP Event Collector with indexer acknowledgement, on plain HTTP/1.1.
pub struct HecReceiver {
    port: u16,
    hec: Arc<Mutex<Hec>>,
    acceptor: Option<JoinHandle<()>>,
    indexer: Option<JoinHandle<()>>,
    closing: Arc<AtomicBool>,
}

impl HecReceiver {
    pub fn start(token: &str) -> HecReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HEC listener");
        let port = listener.local_addr().expect("HEC local address").port();
        let hec = Arc::new(Mutex::new(Hec {
            token: token.to_owned(),
            ..Hec::default()
        }));
        let closing = Arc::new(AtomicBool::new(false));
        let indexer = {
            let (hec, closing) = (hec.clone(), closing.clone());
            thread::spawn(move || index_loop(&hec, &closing))
        };
        let mut receiver = HecReceiver {
            port,
            hec,
            acceptor: None,
            indexer: Some(indexer),
            closing,
        };
        receiver.listen(listener);
        receiver
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops accepting and closes every connection; pending (unindexed) batches are lost and
    /// every channel's ack ids are forgotten. Indexed events are kept.
    pub fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        let conns = {
            let mut hec = lock(&self.hec);
            hec.generation += 1;
            hec.pending.clear();
            hec.channels.clear();
            std::mem::take(&mut hec.conns)
        };
        // Wake the blocking accept; it sees the new generation and drops the listener.
        let _ = TcpStream::connect_timeout(&loopback(self.port), Duration::from_secs(1));
        let _ = acceptor.join();
        for (stream, _) in &conns {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, thread) in conns {
            let _ = thread.join();
        }
    }

    /// Listens again on the same port, keeping what was indexed.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + STARTUP;
        let listener = loop {
            match TcpListener::bind(loopback(self.port)) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() >= deadline => {
                    panic!("rebind the HEC listener on 127.0.0.1:{}: {e}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        };
        self.listen(listener);
    }

    /// The "event" objects of every indexed batch, in the order indexed (duplicates kept).
    pub fn events(&self) -> Vec<Value> {
        lock(&self.hec)
            .indexed
            .iter()
            .filter_map(|e| e.get("event").cloned())
            .collect()
    }

    /// The whole indexed envelopes (`time`, `source`, `sourcetype`, `index`, `event`, ...).
    pub fn envelopes(&self) -> Vec<Value> {
        lock(&self.hec).indexed.clone()
    }

    /// (batches accepted, ack queries answered).
    pub fn stats(&self) -> (u64, u64) {
        let hec = lock(&self.hec);
        (hec.batches, hec.ack_queries)
    }

    fn listen(&mut self, listener: TcpListener) {
        let hec = self.hec.clone();
        let generation = lock(&hec).generation;
        self.acceptor = Some(thread::spawn(move || {
            accept_loop(&listener, &hec, generation)
        }));
    }
}

impl Drop for HecReceiver {
    fn drop(&mut self) {
        self.stop();
        self.closing.store(true, Ordering::Relaxed);
        if let Some(indexer) = self.indexer.take() {
            let _ = indexer.join();
        }
    }
}

fn index_loop(hec: &Mutex<Hec>, closing: &AtomicBool) {
    while !closing.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(10));
        let mut guard = lock(hec);
        let hec = &mut *guard;
        while hec
            .pending
            .front()
            .is_some_and(|b| b.received.elapsed() >= INDEX_DELAY)
        {
            let Some(batch) = hec.pending.pop_front() else {
                break;
            };
            hec.channels
                .entry(batch.channel)
                .or_default()
                .indexed
                .insert(batch.ack_id);
            hec.indexed.extend(batch.envelopes);
        }
    }
}

fn accept_loop(listener: &TcpListener, hec: &Arc<Mutex<Hec>>, generation: u64) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut guard = lock(hec);
        if guard.generation != generation {
            return;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let shared = hec.clone();
        let thread = thread::spawn(move || serve(stream, &shared, generation));
        guard.conns.push((handle, thread));
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// One connection: requests in a loop (keep-alive) until the client closes or we are stopped.
fn serve(stream: TcpStream, hec: &Mutex<Hec>, generation: u64) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Ok(Some(request)) = read_request(&mut reader, &mut writer) {
        let (status, body) = {
            let mut hec = lock(hec);
            if hec.generation != generation {
                return; // stopped after the request arrived: it is lost, like a crash
            }
            answer(&mut hec, &request)
        };
        let reason = [
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
        ]
        .into_iter()
        .find_map(|(s, r)| (s == status).then_some(r))
        .unwrap_or("Not Found");
        let body = body.to_string();
        let close = request.wants_close();
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if writer
            .write_all(format!("{head}{body}").as_bytes())
            .is_err()
            || close
        {
            return;
        }
    }
}

fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<Option<String>> {
    let mut line = String::new();
    Ok((reader.read_line(&mut line)? > 0).then(|| line.trim_end_matches(['\r', '\n']).to_owned()))
}

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> io::Result<Option<Request>> {
    let line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => {}
            Some(line) => break line,
        }
    };
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad("eof in headers"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed header"))?;
        request
            .headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    if request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if let Some(length) = request.header("content-length") {
        let length: usize = length.parse().map_err(|_| bad("bad content-length"))?;
        request.body.resize(length, 0);
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

/// Splunk's answers, with its status codes and `code` values.
fn answer(hec: &mut Hec, request: &Request) -> (u16, Value) {
    let path = request.path.trim_end_matches('/');
    let route = match (request.method.as_str(), path) {
        (
            "POST",
            "/services/collector" | "/services/collector/event" | "/services/collector/event/1.0",
        ) => post_events,
        ("POST", "/services/collector/ack") => query_acks,
        _ => return reply(404, "The requested URL was not found on this server.", 404),
    };
    match request.header("authorization") {
        None => return reply(401, "Token is required", 2),
        Some(auth) => match auth.strip_prefix("Splunk ") {
            None => return reply(401, "Invalid authorization", 3),
            Some(token) if token.trim() != hec.token => return reply(403, "Invalid token", 4),
            Some(_) => {}
        },
    }
    let channel = request
        .header("x-splunk-request-channel")
        .map(str::to_owned)
        .or_else(|| {
            request
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("channel=").map(str::to_owned))
        });
    match channel {
        None => reply(400, "Data channel is missing", 10),
        Some(channel) if !is_guid(&channel) => reply(400, "Invalid data channel", 11),
        Some(channel) => route(hec, channel, &request.body),
    }
}

fn reply(status: u16, text: &str, code: u16) -> (u16, Value) {
    (status, json!({"text": text, "code": code}))
}

fn is_guid(channel: &str) -> bool {
    let groups: Vec<&str> = channel.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn post_events(hec: &mut Hec, channel: String, body: &[u8]) -> (u16, Value) {
    let mut envelopes = Vec::new();
    for (n, item) in serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .enumerate()
    {
        let invalid = |text: &str, code: u8| {
            (
                400,
                json!({"text": text, "code": code, "invalid-event-number": n}),
            )
        };
        match item {
            Err(_) => return invalid("Invalid data format", 6),
            Ok(envelope) => match envelope.get("event") {
                None => return invalid("Event field is required", 12),
                Some(Value::Null) => return invalid("Event field cannot be blank", 13),
                Some(Value::String(s)) if s.is_empty() => {
                    return invalid("Event field cannot be blank", 13);
                }
                Some(_) => envelopes.push(envelope),
            },
        }
    }
    if envelopes.is_empty() {
        return reply(400, "No data", 5);
    }
    let state = hec.channels.entry(channel.clone()).or_default();
    let ack_id = state.next_ack;
    state.next_ack += 1;
    hec.batches += 1;
    hec.pending.push_back(Batch {
        channel,
        ack_id,
        received: Instant::now(),
        envelopes,
    });
    (200, json!({"text": "Success", "code": 0, "ackId": ack_id}))
}

/// Like Splunk, an ack id reported `true` is forgotten: asking again answers `false`.
fn query_acks(hec: &mut Hec, channel: String, body: &[u8]) -> (u16, Value) {
    let ids: Option<Vec<u64>> = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("acks")?
            .as_array()?
            .iter()
            .map(Value::as_u64)
            .collect()
    });
    let Some(ids) = ids else {
        return reply(400, "Invalid data format", 6);
    };
    hec.ack_queries += 1;
    let state = hec.channels.entry(channel).or_default();
    let acks: serde_json::Map<String, Value> = ids
        .into_iter()
        .map(|id| (id.to_string(), Value::Bool(state.indexed.remove(&id))))
        .collect();
    (200, json!({"acks": acks}))
}
