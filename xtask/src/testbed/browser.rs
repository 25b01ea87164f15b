//! Headless Chromium (Debian's `chromium`, installed by `cargo xtask setup`) driven over the
//! DevTools protocol: open a page, run script in it, type, click, take screenshots. The
//! browser runs with its own throwaway profile and is killed (by pid) on Drop.

use std::{
    net::TcpStream,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

use super::TempDir;

/// Any one DevTools command answers within this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    /// The page's session on the browser connection.
    session: String,
    next_id: u64,
    _profile: TempDir,
}

impl Browser {
    /// Starts Chromium with one blank page. `--ignore-certificate-errors`: the test gateway
    /// shows its self-signed appliance certificate.
    pub fn start() -> anyhow::Result<Self> {
        let profile = TempDir::new("tollgate-chromium")?;
        let child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--ignore-certificate-errors",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // Its own process group, so its renderers and helpers end with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromium (run `cargo xtask setup`, which installs it)")?;
        let endpoint = devtools_endpoint(profile.path())?;
        let (mut socket, _) = tungstenite::connect(endpoint.as_str())
            .with_context(|| format!("connecting to DevTools at {endpoint}"))?;
        if let MaybeTlsStream::Plain(tcp) = socket.get_mut() {
            tcp.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        }
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 1,
            _profile: profile,
        };
        let target =
            browser.browser_call("Target.createTarget", json!({ "url": "about:blank" }))?;
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("no DevTools session")?
            .to_owned();
        browser.call("Page.enable", json!({}))?;
        browser.call("Runtime.enable", json!({}))?;
        Ok(browser)
    }

    /// Opens `url` and waits for its document to finish loading.
    pub fn open(&mut self, url: &str) -> anyhow::Result<()> {
        let navigated = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = navigated["errorText"].as_str() {
            bail!("navigating to {url}: {error}");
        }
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
    }

    /// The value of a script expression (promises awaited).
    pub fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("script `{expression}` threw: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits (bounded) until `condition` is true in the page.
    pub fn wait_for(&mut self, condition: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(&format!("Boolean({condition})"))? == json!(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("`{condition}` did not become true within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element `selector` names, as a person would: a mouse press and release at
    /// its centre.
    pub fn click(&mut self, selector: &str) -> anyhow::Result<()> {
        let centre = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ))?;
        let (Some(x), Some(y)) = (centre[0].as_f64(), centre[1].as_f64()) else {
            bail!("nothing on the page matches {selector}");
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )?;
        }
        Ok(())
    }

    /// Focuses `selector` and types `text` into it.
    pub fn type_into(&mut self, selector: &str, text: &str) -> anyhow::Result<()> {
        self.click(selector)?;
        self.call("Input.insertText", json!({ "text": text }))?;
        Ok(())
    }

    /// A PNG of the page as it is now, written to `path`.
    pub fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        )?;
        let data = shot["data"].as_str().context("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn browser_call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.send(method, params, None)
    }

    /// Sends one command and reads until its answer (events in between are skipped).
    fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .with_context(|| format!("sending {method}"))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while Instant::now() < deadline {
            let message = self
                .socket
                .read()
                .with_context(|| format!("waiting for the answer to {method}"))?;
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(text.as_str())?;
            if answer["id"] != json!(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                bail!("{method}: {error}");
            }
            return Ok(answer["result"].clone());
        }
        bail!("{method} got no answer within {COMMAND_TIMEOUT:?}")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium writes its DevTools port and path to the profile once it listens.
fn devtools_endpoint(profile: &Path) -> anyhow::Result<String> {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return Ok(format!("ws://127.0.0.1:{port}{path}"));
            }
        }
        if Instant::now() > deadline {
            bail!("chromium did not open its DevTools port within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
