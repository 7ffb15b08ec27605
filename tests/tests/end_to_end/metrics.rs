//! `GET /metrics` as Prometheus scrapes it, and `/health/ready` as a load balancer probes it
//! when the pipeline stops.

use keyframe_tests::{TestApp, wait_for};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// The samples of `name` whose labels include every one of `labels` (`key="value"`).
fn samples<'a>(text: &'a str, name: &str, labels: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_requests_by_route_template_commands_and_the_pipeline_without_user_data() {
    let app = TestApp::spawn().await;
    let user = app.register_and_login("metrics.reader@example.com").await;
    app.create_project(&user, "Measured").await;
    let missing = uuid::Uuid::now_v7();
    let gone = app
        .request(
            Method::GET,
            &format!("/api/v1/projects/{missing}"),
            Some(&user.access_token),
            None,
        )
        .await;
    assert_eq!(gone.status(), 404);

    let scraped = app.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .expect("text")
            .starts_with("text/plain; version=0.0.4"),
        "Prometheus text format"
    );
    let text = scraped.text().await.expect("text");

    // Requests by the matched route's template, never the path itself.
    let buckets = samples(
        &text,
        "http_server_request_duration_seconds_bucket",
        &[
            "http_request_method=\"GET\"",
            "http_route=\"/api/v1/projects/{id}\"",
            "http_response_status_code=\"404\"",
        ],
    );
    assert!(buckets.len() >= 14, "a histogram with buckets: {buckets:?}");
    assert!(buckets.iter().any(|line| line.contains("le=\"0.005\"")));
    assert!(!text.contains(&missing.to_string()), "no raw path in a label");
    assert!(!text.contains("metrics.reader"), "no user data in a label");
    assert!(
        !samples(
            &text,
            "http_server_request_duration_seconds_count",
            &[
                "http_route=\"/api/v1/projects\"",
                "http_request_method=\"POST\"",
                "http_response_status_code=\"201\""
            ]
        )
        .is_empty()
    );

    // Keyframe's own; the relay's and JetStream's only where there are a relay and JetStream.
    let relayed = keyframe_tests::suite() == keyframe_tests::Suite::Postgres;
    for (name, labels) in [
        (
            "keyframe_commands_total",
            vec!["aggregate=\"Project\"", "outcome=\"ok\""],
        ),
        ("keyframe_commands_total", vec!["aggregate=\"User\"", "outcome=\"ok\""]),
        ("keyframe_events_appended_total", vec![]),
        ("keyframe_relay_backlog_events", vec![]),
        ("keyframe_relay_oldest_unpublished_seconds", vec![]),
        ("keyframe_projection_lag_events", vec!["projection=\"project_list\""]),
        ("keyframe_projection_lag_seconds", vec!["projection=\"session_list\""]),
        (
            "keyframe_jetstream_consumer_pending_messages",
            vec!["consumer=\"projections\""],
        ),
        (
            "keyframe_jetstream_consumer_ack_pending_messages",
            vec!["consumer=\"projections\""],
        ),
        ("keyframe_jobs", vec!["status=\"queued\""]),
        ("keyframe_jobs", vec!["status=\"running\""]),
        ("keyframe_db_pool_connections", vec!["state=\"in_use\""]),
        ("keyframe_db_pool_connections", vec!["state=\"idle\""]),
        ("keyframe_password_hashes_waiting", vec![]),
    ] {
        if !relayed && (name.starts_with("keyframe_relay_") || name.starts_with("keyframe_jetstream_")) {
            assert!(samples(&text, name, &labels).is_empty(), "{name} is not in /metrics");
            continue;
        }
        assert!(
            !samples(&text, name, &labels).is_empty(),
            "{name} {labels:?} is in /metrics"
        );
    }
    // It is in the document, as text.
    let document: Value = app
        .request(Method::GET, "/openapi.json", None, None)
        .await
        .json()
        .await
        .expect("json");
    assert!(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_turns_unavailable_while_a_read_model_stops_advancing_and_recovers_with_it() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let mut settings = keyframe_tests::test_api_settings();
    settings.pipeline.stall_after = Duration::from_secs(1);
    let app = TestApp::builder().settings(settings).spawn().await;
    let user = app.register_and_login("stalled.reader@example.com").await;
    async fn ready(app: &TestApp) -> (u16, Value) {
        let response = app.request(Method::GET, "/health/ready", None, None).await;
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("json"))
    }
    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["projections"]
            .as_array()
            .is_some_and(|lags| lags.len() == keyframe_projections::names().len()),
        "{body}"
    );

    // project_list refuses a project: it stands still, and past the bound readiness says so.
    sqlx::query("ALTER TABLE project_list ADD CONSTRAINT no_poison CHECK (name <> 'poison')")
        .execute(&app.db.postgres().pool)
        .await
        .expect("constraint");
    app.create_project(&user, "poison").await;
    wait_for("readiness to turn unavailable", Duration::from_secs(20), || async {
        let (status, body) = ready(&app).await;
        status == 503 && body["stalled"] == serde_json::json!(["project_list"])
    })
    .await;
    let (_, body) = ready(&app).await;
    let project_list = body["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .find(|lag| lag["name"] == "project_list")
        .expect("project_list")
        .clone();
    assert!(project_list["lag_events"].as_i64() >= Some(1), "{body}");
    assert!(project_list["lag_seconds"].as_f64() > Some(1.0), "{body}");

    // Once it can apply again, it catches up and readiness comes back.
    sqlx::query("ALTER TABLE project_list DROP CONSTRAINT no_poison")
        .execute(&app.db.postgres().pool)
        .await
        .expect("constraint");
    wait_for("readiness to come back", Duration::from_secs(90), || async {
        ready(&app).await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_nats_metrics_show_where_the_settlements_readers_of_the_log_stand() {
    let app = TestApp::builder().embedded().spawn().await;
    // A registration: the signup reader has something to read, and every reader saves a place.
    app.register_and_login("counted@example.com").await;
    let readers = ["billing_settlement", "billing_reservations", "billing_signups"];
    wait_for(
        "every reader to be at the end of the log",
        Duration::from_secs(30),
        || async {
            let text = app
                .request(Method::GET, "/metrics", None, None)
                .await
                .text()
                .await
                .expect("the metrics");
            readers.iter().all(|reader| {
                let label = format!("consumer=\"{reader}\"");
                samples(&text, "keyframe_log_consumer_lag_events", &[&label])
                    == [format!("keyframe_log_consumer_lag_events{{{label}}} 0")]
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                    && samples(&text, "keyframe_log_consumer_lag_seconds", &[&label]).len() == 1
            })
        },
    )
    .await;
}
