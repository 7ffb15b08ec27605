//! `nats.conf` as shipped: a real nats-server started with it proves each user can do what its
//! role needs and nothing more. The analytics user only reads events; the worker cannot publish
//! domain events.

use futures::StreamExt;
use keyframe_tests::wait_for;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct NatsServer {
    child: Child,
    url: String,
    store: std::path::PathBuf,
}

impl NatsServer {
    async fn start() -> Self {
        let binary = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect("nats-server is installed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let store = std::env::temp_dir().join(format!("keyframe-nats-conf-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&store).expect("store dir");
        // The shipped file with only its listen address and store directory moved here.
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../nats.conf")).expect("nats.conf");
        let store_dir = store.join("jetstream");
        let adapted = shipped
            .replace("listen: 0.0.0.0:4222", &format!("listen: 127.0.0.1:{port}"))
            .replace(
                "store_dir: /data/jetstream",
                &format!("store_dir: \"{}\"", store_dir.display()),
            );
        assert_ne!(adapted, shipped, "nats.conf still has the lines this test moves");
        let config = store.join("nats.conf");
        std::fs::write(&config, adapted).expect("write config");
        let child = Command::new(binary)
            .args(["-c", config.to_str().expect("utf-8")])
            .env("KEYFRAME_NATS_PASSWORD", "service-pw")
            .env("WORKER_NATS_PASSWORD", "worker-pw")
            .env("ANALYTICS_NATS_PASSWORD", "analytics-pw")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let url = format!("nats://127.0.0.1:{port}");
        wait_for("nats-server to listen", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        Self { child, url, store }
    }

    /// Connects as `user`, recording the server's permission errors.
    async fn connect(&self, user: &str, password: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let client = async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned())
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        sink.lock().expect("lock").push(error.to_string());
                    }
                }
            })
            .connect(&self.url)
            .await
            .expect("connect");
        (client, errors)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

async fn wait_for_violation(errors: &Arc<Mutex<Vec<String>>>, subject: &str) {
    wait_for(
        &format!("a permissions violation for {subject}"),
        Duration::from_secs(5),
        || async {
            errors
                .lock()
                .expect("lock")
                .iter()
                .any(|e| e.contains("Permissions Violation") && e.contains(subject))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_analytics_user_reads_events_and_can_do_nothing_else() {
    let server = NatsServer::start().await;
    let (service, _) = server.connect("keyframe", "service-pw").await;
    let (analytics, analytics_errors) = server.connect("analytics", "analytics-pw").await;

    let mut events = analytics
        .subscribe("keyframe.events.>")
        .await
        .expect("subscribe to events");
    analytics.flush().await.expect("flush");
    service
        .publish("keyframe.events.Project.p1.ProjectCreated", "{}".into())
        .await
        .expect("publish");
    let received = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("in time")
        .expect("a message");
    assert_eq!(received.subject.as_str(), "keyframe.events.Project.p1.ProjectCreated");

    analytics
        .publish("keyframe.events.Project.p2.ProjectDeleted", "{}".into())
        .await
        .expect("sent");
    analytics.flush().await.expect("flush");
    wait_for_violation(&analytics_errors, "keyframe.events.Project.p2.ProjectDeleted").await;

    let _worker_results = analytics.subscribe("keyframe.worker.jobs.>").await.expect("sent");
    analytics.flush().await.expect("flush");
    wait_for_violation(&analytics_errors, "keyframe.worker.jobs.>").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_publishes_results_but_not_domain_events() {
    let server = NatsServer::start().await;
    let (service, _) = server.connect("keyframe", "service-pw").await;
    let (worker, worker_errors) = server.connect("worker", "worker-pw").await;

    let mut results = service.subscribe("keyframe.worker.jobs.>").await.expect("subscribe");
    service.flush().await.expect("flush");
    worker
        .publish("keyframe.worker.jobs.j1.progress", "{\"percent\":50}".into())
        .await
        .expect("publish");
    let received = tokio::time::timeout(Duration::from_secs(5), results.next())
        .await
        .expect("in time")
        .expect("a message");
    assert_eq!(received.subject.as_str(), "keyframe.worker.jobs.j1.progress");

    worker
        .publish("keyframe.events.Job.j1.JobSucceeded", "{}".into())
        .await
        .expect("sent");
    worker.flush().await.expect("flush");
    wait_for_violation(&worker_errors, "keyframe.events.Job.j1.JobSucceeded").await;
}
