//! `nats.conf` as shipped: a real nats-server started with it proves each user can do what its
//! role needs and nothing more. The analytics user only reads events; the worker cannot publish
//! domain events.

use futures::StreamExt;
use keyframe_tests::{NatsServerProcess, wait_for};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct NatsServer(NatsServerProcess);

impl NatsServer {
    /// nats-server with the shipped `nats.conf`, only its listen address and store moved.
    async fn start() -> Self {
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../nats.conf")).expect("nats.conf");
        let adapted = shipped
            .replace("listen: 0.0.0.0:4222", "listen: 127.0.0.1:{port}")
            .replace("store_dir: /data/jetstream", "store_dir: \"{store}\"");
        assert_ne!(adapted, shipped, "nats.conf still has the lines this test moves");
        Self(NatsServerProcess::start(Some(&adapted)).await)
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
            .connect(&self.0.url)
            .await
            .expect("connect");
        (client, errors)
    }
}

/// Publishes on `subject` until `subscription` receives it. The client's `flush` only empties
/// its own buffer, so a subscription made just before may not be registered on the server yet:
/// repeating the publish, rather than sleeping, waits exactly as long as that takes.
async fn publish_until_received(
    publisher: &async_nats::Client,
    subject: &str,
    subscription: &mut async_nats::Subscriber,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        publisher
            .publish(subject.to_owned(), "{}".into())
            .await
            .expect("publish");
        publisher.flush().await.expect("flush");
        if let Ok(message) = tokio::time::timeout(Duration::from_millis(100), subscription.next()).await {
            let message = message.expect("the subscription is open");
            assert_eq!(message.subject.as_str(), subject);
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{subject} never arrived");
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
    publish_until_received(&service, "keyframe.events.Project.p1.ProjectCreated", &mut events).await;

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
    publish_until_received(&worker, "keyframe.worker.jobs.j1.progress", &mut results).await;

    worker
        .publish("keyframe.events.Job.j1.JobSucceeded", "{}".into())
        .await
        .expect("sent");
    worker.flush().await.expect("flush");
    wait_for_violation(&worker_errors, "keyframe.events.Job.j1.JobSucceeded").await;
}
