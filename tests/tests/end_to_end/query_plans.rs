//! The plans Postgres keeps for the read models' hot statements suit every caller and every
//! size of table. A statement is prepared once per connection, and after a few runs Postgres
//! may keep one generic plan for every parameter value: a list's plan must read a small
//! owner's few rows, not the big owner's many; the projector's lookups must not keep a plan
//! made while their table was empty, nor the relay's read of the log.

use keyframe_eventlog::projector::configure_session;
use keyframe_eventlog::reader::{LogPosition, append_fence, read_below};
use keyframe_projections::Projection as _;
use keyframe_projections::project_list::{ProjectList, list_for_owner, list_statement};
use keyframe_tests::TestDatabase;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

/// Projects of the one busy owner: enough that walking them shows (about 10 ms), few enough to
/// write in a moment.
const BUSY_OWNER_PROJECTS: usize = 40_000;

/// The indexes a plan reads, from `EXPLAIN (FORMAT JSON)`.
fn indexes_read(plan: &Value) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(name) = plan.get("Index Name").and_then(Value::as_str) {
        found.push(name.to_owned());
    }
    for child in plan.get("Plans").and_then(Value::as_array).into_iter().flatten() {
        found.extend(indexes_read(child));
    }
    found
}

/// The generic plan of `statement` with `parameters` (SQL literals of `types`), as a connection
/// that has run it a few times keeps it.
async fn generic_plan(conn: &mut PgConnection, statement: &str, types: &str, parameters: &str) -> Value {
    let name = format!("list_{}", Uuid::now_v7().simple());
    sqlx::query(&format!("PREPARE {name}({types}) AS {statement}"))
        .execute(&mut *conn)
        .await
        .expect("prepare");
    let explained: Value = sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) EXECUTE {name}({parameters})"))
        .fetch_one(&mut *conn)
        .await
        .expect("explain");
    explained[0]["Plan"].clone()
}

/// Writes [`BUSY_OWNER_PROJECTS`] projects of `owner` straight into the read model, with ids as
/// the service makes them: UUIDv7, in creation order, so the table's order on disk follows its
/// primary key (which makes walking that key look cheap to the planner).
async fn fill_project_list(db: &TestDatabase, owner: Uuid) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..BUSY_OWNER_PROJECTS).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO project_list (project_id, owner_id, name, created_at, updated_at, last_sequence)
         SELECT id, $1, 'busy ' || n, now(), now(), 1 FROM unnest($2::uuid[]) WITH ORDINALITY AS ids(id, n)",
    )
    .bind(owner)
    .bind(&ids)
    .execute(&db.pool)
    .await
    .expect("fill the list");
    ids
}

#[tokio::test]
async fn a_small_owners_project_list_reads_the_owner_index_while_one_owner_holds_nearly_every_project() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let busy_owner = Uuid::now_v7();
    // Ids as the service makes them: UUIDv7, in creation order, so the table's order on disk
    // follows its primary key (which makes walking that key look cheap to the planner).
    fill_project_list(&db, busy_owner).await;
    // What autovacuum does to a table that grew like this.
    sqlx::query("ANALYZE project_list")
        .execute(&db.pool)
        .await
        .expect("analyze");

    // What autovacuum does to a table that grew like this.
    sqlx::query("ANALYZE project_list")
        .execute(&db.pool)
        .await
        .expect("analyze");

    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut conn)
        .await
        .expect("generic plans");
    let small_owner = format!("'{}'::uuid", Uuid::now_v7());
    for limit in [20, 50, 100, 1_000] {
        let first_page = generic_plan(&mut conn, &list_statement(limit, false), "uuid", &small_owner).await;
        assert_eq!(
            indexes_read(&first_page),
            ["project_list_owner"],
            "first page of {limit}: {first_page:#}"
        );
        let next_page = generic_plan(
            &mut conn,
            &list_statement(limit, true),
            "uuid, uuid",
            &format!("{small_owner}, '{}'::uuid", Uuid::now_v7()),
        )
        .await;
        assert_eq!(
            indexes_read(&next_page),
            ["project_list_owner"],
            "page after a cursor, {limit}: {next_page:#}"
        );
    }

    // The statements the plans were read from are the ones that answer.
    let busy = list_for_owner(&db.database, busy_owner, None, 20)
        .await
        .expect("busy owner's list");
    assert_eq!(busy.len(), 20);
    assert!(
        busy.windows(2).all(|pair| pair[0].project_id > pair[1].project_id),
        "newest first"
    );
    let after = list_for_owner(&db.database, busy_owner, Some(busy[19].project_id), 20)
        .await
        .expect("next page");
    assert!(after.iter().all(|row| row.project_id < busy[19].project_id));
    assert!(
        list_for_owner(&db.database, Uuid::now_v7(), None, 20)
            .await
            .expect("small owner's list")
            .is_empty()
    );
}

#[tokio::test]
async fn the_projector_plans_its_lookups_for_the_table_as_it_is_now_not_as_it_was_when_empty() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    configure_session(&mut conn).await.expect("the projector's session");
    let key = |id: &Uuid| ("Project", id.to_string());

    // The lease's connection lives long: its first deliveries find the read model empty.
    for _ in 0..6 {
        let unknown = [key(&Uuid::now_v7())];
        let keys: Vec<(&str, &str)> = unknown.iter().map(|(t, i)| (*t, i.as_str())).collect();
        assert!(
            ProjectList
                .last_sequences(keyframe_database::Backend::Postgres(&mut conn), &keys)
                .await
                .expect("lookup")
                .is_empty()
        );
    }
    // Then the table grows faster than autovacuum looks at it.
    let ids = fill_project_list(&db, Uuid::now_v7()).await;
    let delivery: Vec<(&str, String)> = ids.iter().rev().take(1_000).map(key).collect();
    let keys: Vec<(&str, &str)> = delivery.iter().map(|(t, i)| (*t, i.as_str())).collect();
    let found = ProjectList
        .last_sequences(keyframe_database::Backend::Postgres(&mut conn), &keys)
        .await
        .expect("lookup");
    assert_eq!(found.len(), 1_000);

    // Every run was planned with its own ids and the table's size at the time: none reused a
    // plan made for an empty table (which scans the table once per id looked up).
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement LIKE 'SELECT project_id, last_sequence FROM project_list%'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the lookup's prepared statement");
    assert_eq!((generic, custom), (0, 7));
}

#[tokio::test]
async fn the_relays_read_of_the_log_walks_the_commit_order_index_after_the_log_grew_from_empty() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    // One connection, so the statement the relay prepares is the one examined below.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    // A new deployment's relay reads the empty log many times before anything is written.
    for _ in 0..6 {
        let fence = append_fence(&pool).await.expect("fence");
        assert!(
            read_below(&pool, LogPosition::default(), fence, 1_000)
                .await
                .expect("read")
                .is_empty()
        );
    }
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Project', gen_random_uuid()::text, 1, 'ProjectCreated', '1.0', '{}', '{}'
         FROM generate_series(1, 40000)",
    )
    .execute(&pool)
    .await
    .expect("fill the log");
    let fence = append_fence(&pool).await.expect("fence");
    let read = read_below(&pool, LogPosition::default(), fence, 1_000)
        .await
        .expect("read");
    assert_eq!(read.len(), 1_000);

    // The plan this connection now runs the read with: a walk of the commit-order index from
    // the cursor, never a scan and sort of the whole log.
    let name: String = sqlx::query_scalar(
        "SELECT name FROM pg_prepared_statements
         WHERE statement LIKE '%FROM events%tx_id < $3%' AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_one(&pool)
    .await
    .expect("the read's prepared statement");
    let explained: Value = sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) EXECUTE {name}('0', 0, '{fence}')"))
        .fetch_one(&pool)
        .await
        .expect("explain");
    let plan = &explained[0]["Plan"];
    assert_eq!(indexes_read(plan), ["events_commit_order"], "{plan:#}");
}
