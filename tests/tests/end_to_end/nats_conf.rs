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

/// A page of the analytics user's durable consumer: up to `count` messages, each acked (and the
/// ack confirmed) before the next; answers their stream sequences.
async fn fetch_and_ack(consumer: &async_nats::jetstream::consumer::PullConsumer, count: usize) -> Vec<u64> {
    let mut sequences = Vec::new();
    let mut messages = consumer
        .fetch()
        .max_messages(count)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    while let Some(message) = messages.next().await {
        let message = message.expect("a message");
        sequences.push(message.info().expect("a JetStream message").stream_sequence);
        message.double_ack().await.expect("ack");
    }
    sequences
}

#[tokio::test(flavor = "multi_thread")]
async fn the_analytics_user_replays_the_stream_through_its_own_durable_consumer_and_resumes_without_gaps() {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};

    let server = NatsServer::start().await;
    let (service, _) = server.connect("keyframe", "service-pw").await;
    let service_js = async_nats::jetstream::new(service.clone());
    let naming = keyframe_eventlog::streams::Naming::new("keyframe");
    keyframe_eventlog::streams::ensure_events_stream(&service_js, &naming)
        .await
        .expect("stream");
    let publish = |count: u64, from: u64| {
        let service_js = service_js.clone();
        async move {
            for n in from..from + count {
                service_js
                    .publish(format!("keyframe.events.Project.p{n}.ProjectCreated"), "{}".into())
                    .await
                    .expect("publish")
                    .await
                    .expect("stored");
            }
        }
    };
    publish(5, 1).await;

    // Offline until now, the analyst still gets everything: a durable consumer from the start.
    let config = pull::Config {
        durable_name: Some("analytics-replay".to_owned()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    let (analytics, _) = server.connect("analytics", "analytics-pw").await;
    let js = async_nats::jetstream::new(analytics.clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .create_consumer_on_stream(config.clone(), "KEYFRAME_EVENTS")
        .await
        .expect("the analytics user creates its consumer");
    assert_eq!(fetch_and_ack(&consumer, 3).await, [1, 2, 3]);
    drop((consumer, js));
    analytics.drain().await.expect("disconnect");

    // Events while it is away, then a new connection: it resumes where it acked.
    publish(2, 6).await;
    let (analytics, analytics_errors) = server.connect("analytics", "analytics-pw").await;
    let js = async_nats::jetstream::new(analytics.clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("analytics-replay", "KEYFRAME_EVENTS")
        .await
        .expect("the analytics user reads its consumer");
    let mut rest = Vec::new();
    while rest.len() < 4 {
        let page = fetch_and_ack(&consumer, 10).await;
        assert!(!page.is_empty(), "the rest arrives: {rest:?}");
        rest.extend(page);
    }
    assert_eq!(rest, [4, 5, 6, 7], "no gap, no repeat");
    js.delete_consumer_from_stream("analytics-replay", "KEYFRAME_EVENTS")
        .await
        .expect("the analytics user deletes its consumer");

    // Nothing else: no event published, no change to the stream, none of the service's
    // consumers read, acked, made or deleted.
    let refused = |subject: String| {
        let analytics = analytics.clone();
        let errors = analytics_errors.clone();
        async move {
            analytics.publish(subject.clone(), "{}".into()).await.expect("sent");
            analytics.flush().await.expect("flush");
            wait_for_violation(&errors, &subject).await;
        }
    };
    refused("keyframe.events.Project.p9.ProjectDeleted".to_owned()).await;
    refused("$JS.API.STREAM.DELETE.KEYFRAME_EVENTS".to_owned()).await;
    refused("$JS.API.STREAM.UPDATE.KEYFRAME_EVENTS".to_owned()).await;
    refused("$JS.API.STREAM.PURGE.KEYFRAME_EVENTS".to_owned()).await;
    for name in keyframe::SERVICE_CONSUMERS {
        for subject in [
            format!("$JS.API.CONSUMER.MSG.NEXT.KEYFRAME_EVENTS.{name}"),
            format!("$JS.API.CONSUMER.INFO.KEYFRAME_EVENTS.{name}"),
            format!("$JS.API.CONSUMER.DELETE.KEYFRAME_EVENTS.{name}"),
            format!("$JS.API.CONSUMER.CREATE.KEYFRAME_EVENTS.{name}"),
            format!("$JS.API.CONSUMER.CREATE.KEYFRAME_EVENTS.{name}.keyframe.events.>"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.KEYFRAME_EVENTS.{name}"),
            format!("$JS.ACK.KEYFRAME_EVENTS.{name}.1.1.1.1.0"),
        ] {
            refused(subject).await;
        }
    }
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

/// The whole video path with the shipped users: the service as `keyframe`, the worker as
/// `worker`. The worker's permissions are enough to take a job, report on it and finish it.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_only_the_worker_users_rights_runs_a_job_to_the_end() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use keyframe::config::{Component, NatsArgs};
    use serde_json::{Value, json};

    let server = NatsServer::start().await;
    let db = keyframe_tests::TestDatabase::create().await;
    let nats = |user: &str, password: &str| NatsArgs {
        nats_url: Some(server.0.url.clone()),
        nats_user: Some(user.to_owned()),
        nats_password: Some(password.to_owned()),
        nats_creds: None,
        nats_prefix: "keyframe".to_owned(),
    };
    let mut api = keyframe_tests::test_api_settings();
    api.require_email_verification = false;
    let storage = api.storage.clone();
    let config = keyframe::app::AppConfig {
        database: keyframe::database::DatabaseTarget::Postgres(db.url.clone()),
        db_max_connections: 5,
        nats: Some(nats("keyframe", "service-pw")),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        components: vec![Component::Api, Component::Relay, Component::Projectors, Component::Jobs],
        api,
        jobs: keyframe_tests::test_coordinator_settings(),
        billing: Default::default(),
        workers: None,
    };
    let app = keyframe::app::Application::build(config).await.expect("starts");
    let base = format!("http://{}", app.local_addr().expect("api"));
    let http = keyframe_tests::http_client();
    let credentials = json!({"email": "worker-path@example.com", "password": "correct horse battery staple"});
    let registered = http
        .post(format!("{base}/api/v1/auth/register"))
        .json(&credentials)
        .send()
        .await
        .expect("answered");
    assert_eq!(registered.status(), 201);
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_owned();
    let project: Value = http
        .post(format!("{base}/api/v1/projects"))
        .bearer_auth(&token)
        .json(&json!({"name": "Permissions"}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    let project_id = project["id"].as_str().expect("id");
    let video = std::env::temp_dir().join(format!("keyframe-perm-{}.mp4", uuid::Uuid::now_v7().simple()));
    keyframe_tests::make_video(
        &video,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x120:r=25:d=3",
            "-f",
            "lavfi",
            "-i",
            "sine=d=3",
        ],
    );
    let asset: Value = http
        .post(format!("{base}/api/v1/projects/{project_id}/assets"))
        .bearer_auth(&token)
        .body(std::fs::read(&video).expect("video"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    let _ = std::fs::remove_file(&video);
    let job: Value = http
        .post(format!("{base}/api/v1/projects/{project_id}/analyze"))
        .bearer_auth(&token)
        .json(&json!({"asset_id": asset["id"]}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    let job_id = job["id"].as_str().expect("job id").to_owned();

    let worker_nats = nats("worker", "worker-pw");
    let scratch = std::env::temp_dir().join(format!("keyframe-perm-scratch-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&scratch).expect("scratch");
    let worker = keyframe_worker::runner::Worker::new(
        worker_nats.connect().await.expect("the worker user connects"),
        keyframe_eventlog::streams::Naming::new("keyframe"),
        keyframe_media::storage::Storage::open(&storage).expect("storage"),
        keyframe_worker::runner::WorkerSettings {
            name: "restricted".to_owned(),
            concurrency: 1,
            heartbeat: Duration::from_millis(250),
            scratch_dir: scratch.clone(),
            analysis: keyframe_media::analysis::AnalysisOptions::default(),
            unable: None,
        },
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    wait_for("the job succeeded", Duration::from_secs(60), || async {
        let job: Value = http
            .get(format!("{base}/api/v1/jobs/{job_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("json");
        job["status"] == "succeeded"
    })
    .await;
    stop.cancel();
    let _ = running.await;
    app.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
    if let keyframe_media::storage::StorageConfig::Local { root } = storage {
        let _ = std::fs::remove_dir_all(root);
    }
}
