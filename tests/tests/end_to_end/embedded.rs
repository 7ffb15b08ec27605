//! The deployments of one process: on an SQLite file of its own (embedded, no Postgres and no
//! NATS), or on Postgres without NATS; their read models, progress streams and settlement
//! follow the log in the process, and they run their own video worker. A client sees what it
//! sees from a Postgres and NATS deployment, and everything is still there after a restart.

use keyframe_tests::{TestApp, TestStore, TestUser, test_api_settings};
use reqwest::Method;
use serde_json::{Value, json};

const ROOT: &str = "root@example.com";
const STALL_AFTER: std::time::Duration = std::time::Duration::from_millis(500);
const ROOT_PASSWORD: &str = "granite harbour lamplight seven";

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

async fn spawn_embedded() -> TestApp {
    spawn_in_process(Database::Embedded).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Database {
    Embedded,
    Postgres,
}

async fn spawn_in_process(database: Database) -> TestApp {
    let mut settings = test_api_settings();
    settings.first_admin = Some((ROOT.to_owned(), ROOT_PASSWORD.to_owned()));
    // Readiness gives up on a read model (or a relay) this far behind.
    settings.pipeline.stall_after = STALL_AFTER;
    let builder = match database {
        Database::Embedded => TestApp::builder().embedded(),
        Database::Postgres => TestApp::builder()
            .postgres(keyframe_tests::TestDatabase::create().await)
            .without_nats(),
    };
    builder.settings(settings).spawn().await
}

async fn login(app: &TestApp, email: &str, password: &str) -> String {
    let response = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    assert_eq!(response.status(), 200, "{email} logs in");
    body(response).await["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

async fn call(app: &TestApp, method: Method, path: &str, token: &str, payload: Option<Value>) -> (u16, Value) {
    let response = app.request(method, path, Some(token), payload).await;
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What a user and an administrator read back: the same before and after a restart.
async fn everything_read(app: &TestApp, ada: &TestUser, root: &str, org: &str) -> Value {
    let projects = call(app, Method::GET, "/api/v1/projects", &ada.access_token, None).await;
    let orgs = call(app, Method::GET, "/api/v1/orgs", &ada.access_token, None).await;
    let members = call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/members"),
        &ada.access_token,
        None,
    )
    .await;
    let invitations = call(
        app,
        Method::GET,
        &format!("/api/v1/orgs/{org}/invitations"),
        &ada.access_token,
        None,
    )
    .await;
    let balance = call(app, Method::GET, "/api/v1/credits/balance", &ada.access_token, None).await;
    let transactions = call(
        app,
        Method::GET,
        "/api/v1/credits/transactions",
        &ada.access_token,
        None,
    )
    .await;
    let users = call(app, Method::GET, "/api/v1/admin/users", root, None).await;
    for (what, (status, _)) in [
        ("projects", &projects),
        ("orgs", &orgs),
        ("members", &members),
        ("invitations", &invitations),
        ("balance", &balance),
        ("transactions", &transactions),
        ("users", &users),
    ] {
        assert_eq!(*status, 200, "{what}");
    }
    json!({
        "projects": projects.1["items"],
        "orgs": orgs.1["items"],
        "members": members.1["items"],
        "invitations": invitations.1["items"],
        "balance": balance.1,
        "transactions": transactions.1["items"],
        "users": users.1["items"],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_works_on_the_embedded_database_and_finds_everything_again_after_a_restart() {
    a_user_finds_everything_again_after_a_restart(Database::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_works_on_postgres_without_nats_and_finds_everything_again_after_a_restart() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    a_user_finds_everything_again_after_a_restart(Database::Postgres).await;
}

async fn a_user_finds_everything_again_after_a_restart(database: Database) {
    let mut app = spawn_in_process(database).await;
    assert_eq!(matches!(app.db, TestStore::Embedded(_)), database == Database::Embedded);

    let ready = app.request(Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status(), 200);
    let expected = match database {
        Database::Embedded => json!({"database": "ok", "database_kind": "sqlite"}),
        Database::Postgres => json!({"database": "ok", "database_kind": "postgres", "postgres": "ok"}),
    };
    assert_eq!(body(ready).await["checks"], expected, "no NATS to check");

    // Accounts and sessions: registration, the mailed verification, login.
    let ada = app.register_and_login("ada@example.com").await;
    let root = login(&app, ROOT, ROOT_PASSWORD).await;
    app.wait_for_sessions_projected(&ada.id, 1).await;

    // Projects, read back at once (read-your-writes through the in-process feed).
    let trailer = app.create_project(&ada, "Trailer").await;
    let teaser = app.create_project(&ada, "Teaser").await;
    let (status, _) = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/projects/{trailer}"),
        &ada.access_token,
        Some(json!({"name": "Trailer, final cut"})),
    )
    .await;
    assert_eq!(status, 200, "rename");
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/projects/{teaser}"),
        &ada.access_token,
        None,
    )
    .await;
    assert_eq!(status, 204, "delete");
    let (status, listed) = call(&app, Method::GET, "/api/v1/projects", &ada.access_token, None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|project| project["name"].as_str())
        .collect();
    assert_eq!(names, ["Trailer, final cut"]);

    // An organisation with a member and a pending invitation.
    let org = app.create_org(&ada, "Studio North").await;
    let grace = app.join_org(&ada, &org, "grace@example.com", "member").await;
    let invited = app.invite(&ada, &org, "lin@example.com", "viewer").await;
    assert_eq!(invited.status(), 201, "invite");
    let (status, orgs) = call(&app, Method::GET, "/api/v1/orgs", &grace.access_token, None).await;
    assert_eq!((status, orgs["items"][0]["role"].as_str()), (200, Some("member")));

    // Credits from an administrator: the ledger and its read model.
    let (_, opening) = call(&app, Method::GET, "/api/v1/credits/balance", &ada.access_token, None).await;
    let opening = opening["balance"].as_i64().expect("a balance");
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/users/{}/credits", ada.id),
        &root,
        Some(json!({"amount": 250, "reason": "welcome"})),
    )
    .await;
    assert!(status == 200 || status == 201, "grant: {status}");
    let (status, stats) = call(&app, Method::GET, "/api/v1/admin/stats", &root, None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["projects"], 1);

    let before = everything_read(&app, &ada, &root, &org).await;
    assert_eq!(before["balance"]["balance"], opening + 250, "{before:#}");
    assert_eq!(before["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(before["invitations"].as_array().map(Vec::len), Some(1));

    app.restart().await;

    // The same answers from the file alone, and the sessions still stand.
    let after = everything_read(&app, &ada, &root, &org).await;
    assert_eq!(after, before);
    let me = call(&app, Method::GET, "/api/v1/auth/me", &ada.access_token, None).await;
    assert_eq!(me.0, 200, "the session survived the restart");
    // And it goes on: a new project after the restart is listed at once.
    app.create_project(&ada, "Sequel").await;
    let (_, listed) = call(&app, Method::GET, "/api/v1/projects", &ada.access_token, None).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2));
    // Still ready, asked again and again until the events are well past the stall bound: there
    // is no relay to wait for. (What is waited for here is time itself: readiness must hold
    // while the newest event ages past the bound, so the loop runs for that long, asking.)
    let newest = std::time::Instant::now();
    while newest.elapsed() < STALL_AFTER * 3 {
        let ready = app.request(Method::GET, "/health/ready", None, None).await;
        assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap_or_default());
        tokio::time::sleep(STALL_AFTER / 10).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_is_analysed_by_the_in_process_worker_while_its_progress_streams_live() {
    let app = spawn_embedded().await;
    let ada = app.register_and_login("ada@example.com").await;
    let project = app.create_project(&ada, "Trailer").await;
    let asset = app.upload_video(&ada, &project, &keyframe_tests::short_video()).await;
    let asset_id = asset["id"].as_str().expect("an asset id");

    let (status, job) = call(
        &app,
        Method::POST,
        "/api/v1/jobs",
        &ada.access_token,
        Some(json!({"type": "analyze", "project_id": project, "asset_id": asset_id})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().expect("a job id");

    // Followed live from before the worker runs (so every step arrives as it happens): the
    // stream ends when the job does, every step in order.
    let stream = keyframe_tests::open_job_events(&app, &ada.access_token, job_id, None).await;
    let _worker = app.spawn_worker("in-process").await;
    let events = keyframe_tests::collect_events(stream).await;
    let names: Vec<&str> = events.iter().map(|(_, event, _)| event.as_str()).collect();
    assert_eq!(names.first(), Some(&"snapshot"), "{names:?}");
    assert_eq!(names.last(), Some(&"JobSucceeded"), "{names:?}");
    assert!(names.contains(&"JobStarted"), "{names:?}");
    let ids: Vec<i64> = events
        .iter()
        .map(|(id, _, _)| id.parse().expect("a numeric id"))
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "in order: {ids:?}");

    let (status, done) = call(
        &app,
        Method::GET,
        &format!("/api/v1/jobs/{job_id}"),
        &ada.access_token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["result"].is_object(), "the analysis report: {done}");
    // The job's credits were reserved on the owner's ledger when it was requested, and the
    // settlement (following the log in the process) charged them once it succeeded.
    let cost = done["cost_credits"].as_i64().expect("a price");
    let transactions = async || -> Vec<Value> {
        let (_, transactions) = call(
            &app,
            Method::GET,
            "/api/v1/credits/transactions",
            &ada.access_token,
            None,
        )
        .await;
        transactions["items"].as_array().cloned().unwrap_or_default()
    };
    let of_job = |items: &[Value], kind: &str| {
        items
            .iter()
            .any(|item| item["kind"] == kind && item["job_id"] == job_id)
    };
    keyframe_tests::wait_for(
        "the job's reservation and charge",
        std::time::Duration::from_secs(10),
        || async {
            let items = transactions().await;
            of_job(&items, "reservation") && of_job(&items, "settlement")
        },
    )
    .await;
    let items = transactions().await;
    let settlement = items
        .iter()
        .find(|item| item["kind"] == "settlement")
        .expect("the settlement");
    assert_eq!(settlement["amount"], -cost, "{settlement}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_may_read_the_embedded_database_but_not_write_it() {
    let app = spawn_embedded().await;
    app.register_and_login("ada@example.com").await;
    let TestStore::Embedded(db) = &app.db else {
        panic!("an embedded app");
    };
    let refused = keyframe_database::sqlite::open(&db.path, keyframe_database::sqlite::Access::ReadWrite, 1)
        .await
        .expect_err("a second writer is refused");
    let message = refused.to_string();
    assert!(message.contains("another Keyframe process is using"), "{message}");
    assert!(message.contains("move to Postgres"), "{message}");
    // An export reads beside the running process.
    let reader = keyframe_database::sqlite::open(&db.path, keyframe_database::sqlite::Access::ReadOnly, 1)
        .await
        .expect("a reader opens it");
    let mut out = Vec::new();
    let written = keyframe_eventlog::export::export(
        &reader,
        keyframe_eventlog::export::ExportRange::default(),
        std::time::Duration::ZERO,
        &mut out,
    )
    .await
    .expect("exported");
    assert!(written >= 3, "registration, verification, login: {written}");
    assert_eq!(String::from_utf8(out).expect("text").lines().count() as u64, written);
}

/// Runs `keyframe <args>` as an operator would, in this process.
async fn keyframe(args: &[&str]) {
    let cli =
        <keyframe::cli::Cli as clap::Parser>::try_parse_from(std::iter::once("keyframe").chain(args.iter().copied()))
            .expect("a valid command line");
    keyframe::cli::run(cli).await.expect("the command succeeds");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_moves_from_sqlite_to_postgres_through_export_and_import() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let mut app = spawn_embedded().await;
    let ada = app.register_and_login("ada@example.com").await;
    let root = login(&app, ROOT, ROOT_PASSWORD).await;
    let project = app.create_project(&ada, "Trailer").await;
    let org = app.create_org(&ada, "Studio North").await;
    app.join_org(&ada, &org, "grace@example.com", "member").await;
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/users/{}/credits", ada.id),
        &root,
        Some(json!({"amount": 40, "reason": "welcome"})),
    )
    .await;
    assert!(status == 200 || status == 201, "grant: {status}");
    let asset = app.upload_video(&ada, &project, &keyframe_tests::short_video()).await;
    let _worker = app.spawn_worker("in-process").await;
    let (status, job) = call(
        &app,
        Method::POST,
        "/api/v1/jobs",
        &ada.access_token,
        Some(json!({"type": "analyze", "project_id": project, "asset_id": asset["id"]})),
    )
    .await;
    assert_eq!(status, 202);
    let job_id = job["id"].as_str().expect("a job id").to_owned();
    keyframe_tests::collect_events(keyframe_tests::open_job_events(&app, &ada.access_token, &job_id, None).await).await;
    // The charge is in the ledger before the move.
    keyframe_tests::wait_for("the job's charge", std::time::Duration::from_secs(10), || async {
        call(&app, Method::GET, "/api/v1/credits/balance", &ada.access_token, None)
            .await
            .1["reserved"]
            == 0
    })
    .await;
    let mut before = everything_read(&app, &ada, &root, &org).await;
    before["jobs"] = call(&app, Method::GET, "/api/v1/jobs", &ada.access_token, None).await.1["items"].clone();
    before["sessions"] = call(&app, Method::GET, "/api/v1/auth/sessions", &ada.access_token, None)
        .await
        .1["items"]
        .clone();
    app.stop().await;

    // The operator's move: export the embedded log, import it into Postgres.
    let TestStore::Embedded(embedded) = &app.db else {
        panic!("an embedded app");
    };
    let export = embedded.dir.join("log.ndjson");
    let sqlite_url = format!("sqlite://{}", embedded.path.display());
    keyframe(&[
        "--database-url",
        &sqlite_url,
        "events",
        "export",
        "--output",
        export.to_str().expect("a path"),
    ])
    .await;
    let postgres = keyframe_tests::TestDatabase::create().await;
    let postgres_url = postgres.url.clone();
    keyframe(&[
        "--database-url",
        &postgres_url,
        "events",
        "import",
        "--input",
        export.to_str().expect("a path"),
    ])
    .await;
    let exported = std::fs::read_to_string(&export).expect("the export");

    let mut settings = test_api_settings();
    settings.first_admin = Some((ROOT.to_owned(), ROOT_PASSWORD.to_owned()));
    let moved = TestApp::builder()
        .without_nats()
        .postgres(postgres)
        .settings(settings)
        .spawn()
        .await;
    // Everyone, everything and every session, as before; the same tokens still work.
    let mut after = everything_read(&moved, &ada, &root, &org).await;
    after["jobs"] = call(&moved, Method::GET, "/api/v1/jobs", &ada.access_token, None)
        .await
        .1["items"]
        .clone();
    after["sessions"] = call(&moved, Method::GET, "/api/v1/auth/sessions", &ada.access_token, None)
        .await
        .1["items"]
        .clone();
    assert_eq!(after, before);
    // The log itself reads the same, bar the transaction ids the new store gave it.
    let strip = |log: &str| -> Vec<Value> {
        log.lines()
            .map(|line| {
                let mut event: Value = serde_json::from_str(line).expect("an event");
                event.as_object_mut().expect("an object").remove("tx_id");
                event
            })
            .collect()
    };
    let mut again = Vec::new();
    keyframe_eventlog::export::export(
        moved.db.database(),
        keyframe_eventlog::export::ExportRange::default(),
        std::time::Duration::from_secs(5),
        &mut again,
    )
    .await
    .expect("exported from Postgres");
    assert_eq!(strip(&String::from_utf8(again).expect("text")), strip(&exported));
    // Logging in finds the accounts (their addresses were claimed again), and work goes on.
    assert!(
        !login(&moved, "grace@example.com", "correct horse battery staple")
            .await
            .is_empty()
    );
    let newest = before["projects"][0]["id"].clone();
    let sequel = moved.create_project(&ada, "Sequel").await;
    assert_ne!(json!(sequel), newest);
    let (_, listed) = call(&moved, Method::GET, "/api/v1/projects", &ada.access_token, None).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_ffmpeg_the_embedded_deployment_serves_and_explains_why_it_cannot_read_or_analyse_videos() {
    use crate::process::{DataDir, KeyframeProcess, register_and_login};
    let http = keyframe_tests::http_client();
    let data_dir = DataDir::new();
    let video = keyframe_tests::short_video();
    let upload = async |base: &str, token: &str, project_id: &str| {
        http.post(format!("{base}/api/v1/projects/{project_id}/assets"))
            .bearer_auth(token)
            .body(std::fs::read(&video).expect("the video"))
            .send()
            .await
            .expect("upload")
    };

    // A video uploaded while ffmpeg was there.
    let mut server = KeyframeProcess::start(&data_dir.0).await;
    let token = register_and_login(&http, &server.base, "ada@example.com").await;
    let authorised =
        |method: Method, base: &str, path: &str| http.request(method, format!("{base}{path}")).bearer_auth(&token);
    let project: Value = body(
        authorised(Method::POST, &server.base, "/api/v1/projects")
            .json(&json!({"name": "tools"}))
            .send()
            .await
            .expect("create a project"),
    )
    .await;
    let project_id = project["id"].as_str().expect("a project id").to_owned();
    let uploaded = upload(&server.base, &token, &project_id).await;
    assert_eq!(uploaded.status(), 201);
    let asset_id = body(uploaded).await["id"].as_str().expect("an asset id").to_owned();
    let opening = body(
        authorised(Method::GET, &server.base, "/api/v1/credits/balance")
            .send()
            .await
            .expect("balance"),
    )
    .await;
    server.kill().await;

    // Started again on a machine without it: everything else is served.
    let no_tools = data_dir.0.join("empty-path");
    std::fs::create_dir_all(&no_tools).expect("an empty directory");
    let mut server = KeyframeProcess::start_with(&data_dir.0, |command| {
        command.env("PATH", &no_tools);
    })
    .await;
    assert!(
        server.log().contains("ffmpeg and ffprobe are not on the PATH"),
        "the operator is told at start: {}",
        server.log()
    );

    // A new upload is refused with the reason, as a 503 with its own code, not a 500.
    let refused = upload(&server.base, &token, &project_id).await;
    assert_eq!(refused.status(), 503);
    let problem = body(refused).await;
    assert_eq!(problem["code"], "video_tools_unavailable", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("ffmpeg")),
        "{problem}"
    );

    // An analysis of the earlier upload is accepted, fails with the reason, and costs nothing.
    let requested = authorised(Method::POST, &server.base, "/api/v1/jobs")
        .json(&json!({"type": "analyze", "project_id": project_id, "asset_id": asset_id, "max_retries": 0}))
        .send()
        .await
        .expect("request an analysis");
    assert_eq!(requested.status(), 202);
    let job_id = body(requested).await["id"].as_str().expect("a job id").to_owned();
    let job_path = format!("/api/v1/jobs/{job_id}");
    keyframe_tests::wait_for("the job to fail", std::time::Duration::from_secs(30), || async {
        body(
            authorised(Method::GET, &server.base, &job_path)
                .send()
                .await
                .expect("the job"),
        )
        .await["status"]
            == "failed"
    })
    .await;
    let job = body(
        authorised(Method::GET, &server.base, &job_path)
            .send()
            .await
            .expect("the job"),
    )
    .await;
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|error| error.contains("install ffmpeg")),
        "{job}"
    );
    keyframe_tests::wait_for(
        "the reservation to be released",
        std::time::Duration::from_secs(30),
        || async {
            body(
                authorised(Method::GET, &server.base, "/api/v1/credits/balance")
                    .send()
                    .await
                    .expect("balance"),
            )
            .await
                == opening
        },
    )
    .await;
    server.kill().await;
}
