//! End to end over HTTP against the real service, Postgres and NATS: what a client sees.

use keyframe_tests::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_registers_logs_in_creates_projects_and_lists_them_reading_their_own_writes() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;

    let me = app
        .request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
        .await;
    assert_eq!(me.status(), 200);
    let me = body(me).await;
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["roles"], json!(["user"]));

    let mut last_position = 0;
    for name in ["Trailer", "Teaser", "Interview"] {
        let created = app
            .request(
                Method::POST,
                "/api/v1/projects",
                Some(&ada.access_token),
                Some(json!({"name": name, "description": "cuts"})),
            )
            .await;
        assert_eq!(created.status(), 201);
        let position: i64 = created.headers()["x-keyframe-position"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number");
        assert!(position > last_position, "positions grow");
        last_position = position;
        assert_eq!(body(created).await["name"], name);
    }

    let listed = app
        .get_after("/api/v1/projects", &ada.access_token, &last_position.to_string())
        .await;
    assert_eq!(listed.status(), 200);
    assert!(
        listed.headers().get("x-keyframe-consistent").is_none(),
        "the read model caught up"
    );
    let listed = body(listed).await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Interview", "Teaser", "Trailer"], "newest first, all three");
    assert_eq!(listed["next_cursor"], Value::Null);

    // Paging: two per page, the cursor leads to the rest.
    let first = body(
        app.request(Method::GET, "/api/v1/projects?limit=2", Some(&ada.access_token), None)
            .await,
    )
    .await;
    assert_eq!(first["items"].as_array().expect("items").len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = body(
        app.request(
            Method::GET,
            &format!("/api/v1/projects?limit=2&cursor={cursor}"),
            Some(&ada.access_token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(second["items"][0]["name"], "Trailer");
    assert_eq!(second["next_cursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_user_sees_none_of_the_first_users_projects() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let bob = app.register_and_login("bob@example.com").await;
    let created = app
        .request(
            Method::POST,
            "/api/v1/projects",
            Some(&ada.access_token),
            Some(json!({"name": "Secret"})),
        )
        .await;
    let position = created.headers()["x-keyframe-position"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let project = body(created).await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().expect("id"));

    let bobs = app.get_after("/api/v1/projects", &bob.access_token, &position).await;
    assert_eq!(body(bobs).await["items"], json!([]));

    for (method, payload) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"name": "Mine"}))),
        (Method::DELETE, None),
    ] {
        let response = app
            .request(method.clone(), &path, Some(&bob.access_token), payload)
            .await;
        assert_eq!(response.status(), 404, "{method} on someone else's project");
        assert_eq!(body(response).await["code"], "not_found");
    }
    // ... and the owner's project is untouched.
    let own = app.get_after(&path, &ada.access_token, &position).await;
    assert_eq!(body(own).await["name"], "Secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_updates_and_deletes_a_project() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let project = body(
        app.request(
            Method::POST,
            "/api/v1/projects",
            Some(&ada.access_token),
            Some(json!({"name": "Draft"})),
        )
        .await,
    )
    .await;
    let path = format!("/api/v1/projects/{}", project["id"].as_str().expect("id"));

    let updated = app
        .request(
            Method::PATCH,
            &path,
            Some(&ada.access_token),
            Some(json!({"name": "Final", "description": "v2"})),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let position = updated.headers()["x-keyframe-position"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let updated = body(updated).await;
    assert_eq!(
        (updated["name"].as_str(), updated["description"].as_str()),
        (Some("Final"), Some("v2"))
    );
    let read = app.get_after(&path, &ada.access_token, &position).await;
    assert_eq!(body(read).await["name"], "Final");

    let deleted = app.request(Method::DELETE, &path, Some(&ada.access_token), None).await;
    assert_eq!(deleted.status(), 204);
    let position = deleted.headers()["x-keyframe-position"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let gone = app.get_after(&path, &ada.access_token, &position).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(
        app.request(Method::DELETE, &path, Some(&ada.access_token), None)
            .await
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_the_token_and_logout_ends_the_session() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;

    let refreshed = app
        .request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    let cookie = refreshed.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.starts_with("keyframe_refresh="));
    let pair = body(refreshed).await;
    let new_refresh = pair["refresh_token"].as_str().expect("refresh").to_owned();
    let new_access = pair["access_token"].as_str().expect("access").to_owned();
    assert_ne!(new_refresh, ada.refresh_token);

    // The refresh cookie works as well as the body.
    let by_cookie = app
        .http
        .post(format!("{}/api/v1/auth/refresh", app.base_url))
        .header("cookie", format!("keyframe_refresh={new_refresh}"))
        .send()
        .await
        .expect("answered");
    assert_eq!(by_cookie.status(), 200);
    let latest = body(by_cookie).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();

    let me = app
        .request(Method::GET, "/api/v1/auth/me", Some(&new_access), None)
        .await;
    assert_eq!(me.status(), 200, "the new access token works");

    let logout = app
        .request(Method::POST, "/api/v1/auth/logout", Some(&new_access), None)
        .await;
    assert_eq!(logout.status(), 204);
    let after = app
        .request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": latest})),
        )
        .await;
    assert_eq!(after.status(), 401, "an ended session cannot be refreshed");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refuses_wrong_passwords_and_unknown_emails_alike_and_accepts_the_oauth2_form() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    for (email, password) in [
        ("ada@example.com", "wrong password, long enough"),
        ("nobody@example.com", "whatever it is, long"),
    ] {
        let response = app
            .request(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(response.status(), 401);
        let problem = body(response).await;
        assert_eq!(problem["code"], "invalid_credentials");
        assert_eq!(problem["detail"], "the e-mail or password is wrong");
    }
    let form = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=ADA%40example.com&password={}",
            ada.password.replace(' ', "+")
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(form.status(), 200);
    assert_eq!(body(form).await["token_type"], "bearer");
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_a_taken_email_is_a_conflict() {
    let app = TestApp::spawn().await;
    app.register_and_login("ada@example.com").await;
    let again = app
        .request(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": " ADA@example.com", "password": "another long passphrase"})),
        )
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(body(again).await["code"], "email_taken");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_problem_never_a_500() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let token = Some(ada.access_token.as_str());
    let raw = |path: &str, content_type: &str, payload: &'static str| {
        app.http
            .post(format!("{}{path}", app.base_url))
            .bearer_auth(&ada.access_token)
            .header("content-type", content_type.to_owned())
            .body(payload)
            .send()
    };

    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (
            raw("/api/v1/projects", "application/json", "{\"name\":")
                .await
                .expect("answered"),
            400,
            "malformed_json",
        ),
        (
            raw("/api/v1/projects", "text/plain", "{}").await.expect("answered"),
            415,
            "unsupported_media_type",
        ),
        (
            app.request(
                Method::POST,
                "/api/v1/projects",
                token,
                Some(json!({"name": "x", "colour": "red"})),
            )
            .await,
            422,
            "invalid_body",
        ),
        (
            app.request(Method::POST, "/api/v1/projects", token, Some(json!({"name": 42})))
                .await,
            422,
            "invalid_body",
        ),
        (
            app.request(
                Method::POST,
                "/api/v1/projects",
                token,
                Some(json!({"name": "n".repeat(201)})),
            )
            .await,
            422,
            "validation_failed",
        ),
        (
            app.request(Method::POST, "/api/v1/projects", token, Some(json!({"name": "   "})))
                .await,
            422,
            "validation_failed",
        ),
        (
            app.request(Method::GET, "/api/v1/projects/not-a-uuid", token, None)
                .await,
            400,
            "invalid_id",
        ),
        (
            app.request(Method::GET, "/api/v1/projects?limit=1000", token, None)
                .await,
            422,
            "validation_failed",
        ),
        (
            app.request(Method::GET, "/api/v1/projects?cursor=garbage", token, None)
                .await,
            400,
            "invalid_cursor",
        ),
        (
            app.request(Method::GET, "/api/v1/projects", None, None).await,
            401,
            "missing_token",
        ),
        (
            app.request(Method::GET, "/api/v1/projects", Some("not.a.jwt"), None)
                .await,
            401,
            "invalid_token",
        ),
        (
            app.request(Method::GET, "/api/v1/nowhere", token, None).await,
            404,
            "not_found",
        ),
        (
            app.request(Method::PUT, "/api/v1/projects", token, None).await,
            405,
            "method_not_allowed",
        ),
        (
            app.request(
                Method::POST,
                "/api/v1/auth/register",
                None,
                Some(json!({"email": "nope", "password": "short"})),
            )
            .await,
            422,
            "validation_failed",
        ),
    ];
    for (response, status, code) in cases {
        assert_eq!(response.status().as_u16(), status, "status for {code}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let request_id = response.headers()["x-request-id"].to_str().expect("ascii").to_owned();
        let problem = body(response).await;
        assert_eq!(problem["code"], code);
        assert_eq!(problem["status"], status);
        assert_eq!(
            problem["request_id"],
            request_id.as_str(),
            "the problem quotes the request id"
        );
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }

    let invalid = body(
        app.request(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "nope", "password": "short"})),
        )
        .await,
    )
    .await;
    let fields: Vec<&str> = invalid["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["email", "password"], "every bad field is named at once");

    let huge = app
        .http
        .post(format!("{}/api/v1/projects", app.base_url))
        .bearer_auth(&ada.access_token)
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{}\"}}", "x".repeat(200_000)))
        .send()
        .await
        .expect("answered");
    assert_eq!(huge.status(), 413);
    assert_eq!(body(huge).await["code"], "payload_too_large");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_a_request_id_and_echoes_the_clients() {
    let app = TestApp::spawn().await;
    let fresh = app.request(Method::GET, "/health/live", None, None).await;
    assert!(
        fresh.headers()["x-request-id"]
            .to_str()
            .is_ok_and(|id| uuid::Uuid::parse_str(id).is_ok())
    );
    let echoed = app
        .http
        .get(format!("{}/health/live", app.base_url))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .expect("answered");
    assert_eq!(echoed.headers()["x-request-id"], "client-chosen-42");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_carry_who_did_what_from_which_request() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let created = app
        .http
        .post(format!("{}/api/v1/projects", app.base_url))
        .bearer_auth(&ada.access_token)
        .header("x-request-id", "req-create-1")
        .header("user-agent", "keyframe-tests/1")
        .json(&json!({"name": "Audited"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(created.status(), 201);
    let events = app.db.all_events().await;
    let metadata_of = |event_type: &str| {
        events
            .iter()
            .find(|event| event.event_type == event_type)
            .map(|event| event.metadata.clone())
            .unwrap_or_else(|| panic!("a {event_type} event"))
    };
    let metadata = metadata_of("ProjectCreated");
    assert_eq!(metadata["actor"], ada.id);
    assert_eq!(metadata["request_id"], "req-create-1");
    assert_eq!(metadata["correlation_id"], "req-create-1");
    assert_eq!(metadata["causation_id"], "req-create-1");
    assert_eq!(metadata["client_ip"], "127.0.0.1");
    assert_eq!(metadata["user_agent"], "keyframe-tests/1");
    assert_eq!(metadata_of("UserRegistered")["actor"], "anonymous");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_ready_and_turns_503_when_postgres_goes_away() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = TestApp::spawn().await;
    let ready = app.request(Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status(), 200);
    let ready = body(ready).await;
    assert_eq!(
        ready["checks"],
        json!({"database": "ok", "database_kind": "postgres", "postgres": "ok", "nats": "ok"})
    );
    assert!(
        ready["relay_backlog"].as_i64().is_some(),
        "the relay's backlog is exposed"
    );

    // Take the database away under the running service.
    let admin = sqlx::PgPool::connect(&keyframe_tests::admin_database_url())
        .await
        .expect("admin");
    sqlx::query(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        app.db.postgres().name
    ))
    .execute(&admin)
    .await
    .expect("lock out");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&app.db.postgres().name)
        .execute(&admin)
        .await
        .expect("disconnect");
    let down = app.request(Method::GET, "/health/ready", None, None).await;
    assert_eq!(down.status(), 503);
    assert_eq!(body(down).await["checks"]["postgres"], "down");
    let live = app.request(Method::GET, "/health/live", None, None).await;
    assert_eq!(live.status(), 200, "liveness does not depend on Postgres");
    sqlx::query(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        app.db.postgres().name
    ))
    .execute(&admin)
    .await
    .expect("let in");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_and_docs_are_served() {
    let app = TestApp::spawn().await;
    let spec = app.request(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(spec.status(), 200);
    let spec = body(spec).await;
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/projects",
        "/api/v1/projects/{id}",
        "/health/ready",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} is documented");
    }
    let docs = app
        .http
        .get(format!("{}/docs/", app.base_url))
        .send()
        .await
        .expect("answered");
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text().await.expect("html").contains("swagger"),
        "the vendored Swagger UI is served"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_keeps_conflicting_is_retried_a_bounded_number_of_times_then_answered_409() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    // Every append of a Project event now fails as a concurrent writer's would: a unique
    // violation inside the append transaction. Each attempt is counted.
    sqlx::raw_sql(
        "CREATE SEQUENCE conflict_attempts;
         CREATE FUNCTION always_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM nextval('conflict_attempts'); -- sequences ignore the rollback
             RAISE unique_violation USING MESSAGE = 'simulated concurrent append';
         END $$;
         CREATE TRIGGER always_conflict BEFORE INSERT ON events FOR EACH ROW
             WHEN (NEW.aggregate_type = 'Project') EXECUTE FUNCTION always_conflict();",
    )
    .execute(&app.db.postgres().pool)
    .await
    .expect("install the trigger");

    let response = app
        .request(
            Method::POST,
            "/api/v1/projects",
            Some(&ada.access_token),
            Some(json!({"name": "Contended"})),
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(body(response).await["code"], "concurrent_modification");
    let attempts: i64 = sqlx::query_scalar("SELECT last_value FROM conflict_attempts")
        .fetch_one(&app.db.postgres().pool)
        .await
        .expect("n");
    assert_eq!(
        attempts,
        i64::from(keyframe_eventlog::commands::DEFAULT_MAX_ATTEMPTS),
        "retried, but not forever"
    );
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Project'")
        .fetch_one(&app.db.postgres().pool)
        .await
        .expect("count");
    assert_eq!(written, 0, "nothing half-written");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_turns_503_when_nats_goes_away() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let mut nats = keyframe_tests::NatsServerProcess::start(None).await;
    let db = keyframe_tests::TestDatabase::create().await;
    let nats_args = keyframe::config::NatsArgs {
        nats_url: Some(nats.url.clone()),
        nats_user: None,
        nats_password: None,
        nats_creds: None,
        nats_prefix: "kfready".to_owned(),
    };
    let config = keyframe::app::AppConfig {
        database: keyframe::database::DatabaseTarget::Postgres(db.url.clone()),
        db_max_connections: 5,
        nats: Some(nats_args),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        components: vec![keyframe::config::Component::Api],
        api: keyframe_tests::test_api_settings(),
        jobs: keyframe_tests::test_coordinator_settings(),
        billing: Default::default(),
        workers: None,
    };
    let app = keyframe::app::Application::build(config).await.expect("starts");
    let ready = format!("http://{}/health/ready", app.local_addr().expect("api"));
    let http = keyframe_tests::http_client();
    assert_eq!(http.get(&ready).send().await.expect("answered").status(), 200);

    nats.kill();
    keyframe_tests::wait_for(
        "readiness to report NATS down",
        std::time::Duration::from_secs(10),
        || async {
            let response = http.get(&ready).send().await.expect("answered");
            response.status() == 503 && body(response).await["checks"]["nats"] == "down"
        },
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_cut_by_the_database_answer_503_and_the_service_heals_without_a_500() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = TestApp::builder()
        .components(vec![keyframe::config::Component::Api])
        .spawn()
        .await;
    let ada = app.register_and_login("ada@example.com").await;
    // Warm the pool with several connections, then cut every one of them, as a Postgres restart
    // or a network blip would.
    let warm: Vec<_> = (0..8)
        .map(|i| {
            app.request(
                Method::POST,
                "/api/v1/projects",
                Some(&ada.access_token),
                Some(json!({"name": format!("Warm {i}")})),
            )
        })
        .collect();
    for response in futures::future::join_all(warm).await {
        assert_eq!(response.status(), 201);
    }
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&app.db.postgres().pool)
    .await
    .expect("terminate");
    assert!(cut > 0, "the service's connections were cut");

    let mut statuses = Vec::new();
    for i in 0..30 {
        let response = app
            .request(
                Method::POST,
                "/api/v1/projects",
                Some(&ada.access_token),
                Some(json!({"name": format!("After {i}")})),
            )
            .await;
        let status = response.status().as_u16();
        if status == 503 {
            assert_eq!(body(response).await["code"], "unavailable");
        }
        statuses.push(status);
    }
    assert!(statuses.iter().all(|s| [201, 503].contains(s)), "{statuses:?}");
    assert!(
        statuses.contains(&503),
        "the cut connections were handed out and answered 503: {statuses:?}"
    );
    assert!(statuses[20..].iter().all(|s| *s == 201), "healed: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_a_test_causes_is_seen_by_the_openapi_check() {
    let app = TestApp::spawn().await;
    let refused = app.request(reqwest::Method::GET, "/api/v1/projects", None, None).await;
    assert_eq!(refused.status(), 401);
    let bad_id = app
        .request(reqwest::Method::GET, "/api/v1/jobs/not-a-uuid", Some("x"), None)
        .await;
    assert_eq!(bad_id.status(), 401, "the token is checked before the path");
    let seen = app.contract.answers();
    let routes: Vec<(String, u16)> = seen.iter().map(|a| (a.route.clone(), a.status.as_u16())).collect();
    assert!(routes.contains(&("/api/v1/projects".to_owned(), 401)), "{routes:?}");
    assert!(routes.contains(&("/api/v1/jobs/{id}".to_owned(), 401)), "{routes:?}");
    assert!(
        seen.iter()
            .all(|answer| answer.media_type.as_deref() == Some("application/problem+json")),
        "{seen:?}"
    );
    assert_eq!(app.contract.violations(), Vec::<String>::new());
}
