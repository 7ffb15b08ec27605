//! Crash safety of the embedded deployment: `keyframe serve` on an SQLite file of its own is
//! killed with SIGKILL while clients send it commands, as a power cut or the OOM killer would,
//! and started again on the same directory. Every command it acknowledged is in the log, the log
//! has no gap, the file is intact, every acknowledged project answers with its newest name, and
//! the read models it carried on from its checkpoints equal a replay of the log.

use crate::process::{DataDir, KeyframeProcess, keyframe, register_and_login};
use keyframe_database::{Backend, Database, sqlite::Access};
use keyframe_domain::project::ProjectEvent;
use keyframe_tests::wait_for;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Clients sending commands at once, and the users they act for (two clients per user).
const CLIENTS: usize = 8;
const USERS: usize = 4;
/// Acknowledged creates to wait for before the kill: enough that the kill lands in a steady
/// stream of appends, projector batches and checkpoint writes.
const ACKNOWLEDGED_BEFORE_THE_KILL: usize = 300;

/// What the clients were told, and what they never heard back about.
#[derive(Default)]
struct Acknowledged {
    /// Project id -> the user who made it and the names it was acknowledged to have, oldest
    /// first.
    projects: HashMap<String, (usize, Vec<String>)>,
    creates: usize,
    /// Answers other than success before the kill: none are expected.
    refusals: Vec<String>,
    /// Requests the kill cut off (their effect may or may not be in the log).
    cut_off: usize,
}

/// Creates projects and renames each once, one request at a time, until the server is gone.
async fn client(
    http: reqwest::Client,
    base: String,
    (user, token): (usize, String),
    number: usize,
    seen: Arc<Mutex<Acknowledged>>,
) {
    for round in 0.. {
        let name = format!("client {number} project {round}");
        let create = http
            .post(format!("{base}/api/v1/projects"))
            .json(&json!({"name": name}));
        let Some(project) = acknowledged(create.bearer_auth(&token), "create", &seen).await else {
            return;
        };
        let id = project["id"].as_str().expect("a project id").to_owned();
        {
            let mut seen = seen.lock().expect("seen");
            seen.projects.insert(id.clone(), (user, vec![name]));
            seen.creates += 1;
        }
        let renamed_to = format!("client {number} project {round}, renamed");
        let rename = http
            .patch(format!("{base}/api/v1/projects/{id}"))
            .json(&json!({"name": renamed_to}));
        if acknowledged(rename.bearer_auth(&token), "rename", &seen)
            .await
            .is_none()
        {
            return;
        }
        if let Some((_, names)) = seen.lock().expect("seen").projects.get_mut(&id) {
            names.push(renamed_to);
        }
    }
}

/// The answer's body when the command succeeded; otherwise `None`, with the refusal or the cut
/// off request counted in `seen`.
async fn acknowledged(request: reqwest::RequestBuilder, what: &str, seen: &Mutex<Acknowledged>) -> Option<Value> {
    match request.send().await {
        Ok(response) if response.status().is_success() => {
            let body = response.json::<Value>().await;
            if body.is_err() {
                seen.lock().expect("seen").cut_off += 1;
            }
            body.ok()
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            seen.lock()
                .expect("seen")
                .refusals
                .push(format!("{what}: {status} {body}"));
            None
        }
        Err(_) => {
            seen.lock().expect("seen").cut_off += 1;
            None
        }
    }
}

/// Opens the database file beside (or after) the process, as `events export` does.
async fn open_reader(data_dir: &Path) -> Database {
    keyframe_database::sqlite::open(&data_dir.join("keyframe.db"), Access::ReadOnly, 1)
        .await
        .expect("open the database to read")
}

/// The embedded database's readers.
fn sqlite(database: &Database) -> &sqlx::SqlitePool {
    let Backend::Sqlite(pool) = database.reader() else {
        panic!("the embedded database");
    };
    pool
}

/// True once every read model has applied every event of the aggregates it follows.
async fn read_models_caught_up(database: &Database) -> bool {
    let pool = sqlite(database);
    for projection in keyframe_projections::all() {
        let types = serde_json::to_string(projection.aggregate_types()).expect("JSON");
        let newest: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(global_position), 0) FROM events
             WHERE aggregate_type IN (SELECT value FROM json_each($1))",
        )
        .bind(types)
        .fetch_one(pool)
        .await
        .expect("the newest event");
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT global_position FROM projection_checkpoints WHERE projection = $1")
                .bind(projection.name())
                .fetch_optional(pool)
                .await
                .expect("the checkpoint");
        if applied.unwrap_or(0) < newest {
            return false;
        }
    }
    true
}

/// Every row of every read model, each row as SQLite quotes its values, sorted per table.
async fn read_models(database: &Database) -> BTreeMap<String, Vec<String>> {
    let pool = sqlite(database);
    let mut tables = BTreeMap::new();
    for projection in keyframe_projections::all() {
        for table in projection.tables() {
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(table)
                .fetch_all(pool)
                .await
                .expect("the table's columns");
            assert!(!columns.is_empty(), "{table} has columns");
            let row = columns
                .iter()
                .map(|column| format!("quote(\"{column}\")"))
                .collect::<Vec<_>>()
                .join(" || ' | ' || ");
            let mut rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {row} FROM \"{table}\""))
                .fetch_all(pool)
                .await
                .expect("the table's rows");
            rows.sort();
            tables.insert((*table).to_owned(), rows);
        }
    }
    tables
}

/// Project id -> its name in the log, newest last.
fn project_names_in_the_log(events: &[keyframe_domain::log::RecordedEvent]) -> HashMap<String, Vec<String>> {
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for event in events.iter().filter(|event| event.aggregate_type == "Project") {
        let name = match keyframe_projections::decode::<ProjectEvent>(event).expect("a project event") {
            ProjectEvent::ProjectCreated { name, .. } | ProjectEvent::ProjectUpdated { name: Some(name), .. } => name,
            _ => continue,
        };
        names
            .entry(event.aggregate_id.clone())
            .or_default()
            .push(name.as_str().to_owned());
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_embedded_deployment_restarts_with_every_acknowledged_command_and_read_models_equal_to_a_replay() {
    let data_dir = DataDir::new();
    let mut server = KeyframeProcess::start(&data_dir.0).await;
    let http = keyframe_tests::http_client();
    let mut tokens = Vec::new();
    for user in 0..USERS {
        tokens.push(register_and_login(&http, &server.base, &format!("user{user}@example.com")).await);
    }

    // Commands stream in from every client; the kill comes in the middle of them.
    let seen = Arc::new(Mutex::new(Acknowledged::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|number| {
            let user = number % USERS;
            let token = (user, tokens[user].clone());
            tokio::spawn(client(http.clone(), server.base.clone(), token, number, seen.clone()))
        })
        .collect();
    wait_for("commands acknowledged under load", Duration::from_secs(120), || async {
        let seen = seen.lock().expect("seen");
        assert!(
            seen.refusals.is_empty(),
            "refused before the kill: {:?}\n{}",
            seen.refusals,
            server.log()
        );
        seen.creates >= ACKNOWLEDGED_BEFORE_THE_KILL
    })
    .await;
    server.kill().await;
    for client in clients {
        client.await.expect("the client ends once the server is gone");
    }
    let seen = Arc::try_unwrap(seen)
        .ok()
        .expect("the clients are done")
        .into_inner()
        .expect("seen");
    assert!(seen.refusals.is_empty(), "refused: {:?}", seen.refusals);
    assert_eq!(
        seen.cut_off, CLIENTS,
        "every client's last request was cut off by the kill"
    );

    // The file as the dead process left it, read as an auditor would.
    let reader = open_reader(&data_dir.0).await;
    let behind = !read_models_caught_up(&reader).await;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(sqlite(&reader))
        .await
        .expect("integrity check");
    assert_eq!(integrity, "ok");

    // Every acknowledged create and rename is in the log, in the order it was acknowledged.
    let events = keyframe_eventlog::reader::read_all_unfenced(&reader)
        .await
        .expect("the log");
    let positions: Vec<i64> = events.iter().map(|event| event.global_position).collect();
    assert_eq!(
        positions,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "the log has no gap"
    );
    let logged = project_names_in_the_log(&events);
    eprintln!(
        "killed after {} acknowledged creates; the log holds {} events, {} projects; \
         read models behind the log at the kill: {behind}",
        seen.creates,
        events.len(),
        logged.len()
    );
    for (id, (_, acknowledged)) in &seen.projects {
        let names = logged
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged project {id} is in the log"));
        assert!(
            names.starts_with(acknowledged),
            "project {id}: acknowledged {acknowledged:?}, logged {names:?}"
        );
    }

    // The same directory starts again (the lock died with the process) and carries on from
    // its checkpoints.
    let mut server = KeyframeProcess::start(&data_dir.0).await;
    // A read of one project answers its row in the read model, which may still be catching up
    // (the process's memory of its own newest writes died with it).
    wait_for(
        "the read models to apply the whole log",
        Duration::from_secs(30),
        || read_models_caught_up(&reader),
    )
    .await;

    // Each one answers over HTTP with its newest name in the log, whichever client asks.
    for (id, (user, names)) in &seen.projects {
        let response = http
            .get(format!("{}/api/v1/projects/{id}", server.base))
            .bearer_auth(&tokens[*user])
            .send()
            .await
            .expect("get the project");
        assert_eq!(response.status(), 200, "project {id} after the restart");
        let project: Value = response.json().await.expect("a project");
        let newest = logged[id].last().expect("a name");
        assert_eq!(
            project["name"],
            newest.as_str(),
            "project {id}, acknowledged as {names:?}"
        );
    }

    // Writes go on where the log ended.
    let after = http
        .post(format!("{}/api/v1/projects", server.base))
        .bearer_auth(&tokens[0])
        .json(&json!({"name": "after the crash"}))
        .send()
        .await
        .expect("create after the restart");
    assert_eq!(after.status(), 201, "{}", server.log());
    wait_for(
        "the read models to apply the whole log",
        Duration::from_secs(30),
        || read_models_caught_up(&reader),
    )
    .await;

    // Killed again at rest, the read models it kept equal the ones a replay builds.
    server.kill().await;
    let kept = read_models(&reader).await;
    reader.close().await;
    let replayed = keyframe(&data_dir.0)
        .args(["replay", "--all"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run keyframe replay");
    assert!(
        replayed.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let reader = open_reader(&data_dir.0).await;
    let rebuilt = read_models(&reader).await;
    reader.close().await;
    assert_eq!(kept.keys().collect::<Vec<_>>(), rebuilt.keys().collect::<Vec<_>>());
    for (table, rows) in &kept {
        assert_eq!(rows, &rebuilt[table], "{table}: kept across the crash vs replayed");
    }
    assert!(
        kept["project_list"].len() > seen.creates,
        "the projects are in the read model"
    );
}
