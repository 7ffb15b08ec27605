//! `job_list`: one row per job, for listing with filters and for statistics.

use crate::{Projection, ProjectionError, decode, last_sequences_by_id, parse_uuid};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyframe_database::lists::{sqlite_uuids, uuid_list};
use keyframe_database::{Backend, Connection, Database, portable};
use keyframe_domain::job::{Job, JobEvent, JobStatus};
use keyframe_domain::log::RecordedEvent;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// The `job_list` projection.
pub struct JobList;

/// Its name, as used by checkpoints, consumers and read-your-writes.
pub const NAME: &str = "job_list";

#[async_trait]
impl Projection for JobList {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Job::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["job_list"]
    }

    async fn last_sequences(
        &self,
        conn: Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>, ProjectionError> {
        last_sequences_by_id(
            conn,
            "SELECT job_id, last_sequence FROM job_list WHERE job_id {ids}",
            Job::TYPE,
            aggregates,
        )
        .await
    }

    async fn apply(&self, mut conn: Connection<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            let job_id = parse_uuid(event)?;
            let sequence = event.sequence;
            let status = |status: JobStatus| status.as_str();
            let job_event = decode::<JobEvent>(event)?;
            // Every statement here is the same in both dialects.
            portable!(conn.reborrow(), conn => {
            let query = match job_event {
                JobEvent::JobRequested {
                    owner,
                    requested_by,
                    project_id,
                    job_type,
                    source,
                    max_retries,
                    cost_credits,
                    requested_at,
                    ..
                } => sqlx::query(
                    "INSERT INTO job_list (job_id, owner_id, project_id, job_type, status, max_retries, asset_id,
                         created_at, updated_at, last_sequence, cost_credits, owner_kind, requested_by)
                     VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7, $8, $9, $10, $11)
                     ON CONFLICT (job_id) DO NOTHING",
                )
                .bind(job_id)
                .bind(owner.id())
                .bind(project_id.0)
                .bind(job_type.as_str())
                .bind(max_retries as i32)
                .bind(source.map(|s| s.asset_id.0))
                .bind(requested_at)
                .bind(sequence)
                .bind(cost_credits)
                .bind(owner.kind().as_str())
                .bind(requested_by.or(owner.user()).map(|user| user.0)),
                JobEvent::JobQueued { queued_at, .. } => sqlx::query(
                    "UPDATE job_list SET status = 'queued', progress = 0, finished_at = NULL, updated_at = $2,
                         last_sequence = $3 WHERE job_id = $1",
                )
                .bind(job_id)
                .bind(queued_at)
                .bind(sequence),
                JobEvent::JobStarted {
                    attempt, started_at, ..
                } => sqlx::query(
                    "UPDATE job_list SET status = 'running', progress = 0, attempts = $2, started_at = $3,
                         error = NULL, updated_at = $3, last_sequence = $4 WHERE job_id = $1",
                )
                .bind(job_id)
                .bind(attempt as i32)
                .bind(started_at)
                .bind(sequence),
                JobEvent::JobProgressed { percent, at, .. } => sqlx::query(
                    "UPDATE job_list SET progress = $2, updated_at = $3, last_sequence = $4 WHERE job_id = $1",
                )
                .bind(job_id)
                .bind(i16::from(percent))
                .bind(at)
                .bind(sequence),
                JobEvent::JobSucceeded { finished_at, .. } => sqlx::query(
                    "UPDATE job_list SET status = 'succeeded', progress = 100, finished_at = $2, updated_at = $2,
                         last_sequence = $3 WHERE job_id = $1",
                )
                .bind(job_id)
                .bind(finished_at)
                .bind(sequence),
                JobEvent::JobAttemptFailed { reason, failed_at, .. } => {
                    sqlx::query("UPDATE job_list SET error = $2, updated_at = $3, last_sequence = $4 WHERE job_id = $1")
                        .bind(job_id)
                        .bind(reason)
                        .bind(failed_at)
                        .bind(sequence)
                }
                JobEvent::JobRetried { retried_at, .. } => {
                    sqlx::query("UPDATE job_list SET updated_at = $2, last_sequence = $3 WHERE job_id = $1")
                        .bind(job_id)
                        .bind(retried_at)
                        .bind(sequence)
                }
                JobEvent::JobFailed { reason, failed_at, .. } => sqlx::query(
                    "UPDATE job_list SET status = 'failed', error = $2, finished_at = $3, updated_at = $3,
                         last_sequence = $4 WHERE job_id = $1",
                )
                .bind(job_id)
                .bind(reason)
                .bind(failed_at)
                .bind(sequence),
                JobEvent::JobCancelled { cancelled_at, .. } => sqlx::query(
                    "UPDATE job_list SET status = $2, finished_at = $3, updated_at = $3, last_sequence = $4
                     WHERE job_id = $1",
                )
                .bind(job_id)
                .bind(status(JobStatus::Cancelled))
                .bind(cancelled_at)
                .bind(sequence),
                JobEvent::JobDeleted { deleted_at } => {
                    sqlx::query("UPDATE job_list SET deleted_at = $2, last_sequence = $3 WHERE job_id = $1")
                        .bind(job_id)
                        .bind(deleted_at)
                        .bind(sequence)
                }
            };
            query.execute(conn).await.map(|done| done.rows_affected()) })?;
        }
        Ok(())
    }
}

/// One row of `job_list`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
    /// The job.
    pub job_id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// `analyze` or `clip`.
    pub job_type: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Percent, as last recorded.
    pub progress: i16,
    /// Attempts started.
    pub attempts: i32,
    /// Automatic retries allowed.
    pub max_retries: i32,
    /// The video.
    pub asset_id: Option<Uuid>,
    /// The last failure's reason.
    pub error: Option<String>,
    /// Its price in credits; 0 once it failed or was cancelled; `None` from before billing.
    pub cost_credits: Option<i64>,
    /// When requested.
    pub created_at: DateTime<Utc>,
    /// When the last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Filters of a job listing.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this project.
    pub project_id: Option<Uuid>,
    /// Only this type.
    pub job_type: Option<String>,
}

/// A page of the jobs of any of `owners` (the caller and their organisations), newest first,
/// after `cursor`. Each owner's newest are read through the owner index with the limit, then
/// merged, so one busy organisation costs a member no more than their own jobs do.
///
/// On SQLite the same plan is written out: one indexed read per owner, merged here.
pub async fn list_for_owners(
    database: &Database,
    owners: &[Uuid],
    filter: &JobFilter,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    let pool = match database.reader() {
        Backend::Postgres(pool) => pool,
        Backend::Sqlite(pool) => {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM job_list j
                 WHERE owner_id = $1 AND deleted_at IS NULL
                   AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR project_id = $3)
                   AND ($4 IS NULL OR job_type = $4) AND ($5 IS NULL OR job_id < $5)
                 ORDER BY job_id DESC LIMIT $6"
            );
            let mut rows: Vec<JobRow> = Vec::new();
            for owner in owners {
                let page: Vec<JobRow> = sqlx::query_as(&sql)
                    .bind(owner)
                    .bind(&filter.status)
                    .bind(filter.project_id)
                    .bind(&filter.job_type)
                    .bind(cursor)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.extend(page);
            }
            rows.sort_by_key(|row| std::cmp::Reverse(row.job_id));
            rows.truncate(usize::try_from(limit).unwrap_or(0));
            return Ok(rows);
        }
    };
    sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS}
         FROM unnest($1::uuid[]) AS o(owner_id)
         CROSS JOIN LATERAL (
             SELECT * FROM job_list
             WHERE owner_id = o.owner_id AND deleted_at IS NULL
               AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR project_id = $3)
               AND ($4 IS NULL OR job_type = $4) AND ($5 IS NULL OR job_id < $5)
             ORDER BY job_id DESC LIMIT $6
         ) j
         ORDER BY j.job_id DESC LIMIT $6"
    ))
    .bind(owners)
    .bind(&filter.status)
    .bind(filter.project_id)
    .bind(&filter.job_type)
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The columns of a [`JobRow`], from `job_list j`. A failed or cancelled job costs nothing.
const JOB_COLUMNS: &str = "j.job_id, j.project_id, j.job_type, j.status, j.progress, j.attempts, j.max_retries, \
     j.asset_id, j.error, CASE WHEN j.status IN ('failed', 'cancelled') THEN 0 ELSE j.cost_credits END AS cost_credits, \
     j.created_at, j.started_at, j.finished_at, j.updated_at";

/// Jobs of one status and type, and the mean run time of the finished ones.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobCount {
    /// Status.
    pub status: String,
    /// Type.
    pub job_type: String,
    /// How many.
    pub count: i64,
    /// Mean of `finished_at - started_at` in milliseconds, over the succeeded and failed.
    pub mean_run_ms: Option<f64>,
}

/// The jobs of any of `owners` counted by status and type.
pub async fn counts_for_owners(database: &Database, owners: &[Uuid]) -> Result<Vec<JobCount>, sqlx::Error> {
    let counts = |run_ms: &str, owners: &str| {
        format!(
            "SELECT status, job_type, count(*) AS count,
                    avg({run_ms}) FILTER (WHERE status IN ('succeeded', 'failed') AND started_at IS NOT NULL)
                        AS mean_run_ms
             FROM job_list WHERE owner_id {owners} AND deleted_at IS NULL
             GROUP BY status, job_type ORDER BY job_type, status"
        )
    };
    match database.reader() {
        Backend::Postgres(pool) => {
            let sql = counts(
                "(extract(epoch FROM finished_at - started_at) * 1000)::float8",
                "= ANY($1)",
            );
            sqlx::query_as(&sql).bind(owners).fetch_all(pool).await
        }
        Backend::Sqlite(pool) => {
            let sql = counts(
                "(julianday(finished_at) - julianday(started_at)) * 86400000.0",
                &format!("IN {}", sqlite_uuids(1)),
            );
            sqlx::query_as(&sql).bind(uuid_list(owners)).fetch_all(pool).await
        }
    }
}

/// Jobs waiting for a worker and jobs running, over every owner: `(status, count)`, both
/// statuses always present.
pub async fn active_counts(database: &Database) -> Result<Vec<(String, i64)>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(
        "SELECT s.status, coalesce(active.count, 0)
         FROM (SELECT 'queued' AS status UNION ALL SELECT 'running') s
         LEFT JOIN (
             SELECT status, count(*) AS count FROM job_list
             WHERE status IN ('queued', 'running') AND deleted_at IS NULL GROUP BY status
         ) active USING (status)
         ORDER BY s.status",
    )
    .fetch_all(pool)
    .await })
}

/// Every job queued or running, over every owner, oldest first.
pub async fn active_job_ids(database: &Database) -> Result<Vec<Uuid>, sqlx::Error> {
    portable!(database.reader(), pool => {
        sqlx::query_scalar(
            "SELECT job_id FROM job_list WHERE status IN ('queued', 'running') AND deleted_at IS NULL ORDER BY job_id",
        )
        .fetch_all(pool)
        .await
    })
}

/// How many of `owner_id`'s jobs are queued or running.
pub async fn active_count_of(database: &Database, owner_id: Uuid) -> Result<i64, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_scalar(
        "SELECT count(*) FROM job_list
         WHERE owner_id = $1 AND status IN ('queued', 'running') AND deleted_at IS NULL",
    )
    .bind(owner_id)
    .fetch_one(pool)
    .await })
}
