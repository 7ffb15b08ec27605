//! A first start with nothing prepared: the database is created when the role may create one
//! (and a role that may not is told what to do), and development secrets are generated once
//! into the data directory, so that a restart keeps tokens, sealed secrets and second factors
//! working.

use keyframe::cli::{Cli, Command};
use keyframe::config::Component;
use keyframe::database::connect_pool_creating_database;
use keyframe_api::settings::ApiSettings;
use keyframe_tests::{TestApp, admin_database_url};
use serde_json::{Value, json};
use sqlx::PgPool;
use totp_rs::TOTP;

/// A database name nobody uses, in the form the test sweeper removes should the test die.
fn unused_database() -> (String, String) {
    let name = format!(
        "kf_test_{}x{}",
        chrono::Utc::now().timestamp(),
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let base = admin_database_url();
    let url = format!("{}/{name}", &base[..base.rfind('/').expect("a path")]);
    (name, url)
}

async fn admin() -> PgPool {
    PgPool::connect(&admin_database_url())
        .await
        .expect("the admin database")
}

async fn database_exists(admin: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .expect("asked")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_start_creates_the_database_and_a_second_uses_it() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let admin = admin().await;
    let (name, url) = unused_database();
    assert!(!database_exists(&admin, &name).await);

    let pool = connect_pool_creating_database(&url, 2)
        .await
        .expect("created and connected");
    keyframe_database::schema::migrate(&pool.clone().into())
        .await
        .expect("migrated");
    assert!(database_exists(&admin, &name).await);
    pool.close().await;
    let again = connect_pool_creating_database(&url, 2).await.expect("connected again");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&again)
        .await
        .expect("the migrated events table");
    assert_eq!(events, 0);
    again.close().await;

    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .expect("dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_that_may_not_create_databases_is_told_what_to_do() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let admin = admin().await;
    let (name, url) = unused_database();
    let role = name.replacen("kf_test_", "kf_role_", 1);
    sqlx::query(&format!("CREATE ROLE {role} LOGIN NOCREATEDB"))
        .execute(&admin)
        .await
        .expect("role");
    let as_role = url.replacen("postgres@", &format!("{role}@"), 1);
    let refused = connect_pool_creating_database(&as_role, 2).await.expect_err("refused");
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&admin)
        .await
        .expect("role dropped");
    let message = format!("{refused:#}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("may not create databases"), "{message}");
    assert!(!database_exists(&admin, &name).await);
}

/// The API settings `keyframe serve` makes in development with no secret given, as a new
/// process would, over `data_dir`.
fn development_settings(data_dir: &std::path::Path) -> ApiSettings {
    let data_dir = data_dir.to_str().expect("a UTF-8 path");
    let cli = <Cli as clap::Parser>::try_parse_from([
        "keyframe",
        "serve",
        "--environment",
        "development",
        "--data-dir",
        data_dir,
        "--argon2-memory-kib",
        "1024",
        "--argon2-iterations",
        "1",
    ])
    .expect("parsed");
    let Command::Serve(serve) = cli.command else {
        panic!("not serve");
    };
    let mut settings = serve.api_settings().expect("development starts without secrets");
    settings.rate_limits = keyframe_tests::test_api_settings().rate_limits;
    settings
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_factor_and_a_token_still_work_after_a_restart_in_development() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let data_dir = std::env::temp_dir().join(format!("keyframe-first-start-{}", uuid::Uuid::now_v7().simple()));
    let mut app = TestApp::builder()
        .components(vec![Component::Api])
        .settings(development_settings(&data_dir))
        .spawn()
        .await;
    let ada = app.register_and_login("ada@example.com").await;
    let setup = app
        .request(
            reqwest::Method::POST,
            "/api/v1/auth/2fa/setup",
            Some(&ada.access_token),
            Some(json!({"password": ada.password})),
        )
        .await;
    assert_eq!(setup.status(), 200);
    let setup: Value = setup.json().await.expect("json");
    let totp = TOTP::from_url(setup["otpauth_url"].as_str().expect("url")).expect("otpauth");
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970");
    let enable = app
        .request(
            reqwest::Method::POST,
            "/api/v1/auth/2fa/enable",
            Some(&ada.access_token),
            Some(json!({"code": totp.generate(now)})),
        )
        .await;
    assert_eq!(enable.status(), 204);

    // A restart: a new process, which reads its secrets from the data directory again.
    app.stop().await;
    let restarted = app.sibling().settings(development_settings(&data_dir)).spawn().await;
    let post = |path: &str, body: Value| {
        app.http
            .post(format!("{}{path}", restarted.base_url))
            .json(&body)
            .send()
    };
    let me = app
        .http
        .get(format!("{}/api/v1/auth/me", restarted.base_url))
        .bearer_auth(&ada.access_token)
        .send()
        .await
        .expect("answered");
    assert_eq!(me.status(), 200, "the access token outlived the restart");
    let challenge: Value = post(
        "/api/v1/auth/login",
        json!({"email": ada.email, "password": ada.password}),
    )
    .await
    .expect("answered")
    .json()
    .await
    .expect("json");
    assert_eq!(challenge["mfa_required"], true, "{challenge}");
    let code = totp.generate(now + 30);
    let login = post(
        "/api/v1/auth/login/totp",
        json!({"mfa_token": challenge["mfa_token"], "code": code}),
    )
    .await
    .expect("answered");
    assert_eq!(login.status(), 200, "the sealed TOTP secret opens after the restart");
    std::fs::remove_dir_all(&data_dir).expect("cleaned up");
}
