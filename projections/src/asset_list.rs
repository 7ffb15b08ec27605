//! `asset_list`: one row per uploaded video, for listing a project's assets.

use crate::{Projection, ProjectionError, decode, parse_uuid};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyframe_database::lists::{sqlite_uuids, uuid_list};
use keyframe_database::{Backend, Connection, Database, portable};
use keyframe_domain::library::{LibraryEvent, MediaLibrary};
use keyframe_domain::log::RecordedEvent;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// The `asset_list` projection.
pub struct AssetList;

/// Its name, as used by checkpoints, consumers and read-your-writes.
pub const NAME: &str = "asset_list";

#[async_trait]
impl Projection for AssetList {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[MediaLibrary::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["asset_list"]
    }

    async fn last_sequences(
        &self,
        conn: Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>, ProjectionError> {
        // A library's rows all carry its owner id; the newest of them holds its last sequence.
        crate::last_sequences_by_id(
            conn,
            "SELECT owner_id, max(last_sequence) FROM asset_list WHERE owner_id {ids} GROUP BY owner_id",
            MediaLibrary::TYPE,
            aggregates,
        )
        .await
    }

    async fn apply(&self, mut conn: Connection<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            let owner_id = parse_uuid(event)?;
            match decode::<LibraryEvent>(event)? {
                LibraryEvent::AssetUploaded {
                    asset_id,
                    project_id,
                    owner,
                    uploaded_by,
                    filename,
                    container,
                    size_bytes,
                    sha256,
                    facts,
                    uploaded_at,
                    ..
                } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(
                        "INSERT INTO asset_list (asset_id, owner_id, project_id, filename, content_type, size_bytes,
                             sha256, duration_ms, width, height, video_codec, audio_codec, uploaded_at, last_sequence,
                             uploaded_by)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                         ON CONFLICT (asset_id) DO NOTHING",
                    )
                    .bind(asset_id.0)
                    .bind(owner_id)
                    .bind(project_id.0)
                    .bind(filename)
                    .bind(container.content_type())
                    .bind(size_bytes as i64)
                    .bind(sha256)
                    .bind(facts.duration_ms.map(|ms| ms as i64))
                    .bind(facts.width as i32)
                    .bind(facts.height as i32)
                    .bind(facts.video_codec)
                    .bind(facts.audio_codec)
                    .bind(uploaded_at)
                    .bind(event.sequence)
                    .bind(uploaded_by.or(owner.user()).map(|user| user.0))
                    .execute(conn)
                    .await .map(|done| done.rows_affected()) })?;
                }
                LibraryEvent::ProjectAssetsReleased {
                    asset_ids, released_at, ..
                } => {
                    let ids: Vec<Uuid> = asset_ids.iter().map(|id| id.0).collect();
                    let update = |ids: &str| {
                        format!(
                            "UPDATE asset_list SET released_at = $2, last_sequence = $3
                             WHERE asset_id {ids} AND owner_id = $4"
                        )
                    };
                    match conn.reborrow() {
                        Backend::Postgres(conn) => {
                            sqlx::query(&update("= ANY($1)"))
                                .bind(&ids)
                                .bind(released_at)
                                .bind(event.sequence)
                                .bind(owner_id)
                                .execute(conn)
                                .await?;
                        }
                        Backend::Sqlite(conn) => {
                            sqlx::query(&update(&format!("IN {}", sqlite_uuids(1))))
                                .bind(uuid_list(&ids))
                                .bind(released_at)
                                .bind(event.sequence)
                                .bind(owner_id)
                                .execute(conn)
                                .await?;
                        }
                    };
                }
            }
        }
        Ok(())
    }
}

/// One row of `asset_list`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AssetRow {
    /// The video.
    pub asset_id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// The client's name for it.
    pub filename: String,
    /// Its media type, from its container.
    pub content_type: String,
    /// Its size.
    pub size_bytes: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Its length.
    pub duration_ms: Option<i64>,
    /// Frame width.
    pub width: i32,
    /// Frame height.
    pub height: i32,
    /// Video codec.
    pub video_codec: String,
    /// Audio codec.
    pub audio_codec: Option<String>,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
}

/// A page of `owner_id`'s videos in `project_id`, newest first, after `cursor`.
pub async fn list_for_project(
    database: &Database,
    owner_id: Uuid,
    project_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AssetRow>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(
        "SELECT asset_id, project_id, filename, content_type, size_bytes, sha256, duration_ms, width, height,
                video_codec, audio_codec, uploaded_at
         FROM asset_list
         WHERE project_id = $1 AND owner_id = $2 AND released_at IS NULL AND ($3 IS NULL OR asset_id < $3)
         ORDER BY asset_id DESC LIMIT $4",
    )
    .bind(project_id)
    .bind(owner_id)
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await })
}
