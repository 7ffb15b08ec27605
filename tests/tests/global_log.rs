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
        owner_id: owner,
        name: ProjectName::parse("name", name).expect("valid"),
        description: ProjectDescription::default(),
        at: chrono::Utc::now(),
    }
}

fn rename(owner: UserId, name: &str) -> ProjectCommand {
    ProjectCommand::UpdateProject {
        actor: owner,
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
    let db = TestDatabase::create().await;
    let nats = TestNats::create().await;
    // Two relays compete; the advisory lock lets one publish at a time.
    let relays = [
        start_relay(&db, &nats, RelaySettings::default()).await,
        start_relay(&db, &nats, RelaySettings::default()).await,
    ];

    let bus = Arc::new(CommandBus::<Project>::new(db.pool.clone()));
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
                bus.execute(
                    &own.to_string(),
                    || rename(owner, &format!("w{writer}r{round}b")),
                    &meta,
                )
                .await
                .expect("rename own");
                // Everyone also writes the same aggregate: optimistic-concurrency conflicts, retried.
                match bus
                    .execute(
                        &shared.to_string(),
                        || rename(owner, &format!("shared {writer} {round}")),
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
    let backlog = keyframe_eventlog::relay::backlog(&db.pool, keyframe_eventlog::relay::DEFAULT_RELAY, 1_000_000)
        .await
        .expect("backlog");
    assert_eq!(backlog, 0, "the checkpoint reached the end of the log");
}
