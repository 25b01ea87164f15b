//! Real SIEM receivers for the export end-to-end test: a throwaway CA (rcgen) and rsyslogd
//! listening with imtcp + gtls (RFC 5425 octet-counted syslog over TLS), loopback only. The
//! HTTP Event Collector is in `hec.rs`.
#![allow(
    dead_code,
    reason = "each test crate that includes these receivers uses a different subset of them"
)]

use std::{
    fs, io,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const STARTUP: Duration = Duration::from_secs(10);

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
        crate::common::signal(child.id(), libc::SIGTERM);
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
