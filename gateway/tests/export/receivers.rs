//! Real SIEM receivers for the export end-to-end test: a throwaway CA (rcgen), rsyslogd listening
//! with imtcp + gtls (RFC 5425 octet-counted syslog over TLS), and a small Splunk HTTP Event
//! Collector with indexer acknowledgement. Blocking IO on std threads, loopback only.
#![allow(
    dead_code,
    reason = "each test crate that includes these receivers uses a different subset of them"
)]

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fs,
    io::{self, BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const STARTUP: Duration = Duration::from_secs(10);
/// How long a posted HEC batch stays pending before the indexer thread indexes it.
const INDEX_DELAY: Duration = Duration::from_millis(100);

/// A throwaway CA and a server certificate it issued for `localhost` and 127.0.0.1.
pub struct TestCa {
    /// PEM of the CA certificate (`dir/ca.pem`).
    pub ca_file: PathBuf,
    /// PEM of the server certificate (`dir/server.pem`).
    pub cert_file: PathBuf,
    /// PKCS#8 PEM of the server key (`dir/server.key`).
    pub key_file: PathBuf,
    /// The CA certificate's PEM text, for building client trust stores.
    pub ca_pem: String,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        fs::create_dir_all(dir).expect("create the CA directory");
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Tollgate export test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");

        let key = KeyPair::generate().expect("generate the server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("issue the server certificate");

        let out = TestCa {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            ca_pem: ca.pem(),
        };
        fs::write(&out.ca_file, &out.ca_pem).expect("write ca.pem");
        fs::write(&out.cert_file, cert.pem()).expect("write server.pem");
        fs::write(&out.key_file, key.serialize_pem()).expect("write server.key");
        out
    }
}

/// A free port on 127.0.0.1 (bound, read and released: another process could take it first).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: sending a signal to a child we spawned and have not reaped.
        #[expect(unsafe_code, reason = "kill(2) has no safe std wrapper for SIGTERM")]
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// rsyslogd in the foreground with its own configuration, receiving RFC 5425 syslog over TLS and
/// writing each message's MSG part, one per line, to `dir/received.log`.
pub struct Rsyslog {
    dir: PathBuf,
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts rsyslogd (`-n -f dir/rsyslog.conf -i dir/rsyslogd.pid`) on a free port of
    /// 127.0.0.1 and waits until the port accepts connections.
    pub fn start(dir: &Path, ca: &TestCa) -> Rsyslog {
        let work = dir.join("rsyslog-work");
        fs::create_dir_all(&work).expect("create the rsyslog work directory");
        let port = free_port();
        let conf = dir.join("rsyslog.conf");
        fs::write(&conf, rsyslog_conf(dir, ca, port)).expect("write rsyslog.conf");
        let check = Command::new(RSYSLOGD)
            .args(["-N1", "-f"])
            .arg(&conf)
            .output()
            .unwrap_or_else(|e| panic!("run {RSYSLOGD} -N1 (is rsyslog installed?): {e}"));
        assert!(
            check.status.success(),
            "rsyslogd rejected {}:\n{}{}",
            conf.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut rsyslog = Rsyslog {
            dir: dir.to_owned(),
            conf,
            port,
            child: None,
        };
        rsyslog.spawn();
        rsyslog
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGTERM and wait for exit (rsyslog flushes its queue and files on a clean stop).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + STARTUP;
        while child.try_wait().expect("wait for rsyslogd").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "rsyslogd did not exit within {STARTUP:?} of SIGTERM\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port with the same output file (appends).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every complete line received so far, without a leading space or UTF-8 BOM.
    pub fn messages(&self) -> Vec<String> {
        let text = match fs::read_to_string(self.dir.join("received.log")) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("read received.log: {e}"),
        };
        let mut lines: Vec<&str> = text.split('\n').collect();
        lines.pop(); // empty after the last '\n', or a line rsyslog is still writing
        lines
            .into_iter()
            .map(|l| {
                let l = l.strip_prefix(' ').unwrap_or(l);
                l.strip_prefix('\u{feff}').unwrap_or(l).to_owned()
            })
            .collect()
    }

    /// Polls `messages()` until there are at least `count`, or `timeout` passes.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() >= deadline {
                return messages;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    fn spawn(&mut self) {
        let pid_file = self.dir.join("rsyslogd.pid");
        let _ = fs::remove_file(&pid_file);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.stderr"))
            .expect("open rsyslogd.stderr");
        let child = Command::new(RSYSLOGD)
            .args(["-n", "-f"])
            .arg(&self.conf)
            .arg("-i")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {RSYSLOGD}: {e}"));
        let child = self.child.insert(child);
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = child.try_wait().expect("poll rsyslogd") {
                self.child = None;
                panic!(
                    "rsyslogd exited ({status}) before listening\n{}",
                    self.diagnostics()
                );
            }
            // A plain TCP probe; rsyslogd logs the aborted TLS handshake to rsyslogd.stderr.
            if TcpStream::connect_timeout(&loopback(self.port), Duration::from_millis(200)).is_ok()
            {
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "rsyslogd did not listen on 127.0.0.1:{} within {STARTUP:?}\n{}",
                    self.port,
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn diagnostics(&self) -> String {
        let stderr = fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default();
        format!("--- rsyslogd stderr ---\n{stderr}")
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rsyslog_conf(dir: &Path, ca: &TestCa, port: u16) -> String {
    let path = |p: &Path| {
        let s = p.to_str().expect("UTF-8 path").to_owned();
        assert!(
            !s.contains('"') && !s.contains('\\'),
            "unusable path for rsyslog.conf: {s}"
        );
        s
    };
    format!(
        r#"# Written by the Tollgate export test. No imuxsock/imklog: system logs are not touched.
global(
  workDirectory="{work}"
  maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="tollgateMsgOnly" type="string" string="%msg%\n")
ruleset(name="tollgateRemote") {{
  action(type="omfile" file="{received}" template="tollgateMsgOnly" ioBufferSize="256k" flushOnTXEnd="on")
}}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="tollgateRemote")
# rsyslogd's own messages go to the default ruleset, which has no action; -n sends errors to stderr.
"#,
        work = path(&dir.join("rsyslog-work")),
        ca = path(&ca.ca_file),
        cert = path(&ca.cert_file),
        key = path(&ca.key_file),
        received = path(&dir.join("received.log")),
    )
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
