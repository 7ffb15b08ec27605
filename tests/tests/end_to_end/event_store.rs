//! The event repository under cqrs-es: a command's events land in one atomic statement, the bus
//! answers exactly where they landed, a stale sequence is a conflict that writes nothing, and
//! every append wakes the relay once it has committed. Group commit: appends that queue share a
//! commit, each still learns its own position, and a conflict fails only its own append.
//!
//! Each behaviour is tested on both databases (`postgres` and `embedded` under the test's name);
//! waking the relay with `NOTIFY` exists on Postgres only.

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use futures::future::join_all;
use keyframe_database::{Backend, Transaction};
use keyframe_domain::ids::{ProjectId, UserId};
use keyframe_domain::project::{Project, ProjectCommand, ProjectError};
use keyframe_domain::values::{ProjectDescription, ProjectName};
use keyframe_eventlog::append::{AppendError, Appender, EventRow};
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::metadata::CommandMetadata;
use keyframe_eventlog::store::EventRepository;
use keyframe_eventlog::wake::LocalRelay;
use keyframe_eventlog::wake::NOTIFY_CHANNEL;
use keyframe_tests::{TestDatabase, TestStore, all_events, wait_for};
use serde_json::json;
use sqlx::postgres::PgListener;
use std::time::Duration;

/// Runs the test `$name(store)` once on each database, as `$name::postgres` and
/// `$name::embedded`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn postgres() {
                if keyframe_tests::skipped_in_the_embedded_suite() {
                    return;
                }
                super::$name(keyframe_tests::TestStore::create_postgres().await).await;
            }

            #[tokio::test]
            async fn embedded() {
                super::$name(keyframe_tests::TestStore::create_embedded().await).await;
            }
        }
    )*};
}

on_both_databases!(
    each_command_answers_the_global_position_of_the_event_it_appended,
    a_multi_event_append_is_atomic_and_a_stale_sequence_writes_nothing,
    a_create_on_a_fresh_id_skips_the_load_and_a_create_on_an_existing_id_is_refused_by_the_aggregate,
    appends_queued_behind_a_busy_writer_commit_together_and_each_learns_where_its_events_landed,
    a_conflict_inside_a_shared_commit_fails_only_its_own_append,
    many_concurrent_creates_each_answer_the_position_of_their_own_event,
    a_cached_read_of_an_aggregate_sees_what_other_processes_appended,
);

fn name(text: &str) -> ProjectName {
    ProjectName::parse("name", text).expect("valid name")
}

fn probe(aggregate_id: &str, sequence: usize) -> SerializedEvent {
    SerializedEvent::new(
        aggregate_id.to_owned(),
        sequence,
        Project::TYPE.to_owned(),
        "ProbeRecorded".to_owned(),
        "1".to_owned(),
        json!({ "sequence": sequence }),
        json!({ "actor": "system" }),
    )
}

async fn each_command_answers_the_global_position_of_the_event_it_appended(store: TestStore) {
    let bus = CommandBus::<Project>::new(store.database().clone());
    let owner = UserId::new();
    let project_id = ProjectId::new();
    let id = project_id.to_string();
    let metadata = CommandMetadata::system();

    let created = bus
        .execute(
            &id,
            || ProjectCommand::CreateProject {
                project_id,
                owner: keyframe_domain::owner::Owner::User(owner),
                created_by: owner,
                name: name("Trailer"),
                description: ProjectDescription::default(),
                at: chrono::Utc::now(),
            },
            &metadata,
        )
        .await
        .expect("create");
    let renamed = bus
        .execute(
            &id,
            || ProjectCommand::UpdateProject {
                name: Some(name("Teaser")),
                description: None,
                at: chrono::Utc::now(),
            },
            &metadata,
        )
        .await
        .expect("rename");

    let stored = store.all_events().await;
    let positions: Vec<(i64, String, i64)> = stored
        .iter()
        .map(|e| (e.sequence, e.event_type.clone(), e.global_position))
        .collect();
    assert_eq!(
        positions,
        vec![
            (1, "ProjectCreated".to_owned(), created),
            (2, "ProjectUpdated".to_owned(), renamed)
        ]
    );
    assert!(
        stored.iter().all(|e| e.metadata["actor"] == "system"),
        "metadata on every event"
    );
    let project = bus.load(&id).await.expect("load").expect("exists");
    assert_eq!(project.name().as_str(), "Teaser");

    // A refused command appends nothing, and the log is unchanged.
    let missing = keyframe_domain::ids::ProjectId::new().to_string();
    let refused = bus
        .execute(
            &missing,
            || ProjectCommand::UpdateProject {
                name: Some(name("Nowhere")),
                description: None,
                at: chrono::Utc::now(),
            },
            &metadata,
        )
        .await;
    assert!(matches!(refused, Err(CommandError::Rejected(_))), "{refused:?}");
    assert_eq!(store.all_events().await.len(), 2);
}

async fn a_multi_event_append_is_atomic_and_a_stale_sequence_writes_nothing(store: TestStore) {
    let repository = EventRepository::new(store.database().clone());
    let id = ProjectId::new().to_string();

    repository
        .persist::<Project>(&[probe(&id, 1), probe(&id, 2)], None)
        .await
        .expect("first append");
    let conflict = repository
        .persist::<Project>(&[probe(&id, 3), probe(&id, 2)], None)
        .await;
    assert!(
        matches!(conflict, Err(PersistenceError::OptimisticLockError)),
        "{conflict:?}"
    );

    let stored = store.all_events().await;
    let sequences: Vec<i64> = stored.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        vec![1, 2],
        "sequence 3 must not survive its failed statement"
    );
    assert_eq!(stored[1].global_position, stored[0].global_position + 1);
    assert_eq!(stored[1].payload.get(), r#"{"sequence":2}"#);

    let loaded = repository.get_last_events::<Project>(&id, 1).await.expect("load");
    assert_eq!(loaded.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![2]);

    let snapshot = repository
        .persist::<Project>(&[probe(&id, 3)], Some((id.clone(), json!({}), 3)))
        .await;
    assert!(snapshot.is_err(), "snapshots are refused, not silently dropped");
    assert_eq!(store.all_events().await.len(), 2);
}

async fn a_create_on_a_fresh_id_skips_the_load_and_a_create_on_an_existing_id_is_refused_by_the_aggregate(
    store: TestStore,
) {
    let bus = CommandBus::<Project>::new(store.database().clone());
    let owner = UserId::new();
    let project_id = ProjectId::new();
    let id = project_id.to_string();
    let create = |title: &'static str| {
        move || ProjectCommand::CreateProject {
            project_id,
            owner: keyframe_domain::owner::Owner::User(owner),
            created_by: owner,
            name: name(title),
            description: ProjectDescription::default(),
            at: chrono::Utc::now(),
        }
    };

    let position = bus
        .execute_new(&id, create("Trailer"), &CommandMetadata::system())
        .await
        .expect("create");
    let stored = store.all_events().await;
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].sequence, stored[0].global_position), (1, position));
    assert_eq!(stored[0].event_type, "ProjectCreated");
    assert_eq!(stored[0].metadata["actor"], "system");

    // The same id again: sequence 1 is taken, so the aggregate is loaded and answers.
    let again = bus.execute_new(&id, create("Copy"), &CommandMetadata::system()).await;
    assert!(
        matches!(again, Err(CommandError::Rejected(ProjectError::AlreadyExists))),
        "{again:?}"
    );
    assert_eq!(store.all_events().await.len(), 1, "the refused create appended nothing");
    let project = bus.load(&id).await.expect("load").expect("exists");
    assert_eq!(project.name().as_str(), "Trailer");
}

#[tokio::test]
async fn every_append_wakes_the_relay_and_its_event_is_readable_when_the_relay_wakes() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    let mut listener = PgListener::connect_with(&db.pool).await.expect("listener");
    listener.listen(NOTIFY_CHANNEL).await.expect("LISTEN");
    let bus = CommandBus::<Project>::new(db.database.clone());
    let owner = UserId::new();

    for title in ["First", "Second"] {
        let project_id = ProjectId::new();
        bus.execute_new(
            &project_id.to_string(),
            || ProjectCommand::CreateProject {
                project_id,
                owner: keyframe_domain::owner::Owner::User(owner),
                created_by: owner,
                name: name(title),
                description: ProjectDescription::default(),
                at: chrono::Utc::now(),
            },
            &CommandMetadata::system(),
        )
        .await
        .expect("create");
        let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a NOTIFY within five seconds")
            .expect("notification");
        assert_eq!(notification.channel(), NOTIFY_CHANNEL);
        let stored = all_events(&db.pool).await;
        assert!(
            stored.iter().any(|e| e.aggregate_id == project_id.to_string()),
            "the woken relay finds the event"
        );
    }
}

fn row(aggregate_id: &str, sequence: i64, label: &str) -> EventRow {
    EventRow {
        aggregate_type: Project::TYPE.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        event_type: "ProbeRecorded".to_owned(),
        event_version: "1".to_owned(),
        payload: json!({ "label": label }).to_string(),
        metadata: json!({ "actor": "system" }).to_string(),
    }
}

/// Stops every append until the returned transaction ends, and makes `appender`'s only writer
/// wait with one append (answered through the handle). On Postgres the transaction locks
/// `events` against inserts; on SQLite it holds the one writing connection.
async fn stall_the_writer(
    store: &TestStore,
    appender: &Appender,
) -> (Transaction, tokio::task::JoinHandle<Result<i64, AppendError>>) {
    let mut blocker = store.database().begin().await.expect("begin");
    if let Backend::Postgres(conn) = blocker.conn() {
        sqlx::query("LOCK TABLE events IN SHARE MODE")
            .execute(conn)
            .await
            .expect("lock");
    }
    let waiting = tokio::spawn({
        let appender = appender.clone();
        async move {
            appender
                .append(vec![row(&ProjectId::new().to_string(), 1, "first")])
                .await
        }
    });
    match store {
        TestStore::Postgres(db) => {
            wait_for(
                "the first append to wait on the lock",
                Duration::from_secs(10),
                || async {
                    sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                         WHERE datname = current_database() AND wait_event_type = 'Lock'
                           AND query LIKE 'INSERT INTO events%')",
                    )
                    .fetch_one(&db.pool)
                    .await
                    .expect("pg_stat_activity")
                },
            )
            .await;
        }
        // SQLite shows no waiters. The appends queued next share a commit whether the first
        // one's batch has formed by then or they join it; let it form, most likely.
        TestStore::Embedded(_) => {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
    }
    (blocker, waiting)
}

async fn appends_queued_behind_a_busy_writer_commit_together_and_each_learns_where_its_events_landed(store: TestStore) {
    let appender = Appender::spawn(store.database().clone(), 1, LocalRelay::default());
    let (blocker, first) = stall_the_writer(&store, &appender).await;

    let ids: Vec<String> = (0..20).map(|_| ProjectId::new().to_string()).collect();
    let mut queued =
        Box::pin(join_all(ids.iter().map(|id| {
            appender.append(vec![row(id, 1, "created"), row(id, 2, "renamed")])
        })));
    // One poll puts every append in the queue while the writer is stuck on the lock.
    assert!(futures::poll!(&mut queued).is_pending());
    blocker.commit().await.expect("release the lock");

    let positions: Vec<i64> = queued
        .await
        .into_iter()
        .map(|outcome| outcome.expect("append"))
        .collect();
    first.await.expect("join").expect("the stalled append");

    let stored = store.all_events().await;
    assert_eq!(stored.len(), 1 + 2 * ids.len());
    for (id, position) in ids.iter().zip(&positions) {
        let newest = stored
            .iter()
            .find(|event| event.global_position == *position)
            .expect("the answered position holds an event");
        assert_eq!((newest.aggregate_id.as_str(), newest.sequence), (id.as_str(), 2));
        assert_eq!(newest.payload.get(), r#"{"label":"renamed"}"#);
    }
    let queued_transactions: std::collections::HashSet<u64> = stored
        .iter()
        .filter(|event| ids.contains(&event.aggregate_id))
        .map(|event| event.tx_id)
        .collect();
    assert_eq!(queued_transactions.len(), 1, "the 20 queued appends share one commit");
}

async fn a_conflict_inside_a_shared_commit_fails_only_its_own_append(store: TestStore) {
    let appender = Appender::spawn(store.database().clone(), 1, LocalRelay::default());
    let taken = ProjectId::new().to_string();
    appender
        .append(vec![row(&taken, 1, "original")])
        .await
        .expect("first writer");
    let (blocker, first) = stall_the_writer(&store, &appender).await;

    // Ten fresh aggregates, one append to an aggregate already at sequence 1, and two appends
    // racing for sequence 1 of the same new aggregate, all queued for the same statement.
    let twin = ProjectId::new().to_string();
    let fresh: Vec<String> = (0..10).map(|_| ProjectId::new().to_string()).collect();
    let mut appends: Vec<EventRow> = fresh.iter().map(|id| row(id, 1, "fresh")).collect();
    appends.push(row(&taken, 1, "late"));
    appends.push(row(&twin, 1, "twin a"));
    appends.push(row(&twin, 1, "twin b"));
    let mut queued = Box::pin(join_all(appends.into_iter().map(|row| appender.append(vec![row]))));
    assert!(futures::poll!(&mut queued).is_pending());
    blocker.commit().await.expect("release the lock");
    let outcomes = queued.await;
    first.await.expect("join").expect("the stalled append");

    for (index, outcome) in outcomes[..10].iter().enumerate() {
        assert!(outcome.is_ok(), "fresh append {index}: {outcome:?}");
    }
    assert!(matches!(outcomes[10], Err(AppendError::Conflict)), "{:?}", outcomes[10]);
    let twins = &outcomes[11..];
    assert_eq!(
        twins.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "exactly one twin wins: {twins:?}"
    );
    assert!(
        twins
            .iter()
            .any(|outcome| matches!(outcome, Err(AppendError::Conflict)))
    );

    let stored = store.all_events().await;
    assert_eq!(
        stored.len(),
        1 + 1 + fresh.len() + 1,
        "the stalled, original, fresh and one twin"
    );
    let payloads = |id: &str| -> Vec<&str> {
        stored
            .iter()
            .filter(|event| event.aggregate_id == id)
            .map(|event| event.payload.get())
            .collect()
    };
    assert_eq!(payloads(&taken), vec![r#"{"label":"original"}"#]);
    let winner = if twins[0].is_ok() { "twin a" } else { "twin b" };
    assert_eq!(payloads(&twin), vec![format!(r#"{{"label":"{winner}"}}"#).as_str()]);
}

async fn many_concurrent_creates_each_answer_the_position_of_their_own_event(store: TestStore) {
    let bus = std::sync::Arc::new(CommandBus::<Project>::new(store.database().clone()));
    let owner = UserId::new();
    let creates = (0..200).map(|i| {
        let bus = std::sync::Arc::clone(&bus);
        tokio::spawn(async move {
            let project_id = ProjectId::new();
            let id = project_id.to_string();
            let position = bus
                .execute_new(
                    &id,
                    || ProjectCommand::CreateProject {
                        project_id,
                        owner: keyframe_domain::owner::Owner::User(owner),
                        created_by: owner,
                        name: name(&format!("Project {i}")),
                        description: ProjectDescription::default(),
                        at: chrono::Utc::now(),
                    },
                    &CommandMetadata::system(),
                )
                .await
                .expect("create");
            (id, position)
        })
    });
    let answered: Vec<(String, i64)> = join_all(creates)
        .await
        .into_iter()
        .map(|joined| joined.expect("join"))
        .collect();

    let stored = store.all_events().await;
    assert_eq!(stored.len(), 200);
    for (id, position) in answered {
        let event = stored
            .iter()
            .find(|event| event.global_position == position)
            .expect("an event at the answered position");
        assert_eq!(event.aggregate_id, id);
    }
}

async fn a_cached_read_of_an_aggregate_sees_what_other_processes_appended(store: TestStore) {
    use keyframe_domain::user::{User, UserCommand};
    use keyframe_domain::values::{EmailAddress, FullName, PasswordHash};
    let here: CommandBus<User> = CommandBus::new(store.database().clone()).cached(16);
    let elsewhere: CommandBus<User> = CommandBus::new(store.database().clone());
    let metadata = CommandMetadata::system();
    let user_id = UserId::new();
    let id = user_id.to_string();
    let register = || UserCommand::RegisterUser {
        user_id,
        email: EmailAddress::parse("email", "ada@example.com").expect("valid"),
        password_hash: PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        full_name: None,
        verification: None,
        at: chrono::Utc::now(),
    };
    let rename = |name: &'static str| {
        move || UserCommand::UpdateProfile {
            full_name: Some(FullName::parse("full_name", name).expect("valid")),
            at: chrono::Utc::now(),
        }
    };
    let name_here = |user: Option<User>| user.and_then(|user| user.full_name().map(|name| name.as_str().to_owned()));

    assert!(here.load_current(&id).await.expect("read").is_none(), "nothing yet");
    elsewhere
        .execute_new(&id, register, &metadata)
        .await
        .expect("registered");
    assert_eq!(name_here(here.load_current(&id).await.expect("read")), None);
    elsewhere.execute(&id, rename("Ada"), &metadata).await.expect("renamed");
    assert_eq!(
        name_here(here.load_current(&id).await.expect("read")).as_deref(),
        Some("Ada")
    );
    here.execute(&id, rename("Grace"), &metadata)
        .await
        .expect("renamed here");
    elsewhere
        .execute(&id, rename("Lin"), &metadata)
        .await
        .expect("renamed elsewhere");
    assert_eq!(
        name_here(here.load_current(&id).await.expect("read")).as_deref(),
        Some("Lin"),
        "the cached copy caught up with the other process"
    );
    assert_eq!(
        name_here(here.load_current(&id).await.expect("read")),
        name_here(here.load(&id).await.expect("read")),
        "as a full replay reads it"
    );
}
