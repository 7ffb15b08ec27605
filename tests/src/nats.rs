//! A NATS prefix of each test's own, its stream read back, and a NATS server process of a test's
//! own.

use crate::{block_on_cleanup, is_stale, unique, wait_for};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use keyframe::config::NatsArgs;
use keyframe_domain::log::RecordedEvent;
use keyframe_eventlog::streams::Naming;
use std::time::Duration;

/// The NATS server tests use.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A NATS prefix of the test's own; its stream is deleted when the handle drops.
pub struct TestNats {
    /// The naming under the prefix.
    pub naming: Naming,
    /// A client.
    pub client: async_nats::Client,
    /// JetStream on it.
    pub jetstream: jetstream::Context,
}

impl TestNats {
    /// A fresh prefix and a connection.
    pub async fn create() -> Self {
        let client = async_nats::connect(nats_url()).await.expect("connect to NATS");
        let jetstream = jetstream::new(client.clone());
        sweep_stale_streams(&jetstream).await;
        let naming = Naming::new(unique("kft"));
        Self {
            naming,
            client,
            jetstream,
        }
    }

    /// Settings pointing the service at this prefix.
    pub fn args(&self) -> NatsArgs {
        NatsArgs {
            nats_url: Some(nats_url()),
            nats_user: None,
            nats_password: None,
            nats_creds: None,
            nats_prefix: self.naming.prefix().to_owned(),
        }
    }

    /// Every event in the stream, in stream order, with its `Nats-Msg-Id`.
    pub async fn stream_events(&self) -> Vec<(String, RecordedEvent)> {
        let Ok(mut stream) = self.jetstream.get_stream(self.naming.events_stream()).await else {
            return Vec::new();
        };
        let count = stream.info().await.expect("stream info").state.messages;
        if count == 0 {
            return Vec::new();
        }
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("ephemeral consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut events = Vec::new();
        while (events.len() as u64) < count {
            let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .expect("stream read timed out")
                .expect("stream ended")
                .expect("message");
            let id = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("Nats-Msg-Id"))
                .map(|value| value.to_string())
                .unwrap_or_default();
            events.push((id, serde_json::from_slice(&message.payload).expect("a recorded event")));
        }
        events
    }

    /// How many messages the stream holds (0 before it exists).
    pub async fn stream_len(&self) -> u64 {
        match self.jetstream.get_stream(self.naming.events_stream()).await {
            Ok(mut stream) => stream.info().await.map(|info| info.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let stream = self.naming.events_stream();
        block_on_cleanup(async move {
            if let Ok(client) = async_nats::connect(nats_url()).await {
                let _ = jetstream::new(client).delete_stream(&stream).await;
            }
        });
    }
}

/// Asserts that a stream holds each event of `expected` exactly once, and each aggregate's
/// events in sequence order.
pub fn assert_exactly_once_in_order(stream: &[(String, RecordedEvent)], expected: &[RecordedEvent]) {
    use std::collections::{HashMap, HashSet};
    let ids: Vec<&str> = stream.iter().map(|(id, _)| id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no event is in the stream twice");
    let wanted: HashSet<String> = expected.iter().map(RecordedEvent::message_id).collect();
    let got: HashSet<String> = unique.iter().map(|id| (*id).to_owned()).collect();
    assert_eq!(got.len(), wanted.len(), "the stream holds as many events as committed");
    assert!(got == wanted, "the stream holds exactly the committed events");
    let positions: Vec<(u64, i64)> = stream.iter().map(|(_, e)| (e.tx_id, e.global_position)).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "the stream follows the commit-safe order (tx_id, then global_position, numerically)"
    );
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for (id, event) in stream {
        assert_eq!(id, &event.message_id(), "Nats-Msg-Id is <type>:<id>:<sequence>");
        let previous = last
            .insert(
                (event.aggregate_type.clone(), event.aggregate_id.clone()),
                event.sequence,
            )
            .unwrap_or(0);
        assert_eq!(
            event.sequence,
            previous + 1,
            "{} arrives right after its predecessor",
            event.message_id()
        );
    }
}

/// A nats-server of the test's own (for what cannot be done to the shared one: a custom
/// configuration, or being stopped). Killed and its files removed when dropped.
pub struct NatsServerProcess {
    child: std::process::Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// Its port.
    pub port: u16,
    dir: std::path::PathBuf,
}

impl NatsServerProcess {
    /// Starts nats-server with JetStream. `config` is a configuration text in which `{port}` and
    /// `{store}` are replaced; without one, a plain JetStream server is started.
    pub async fn start(config: Option<&str>) -> Self {
        // `KEYFRAME_TEST_NATS_SERVER` picks another build (a current one, to check against both
        // the Debian 2.9 and 2.10 and later).
        let chosen = std::env::var("KEYFRAME_TEST_NATS_SERVER").ok();
        let binary = chosen
            .as_deref()
            .into_iter()
            .chain([
                "/usr/sbin/nats-server",
                "/usr/bin/nats-server",
                "/usr/local/bin/nats-server",
            ])
            .find(|path| std::path::Path::new(path).exists())
            .expect("nats-server is installed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = std::env::temp_dir().join(format!("keyframe-nats-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let store = dir.join("jetstream");
        let args: Vec<String> = match config {
            Some(text) => {
                let path = dir.join("nats.conf");
                let text = text
                    .replace("{port}", &port.to_string())
                    .replace("{store}", &store.display().to_string());
                std::fs::write(&path, text).expect("write the configuration");
                vec!["-c".to_owned(), path.display().to_string()]
            }
            None => [
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-sd",
                &store.display().to_string(),
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        let child = std::process::Command::new(binary)
            .args(&args)
            .env("KEYFRAME_NATS_PASSWORD", "service-pw")
            .env("WORKER_NATS_PASSWORD", "worker-pw")
            .env("ANALYTICS_NATS_PASSWORD", "analytics-pw")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let url = format!("nats://127.0.0.1:{port}");
        let server = Self { child, url, port, dir };
        wait_for("nats-server to listen", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        server
    }

    /// Kills the server, as an outage would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn sweep_stale_streams(jetstream: &jetstream::Context) {
    let names: Vec<String> = jetstream
        .stream_names()
        .filter_map(|name| async move { name.ok() })
        .collect()
        .await;
    for name in names
        .into_iter()
        .filter(|name| name.starts_with("KFT") && is_stale(&name[3..]))
    {
        let _ = jetstream.delete_stream(&name).await;
    }
}
