//! `keyframe` as an operator runs it: the real command (`keyframe-under-test`, the same
//! `keyframe::cli::main` as the binary) in a process of its own on an embedded database of the
//! test's own, with the environment a test gives it, to be killed or stopped like one.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `keyframe serve` process of the test's own, on the embedded database in `data_dir`.
pub struct KeyframeProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl KeyframeProcess {
    /// Starts `keyframe serve` as an operator would with nothing installed (no `DATABASE_URL`,
    /// no `NATS_URL`), on a port of its choosing, and waits until its API listens.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, |_| {}).await
    }

    /// [`KeyframeProcess::start`] with more of the environment set by `configure`.
    pub async fn start_with(data_dir: &Path, configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = keyframe(data_dir);
        configure(&mut command);
        let mut child = command
            .arg("serve")
            .env("KEYFRAME_ADDR", "127.0.0.1:0")
            .env("KEYFRAME_LOG_FORMAT", "json")
            // Whatever the test runner's own level: the start is read from the info lines.
            .env("RUST_LOG", "info")
            // The clients log in straight after registering; cheap hashes keep the test quick.
            .env("KEYFRAME_REQUIRE_EMAIL_VERIFICATION", "false")
            .env("KEYFRAME_ARGON2_MEMORY_KIB", "1024")
            .env("KEYFRAME_ARGON2_ITERATIONS", "1")
            .env("KEYFRAME_RATE_LIMIT_API_PER_USER_PER_MINUTE", "1000000")
            .env("KEYFRAME_RATE_LIMIT_AUTH_PER_IP_PER_MINUTE", "1000000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start keyframe serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (listening, mut address) = tokio::sync::mpsc::channel(1);
        let mut log = BufReader::new(child.stderr.take().expect("its log"));
        let kept = logs.clone();
        // Reads the log to its end, whatever bytes it holds, so the process never blocks on a
        // full pipe.
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            while log.read_until(b'\n', &mut bytes).await.is_ok_and(|read| read > 0) {
                let line = String::from_utf8_lossy(&bytes).trim_end().to_owned();
                bytes.clear();
                if let Ok(entry) = serde_json::from_str::<Value>(&line)
                    && entry["message"] == "API listening"
                    && let Some(addr) = entry["addr"].as_str()
                {
                    let _ = listening.send(addr.to_owned()).await;
                }
                kept.lock().expect("the log").push(line);
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(30), address.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                panic!(
                    "keyframe serve did not listen; its log:\n{}",
                    logs.lock().expect("the log").join("\n")
                )
            });
        Self {
            child,
            base: format!("http://{addr}"),
            logs,
        }
    }

    /// SIGKILL: no shutdown, no flush, no checkpoint of the WAL.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let status = self.child.wait().await.expect("the process ends");
        assert!(!status.success(), "killed, not ended: {status}");
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.logs.lock().expect("the log").join("\n")
    }
}

/// The `keyframe` command on `data_dir`'s embedded database, whatever the suite's environment
/// points at.
pub fn keyframe(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyframe-under-test"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .env("KEYFRAME_DATA_DIR", data_dir);
    command
}

/// A data directory of the test's own, removed at the end.
pub struct DataDir(pub PathBuf);

impl DataDir {
    /// A new one under the system's temporary directory.
    pub fn new() -> Self {
        Self(std::env::temp_dir().join(format!("kf_process_{}", uuid::Uuid::now_v7().simple())))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One user's access token.
pub async fn register_and_login(http: &reqwest::Client, base: &str, email: &str) -> String {
    let credentials = json!({"email": email, "password": "correct horse battery staple"});
    let registered = http
        .post(format!("{base}/api/v1/auth/register"))
        .json(&credentials)
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201, "register {email}");
    let login = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("log in");
    assert_eq!(login.status(), 200, "log in {email}");
    let tokens: Value = login.json().await.expect("tokens");
    tokens["access_token"].as_str().expect("an access token").to_owned()
}
