//! Prometheus metrics: `GET /metrics` in the text format, named by OpenTelemetry's semantic
//! conventions as Prometheus renders them.
//!
//! Counters and histograms are recorded where things happen, through the `metrics` facade
//! (commands and appends in the event log, reservations and password hashing in the use cases,
//! the worker protocol in the coordinator, requests here). What is a state rather than an
//! event (how far the relay and each read model are behind, JetStream's pending messages, jobs
//! waiting and running, the connection pool) is read when Prometheus scrapes, so it is right
//! whichever process runs the relay and the projector runtime. No label holds user data: the
//! route is the matched template, never the path.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The HTTP server histogram (OpenTelemetry `http.server.request.duration`).
pub const HTTP_SERVER_DURATION: &str = "http_server_request_duration_seconds";

/// OpenTelemetry's advice for `http.server.request.duration`, in seconds.
const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A job's wait for a worker: from under a second to hours.
const QUEUE_WAIT_BUCKETS: [f64; 12] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

/// Longest a scrape waits for one of the states it reads; past it, that state keeps its
/// previous value and the scrape answers.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed the first time it is asked for (one per process: every
/// API of a process, tests' included, shares it).
pub fn recorder() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_SERVER_DURATION.to_owned()), &HTTP_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("keyframe_job_queue_wait_seconds".to_owned()),
                        &QUEUE_WAIT_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(builder) => builder.build_recorder(),
                // Only empty bucket lists are refused, and these are constants.
                Err(error) => unreachable!("bucket lists are not empty: {error}"),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder was installed first; /metrics shows none of what it records");
            }
            handle
        })
        .clone()
}

/// Middleware: times each request into [`HTTP_SERVER_DURATION`] (to the response's head: a
/// live event stream counts until it starts), labelled by method, matched route and status.
pub(crate) async fn time_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let response = next.run(request).await;
    metrics::histogram!(
        HTTP_SERVER_DURATION,
        "http_request_method" => method,
        "http_route" => route,
        "http_response_status_code" => response.status().as_str().to_owned(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// The method as OpenTelemetry labels it: a known one by name, anything else `_OTHER` (a client
/// may send any token, and each would be a series of its own).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The settlement's readers of the log, which follow it themselves without NATS.
const SETTLEMENT_READERS: [&str; 3] = [
    keyframe_billing::settlement::SETTLEMENT_CONSUMER,
    keyframe_billing::settlement::RESERVATION_CONSUMER,
    keyframe_billing::settlement::SIGNUP_CONSUMER,
];

/// Prometheus metrics (text format 0.0.4): the states read now, then every counter, gauge and
/// histogram. Each is described in the README.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    read_states(&state).await;
    let handle = recorder();
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Sets the gauges that describe a state rather than count events.
async fn read_states(state: &AppState) {
    let database = state.database();
    let (open, idle) = database.connections();
    metrics::gauge!("keyframe_db_pool_connections", "state" => "in_use").set(f64::from(open) - idle as f64);
    metrics::gauge!("keyframe_db_pool_connections", "state" => "idle").set(idle as f64);

    let names = keyframe_projections::names();
    match tokio::time::timeout(
        SCRAPE_TIMEOUT,
        keyframe_eventlog::status::pipeline_status(database, state.nats.is_some(), &names),
    )
    .await
    {
        Ok(Ok(status)) => {
            if let Some(relay) = status.relay {
                metrics::gauge!("keyframe_relay_backlog_events").set(relay.backlog as f64);
                metrics::gauge!("keyframe_relay_oldest_unpublished_seconds").set(relay.oldest_unpublished_seconds);
            }
            for projection in status.projections {
                metrics::gauge!("keyframe_projection_lag_events", "projection" => projection.name)
                    .set(projection.events as f64);
                metrics::gauge!("keyframe_projection_lag_seconds", "projection" => projection.name)
                    .set(projection.seconds);
            }
        }
        Ok(Err(error)) => tracing::warn!(
            error = format!("{error:#}"),
            "metrics: reading the pipeline's lag failed"
        ),
        Err(_) => tracing::warn!("metrics: reading the pipeline's lag timed out"),
    }

    match tokio::time::timeout(SCRAPE_TIMEOUT, keyframe_projections::job_list::active_counts(database)).await {
        Ok(Ok(counts)) => {
            for (status, count) in counts {
                metrics::gauge!("keyframe_jobs", "status" => status).set(count as f64);
            }
        }
        Ok(Err(error)) => tracing::warn!(%error, "metrics: counting the active jobs failed"),
        Err(_) => tracing::warn!("metrics: counting the active jobs timed out"),
    }

    // Without NATS the settlement's readers follow the log themselves: their place in it is
    // what JetStream's pending counts tell with NATS.
    let Some(nats) = &state.nats else {
        match tokio::time::timeout(
            SCRAPE_TIMEOUT,
            keyframe_eventlog::status::consumer_lags(database, &SETTLEMENT_READERS),
        )
        .await
        {
            Ok(Ok(lags)) => {
                for lag in lags {
                    metrics::gauge!("keyframe_log_consumer_lag_events", "consumer" => lag.name.clone())
                        .set(lag.events as f64);
                    metrics::gauge!("keyframe_log_consumer_lag_seconds", "consumer" => lag.name).set(lag.seconds);
                }
            }
            Ok(Err(error)) => tracing::warn!(
                error = format!("{error:#}"),
                "metrics: reading the log readers' places failed"
            ),
            Err(_) => tracing::warn!("metrics: reading the log readers' places timed out"),
        }
        return;
    };
    // One `CONSUMER.INFO` per consumer (the lookup answers with it), all asked at once so
    // that slow answers cost one timeout, not one each.
    let jetstream = async_nats::jetstream::new(nats.clone());
    let stream = &state.settings.pipeline.events_stream;
    let infos = futures::future::join_all(state.settings.pipeline.consumers.iter().map(|consumer| {
        let jetstream = &jetstream;
        async move {
            let info = tokio::time::timeout(SCRAPE_TIMEOUT, async {
                let found: async_nats::jetstream::consumer::PullConsumer =
                    jetstream.get_consumer_from_stream(consumer, stream).await?;
                let info = found.cached_info();
                Ok::<_, async_nats::Error>((info.num_pending, info.num_ack_pending))
            })
            .await;
            (consumer, info)
        }
    }))
    .await;
    for (consumer, info) in infos {
        // A consumer this deployment does not run (no billing, say) is simply not reported.
        if let Ok(Ok((pending, ack_pending))) = info {
            metrics::gauge!("keyframe_jetstream_consumer_pending_messages", "consumer" => consumer.clone())
                .set(pending as f64);
            metrics::gauge!("keyframe_jetstream_consumer_ack_pending_messages", "consumer" => consumer.clone())
                .set(ack_pending as f64);
        }
    }
}
