//! The global log under concurrency, and the relay across restarts: every committed event
//! reaches JetStream exactly once, none is skipped, and each aggregate's events keep their order.

use keyframe_domain::ids::{ProjectId, UserId};
use keyframe_domain::project::{Project, ProjectCommand};
use keyframe_domain::values::{ProjectDescription, ProjectName};
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::metadata::CommandMetadata;
use keyframe_eventlog::relay::RelaySettings;
use keyframe_tests::{TestDatabase, TestNats, all_events, assert_exactly_once_in_order, start_relay, wait_for};
use std::sync::Arc;
use std::time::Duration;

fn create(project_id: ProjectId, owner: UserId, name: &str) -> ProjectCommand {
    ProjectCommand::CreateProject {
        project_id,
        owner: keyframe_domain::owner::Owner::User(owner),
        created_by: owner,
        name: ProjectName::parse("name", name).expect("valid"),
        description: ProjectDescription::default(),
        at: chrono::Utc::now(),
    }
}

fn rename(name: &str) -> ProjectCommand {
    ProjectCommand::UpdateProject {
        name: Some(ProjectName::parse("name", name).expect("valid")),
        description: None,
        at: chrono::Utc::now(),
    }
}

/// Writes events in a raw transaction that stays open for `hold`, then commits or rolls back.
async fn slow_transaction(db_pool: sqlx::PgPool, aggregate_type: &str, hold: Duration, commit: bool) {
    let mut tx = db_pool.begin().await.expect("begin");
    let id = uuid::Uuid::now_v7().to_string();
    for sequence in 1..=3_i64 {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ($1, $2, $3, 'ProbeRecorded', '1', '{}', '{}')",
        )
        .bind(aggregate_type)
        .bind(&id)
        .bind(sequence)
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tokio::time::sleep(hold).await; // holds the transaction open while others commit around it
    if commit {
        tx.commit().await.expect("commit")
    } else {
        tx.rollback().await.expect("rollback")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_relays_publish_every_committed_event_exactly_once_despite_late_commits_and_rollbacks() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    // Two relays compete; the advisory lock lets one publish at a time.
    let relays = [
        start_relay(&db, &nats, RelaySettings::default()).await,
        start_relay(&db, &nats, RelaySettings::default()).await,
    ];

    let bus = Arc::new(CommandBus::<Project>::new(db.database.clone()));
    let owner = UserId::new();
    let shared = ProjectId::new();
    bus.execute(
        &shared.to_string(),
        || create(shared, owner, "shared"),
        &CommandMetadata::system(),
    )
    .await
    .expect("create");

    let mut work = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let bus = bus.clone();
        work.spawn(async move {
            for round in 0..15 {
                let own = ProjectId::new();
                let meta = CommandMetadata::system();
                bus.execute(
                    &own.to_string(),
                    || create(own, owner, &format!("w{writer}r{round}")),
                    &meta,
                )
                .await
                .expect("create own");
                bus.execute(&own.to_string(), || rename(&format!("w{writer}r{round}b")), &meta)
                    .await
                    .expect("rename own");
                // Everyone also writes the same aggregate: optimistic-concurrency conflicts, retried.
                match bus
                    .execute(
                        &shared.to_string(),
                        || rename(&format!("shared {writer} {round}")),
                        &meta,
                    )
                    .await
                {
                    Ok(_) | Err(CommandError::Conflict { .. }) => {}
                    Err(other) => panic!("unexpected failure: {other}"),
                }
            }
        });
    }
    for i in 0..4 {
        work.spawn(slow_transaction(
            db.pool.clone(),
            "LateProbe",
            Duration::from_millis(150 + 100 * i),
            true,
        ));
        work.spawn(slow_transaction(
            db.pool.clone(),
            "DoomedProbe",
            Duration::from_millis(100 + 50 * i),
            false,
        ));
    }
    while let Some(done) = work.join_next().await {
        done.expect("writer");
    }

    let committed = all_events(&db.pool).await;
    assert!(committed.len() > 8 * 15 * 2, "all writes landed: {}", committed.len());
    assert_eq!(
        committed.iter().filter(|e| e.aggregate_type == "LateProbe").count(),
        12,
        "late commits are in the log"
    );
    assert!(
        committed.iter().all(|e| e.aggregate_type != "DoomedProbe"),
        "rolled-back events never exist"
    );
    let expected = committed.len() as u64;
    wait_for(
        "the stream to hold every committed event",
        Duration::from_secs(30),
        || async { nats.stream_len().await >= expected },
    )
    .await;
    let stream = nats.stream_events().await;
    assert_exactly_once_in_order(&stream, &committed);
    for relay in relays {
        relay.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_killed_in_the_middle_of_a_backlog_resumes_without_loss_or_duplicates() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    // A backlog of 4,000 events over 400 aggregates, written in ten transactions.
    for chunk in 0..10 {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'Probe', 'agg-' || ($1 * 40 + a), s, 'ProbeRecorded', '1', '{}', '{}'
             FROM generate_series(1, 40) a, generate_series(1, 10) s ORDER BY s, a",
        )
        .bind(chunk)
        .execute(&db.pool)
        .await
        .expect("backlog");
    }
    let committed = all_events(&db.pool).await;
    assert_eq!(committed.len(), 4_000);

    let small_batches = RelaySettings {
        batch_size: 25,
        ..RelaySettings::default()
    };
    let first = start_relay(&db, &nats, small_batches).await;
    wait_for(
        "the first relay to publish something",
        Duration::from_secs(20),
        || async { nats.stream_len().await > 0 },
    )
    .await;
    first.kill().await;
    let published_before_the_crash = nats.stream_len().await;
    assert!(
        published_before_the_crash < 4_000,
        "killed in the middle ({published_before_the_crash} published)"
    );

    let second = start_relay(&db, &nats, RelaySettings::default()).await;
    wait_for(
        "the second relay to finish the backlog",
        Duration::from_secs(30),
        || async { nats.stream_len().await >= 4_000 },
    )
    .await;
    second.stop().await;
    let stream = nats.stream_events().await;
    assert_exactly_once_in_order(&stream, &committed);
    let lag = keyframe_eventlog::relay::lag(&db.pool, keyframe_eventlog::relay::DEFAULT_RELAY, 1_000_000)
        .await
        .expect("lag");
    assert_eq!(lag.backlog, 0, "the checkpoint reached the end of the log");
    assert_eq!(lag.oldest_unpublished_seconds, 0.0);
}

/// Waits until no client backend but this pool's own is connected to `database`, ending any
/// that lingers (only the test's setup connections can be there). A backend ended this way
/// still flushes its statistics as it exits, so its scans are in the baseline taken next.
async fn end_setup_connections(pool: &sqlx::PgPool, database: &str) {
    // Client backends only: an autovacuum worker on this database (the test's insert invites
    // one) has no statistics of ours to flush and may outlast any deadline.
    const OTHERS: &str = "FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'";
    let started = std::time::Instant::now();
    loop {
        let others: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT format('pid %s, %s since %s: %s', pid, state, state_change, left(query, 120)) {OTHERS}"
        ))
        .bind(database)
        .fetch_all(pool)
        .await
        .expect("list the other connections");
        if others.is_empty() {
            return;
        }
        // A closed pool's connections normally leave at once; give them a moment before
        // ending them, then end whatever is still there.
        if started.elapsed() > Duration::from_millis(500) {
            sqlx::query(&format!("SELECT pg_terminate_backend(pid) {OTHERS}"))
                .bind(database)
                .execute(pool)
                .await
                .expect("end the other connections");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the setup connections did not exit within 30 s: {others:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sequential scans of `events` counted so far, this connection's own included.
async fn events_seq_scans(conn: &mut sqlx::PgConnection) -> i64 {
    // Counters reach the shared statistics when a backend goes idle, at most once a second
    // unless forced; forcing makes this connection's scans visible to its next statement.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .expect("flush statistics");
    sqlx::query_scalar("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'events'")
        .fetch_one(&mut *conn)
        .await
        .expect("read statistics")
}

#[tokio::test]
async fn a_caught_up_relay_and_the_readiness_probe_look_up_the_log_without_reading_all_of_it() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use keyframe_eventlog::reader::{LogPosition, held_back_after, read_committed_after};
    use sqlx::postgres::PgPoolOptions;

    let db = TestDatabase::create().await;
    // A log of some size, with statistics, as a running service's would have.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Project', gen_random_uuid()::text, 1, 'ProbeRecorded', '1', '{}', '{}'
         FROM generate_series(1, 20000)",
    )
    .execute(&db.pool)
    .await
    .expect("write the log");
    sqlx::query("ANALYZE events").execute(&db.pool).await.expect("analyze");
    let (tx_id, global_position): (String, i64) = sqlx::query_as(
        "SELECT tx_id::text, global_position FROM events ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .expect("last event");
    let caught_up = LogPosition {
        tx_id: tx_id.parse().expect("xid8"),
        global_position,
    };
    sqlx::query("INSERT INTO relay_checkpoints (relay, tx_id, global_position) VALUES ('events', $1::text::xid8, $2)")
        .bind(&tx_id)
        .bind(global_position)
        .execute(&db.pool)
        .await
        .expect("checkpoint");
    // Every other connection's counts are in before the baseline: a backend flushes its
    // statistics as it exits, before it leaves pg_stat_activity.
    db.pool.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    end_setup_connections(&pool, &db.name).await;
    let mut conn = pool.acquire().await.expect("acquire");
    let before = events_seq_scans(&mut conn).await;
    drop(conn);

    // Postgres plans a prepared statement for its values five times, then may settle on one
    // reusable plan: repeat well past that.
    for _ in 0..20 {
        assert!(!held_back_after(&pool, caught_up).await.expect("held back"));
        assert!(
            read_committed_after(&pool.clone().into(), caught_up, 2_000)
                .await
                .expect("read")
                .is_empty()
        );
        let lag = keyframe_eventlog::relay::lag(&pool, "events", 100_000)
            .await
            .expect("lag");
        assert_eq!(lag.backlog, 0);
    }

    let mut conn = pool.acquire().await.expect("acquire");
    assert_eq!(
        events_seq_scans(&mut conn).await,
        before,
        "a lookup after the relay's checkpoint read the whole log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_in_the_leading_relays_own_process_wake_it_directly_and_others_through_notify() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use keyframe_eventlog::store::EventRepository;
    use keyframe_eventlog::wake::LocalRelay;
    use keyframe_eventlog::wake::NOTIFY_CHANNEL;
    use keyframe_tests::start_relay_woken_by;

    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    let local = LocalRelay::default();
    // Left to itself this relay would look only once a minute: only a wake-up gets it going.
    let once_a_minute = RelaySettings {
        poll_interval: Duration::from_secs(60),
        ..RelaySettings::default()
    };
    let relay = start_relay_woken_by(&db, &nats, once_a_minute, local.clone()).await;
    wait_for("the relay to lead", Duration::from_secs(10), || {
        let local = local.clone();
        async move { local.is_leading() }
    })
    .await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.expect("listener");
    listener.listen(NOTIFY_CHANNEL).await.expect("LISTEN");
    let bus = CommandBus::<Project>::sharing(&EventRepository::with_writers(db.database.clone(), 2, local.clone()));
    let owner = UserId::new();

    for published in 1..=3 {
        let id = ProjectId::new();
        bus.execute_new(
            &id.to_string(),
            || create(id, owner, "woken"),
            &CommandMetadata::system(),
        )
        .await
        .expect("create");
        wait_for(
            "the relay to publish the new event",
            Duration::from_secs(10),
            || async { nats.stream_len().await >= published },
        )
        .await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "no NOTIFY went through Postgres while the process's own relay led"
    );

    // With no relay of its own leading, the process wakes whichever relay leads elsewhere.
    relay.stop().await;
    assert!(!local.is_leading());
    let id = ProjectId::new();
    bus.execute_new(
        &id.to_string(),
        || create(id, owner, "notified"),
        &CommandMetadata::system(),
    )
    .await
    .expect("create");
    let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a NOTIFY once the process's relay had stopped")
        .expect("notification");
    assert_eq!(notification.channel(), NOTIFY_CHANNEL);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_open_append_holds_the_relay_back_and_nothing_is_skipped_when_it_commits() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    let relay = start_relay(&db, &nats, RelaySettings::default()).await;
    let bus = Arc::new(CommandBus::<Project>::new(db.database.clone()));
    let owner = UserId::new();
    let create_one = |name: &'static str| {
        let bus = bus.clone();
        async move {
            let id = ProjectId::new();
            bus.execute(&id.to_string(), || create(id, owner, name), &CommandMetadata::system())
                .await
                .expect("create");
        }
    };

    // A forgotten transaction in another database of the server, and an idle one in Keyframe's
    // own that has an id but never appends: the log flows past both.
    let (other_database, mut idle_here) = keyframe_tests::transactions_that_cannot_append(&db.pool).await;
    create_one("past the idle transactions").await;
    wait_for(
        "the relay to publish past transactions that cannot append",
        Duration::from_secs(5),
        || async { nats.stream_len().await >= 1 },
    )
    .await;

    // The idle transaction has an id already: an append from it could land behind the fence,
    // so the database refuses it.
    let refused = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Probe', 'late', 1, 'ProbeRecorded', '1', '{}', '{}')",
    )
    .execute(&mut *idle_here)
    .await
    .expect_err("an append after another write is refused");
    assert!(
        refused
            .to_string()
            .contains("events must be the first thing a transaction writes"),
        "{refused}"
    );
    drop(idle_here);

    // An append left open does hold the relay back: what commits after it waits for it.
    let open_append = keyframe_tests::open_append(&db.pool, "held").await;
    create_one("behind the open append").await;
    // The relay has had the held-back event before it for as long as its age shows.
    let relay_lag = || async {
        keyframe_eventlog::relay::lag(&db.pool, keyframe_eventlog::relay::DEFAULT_RELAY, 1_000)
            .await
            .expect("lag")
    };
    wait_for(
        "the held-back event to be 0.4 s old",
        Duration::from_secs(10),
        || async { relay_lag().await.oldest_unpublished_seconds >= 0.4 },
    )
    .await;
    assert_eq!(nats.stream_len().await, 1, "nothing passes an open append");
    assert_eq!(relay_lag().await.backlog, 1);

    open_append.commit().await.expect("commit");
    wait_for("the relay to publish both", Duration::from_secs(5), || async {
        nats.stream_len().await >= 3
    })
    .await;
    let stream = nats.stream_events().await;
    assert_exactly_once_in_order(&stream, &all_events(&db.pool).await);
    drop(other_database);
    relay.stop().await;
}
