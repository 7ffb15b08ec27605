//! The operator and auditor tools through their command line: `events export`, `replay`,
//! `migrate`.

use clap::Parser;
use keyframe::cli::{Cli, run};
use keyframe_domain::ids::{ProjectId, UserId};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::project::{Project, ProjectCommand};
use keyframe_domain::values::{ProjectDescription, ProjectName};
use keyframe_eventlog::commands::CommandBus;
use keyframe_eventlog::metadata::CommandMetadata;
use keyframe_tests::{TestDatabase, all_events};

async fn keyframe(args: &[&str]) -> anyhow::Result<()> {
    run(Cli::try_parse_from(
        std::iter::once("keyframe").chain(args.iter().copied()),
    )?)
    .await
}

async fn write_projects(db: &TestDatabase, count: usize) {
    let bus = CommandBus::<Project>::new(db.database.clone());
    let owner = UserId::new();
    for i in 0..count {
        let id = ProjectId::new();
        let create = || ProjectCommand::CreateProject {
            project_id: id,
            owner: keyframe_domain::owner::Owner::User(owner),
            created_by: owner,
            name: ProjectName::parse("name", &format!("p{i}")).expect("valid"),
            description: ProjectDescription::default(),
            at: chrono::Utc::now(),
        };
        bus.execute(&id.to_string(), create, &CommandMetadata::system())
            .await
            .expect("create");
    }
}

fn read_ndjson(path: &std::path::Path) -> Vec<RecordedEvent> {
    std::fs::read_to_string(path)
        .expect("export file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one event"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_export_writes_the_log_as_ndjson_in_global_order_within_the_asked_range() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    write_projects(&db, 6).await;
    let mut events = all_events(&db.pool).await;
    events.sort_by_key(|e| e.global_position);
    let dir = std::env::temp_dir().join(format!("keyframe-export-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("log.ndjson");
    let out = file.to_str().expect("utf-8");

    keyframe(&["--database-url", &db.url, "events", "export", "--output", out])
        .await
        .expect("export");
    let exported = read_ndjson(&file);
    assert_eq!(exported, events, "the whole log, every field, in global order");
    assert_eq!(exported[0].metadata["actor"], "system");

    let third = events[2].global_position.to_string();
    keyframe(&[
        "--database-url",
        &db.url,
        "events",
        "export",
        "--from-position",
        &third,
        "--output",
        out,
    ])
    .await
    .expect("export");
    assert_eq!(read_ndjson(&file), events[2..]);

    let since = events[1].recorded_at.to_rfc3339();
    let until = events[4].recorded_at.to_rfc3339();
    keyframe(&[
        "--database-url",
        &db.url,
        "events",
        "export",
        "--since",
        &since,
        "--until",
        &until,
        "--output",
        out,
    ])
    .await
    .expect("export");
    assert_eq!(read_ndjson(&file), events[1..4]);
    std::fs::remove_dir_all(&dir).expect("clean up");

    let bad = Cli::try_parse_from(["keyframe", "events", "export", "--since", "yesterday"]);
    assert!(bad.is_err(), "a malformed time is refused before anything runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_rebuilds_a_named_projection_and_refuses_unknown_names() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let db = TestDatabase::create().await;
    write_projects(&db, 5).await;
    keyframe(&["--database-url", &db.url, "migrate"])
        .await
        .expect("migrate is idempotent");
    keyframe(&["--database-url", &db.url, "replay", "--projection", "project_list"])
        .await
        .expect("replay");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM project_list")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(count, 5);
    keyframe(&["--database-url", &db.url, "replay", "--all", "--batch-size", "2"])
        .await
        .expect("replay all");
    let error = keyframe(&["--database-url", &db.url, "replay", "--projection", "nope"])
        .await
        .expect_err("unknown");
    assert!(
        error.to_string().contains("project_list"),
        "the error lists the known projections: {error}"
    );
    assert!(
        Cli::try_parse_from(["keyframe", "replay"]).is_err(),
        "replay needs --projection or --all"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_waits_for_an_append_running_when_it_began_but_not_for_other_transactions() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    use keyframe_eventlog::export::{ExportRange, export};
    use std::time::Duration;
    let db = TestDatabase::create().await;
    // A transaction of another database, with an id, and one of Keyframe's database that wrote
    // elsewhere: neither can append to this log, so neither holds an export back.
    let (other_database, same_database) = keyframe_tests::transactions_that_cannot_append(&db.pool).await;
    write_projects(&db, 3).await;
    let mut out = Vec::new();
    let written = export(&db.database, ExportRange::default(), Duration::ZERO, &mut out)
        .await
        .expect("export");
    assert_eq!(written, 3, "transactions that cannot append hold nothing back");

    // An append still open when the export begins: without waiting, the export stops below it.
    let open = keyframe_tests::open_append(&db.pool, "late").await;
    write_projects(&db, 2).await;
    let mut held_back = Vec::new();
    let written = export(&db.database, ExportRange::default(), Duration::ZERO, &mut held_back)
        .await
        .expect("export");
    assert_eq!(
        written, 3,
        "the open append holds back itself and what committed after it"
    );

    // Waiting, it has them all once the append commits. Its own connection is named, to see
    // it waiting before the transaction ends.
    let options: sqlx::postgres::PgConnectOptions = db.url.parse().expect("url");
    let pool = sqlx::PgPool::connect_with(options.application_name("waiting-export"))
        .await
        .expect("pool");
    let exporting = tokio::spawn(async move {
        let mut out = Vec::new();
        export(
            &pool.clone().into(),
            ExportRange::default(),
            Duration::from_secs(30),
            &mut out,
        )
        .await
        .map(|_| out)
    });
    keyframe_tests::wait_for("the export to wait", Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'waiting-export'
             AND query LIKE '%pg_snapshot_xip%'",
        )
        .fetch_one(&db.pool)
        .await
        .expect("activity")
            > 0
    })
    .await;
    open.commit().await.expect("commit");
    let out = exporting.await.expect("joined").expect("export");
    let exported: Vec<RecordedEvent> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("an event"))
        .collect();
    let mut events = all_events(&db.pool).await;
    events.sort_by_key(|e| e.global_position);
    assert_eq!(exported.len(), 6);
    assert_eq!(exported, events);
    drop((other_database, same_database));
}
