//! A real headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol,
//! for the status page's browser tests.
//!
//! The protocol runs over `--remote-debugging-pipe` rather than a websocket: the browser reads
//! commands from its file descriptor 3 and writes answers and events to 4, each message JSON
//! ended by a NUL byte. A shell gives it our stdin and stdout pipes as those descriptors, so
//! no port is opened, nothing has to be discovered, and no websocket client is needed. The
//! browser runs with a fresh profile in a temporary directory and is killed on drop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Where Debian installs the browser; `SLICEBED_CHROMIUM` names another.
pub fn chromium_path() -> Option<PathBuf> {
    let p: PathBuf = std::env::var_os("SLICEBED_CHROMIUM")
        .map(Into::into)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    p.exists().then_some(p)
}

/// A browser with one page open.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    next_id: u64,
    pending: Pending,
    /// Events the browser sent (method and params), for the test to inspect.
    pub events: Arc<Mutex<Vec<Value>>>,
    session: String,
    pub log: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` headless with a blank page of `width` x `height` CSS pixels.
    pub async fn launch(chromium: &Path, width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let log = profile.path().join("chromium.log");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 0</dev/null 1>/dev/null")
            .arg(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("chromium log"))
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let stdin = child.stdin.take().expect("chromium's fd 3");
        let stdout = child.stdout.take().expect("chromium's fd 4");
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        tokio::spawn(read_messages(
            BufReader::new(stdout),
            pending.clone(),
            events.clone(),
        ));
        let mut b = Browser {
            child,
            stdin,
            next_id: 0,
            pending,
            events,
            session: String::new(),
            log,
            _profile: profile,
        };
        let target = b
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.page(domain, json!({})).await;
        }
        b.page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        b
    }

    async fn send(&mut self, mut msg: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        msg["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.stdin
            .write_all(&bytes)
            .await
            .expect("write to chromium");
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("chromium did not answer {msg} within 30 s"))
            .unwrap_or_else(|_| panic!("chromium exited (log: {})", self.log.display()));
        if let Some(e) = answer.get("error") {
            panic!("chromium refused {msg}: {e}");
        }
        answer["result"].clone()
    }

    /// A browser-level command.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(json!({ "method": method, "params": params }))
            .await
    }

    /// A command to the page.
    pub async fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(json!({ "method": method, "params": params, "sessionId": session }))
            .await
    }

    /// Loads `url` and waits until the document and its scripts have loaded.
    pub async fn navigate(&mut self, url: &str) {
        let r = self.page("Page.navigate", json!({ "url": url })).await;
        if let Some(e) = r.get("errorText") {
            panic!("loading {url}: {e}");
        }
        // Until the new document (not the blank one before it) has loaded with its scripts.
        let loaded = format!(
            "location.href.startsWith({}) && document.readyState === 'complete'",
            json!(url)
        );
        let start = std::time::Instant::now();
        while self.eval(&loaded).await != json!(true) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{url} did not load within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited); panics if it
    /// throws.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .page(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// A PNG of the page as it is drawn now.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let r = self
            .page(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        base64_decode(r["data"].as_str().expect("screenshot data"))
    }

    /// Console messages, log entries and exceptions the page produced, as text.
    pub fn problems(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => Some(p["exceptionDetails"].to_string()),
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        Some(p["entry"]["text"].to_string())
                    }
                    "Runtime.consoleAPICalled" if p["type"] == "error" => Some(p.to_string()),
                    _ => None,
                }
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Routes answers to their callers and keeps events, until the browser closes its pipe.
async fn read_messages(
    mut out: BufReader<tokio::process::ChildStdout>,
    pending: Pending,
    events: Arc<Mutex<Vec<Value>>>,
) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match out.read_until(0, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
            continue;
        };
        match msg.get("id").and_then(Value::as_u64) {
            Some(id) => {
                if let Some(tx) = pending.lock().unwrap().remove(&id) {
                    let _ = tx.send(msg);
                }
            }
            None => events.lock().unwrap().push(msg),
        }
    }
}

/// Standard base64 (the protocol's binary data), padding optional.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | value(*c) << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8="), b"hello");
        assert_eq!(base64_decode("aGVsbG8"), b"hello");
        assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
        assert_eq!(base64_decode(""), b"");
    }
}
