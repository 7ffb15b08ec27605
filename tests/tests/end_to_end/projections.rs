//! The read models through the projector runtime. `project_list`: applied, re-applied and applied
//! out of order it ends the same; replay rebuilds it; a projector killed mid-backlog resumes,
//! and after a crash its checkpoint never claims an event still out with the crashed run.
//! `session_list` and `user_directory`: their events applied, unchanged by repeats.

use keyframe_database::Database;
use keyframe_domain::ids::{ProjectId, UserId};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::project::{Project, ProjectCommand};
use keyframe_domain::values::{ProjectDescription, ProjectName};
use keyframe_eventlog::commands::CommandBus;
use keyframe_eventlog::feed::jetstream::FeedSettings;
use keyframe_eventlog::metadata::CommandMetadata;
use keyframe_eventlog::projector::{
    ProjectorSettings, apply_in_transaction, checkpoint, projection_lock_key, replay, wait_until_applied,
};
use keyframe_eventlog::reader::LogPosition;
use keyframe_eventlog::relay::RelaySettings;
use keyframe_projections::project_list::ProjectList;
use keyframe_tests::{TestDatabase, TestNats, all_events, start_project_list_projector, start_relay, wait_for};
use sqlx::PgPool;
use std::time::Duration;

type Row = (uuid::Uuid, uuid::Uuid, String, String);

async fn rows(pool: &PgPool) -> Vec<Row> {
    sqlx::query_as(
        "SELECT project_id, owner_id, name, description FROM project_list WHERE deleted_at IS NULL ORDER BY project_id",
    )
    .fetch_all(pool)
    .await
    .expect("rows")
}

struct Scenario {
    owner: UserId,
    kept: ProjectId,
    renamed: ProjectId,
    deleted: ProjectId,
}

/// Three projects: one kept as created, one renamed twice, one deleted.
async fn write_scenario(database: &Database) -> Scenario {
    let bus = CommandBus::<Project>::new(database.clone());
    let meta = CommandMetadata::system();
    let s = Scenario {
        owner: UserId::new(),
        kept: ProjectId::new(),
        renamed: ProjectId::new(),
        deleted: ProjectId::new(),
    };
    let name = |n: &str| ProjectName::parse("name", n).expect("valid");
    for (id, label) in [(s.kept, "Kept"), (s.renamed, "Draft"), (s.deleted, "Doomed")] {
        let create = || ProjectCommand::CreateProject {
            project_id: id,
            owner: keyframe_domain::owner::Owner::User(s.owner),
            created_by: s.owner,
            name: name(label),
            description: ProjectDescription::parse("description", "first").expect("valid"),
            at: chrono::Utc::now(),
        };
        bus.execute(&id.to_string(), create, &meta).await.expect("create");
    }
    for label in ["Second", "Final"] {
        let update = || ProjectCommand::UpdateProject {
            name: Some(name(label)),
            description: None,
            at: chrono::Utc::now(),
        };
        bus.execute(&s.renamed.to_string(), update, &meta)
            .await
            .expect("rename");
    }
    let description = || ProjectCommand::UpdateProject {
        name: None,
        description: Some(ProjectDescription::parse("description", "last").expect("valid")),
        at: chrono::Utc::now(),
    };
    bus.execute(&s.renamed.to_string(), description, &meta)
        .await
        .expect("describe");
    bus.execute(
        &s.deleted.to_string(),
        || ProjectCommand::DeleteProject { at: chrono::Utc::now() },
        &meta,
    )
    .await
    .expect("delete");
    s
}

fn expected(s: &Scenario) -> Vec<Row> {
    let mut rows = vec![
        (s.kept.0, s.owner.0, "Kept".to_owned(), "first".to_owned()),
        (s.renamed.0, s.owner.0, "Final".to_owned(), "last".to_owned()),
    ];
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn applying_the_events_in_order_gives_the_right_rows_and_re_applying_changes_nothing() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let scenario = write_scenario(&db.database).await;
    let events = all_events(&db.pool).await;

    apply_in_transaction(&db.database, &ProjectList, &events)
        .await
        .expect("apply");
    assert_eq!(rows(&db.pool).await, expected(&scenario));
    let before: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT project_id, updated_at FROM project_list ORDER BY project_id")
            .fetch_all(&db.pool)
            .await
            .expect("rows");

    // Re-delivery: the whole log again, then each event alone.
    apply_in_transaction(&db.database, &ProjectList, &events)
        .await
        .expect("re-apply");
    for event in &events {
        apply_in_transaction(&db.database, &ProjectList, std::slice::from_ref(event))
            .await
            .expect("re-apply one");
    }
    assert_eq!(rows(&db.pool).await, expected(&scenario));
    let after: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT project_id, updated_at FROM project_list ORDER BY project_id")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
    assert_eq!(before, after, "nothing was touched again");
    let reached = checkpoint(&db.database, "project_list").await.expect("checkpoint");
    assert_eq!(
        reached,
        events.last().map(LogPosition::of),
        "the checkpoint is the newest event"
    );
}

/// Creates a project of `owner` named `name` through the command bus; answers its event's
/// global position.
async fn create_project(bus: &CommandBus<Project>, owner: UserId, name: &str) -> i64 {
    let id = ProjectId::new();
    bus.execute_new(
        &id.to_string(),
        || ProjectCommand::CreateProject {
            project_id: id,
            owner: keyframe_domain::owner::Owner::User(owner),
            created_by: owner,
            name: ProjectName::parse("name", name).expect("valid"),
            description: ProjectDescription::default(),
            at: chrono::Utc::now(),
        },
        &CommandMetadata::system(),
    )
    .await
    .expect("create")
}

/// Whether the read models' consumer has nothing left to deliver or to be acked.
async fn feed_drained(nats: &TestNats) -> bool {
    let Ok(stream) = nats.jetstream.get_stream(nats.naming.events_stream()).await else {
        return false;
    };
    let Ok(mut consumer) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&nats.naming.projections_consumer())
        .await
    else {
        return false;
    };
    consumer
        .info()
        .await
        .is_ok_and(|info| info.num_ack_pending == 0 && info.num_pending == 0)
}

/// A connection holding `project_list`'s lock, as `replay` does from its TRUNCATE to its last
/// batch.
async fn hold_projection_lock(pool: &PgPool) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(projection_lock_key("project_list"))
        .execute(&mut *conn)
        .await
        .expect("lock");
    conn
}

async fn release_projection_lock(conn: &mut sqlx::PgConnection) {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(projection_lock_key("project_list"))
        .execute(conn)
        .await
        .expect("unlock");
}

/// Whether Postgres shows a backend of this database queued behind an advisory lock.
async fn someone_waits_for_a_lock(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database())",
    )
    .fetch_one(pool)
    .await
    .expect("pg_locks")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_waits_while_a_replay_holds_the_projection() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let scenario = write_scenario(&db.database).await;
    let events = all_events(&db.pool).await;
    // What `replay` holds from its TRUNCATE to its last batch.
    let mut replaying = hold_projection_lock(&db.pool).await;

    let database = db.database.clone();
    let batch = tokio::spawn(async move { apply_in_transaction(&database, &ProjectList, &events).await });
    // Postgres shows the batch's backend queued behind the replay's lock.
    wait_for(
        "the batch to wait for the projection's lock",
        Duration::from_secs(10),
        || someone_waits_for_a_lock(&db.pool),
    )
    .await;
    assert!(!batch.is_finished(), "the batch went ahead of the replay");
    assert!(rows(&db.pool).await.is_empty());

    release_projection_lock(&mut replaying).await;
    tokio::time::timeout(Duration::from_secs(10), batch)
        .await
        .expect("the batch to go on once the replay is done")
        .expect("task")
        .expect("apply");
    assert_eq!(rows(&db.pool).await, expected(&scenario));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_abandoned_while_it_waits_for_the_lock_leaves_no_transaction_holding_it() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    // As when a projector's task is dropped mid-batch while another writer holds the lock: the
    // connection that was waiting must not end up back in the pool inside an open
    // transaction, holding the lock for good once it gets it.
    let db = TestDatabase::create().await;
    write_scenario(&db.database).await;
    let events = all_events(&db.pool).await;
    let mut replaying = hold_projection_lock(&db.pool).await;
    let database = db.database.clone();
    let abandoned_events = events.clone();
    let batch = tokio::spawn(async move { apply_in_transaction(&database, &ProjectList, &abandoned_events).await });
    wait_for("the batch to wait for the lock", Duration::from_secs(10), || {
        someone_waits_for_a_lock(&db.pool)
    })
    .await;
    batch.abort();
    assert!(batch.await.is_err_and(|error| error.is_cancelled()));
    release_projection_lock(&mut replaying).await;
    drop(replaying);

    // The abandoned `BEGIN` goes on in a task of its own: once the lock is free it gets it,
    // and its transaction, which nobody waits for any more, is rolled back. Checking for a
    // held lock before that (while its backend still waits, or just got the lock) is a race
    // the check once lost: wait until nobody waits for the lock, then until it is free and no
    // connection is left in a transaction. Were the transaction left open, it never would be.
    wait_for(
        "the abandoned begin to stop waiting",
        Duration::from_secs(10),
        || async { !someone_waits_for_a_lock(&db.pool).await },
    )
    .await;
    wait_for(
        "nobody to hold the projection's lock, and no connection left in a transaction",
        Duration::from_secs(10),
        || async {
            let in_transaction: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            )
            .fetch_one(&db.pool)
            .await
            .expect("pg_stat_activity");
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                 WHERE l.locktype = 'advisory' AND d.datname = current_database()",
            )
            .fetch_one(&db.pool)
            .await
            .expect("pg_locks");
            in_transaction == 0 && held == 0
        },
    )
    .await;
    // The next writer goes straight on, and the abandoned batch wrote nothing.
    assert!(rows(&db.pool).await.is_empty());
    tokio::time::timeout(
        Duration::from_secs(10),
        apply_in_transaction(&db.database, &ProjectList, &events),
    )
    .await
    .expect("the next batch takes the lock at once")
    .expect("apply");
    assert!(!rows(&db.pool).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn applying_the_events_out_of_order_gives_the_same_rows() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let scenario = write_scenario(&db.database).await;
    let events = all_events(&db.pool).await;

    // Newest first, one per transaction: every event but the first arrives before its predecessors.
    let reversed: Vec<RecordedEvent> = events.iter().rev().cloned().collect();
    for event in &reversed {
        apply_in_transaction(&db.database, &ProjectList, std::slice::from_ref(event))
            .await
            .expect("apply");
    }
    assert_eq!(rows(&db.pool).await, expected(&scenario));

    // And shuffled within one batch, into a fresh read model.
    sqlx::query("TRUNCATE project_list, projection_checkpoints")
        .execute(&db.pool)
        .await
        .expect("reset");
    let mut interleaved: Vec<RecordedEvent> = events.iter().skip(1).step_by(2).cloned().collect();
    interleaved.extend(events.iter().step_by(2).cloned());
    apply_in_transaction(&db.database, &ProjectList, &interleaved)
        .await
        .expect("apply");
    assert_eq!(rows(&db.pool).await, expected(&scenario));
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_rebuilds_the_read_model_from_the_event_store() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let scenario = write_scenario(&db.database).await;
    let events = all_events(&db.pool).await;
    // A read model gone wrong: a stray row, a wrong name.
    apply_in_transaction(&db.database, &ProjectList, &events)
        .await
        .expect("apply");
    sqlx::query("UPDATE project_list SET name = 'corrupted'")
        .execute(&db.pool)
        .await
        .expect("corrupt");
    sqlx::query("INSERT INTO project_list VALUES ($1, $2, 'stray', '', now(), now(), NULL, 1)")
        .bind(uuid::Uuid::now_v7())
        .bind(uuid::Uuid::now_v7())
        .execute(&db.pool)
        .await
        .expect("stray");

    let mut seen = Vec::new();
    let report = replay(&db.database, &ProjectList, 2, &mut |done| seen.push(done))
        .await
        .expect("replay");
    assert_eq!(rows(&db.pool).await, expected(&scenario));
    assert_eq!(report.events, events.len() as u64);
    assert_eq!(
        seen.last().copied(),
        Some(events.len() as u64),
        "progress reaches the end"
    );
    assert!(seen.len() > 1, "progress is reported per batch");
    assert_eq!(
        checkpoint(&db.database, "project_list").await.expect("checkpoint"),
        events.last().map(LogPosition::of)
    );
    // The planner's statistics describe the rebuilt table (ANALYZE counts a small table exactly).
    let planned_rows: f32 = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'project_list'")
        .fetch_one(&db.pool)
        .await
        .expect("pg_class");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM project_list")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(planned_rows, stored as f32);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_projector_killed_in_the_middle_of_a_backlog_resumes_and_the_rows_are_right() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    let bus = CommandBus::<Project>::new(db.database.clone());
    let meta = CommandMetadata::system();
    let owner = UserId::new();
    let mut wanted = Vec::new();
    for i in 0..150 {
        let id = ProjectId::new();
        let create = || ProjectCommand::CreateProject {
            project_id: id,
            owner: keyframe_domain::owner::Owner::User(owner),
            created_by: owner,
            name: ProjectName::parse("name", &format!("p{i}")).expect("valid"),
            description: ProjectDescription::default(),
            at: chrono::Utc::now(),
        };
        bus.execute(&id.to_string(), create, &meta).await.expect("create");
        if i % 3 == 0 {
            bus.execute(
                &id.to_string(),
                || ProjectCommand::DeleteProject { at: chrono::Utc::now() },
                &meta,
            )
            .await
            .expect("delete");
        } else {
            let rename = || ProjectCommand::UpdateProject {
                name: Some(ProjectName::parse("name", &format!("p{i} final")).expect("valid")),
                description: None,
                at: chrono::Utc::now(),
            };
            bus.execute(&id.to_string(), rename, &meta).await.expect("rename");
            wanted.push((id.0, owner.0, format!("p{i} final"), String::new()));
        }
    }
    wanted.sort();
    let events = all_events(&db.pool).await;
    let relay = start_relay(&db, &nats, RelaySettings::default()).await;
    wait_for("the backlog in the stream", Duration::from_secs(20), || async {
        nats.stream_len().await >= events.len() as u64
    })
    .await;
    relay.stop().await;

    // Small batches, so that the kill lands in the middle of the catch-up from the event store.
    let settings = FeedSettings {
        batch_size: 5,
        ack_wait: Duration::from_secs(1),
        ..FeedSettings::default()
    };
    let runtime = ProjectorSettings {
        catch_up_batch: 5,
        ..ProjectorSettings::default()
    };
    let first = start_project_list_projector(&db, &nats, settings, runtime).await;
    wait_for(
        "the first projector to apply something",
        Duration::from_secs(20),
        || async {
            checkpoint(&db.database, "project_list")
                .await
                .expect("checkpoint")
                .is_some()
        },
    )
    .await;
    first.kill().await;
    let newest = events.last().map(LogPosition::of);
    let reached = checkpoint(&db.database, "project_list").await.expect("checkpoint");
    assert!(reached < newest, "killed in the middle of the backlog");

    let second = start_project_list_projector(&db, &nats, settings, runtime).await;
    wait_for(
        "the second projector to reach the end",
        Duration::from_secs(30),
        || async { checkpoint(&db.database, "project_list").await.expect("checkpoint") == newest },
    )
    .await;
    // Messages the killed projector held come back after ack_wait; they must change nothing.
    wait_for("redelivered messages to be acked", Duration::from_secs(30), || {
        feed_drained(&nats)
    })
    .await;
    second.stop().await;
    assert_eq!(rows(&db.pool).await, wanted);
    let sequences: Vec<i64> = sqlx::query_scalar("SELECT last_sequence FROM project_list")
        .fetch_all(&db.pool)
        .await
        .expect("sequences");
    assert_eq!(sequences.len(), 150, "deleted projects stay as tombstones");
    assert!(
        sequences.iter().all(|s| *s == 2),
        "every project's last applied sequence is its last event's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_that_starts_behind_catches_up_in_full_batches_and_the_feed_delivers_full_batches() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use keyframe_eventlog::feed::Feed as _;
    use keyframe_eventlog::feed::jetstream::JetStreamFeed;

    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    let bus = CommandBus::<Project>::new(db.database.clone());
    let meta = CommandMetadata::system();
    let owner = UserId::new();
    const BACKLOG: usize = 3_000;
    for i in 0..BACKLOG {
        let project_id = ProjectId::new();
        let create = || ProjectCommand::CreateProject {
            project_id,
            owner: keyframe_domain::owner::Owner::User(owner),
            created_by: owner,
            name: ProjectName::parse("name", &format!("p{i}")).expect("valid"),
            description: ProjectDescription::parse("description", "").expect("valid"),
            at: chrono::Utc::now(),
        };
        bus.execute_new(&project_id.to_string(), create, &meta)
            .await
            .expect("create");
    }
    let relay = start_relay(&db, &nats, RelaySettings::default()).await;
    wait_for("the backlog in the stream", Duration::from_secs(30), || async {
        nats.stream_len().await >= BACKLOG as u64
    })
    .await;
    relay.stop().await;
    // Every transaction that moves the checkpoint moves it once: count the moves.
    sqlx::raw_sql(
        "CREATE TABLE checkpoint_moves (global_position bigint NOT NULL);
         CREATE FUNCTION record_checkpoint_move() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO checkpoint_moves VALUES (NEW.global_position); RETURN NEW; END $$;
         CREATE TRIGGER record_checkpoint_move AFTER INSERT OR UPDATE ON projection_checkpoints
             FOR EACH ROW EXECUTE FUNCTION record_checkpoint_move();",
    )
    .execute(&db.pool)
    .await
    .expect("counting trigger");

    let runtime = ProjectorSettings::default();
    let projector = start_project_list_projector(&db, &nats, FeedSettings::default(), runtime).await;
    let newest = all_events(&db.pool).await.last().map(LogPosition::of);
    wait_for("the projector to reach the end", Duration::from_secs(30), || async {
        checkpoint(&db.database, "project_list").await.expect("checkpoint") == newest
    })
    .await;
    // The deliveries of the same events, already applied, change nothing.
    wait_for("the deliveries to be acked", Duration::from_secs(30), || {
        feed_drained(&nats)
    })
    .await;
    projector.stop().await;
    let projected: i64 = sqlx::query_scalar("SELECT count(*) FROM project_list")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(projected, BACKLOG as i64);
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM checkpoint_moves")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(
        batches,
        BACKLOG.div_ceil(runtime.catch_up_batch as usize) as i64,
        "the catch-up from the event store takes full batches"
    );

    // The feed itself, on a consumer of its own, hands the backlog out in batches of up to
    // 1,000: 3, and a few more when the first pull arrives in pieces. Taken 128 at a time (what
    // one poll received before Tokio's cooperative budget ran out), it took at least 24.
    let settings = FeedSettings::default();
    let mut feed = JetStreamFeed::new(
        nats.jetstream.clone(),
        nats.naming.clone(),
        "backlog_probe".to_owned(),
        settings,
    );
    feed.open().await.expect("open");
    let mut delivered = 0;
    let mut deliveries = 0;
    while delivered < BACKLOG {
        let delivery = feed
            .next(Duration::from_secs(10))
            .await
            .expect("delivered")
            .expect("a delivery within 10 s");
        delivered += delivery.events.len();
        deliveries += 1;
        feed.applied(delivery.receipt).await.expect("ack");
    }
    assert_eq!(delivered, BACKLOG);
    assert!(
        deliveries <= BACKLOG.div_ceil(settings.batch_size) + 9,
        "{deliveries} deliveries for {BACKLOG} events in batches of up to {}",
        settings.batch_size
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_crash_the_events_the_crashed_run_had_taken_are_applied_before_anything_newer() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    let bus = CommandBus::<Project>::new(db.database.clone());
    let owner = UserId::new();
    let create = |project_id: ProjectId, name: &'static str| {
        move || ProjectCommand::CreateProject {
            project_id,
            owner: keyframe_domain::owner::Owner::User(owner),
            created_by: owner,
            name: ProjectName::parse("name", name).expect("valid"),
            description: ProjectDescription::default(),
            at: chrono::Utc::now(),
        }
    };
    let relay = start_relay(&db, &nats, RelaySettings::default()).await;
    let early = ProjectId::new();
    let early_position = bus
        .execute_new(
            &early.to_string(),
            create(early, "Taken by the crashed run"),
            &CommandMetadata::system(),
        )
        .await
        .expect("create");
    wait_for("the first event in the stream", Duration::from_secs(20), || async {
        nats.stream_len().await >= 1
    })
    .await;

    // A projector run takes the first event from the durable consumer and dies before acking.
    let ack_wait = Duration::from_secs(4);
    let stream = nats
        .jetstream
        .get_stream(nats.naming.events_stream())
        .await
        .expect("stream");
    let crashed: async_nats::jetstream::consumer::PullConsumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(nats.naming.projections_consumer()),
            filter_subject: nats.naming.events_filter(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::All,
            ack_wait,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut taken = crashed.fetch().max_messages(1).messages().await.expect("fetch");
    futures::StreamExt::next(&mut taken)
        .await
        .expect("a message")
        .expect("delivered");
    drop(taken);
    let crashed_at = std::time::Instant::now();

    // A newer event, then a fresh projector. JetStream hands the old event out again only
    // after its ack wait, behind the newer one; the runtime catches up from the event store
    // first, so the checkpoint never covers the newer event without the older.
    let late = ProjectId::new();
    let late_position = bus
        .execute_new(
            &late.to_string(),
            create(late, "Written after the crash"),
            &CommandMetadata::system(),
        )
        .await
        .expect("create");
    let settings = FeedSettings {
        ack_wait,
        ..FeedSettings::default()
    };
    let projector = start_project_list_projector(&db, &nats, settings, ProjectorSettings::default()).await;
    let visible = |id: ProjectId| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM project_list WHERE project_id = $1)")
                .bind(id.0)
                .fetch_one(&pool)
                .await
                .expect("query")
        }
    };
    wait_for(
        "the newer project's position to be applied",
        Duration::from_secs(20),
        || async {
            wait_until_applied(&db.database, "project_list", late_position, Duration::ZERO)
                .await
                .expect("checkpoint")
        },
    )
    .await;
    assert!(visible(late).await);
    assert!(
        visible(early).await,
        "the checkpoint covers the newer event only with the older one applied"
    );
    assert!(crashed_at.elapsed() < ack_wait, "checked before the redelivery was due");
    assert!(
        wait_until_applied(&db.database, "project_list", early_position, Duration::ZERO)
            .await
            .expect("checkpoint")
    );

    // The runtime's ack of the newer event covers the older one too (acks are cumulative):
    // nothing is left for JetStream to hand out again.
    wait_for("every message to be acked", Duration::from_secs(30), || {
        feed_drained(&nats)
    })
    .await;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM project_list ORDER BY name")
        .fetch_all(&db.pool)
        .await
        .expect("names");
    assert_eq!(names, ["Taken by the crashed run", "Written after the crash"]);
    projector.stop().await;
    relay.stop().await;
}

/// A deployment upgraded from a Keyframe whose read-model consumer acked each message: JetStream
/// cannot change a consumer's ack policy, so the runtime replaces the consumer, and the events
/// published before (which the new consumer does not deliver) come from the event store.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_that_acks_each_message_is_replaced_and_nothing_is_missed() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};

    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    let bus = CommandBus::<Project>::new(db.database.clone());
    let owner = UserId::new();
    let relay = start_relay(&db, &nats, RelaySettings::default()).await;
    create_project(&bus, owner, "Before the old consumer").await;
    wait_for("the first event in the stream", Duration::from_secs(20), || async {
        nats.stream_len().await >= 1
    })
    .await;
    let stream = nats
        .jetstream
        .get_stream(nats.naming.events_stream())
        .await
        .expect("stream");
    stream
        .create_consumer(pull::Config {
            durable_name: Some(nats.naming.projections_consumer()),
            filter_subject: nats.naming.events_filter(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("the consumer an earlier Keyframe made");
    create_project(&bus, owner, "Published while no runtime ran").await;
    wait_for("the second event in the stream", Duration::from_secs(20), || async {
        nats.stream_len().await >= 2
    })
    .await;

    let projector =
        start_project_list_projector(&db, &nats, FeedSettings::default(), ProjectorSettings::default()).await;
    let newest = create_project(&bus, owner, "After the upgrade").await;
    wait_for("the newest project to be applied", Duration::from_secs(20), || async {
        wait_until_applied(&db.database, "project_list", newest, Duration::ZERO)
            .await
            .expect("checkpoint")
    })
    .await;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM project_list ORDER BY name")
        .fetch_all(&db.pool)
        .await
        .expect("names");
    assert_eq!(
        names,
        [
            "After the upgrade",
            "Before the old consumer",
            "Published while no runtime ran"
        ]
    );
    let mut consumer: PullConsumer = stream
        .get_consumer(&nats.naming.projections_consumer())
        .await
        .expect("consumer");
    assert_eq!(
        consumer.info().await.expect("info").config.ack_policy,
        AckPolicy::All,
        "the consumer was replaced"
    );
    wait_for("every message to be acked", Duration::from_secs(30), || {
        feed_drained(&nats)
    })
    .await;
    projector.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn session_list_follows_logins_refreshes_and_endings_and_ignores_repeats() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use keyframe_domain::ids::SessionId;
    use keyframe_domain::session::{EndRequester, Session, SessionCommand, SessionEndReason};
    use keyframe_domain::values::TokenHash;
    use keyframe_projections::session_list::SessionList;

    let db = TestDatabase::create().await;
    let bus = CommandBus::<Session>::new(db.database.clone());
    let meta = CommandMetadata::system();
    let user = UserId::new();
    let (kept, ended) = (SessionId::new(), SessionId::new());
    let started = chrono::Utc::now();
    for (id, agent) in [(kept, "laptop"), (ended, "phone")] {
        let start = || SessionCommand::StartSession {
            session_id: id,
            user_id: user,
            refresh_token_hash: TokenHash("first".to_owned()),
            refresh_expires_at: started + chrono::Duration::days(30),
            user_agent: Some(agent.to_owned()),
            ip: Some("10.0.0.1".to_owned()),
            at: started,
        };
        bus.execute(&id.to_string(), start, &meta).await.expect("start");
    }
    let refreshed = started + chrono::Duration::minutes(10);
    let rotate = || SessionCommand::RotateRefreshToken {
        presented_hash: TokenHash("first".to_owned()),
        new_hash: TokenHash("second".to_owned()),
        refresh_expires_at: refreshed + chrono::Duration::days(30),
        at: refreshed,
    };
    bus.execute(&kept.to_string(), rotate, &meta).await.expect("rotate");
    let end = || SessionCommand::EndSession {
        requested_by: EndRequester::Authority,
        reason: SessionEndReason::PasswordReset,
        at: refreshed,
    };
    bus.execute(&ended.to_string(), end, &meta).await.expect("end");

    type SessionRow = (
        uuid::Uuid,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
        Option<String>,
    );
    let rows = || async {
        sqlx::query_as::<_, SessionRow>(
            "SELECT session_id, user_agent, last_used_at, end_reason FROM session_list ORDER BY user_agent",
        )
        .fetch_all(&db.pool)
        .await
        .expect("rows")
    };
    let events = all_events(&db.pool).await;
    apply_in_transaction(&db.database, &SessionList, &events)
        .await
        .expect("apply");
    let first = rows().await;
    let micros = |at: chrono::DateTime<chrono::Utc>| at.timestamp_micros();
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].0, first[0].1.as_deref()), (kept.0, Some("laptop")));
    assert_eq!(micros(first[0].2), micros(refreshed), "the refresh is the last use");
    assert_eq!(first[0].3, None);
    assert_eq!((first[1].0, first[1].3.as_deref()), (ended.0, Some("password_reset")));
    let live = keyframe_projections::session_list::active_for_user(&db.database, user.0, chrono::Utc::now())
        .await
        .expect("list");
    assert_eq!(live.iter().map(|row| row.session_id).collect::<Vec<_>>(), [kept.0]);

    // Delivered again, and again in reverse: nothing changes.
    apply_in_transaction(&db.database, &SessionList, &events)
        .await
        .expect("again");
    for event in events.iter().rev() {
        apply_in_transaction(&db.database, &SessionList, std::slice::from_ref(event))
            .await
            .expect("reversed");
    }
    assert_eq!(rows().await, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_directory_follows_registration_roles_and_suspension_and_ignores_repeats() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use keyframe_domain::user::{Role, User, UserCommand};
    use keyframe_domain::values::{EmailAddress, PasswordHash};
    use keyframe_projections::user_directory::{self, UserDirectory};

    let db = TestDatabase::create().await;
    let bus = CommandBus::<User>::new(db.database.clone());
    let meta = CommandMetadata::system();
    let (ada, admin) = (UserId::new(), UserId::new());
    let id = ada.to_string();
    let register = || UserCommand::RegisterUser {
        user_id: ada,
        email: EmailAddress::parse("email", "ada@example.com").expect("valid"),
        password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        full_name: None,
        verification: None,
        at: chrono::Utc::now(),
    };
    bus.execute(&id, register, &meta).await.expect("register");
    let verify = || UserCommand::MarkEmailVerified { at: chrono::Utc::now() };
    bus.execute(&id, verify, &meta).await.expect("verify");
    let promote = || UserCommand::SetRoles {
        roles: [Role::Admin].into(),
        by: Some(admin),
        at: chrono::Utc::now(),
    };
    bus.execute(&id, promote, &meta).await.expect("promote");
    let suspend = || UserCommand::Suspend {
        reason: "chargeback".to_owned(),
        by: admin,
        at: chrono::Utc::now(),
    };
    bus.execute(&id, suspend, &meta).await.expect("suspend");

    let events = all_events(&db.pool).await;
    apply_in_transaction(&db.database, &UserDirectory, &events)
        .await
        .expect("apply");
    let row = user_directory::get(&db.database, ada.0)
        .await
        .expect("read")
        .expect("a row");
    assert_eq!(row.email, "ada@example.com");
    assert_eq!(row.roles, ["user", "admin"]);
    assert!(row.email_verified && !row.two_factor);
    assert_eq!(row.suspended_reason.as_deref(), Some("chargeback"));

    // Delivered again, and again in reverse: nothing changes.
    apply_in_transaction(&db.database, &UserDirectory, &events)
        .await
        .expect("again");
    for event in events.iter().rev() {
        apply_in_transaction(&db.database, &UserDirectory, std::slice::from_ref(event))
            .await
            .expect("reversed");
    }
    assert_eq!(user_directory::get(&db.database, ada.0).await.expect("read"), Some(row));
}

/// A second read model of projects for the runtime tests: which projects exist, in a table the
/// test makes.
struct ProjectIds;

#[async_trait::async_trait]
impl keyframe_projections::Projection for ProjectIds {
    fn name(&self) -> &'static str {
        "project_ids_probe"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["Project"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["project_ids_probe"]
    }

    async fn last_sequences(
        &self,
        conn: keyframe_database::Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<std::collections::HashMap<(String, String), i64>, keyframe_projections::ProjectionError> {
        let sql = "SELECT project_id, last_sequence FROM project_ids_probe WHERE project_id {ids}";
        keyframe_projections::last_sequences_by_id(conn, sql, "Project", aggregates).await
    }

    async fn apply(
        &self,
        conn: keyframe_database::Connection<'_>,
        events: &[keyframe_domain::log::RecordedEvent],
    ) -> Result<(), keyframe_projections::ProjectionError> {
        let keyframe_database::Backend::Postgres(conn) = conn else {
            panic!("this probe runs on Postgres");
        };
        for event in events {
            sqlx::query(
                "INSERT INTO project_ids_probe (project_id, last_sequence) VALUES ($1, $2)
                 ON CONFLICT (project_id) DO UPDATE SET last_sequence = EXCLUDED.last_sequence",
            )
            .bind(keyframe_projections::parse_uuid(event)?)
            .bind(event.sequence)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_model_that_fails_or_is_being_replayed_stands_alone_while_the_others_go_on() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    sqlx::query("CREATE TABLE project_ids_probe (project_id uuid PRIMARY KEY, last_sequence bigint NOT NULL)")
        .execute(&db.pool)
        .await
        .expect("probe table");
    let relay = start_relay(&db, &nats, RelaySettings::default()).await;
    let projections: Vec<std::sync::Arc<dyn keyframe_projections::Projection>> =
        vec![std::sync::Arc::new(ProjectList), std::sync::Arc::new(ProjectIds)];
    let runtime = ProjectorSettings {
        first_retry: Duration::from_millis(100),
        ..ProjectorSettings::default()
    };
    let projector = keyframe_tests::start_projector(&db, &nats, projections, FeedSettings::default(), runtime).await;
    let bus = CommandBus::<Project>::new(db.database.clone());
    let owner = UserId::new();
    let applied = |projection: &'static str, position: i64| {
        let database = db.database.clone();
        async move {
            wait_until_applied(&database, projection, position, Duration::ZERO)
                .await
                .expect("checkpoint")
        }
    };
    let first = create_project(&bus, owner, "first").await;
    wait_for(
        "both read models to apply the first project",
        Duration::from_secs(20),
        || async { applied("project_list", first).await && applied("project_ids_probe", first).await },
    )
    .await;

    // project_list refuses a project: the other read model goes on without it.
    sqlx::query("ALTER TABLE project_list ADD CONSTRAINT no_poison CHECK (name <> 'poison')")
        .execute(&db.pool)
        .await
        .expect("constraint");
    create_project(&bus, owner, "poison").await;
    let after = create_project(&bus, owner, "after the poison").await;
    wait_for("the other read model to go on", Duration::from_secs(20), || {
        applied("project_ids_probe", after)
    })
    .await;
    assert!(
        !applied("project_list", after).await,
        "the failing read model stands still"
    );
    assert_eq!(rows(&db.pool).await.len(), 1);

    // Once it can, it catches up by itself.
    sqlx::query("ALTER TABLE project_list DROP CONSTRAINT no_poison")
        .execute(&db.pool)
        .await
        .expect("constraint");
    wait_for("the failed read model to catch up", Duration::from_secs(20), || {
        applied("project_list", after)
    })
    .await;
    assert_eq!(rows(&db.pool).await.len(), 3);

    // A replay holds project_list's lock: the other read model does not wait for it.
    let mut replaying = hold_projection_lock(&db.pool).await;
    let during = create_project(&bus, owner, "during the replay").await;
    wait_for(
        "the other read model to go on during the replay",
        Duration::from_secs(20),
        || applied("project_ids_probe", during),
    )
    .await;
    assert!(!applied("project_list", during).await);
    release_projection_lock(&mut replaying).await;
    wait_for("the replayed read model to catch up", Duration::from_secs(20), || {
        applied("project_list", during)
    })
    .await;
    assert_eq!(rows(&db.pool).await.len(), 4);
    let probe: i64 = sqlx::query_scalar("SELECT count(*) FROM project_ids_probe")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(probe, 4);
    projector.stop().await;
    relay.stop().await;
}
