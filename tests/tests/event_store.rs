//! The event repository under cqrs-es: a command's events land in one atomic statement, the bus
//! answers exactly where they landed, a stale sequence is a conflict that writes nothing, and
//! every append wakes the relay once it has committed.

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use keyframe_domain::ids::{ProjectId, UserId};
use keyframe_domain::project::{Project, ProjectCommand, ProjectError};
use keyframe_domain::values::{ProjectDescription, ProjectName};
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::metadata::CommandMetadata;
use keyframe_eventlog::relay::NOTIFY_CHANNEL;
use keyframe_eventlog::store::PgEventRepository;
use keyframe_tests::{TestDatabase, all_events};
use serde_json::json;
use sqlx::postgres::PgListener;
use std::time::Duration;

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

#[tokio::test]
async fn each_command_answers_the_global_position_of_the_event_it_appended() {
    let db = TestDatabase::create().await;
    let bus = CommandBus::<Project>::new(db.pool.clone());
    let owner = UserId::new();
    let project_id = ProjectId::new();
    let id = project_id.to_string();
    let metadata = CommandMetadata::system();

    let created = bus
        .execute(
            &id,
            || ProjectCommand::CreateProject {
                project_id,
                owner_id: owner,
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
                actor: owner,
                name: Some(name("Teaser")),
                description: None,
                at: chrono::Utc::now(),
            },
            &metadata,
        )
        .await
        .expect("rename");

    let stored = all_events(&db.pool).await;
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
    let refused = bus
        .execute(
            &id,
            || ProjectCommand::UpdateProject {
                actor: UserId::new(),
                name: Some(name("Hijacked")),
                description: None,
                at: chrono::Utc::now(),
            },
            &metadata,
        )
        .await;
    assert!(matches!(refused, Err(CommandError::Rejected(_))), "{refused:?}");
    assert_eq!(all_events(&db.pool).await.len(), 2);
}

#[tokio::test]
async fn a_multi_event_append_is_atomic_and_a_stale_sequence_writes_nothing() {
    let db = TestDatabase::create().await;
    let repository = PgEventRepository::new(db.pool.clone());
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

    let stored = all_events(&db.pool).await;
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
    assert_eq!(all_events(&db.pool).await.len(), 2);
}

#[tokio::test]
async fn a_create_on_a_fresh_id_skips_the_load_and_a_create_on_an_existing_id_is_refused_by_the_aggregate() {
    let db = TestDatabase::create().await;
    let bus = CommandBus::<Project>::new(db.pool.clone());
    let owner = UserId::new();
    let project_id = ProjectId::new();
    let id = project_id.to_string();
    let create = |title: &'static str| {
        move || ProjectCommand::CreateProject {
            project_id,
            owner_id: owner,
            name: name(title),
            description: ProjectDescription::default(),
            at: chrono::Utc::now(),
        }
    };

    let position = bus
        .execute_new(&id, create("Trailer"), &CommandMetadata::system())
        .await
        .expect("create");
    let stored = all_events(&db.pool).await;
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
    assert_eq!(
        all_events(&db.pool).await.len(),
        1,
        "the refused create appended nothing"
    );
    let project = bus.load(&id).await.expect("load").expect("exists");
    assert_eq!(project.name().as_str(), "Trailer");
}

#[tokio::test]
async fn every_append_wakes_the_relay_and_its_event_is_readable_when_the_relay_wakes() {
    let db = TestDatabase::create().await;
    let mut listener = PgListener::connect_with(&db.pool).await.expect("listener");
    listener.listen(NOTIFY_CHANNEL).await.expect("LISTEN");
    let bus = CommandBus::<Project>::new(db.pool.clone());
    let owner = UserId::new();

    for title in ["First", "Second"] {
        let project_id = ProjectId::new();
        bus.execute_new(
            &project_id.to_string(),
            || ProjectCommand::CreateProject {
                project_id,
                owner_id: owner,
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
