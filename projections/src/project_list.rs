//! `project_list`: one row per live project, for listing and reading a user's projects.

use crate::{Projection, ProjectionError, decode, last_sequences_by_id, parse_uuid};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyframe_database::{Backend, Connection, Database, portable};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::project::{Project, ProjectEvent};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// The `project_list` projection.
pub struct ProjectList;

/// Its name, as used by checkpoints, consumers and read-your-writes.
pub const NAME: &str = "project_list";

#[async_trait]
impl Projection for ProjectList {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Project::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["project_list"]
    }

    async fn last_sequences(
        &self,
        conn: Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>, ProjectionError> {
        last_sequences_by_id(
            conn,
            "SELECT project_id, last_sequence FROM project_list WHERE project_id {ids}",
            Project::TYPE,
            aggregates,
        )
        .await
    }

    async fn apply(&self, conn: Connection<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        // Fold the batch into one net change per project, then write each kind in one statement.
        let mut changes: HashMap<Uuid, Change> = HashMap::new();
        for event in events {
            let project_id = parse_uuid(event)?;
            let sequence = event.sequence;
            let change = match (decode::<ProjectEvent>(event)?, changes.remove(&project_id)) {
                (
                    ProjectEvent::ProjectCreated {
                        owner,
                        created_by,
                        name,
                        description,
                        created_at,
                        ..
                    },
                    _,
                ) => Change::Created(NewRow {
                    project_id,
                    owner_id: owner.id(),
                    owner_kind: owner.kind().as_str(),
                    created_by: created_by.or(owner.user()).map(|user| user.0),
                    name: name.as_str().to_owned(),
                    description: description.as_str().to_owned(),
                    created_at,
                    updated_at: created_at,
                    deleted_at: None,
                    sequence,
                }),
                (
                    ProjectEvent::ProjectUpdated {
                        name,
                        description,
                        updated_at,
                    },
                    Some(Change::Created(mut row)),
                ) => {
                    if let Some(name) = name {
                        row.name = name.as_str().to_owned();
                    }
                    if let Some(description) = description {
                        row.description = description.as_str().to_owned();
                    }
                    row.updated_at = updated_at;
                    row.sequence = sequence;
                    Change::Created(row)
                }
                (
                    ProjectEvent::ProjectUpdated {
                        name,
                        description,
                        updated_at,
                    },
                    earlier,
                ) => {
                    let earlier = match earlier {
                        Some(Change::Updated(update)) => Some(update),
                        _ => None,
                    };
                    Change::Updated(Update {
                        name: name
                            .map(|name| name.as_str().to_owned())
                            .or_else(|| earlier.as_ref().and_then(|u| u.name.clone())),
                        description: description
                            .map(|d| d.as_str().to_owned())
                            .or_else(|| earlier.as_ref().and_then(|u| u.description.clone())),
                        updated_at,
                        deleted_at: None,
                        sequence,
                    })
                }
                (ProjectEvent::ProjectDeleted { deleted_at }, Some(Change::Created(mut row))) => {
                    row.deleted_at = Some(deleted_at);
                    row.sequence = sequence;
                    Change::Created(row)
                }
                (ProjectEvent::ProjectDeleted { deleted_at }, earlier) => {
                    let earlier = match earlier {
                        Some(Change::Updated(update)) => Some(update),
                        _ => None,
                    };
                    Change::Updated(Update {
                        name: earlier.as_ref().and_then(|u| u.name.clone()),
                        description: earlier.as_ref().and_then(|u| u.description.clone()),
                        updated_at: earlier.as_ref().map_or(deleted_at, |u| u.updated_at),
                        deleted_at: Some(deleted_at),
                        sequence,
                    })
                }
            };
            changes.insert(project_id, change);
        }

        let mut created = Vec::new();
        let mut updated = Vec::new();
        for (project_id, change) in changes {
            match change {
                Change::Created(row) => created.push(row),
                Change::Updated(update) => updated.push((project_id, update)),
            }
        }
        match conn {
            Backend::Postgres(conn) => write_postgres(conn, &created, &updated).await?,
            Backend::Sqlite(conn) => write_sqlite(conn, &created, &updated).await?,
        }
        Ok(())
    }
}

/// Writes a batch's new rows and updates in one statement each.
async fn write_postgres(
    conn: &mut sqlx::PgConnection,
    created: &[NewRow],
    updated: &[(Uuid, Update)],
) -> Result<(), sqlx::Error> {
    if !created.is_empty() {
        sqlx::query(
            "INSERT INTO project_list
                 (project_id, owner_id, name, description, created_at, updated_at, deleted_at, last_sequence,
                  owner_kind, created_by)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
                 $6::timestamptz[], $7::timestamptz[], $8::bigint[], $9::text[], $10::uuid[])
             ON CONFLICT (project_id) DO NOTHING",
        )
        .bind(created.iter().map(|row| row.project_id).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.owner_id).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.name.as_str()).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.description.as_str()).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.created_at).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.updated_at).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.deleted_at).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.sequence).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.owner_kind).collect::<Vec<_>>())
        .bind(created.iter().map(|row| row.created_by).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !updated.is_empty() {
        // `last_sequence < u.sequence` keeps a stale write from overwriting a newer one.
        sqlx::query(
            "UPDATE project_list p SET name = COALESCE(u.name, p.name),
                 description = COALESCE(u.description, p.description), updated_at = u.updated_at,
                 deleted_at = COALESCE(u.deleted_at, p.deleted_at), last_sequence = u.sequence
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bigint[])
                 AS u(project_id, name, description, updated_at, deleted_at, sequence)
             WHERE p.project_id = u.project_id AND p.last_sequence < u.sequence",
        )
        .bind(updated.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(updated.iter().map(|(_, u)| u.name.as_deref()).collect::<Vec<_>>())
        .bind(
            updated
                .iter()
                .map(|(_, u)| u.description.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(updated.iter().map(|(_, u)| u.updated_at).collect::<Vec<_>>())
        .bind(updated.iter().map(|(_, u)| u.deleted_at).collect::<Vec<_>>())
        .bind(updated.iter().map(|(_, u)| u.sequence).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes a batch's new rows and updates a statement each.
async fn write_sqlite(
    conn: &mut sqlx::SqliteConnection,
    created: &[NewRow],
    updated: &[(Uuid, Update)],
) -> Result<(), sqlx::Error> {
    for row in created {
        sqlx::query(
            "INSERT INTO project_list
                 (project_id, owner_id, name, description, created_at, updated_at, deleted_at, last_sequence,
                  owner_kind, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (project_id) DO NOTHING",
        )
        .bind(row.project_id)
        .bind(row.owner_id)
        .bind(&row.name)
        .bind(&row.description)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.deleted_at)
        .bind(row.sequence)
        .bind(row.owner_kind)
        .bind(row.created_by)
        .execute(&mut *conn)
        .await?;
    }
    for (project_id, update) in updated {
        sqlx::query(
            "UPDATE project_list SET name = COALESCE($2, name), description = COALESCE($3, description),
                 updated_at = $4, deleted_at = COALESCE($5, deleted_at), last_sequence = $6
             WHERE project_id = $1 AND last_sequence < $6",
        )
        .bind(project_id)
        .bind(update.name.as_deref())
        .bind(update.description.as_deref())
        .bind(update.updated_at)
        .bind(update.deleted_at)
        .bind(update.sequence)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The net effect of a batch's events on one project.
enum Change {
    /// Created in this batch (later updates and a deletion folded in).
    Created(NewRow),
    /// Changes to a project created in an earlier batch.
    Updated(Update),
}

struct NewRow {
    project_id: Uuid,
    owner_id: Uuid,
    owner_kind: &'static str,
    created_by: Option<Uuid>,
    name: String,
    description: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    sequence: i64,
}

struct Update {
    name: Option<String>,
    description: Option<String>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    sequence: i64,
}

/// A project as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ProjectRow {
    /// The project's id.
    pub project_id: Uuid,
    /// Its owner: a user's id, or an organisation's.
    pub owner_id: Uuid,
    /// `user` or `organization`.
    pub owner_kind: String,
    /// Who created it.
    pub created_by: Option<Uuid>,
    /// Its name.
    pub name: String,
    /// Its description ('' when none).
    pub description: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Most rows [`list_for_owner`] answers at once.
pub const MAX_FETCH: i64 = 1_000;

/// The `LIMIT`s the list statements are written with; a request takes the smallest that holds it.
const FETCH_SIZES: [i64; 4] = [21, 51, 101, MAX_FETCH];

/// The owner's projects, newest first, after `cursor` (the last id of the previous page); at
/// most `limit` of them (taken as 1 to [`MAX_FETCH`]).
pub async fn list_for_owner(
    database: &Database,
    owner_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ProjectRow>, sqlx::Error> {
    let limit = limit.clamp(1, MAX_FETCH);
    let sql = list_statement(limit, cursor.is_some());
    let mut rows: Vec<ProjectRow> = portable!(database.reader(), pool => {
        let query = sqlx::query_as(&sql).bind(owner_id);
        let query = match cursor {
            None => query,
            Some(cursor) => query.bind(cursor),
        };
        query.fetch_all(pool).await
    })?;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(rows)
}

/// The statement [`list_for_owner`] runs for a page of `limit` rows: `$1` is the owner and,
/// `after_cursor`, `$2` the last id of the previous page.
///
/// The limit is written into the statement rather than bound as a parameter. With `LIMIT $n`,
/// Postgres cannot cost a reusable (generic) plan: it assumes a tenth of the table. So it plans
/// afresh on every call, and the planning costs more than the query. pgbench, 300,000 projects
/// of one owner: 12,900 queries/s with the bound limit, 22,800 with a literal one. A few fixed
/// sizes keep the prepared statements per connection few. The generic plan must then suit
/// every owner: migration 0016 keeps it on the owner index. The query with a cursor is a
/// statement of its own, so the cursor bounds the index scan and is not a filter applied to
/// every row from the top of the list.
pub fn list_statement(limit: i64, after_cursor: bool) -> String {
    const COLUMNS: &str = "project_id, owner_id, owner_kind, created_by, name, description, created_at, updated_at";
    let fetch = FETCH_SIZES.into_iter().find(|size| *size >= limit).unwrap_or(MAX_FETCH);
    let cursor = if after_cursor { " AND project_id < $2" } else { "" };
    format!(
        "SELECT {COLUMNS} FROM project_list WHERE owner_id = $1 AND deleted_at IS NULL{cursor}
         ORDER BY project_id DESC LIMIT {fetch}"
    )
}

/// The projects of any of `owners` (the caller and their organisations), newest first, after
/// `cursor`; at most `limit`. Each owner's newest are read through the owner index with the
/// limit, then merged, so a busy owner costs no more than a quiet one.
///
/// On SQLite the same plan is written out: one indexed read per owner, merged here.
pub async fn list_for_owners(
    database: &Database,
    owners: &[Uuid],
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ProjectRow>, sqlx::Error> {
    if let [owner] = owners {
        return list_for_owner(database, *owner, cursor, limit).await;
    }
    let limit = limit.clamp(1, MAX_FETCH);
    let pool = match database.reader() {
        Backend::Postgres(pool) => pool,
        Backend::Sqlite(_) => {
            let mut rows = Vec::new();
            for owner in owners {
                rows.extend(list_for_owner(database, *owner, cursor, limit).await?);
            }
            rows.sort_by_key(|row| std::cmp::Reverse(row.project_id));
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            return Ok(rows);
        }
    };
    sqlx::query_as(
        "SELECT p.project_id, p.owner_id, p.owner_kind, p.created_by, p.name, p.description, p.created_at, p.updated_at
         FROM unnest($1::uuid[]) AS o(owner_id)
         CROSS JOIN LATERAL (
             SELECT * FROM project_list
             WHERE owner_id = o.owner_id AND deleted_at IS NULL AND ($2 IS NULL OR project_id < $2)
             ORDER BY project_id DESC LIMIT $3
         ) p
         ORDER BY p.project_id DESC LIMIT $3",
    )
    .bind(owners)
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One live project, whoever owns it (the caller's right to see it is the policy's to decide).
pub async fn get(database: &Database, project_id: Uuid) -> Result<Option<ProjectRow>, sqlx::Error> {
    portable!(database.reader(), pool => {
        sqlx::query_as(
            "SELECT project_id, owner_id, owner_kind, created_by, name, description, created_at, updated_at
             FROM project_list WHERE project_id = $1 AND deleted_at IS NULL",
        )
        .bind(project_id)
        .fetch_optional(pool)
        .await
    })
}

/// The ids of `owner_id`'s live projects.
pub async fn live_ids_of(database: &Database, owner_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    portable!(database.reader(), pool => {
        sqlx::query_scalar("SELECT project_id FROM project_list WHERE owner_id = $1 AND deleted_at IS NULL")
            .bind(owner_id)
            .fetch_all(pool)
            .await
    })
}
