//! Reading a job's progress stream (Server-Sent Events) as a client does.

use crate::TestApp;
use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// Opens `job_id`'s progress stream as the holder of `token`, resuming after `last_event_id`.
pub async fn open_job_events(
    app: &TestApp,
    token: &str,
    job_id: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .get(format!("{}/api/v1/jobs/{job_id}/events", app.base_url))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );
    response
}

/// Reads a progress stream to its end: `(id, event, data)` per event.
pub async fn collect_events(response: reqwest::Response) -> Vec<(String, String, Value)> {
    let mut body = String::new();
    let mut chunks = response.bytes_stream();
    let read = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(chunk) = chunks.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream ends when the job does; so far: {body}");
    body.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_owned()))
            };
            Some((
                field("id")?,
                field("event")?,
                serde_json::from_str(&field("data")?).ok()?,
            ))
        })
        .collect()
}
