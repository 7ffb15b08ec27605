//! A client reads its own writes without asking: each session's newest write is remembered by
//! the process that took it, and the session's reads wait for the read model to have it.

use keyframe_tests::{TestApp, TestUser};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

async fn list(app: &TestApp, user: &TestUser, path: &str) -> (Value, reqwest::header::HeaderMap) {
    let response = app.request(Method::GET, path, Some(&user.access_token), None).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let headers = response.headers().clone();
    (response.json().await.expect("json"), headers)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_login_lists_both_sessions_without_a_position_header() {
    let app = TestApp::spawn().await;
    let first = app.register_and_login("two.logins@example.com").await;
    let login = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": first.email, "password": first.password})),
        )
        .await;
    assert_eq!(login.status(), 200);
    let tokens: Value = login.json().await.expect("json");
    let second = TestUser {
        access_token: tokens["access_token"].as_str().expect("token").to_owned(),
        ..first.clone()
    };
    let (sessions, headers) = list(&app, &second, "/api/v1/auth/sessions").await;
    assert_eq!(sessions["items"].as_array().expect("items").len(), 2, "{sessions}");
    assert!(headers.get("x-keyframe-consistent").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn under_background_load_every_list_after_a_create_shows_the_new_project() {
    let app = Arc::new(TestApp::spawn().await);
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = tokio::task::JoinSet::new();
    for other in 0..6 {
        let user = app.register_and_login(&format!("background{other}@example.com")).await;
        let (app, stop) = (app.clone(), stop.clone());
        background.spawn(async move {
            let mut created = 0;
            while !stop.load(Ordering::Relaxed) {
                app.create_project(&user, "background").await;
                created += 1;
            }
            created
        });
    }
    let user = app.register_and_login("reader@example.com").await;
    for round in 0..200 {
        let id = app.create_project(&user, &format!("round {round}")).await;
        let (page, headers) = list(&app, &user, "/api/v1/projects?limit=1").await;
        assert_eq!(
            page["items"][0]["id"].as_str(),
            Some(id.as_str()),
            "round {round}: the list shows the project just created ({page}, consistent: {:?})",
            headers.get("x-keyframe-consistent")
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut created = 0;
    while let Some(done) = background.join_next().await {
        created += done.expect("background client");
    }
    assert!(created > 200, "the background load ran alongside: {created} projects");
}

#[tokio::test(flavor = "multi_thread")]
async fn while_a_read_model_stands_still_only_the_first_read_spends_the_wait() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let mut settings = keyframe_tests::test_api_settings();
    settings.read_your_writes_timeout = std::time::Duration::from_secs(2);
    let app = TestApp::builder().settings(settings).spawn().await;
    let user = app.register_and_login("patient.reader@example.com").await;
    sqlx::query("ALTER TABLE project_list ADD CONSTRAINT no_poison CHECK (name <> 'poison')")
        .execute(&app.db.postgres().pool)
        .await
        .expect("constraint");
    app.create_project(&user, "poison").await;

    let started = std::time::Instant::now();
    let (_, headers) = list(&app, &user, "/api/v1/projects").await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "the first read waits the bound"
    );
    assert_eq!(headers["x-keyframe-consistent"], "false");

    let started = std::time::Instant::now();
    let (_, headers) = list(&app, &user, "/api/v1/projects").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "the next read only looks: {:?}",
        started.elapsed()
    );
    assert_eq!(
        headers["x-keyframe-consistent"], "false",
        "and still says it may be stale"
    );
}
