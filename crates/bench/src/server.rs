//! The system under test: scratch databases and NATS prefixes, and `keyframe` child processes.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::process::{Child, Command};

/// A database and NATS prefix of the run's own.
pub struct Scratch {
    admin_url: String,
    name: String,
    /// Its connection string.
    pub database_url: String,
    /// The NATS server.
    pub nats_url: String,
    /// The subject and stream prefix.
    pub prefix: String,
    jetstream: async_nats::jetstream::Context,
}

impl Scratch {
    /// The data directory of its servers (uploads, artifacts, mail).
    pub fn data_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("keyframe-bench-{}", self.prefix))
    }

    /// Where its servers write their mails (development: `.eml` files).
    pub fn mail_dir(&self) -> PathBuf {
        self.data_dir().join("mail")
    }
}

impl Scratch {
    /// Runs `measure` with a directory of `phase`'s own for its files, removed afterwards
    /// whatever the outcome.
    pub async fn with_dir<T>(
        &self,
        phase: &str,
        measure: impl AsyncFnOnce(&std::path::Path) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let dir = std::env::temp_dir().join(format!("keyframe-bench-{phase}-{}", self.prefix));
        std::fs::create_dir_all(&dir)?;
        let outcome = measure(&dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }

    /// Creates the database; the stream appears when `keyframe` starts.
    pub async fn create(admin_url: &str, nats_url: &str, tag: &str) -> anyhow::Result<Self> {
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let name = format!("kf_bench_{tag}_{stamp}");
        let admin = sqlx::PgPool::connect(admin_url)
            .await
            .context("connecting to Postgres")?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
        admin.close().await;
        // Same server and options (the query string: TLS mode and the like), another database.
        let (location, options) = admin_url.split_once('?').unwrap_or((admin_url, ""));
        let server = &location[..location.rfind('/').context("admin url has no path")?];
        let database_url = if options.is_empty() {
            format!("{server}/{name}")
        } else {
            format!("{server}/{name}?{options}")
        };
        let client = async_nats::connect(nats_url).await.context("connecting to NATS")?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            database_url,
            nats_url: nats_url.to_owned(),
            prefix: format!("kfbench{tag}{stamp}"),
            jetstream: async_nats::jetstream::new(client),
        })
    }

    fn stream_name(&self) -> String {
        format!("{}_EVENTS", self.prefix.to_uppercase())
    }

    /// Waits until the stream holds `count` messages; answers when the first and the last
    /// arrived (as seen by polling every 10 ms).
    pub async fn wait_for_stream(&self, count: u64, timeout: Duration) -> anyhow::Result<(Instant, Instant)> {
        let deadline = Instant::now() + timeout;
        let mut first = None;
        loop {
            let messages = match self.jetstream.get_stream(self.stream_name()).await {
                Ok(mut stream) => stream.info().await.map(|info| info.state.messages).unwrap_or(0),
                Err(_) => 0,
            };
            if messages > 0 && first.is_none() {
                first = Some(Instant::now());
            }
            if messages >= count {
                return Ok((first.unwrap_or_else(Instant::now), Instant::now()));
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the stream reached only {messages} of {count} messages"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// JetStream's own rate on this machine, the relay's baseline: `count` messages of
    /// `payload` published to a stream of their own (file storage, like the events stream) in
    /// pipelined batches of `batch`, every PubAck awaited. Answers messages per second; the
    /// stream is deleted afterwards.
    pub async fn raw_jetstream_publish(&self, count: u64, batch: usize, payload: &[u8]) -> anyhow::Result<f64> {
        let name = format!("{}_RAW", self.prefix.to_uppercase());
        let subject = format!("{}.raw", self.prefix);
        self.jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{subject}.>")],
                storage: async_nats::jetstream::stream::StorageType::File,
                duplicate_window: Duration::from_secs(10 * 60),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating the raw stream: {e}"))?;
        let payload = hyper::body::Bytes::copy_from_slice(payload);
        let started = Instant::now();
        let mut sent = 0_u64;
        while sent < count {
            let mut acks = Vec::with_capacity(batch);
            for _ in 0..batch.min((count - sent) as usize) {
                sent += 1;
                // A message id per message, as the relay sends, so the duplicate check costs
                // the same.
                let message = async_nats::jetstream::message::PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(format!("raw:{sent}"));
                acks.push(
                    self.jetstream
                        .send_publish(format!("{subject}.{}", sent % 1_000), message)
                        .await
                        .map_err(|e| anyhow::anyhow!("publishing: {e}"))?,
                );
            }
            for ack in acks {
                ack.await.map_err(|e| anyhow::anyhow!("waiting for a PubAck: {e}"))?;
            }
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        let _ = self.jetstream.delete_stream(&name).await;
        Ok(rate)
    }

    /// The payload of the events stream's first message (an event as the relay publishes it).
    pub async fn first_event_payload(&self) -> anyhow::Result<Vec<u8>> {
        let stream = self
            .jetstream
            .get_stream(self.stream_name())
            .await
            .map_err(|e| anyhow::anyhow!("finding the events stream: {e}"))?;
        let message = stream
            .get_raw_message(1)
            .await
            .map_err(|e| anyhow::anyhow!("reading its first message: {e}"))?;
        Ok(message.payload.to_vec())
    }

    /// Drops the database and the stream.
    pub async fn remove(self) {
        let _ = self.jetstream.delete_stream(self.stream_name()).await;
        if let Ok(admin) = sqlx::PgPool::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&admin)
                .await;
        }
    }
}

/// A running `keyframe` process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

impl Server {
    fn command(keyframe: &Path, scratch: &Scratch, args: &[&str], port: u16) -> Command {
        let mut command = Self::base_command(keyframe, &scratch.data_dir(), args, port);
        command
            .env("DATABASE_URL", &scratch.database_url)
            .env("NATS_URL", &scratch.nats_url)
            .env("KEYFRAME_NATS_PREFIX", &scratch.prefix);
        command
    }

    /// `keyframe <args>` with the bench's settings, on whatever database and NATS the caller
    /// names (none: the embedded deployment in `data_dir`).
    fn base_command(keyframe: &Path, data_dir: &Path, args: &[&str], port: u16) -> Command {
        let mut command = Command::new(keyframe);
        command
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("NATS_URL")
            .env("KEYFRAME_ADDR", format!("127.0.0.1:{port}"))
            .env("KEYFRAME_JWT_SECRET", "bench-secret-bench-secret-bench-secret-42")
            .env("KEYFRAME_MASTER_KEY", "YmVuY2gtbWFzdGVyLWtleS1iZW5jaC1tYXN0ZXItazE=")
            // Development, so mail goes to files in a scratch directory instead of needing an
            // SMTP server; argon2 keeps its production (OWASP) defaults all the same.
            .env("KEYFRAME_ENV", "development")
            .env("KEYFRAME_DATA_DIR", data_dir)
            .env("KEYFRAME_REQUIRE_EMAIL_VERIFICATION", "false")
            // The load comes from one address and a few accounts: limits would measure themselves.
            .env("KEYFRAME_RATE_LIMIT_AUTH_PER_IP_PER_MINUTE", "0")
            .env("KEYFRAME_RATE_LIMIT_AUTH_PER_ACCOUNT_PER_15_MIN", "0")
            .env("KEYFRAME_RATE_LIMIT_API_PER_USER_PER_MINUTE", "0")
            .env("KEYFRAME_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Starts `keyframe <args>` with the API and waits until it is ready.
    pub async fn start(keyframe: &Path, scratch: &Scratch, args: &[&str]) -> anyhow::Result<Self> {
        let server = Self::start_background(keyframe, scratch, args).await?;
        server.until_ready().await?;
        Ok(server)
    }

    /// Starts `keyframe serve` as the embedded deployment in `data_dir` (no `DATABASE_URL`, no
    /// `NATS_URL`), waits until it is ready, and answers it with how long that took.
    pub async fn start_embedded(keyframe: &Path, data_dir: &Path) -> anyhow::Result<(Self, Duration)> {
        let started = Instant::now();
        let port = free_port()?;
        let child = Self::base_command(keyframe, data_dir, &["serve"], port)
            .spawn()
            .context("starting keyframe")?;
        let server = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        server.until_ready().await?;
        Ok((server, started.elapsed()))
    }

    /// Waits until `/health/ready` answers 200, looking every 5 ms (the embedded start-up is
    /// timed by it).
    async fn until_ready(&self) -> anyhow::Result<()> {
        let client = {
            keyframe_media::storage::install_tls_provider();
            reqwest::Client::new()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.get(format!("{}/health/ready", self.base_url)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "keyframe did not become ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts `keyframe <args>` without waiting for anything.
    pub async fn start_background(keyframe: &Path, scratch: &Scratch, args: &[&str]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Self::command(keyframe, scratch, args, port)
            .spawn()
            .context("starting keyframe")?;
        Ok(Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Runs `keyframe <args>` to the end and returns what it printed.
    pub async fn run_to_end(keyframe: &Path, scratch: &Scratch, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Self::command(keyframe, scratch, args, 0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await?)
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("process gone")
    }

    /// Resident set size now (VmRSS), in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        Ok(memory_kib(self.pid()?, "VmRSS").context("no VmRSS")? as f64 / 1024.0)
    }

    /// Peak resident set size so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        Ok(memory_kib(self.pid()?, "VmHWM").context("no VmHWM")? as f64 / 1024.0)
    }

    /// SIGTERM, then a kill if it lingers.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A port nobody listens on now, for the next process to take.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A memory figure of process `pid` from `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
