//! Health endpoints: liveness (the process answers) and readiness (Postgres and NATS answer,
//! and neither the relay nor a read model has stopped advancing).

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyframe_database::portable;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        // The short form load balancers probe; not in the document (it is `/health/ready`).
        .route("/health", axum::routing::get(ready))
}

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Keyframe's version.
    pub version: &'static str,
    /// Each dependency: `ok` or `down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
    /// Committed events the relay has not yet published (counted up to 100,000); a number that
    /// keeps growing means the relay is down or held back by an append left open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_backlog: Option<i64>,
    /// Seconds since the oldest event the relay has not yet published was written (0 when it
    /// has published everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_oldest_unpublished_seconds: Option<f64>,
    /// How far each read model is behind the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projections: Option<Vec<ProjectionHealth>>,
    /// What has stopped advancing: the relay (`relay`) or read models whose oldest unapplied
    /// event is older than the bound (`KEYFRAME_PIPELINE_STALL_SECS`). Not empty: 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled: Option<Vec<String>>,
}

/// How far one read model is behind.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionHealth {
    /// The read model.
    pub name: String,
    /// Events after its checkpoint (counted up to 100,000).
    pub lag_events: i64,
    /// Seconds since the oldest of them was written (0 when there is none).
    pub lag_seconds: f64,
}

/// Dependency checks: `ok` or `down` each.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// The database: event store and read models.
    pub database: &'static str,
    /// Which database that is: `postgres` or `sqlite` (embedded).
    pub database_kind: &'static str,
    /// The same as `database` when that is Postgres (kept for existing clients); absent on
    /// SQLite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<&'static str>,
    /// The NATS server; absent in a deployment without NATS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<&'static str>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        checks: None,
        relay_backlog: None,
        relay_oldest_unpublished_seconds: None,
        projections: None,
        stalled: None,
    })
}

/// The database answers (and NATS, in a deployment with it), and the relay (where there is one)
/// and every read model advance; 503 when not.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database = state.database();
    let database_up = tokio::time::timeout(CHECK_TIMEOUT, async {
        portable!(database.reader(), pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
    })
    .await
    .is_ok_and(|result| result.is_ok());
    let nats = match &state.nats {
        Some(nats) => Some(
            nats.connection_state() == async_nats::connection::State::Connected
                && tokio::time::timeout(CHECK_TIMEOUT, nats.flush())
                    .await
                    .is_ok_and(|result| result.is_ok()),
        ),
        None => None,
    };
    let names = keyframe_projections::names();
    let pipeline = if database_up {
        tokio::time::timeout(
            CHECK_TIMEOUT,
            keyframe_eventlog::status::pipeline_status(state.database(), state.nats.is_some(), &names),
        )
        .await
        .ok()
        .and_then(Result::ok)
    } else {
        None
    };
    let stalled: Option<Vec<String>> = pipeline.as_ref().map(|status| {
        status
            .stalled(state.settings.pipeline.stall_after)
            .into_iter()
            .map(str::to_owned)
            .collect()
    });
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let healthy = database_up && nats != Some(false) && stalled.as_ref().is_none_or(Vec::is_empty);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if healthy { "ok" } else { "unavailable" },
        version: env!("CARGO_PKG_VERSION"),
        checks: Some(Checks {
            database: word(database_up),
            database_kind: database.dialect().name(),
            postgres: database.postgres().map(|_| word(database_up)),
            nats: nats.map(word),
        }),
        relay_backlog: pipeline
            .as_ref()
            .and_then(|status| status.relay.as_ref())
            .map(|relay| relay.backlog),
        relay_oldest_unpublished_seconds: pipeline
            .as_ref()
            .and_then(|status| status.relay.as_ref())
            .map(|relay| relay.oldest_unpublished_seconds),
        projections: pipeline.map(|status| {
            status
                .projections
                .into_iter()
                .map(|lag| ProjectionHealth {
                    name: lag.name.to_owned(),
                    lag_events: lag.events,
                    lag_seconds: lag.seconds,
                })
                .collect()
        }),
        stalled,
    };
    (status, Json(body))
}
