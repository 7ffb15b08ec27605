//! Protection at the edge: rate limits per client address, per account and per user (429 with
//! `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` fields), security headers, HSTS
//! behind TLS, and CORS for the configured origins only.

use keyframe::config::Component;
use keyframe_api::limits::RateLimitSettings;
use keyframe_api::settings::ApiSettings;
use keyframe_tests::{TestApp, test_api_settings};
use reqwest::Method;
use serde_json::{Value, json};

fn components() -> Vec<Component> {
    vec![Component::Api, Component::Relay, Component::Projectors]
}

fn limited(limits: RateLimitSettings) -> ApiSettings {
    let mut settings = test_api_settings();
    settings.rate_limits = limits;
    settings
}

const GENEROUS: RateLimitSettings = RateLimitSettings {
    auth_per_ip_per_minute: 10_000,
    auth_per_account_per_15_minutes: 10_000,
    api_per_user_per_minute: 10_000,
    uploads_per_user_per_day: 10_000,
};

async fn wrong_login(app: &TestApp, email: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": "not the password at all"})),
    )
    .await
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Checks a 429: its problem, `Retry-After` within the window, and the two fields.
async fn assert_limited(response: reqwest::Response, policy: &str, quota: u32, window: u64) {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = header(&response, "retry-after").parse().expect("seconds");
    assert!((1..=window).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        header(&response, "ratelimit-policy"),
        format!("\"{policy}\";q={quota};w={window}")
    );
    assert_eq!(
        header(&response, "ratelimit"),
        format!("\"{policy}\";r=0;t={retry_after}")
    );
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auth_endpoints_are_limited_per_client_address() {
    let limits = RateLimitSettings {
        auth_per_ip_per_minute: 3,
        ..GENEROUS
    };
    let app = TestApp::builder()
        .components(components())
        .settings(limited(limits))
        .spawn()
        .await;
    for left in [2, 1, 0] {
        let response = wrong_login(&app, &format!("user{left}@example.com")).await;
        assert_eq!(response.status(), 401);
        assert!(header(&response, "ratelimit").starts_with(&format!("\"auth-ip\";r={left};t=")));
    }
    // Every endpoint used without a session counts against the same address.
    let register = app
        .request(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "new@example.com", "password": "tangerine orbit quietly sideways"})),
        )
        .await;
    assert_limited(register, "auth-ip", 3, 60).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_and_mail_requests_are_limited_per_account() {
    let limits = RateLimitSettings {
        auth_per_account_per_15_minutes: 2,
        ..GENEROUS
    };
    let app = TestApp::builder()
        .components(components())
        .settings(limited(limits))
        .spawn()
        .await;
    assert_eq!(wrong_login(&app, "ada@example.com").await.status(), 401);
    let reset = app
        .request(
            Method::POST,
            "/api/v1/auth/password-reset/request",
            None,
            Some(json!({"email": "ADA@example.com"})),
        )
        .await;
    assert_eq!(reset.status(), 202, "the same account, however it is written");
    assert_limited(wrong_login(&app, "ada@example.com").await, "auth-account", 2, 900).await;
    assert_eq!(
        wrong_login(&app, "bob@example.com").await.status(),
        401,
        "another account has its own count"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_limited_per_user() {
    let limits = RateLimitSettings {
        api_per_user_per_minute: 3,
        ..GENEROUS
    };
    let app = TestApp::builder()
        .components(components())
        .settings(limited(limits))
        .spawn()
        .await;
    let ada = app.register_and_login("ada@example.com").await;
    let bob = app.register_and_login("bob@example.com").await;
    for left in [2, 1, 0] {
        let response = app
            .request(Method::GET, "/api/v1/projects", Some(&ada.access_token), None)
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-policy"), "\"api-user\";q=3;w=60");
        assert!(header(&response, "ratelimit").starts_with(&format!("\"api-user\";r={left};t=")));
    }
    let over = app
        .request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
        .await;
    assert_limited(over, "api-user", 3, 60).await;
    let other = app
        .request(Method::GET, "/api/v1/projects", Some(&bob.access_token), None)
        .await;
    assert_eq!(other.status(), 200, "another user has their own count");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_carries_the_security_headers_and_api_answers_are_never_stored() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    for (path, token) in [
        ("/api/v1/projects", Some(ada.access_token.as_str())),
        ("/api/v1/projects", None),
        ("/health/live", None),
    ] {
        let response = app.request(Method::GET, path, token, None).await;
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "x-frame-options"), "DENY");
        assert!(header(&response, "content-security-policy").contains("frame-ancestors 'none'"));
        assert!(
            response.headers().get("strict-transport-security").is_none(),
            "no HSTS over plain HTTP"
        );
        if path.starts_with("/api/") {
            assert_eq!(header(&response, "cache-control"), "no-store", "{path}");
        }
    }
    // A JSON body over the limit is refused before it is read whole.
    let huge = json!({"name": "x".repeat(100 * 1024)});
    let refused = app
        .request(Method::POST, "/api/v1/projects", Some(&ada.access_token), Some(huge))
        .await;
    assert_eq!(refused.status(), 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_tls_answers_carry_hsts_and_the_refresh_cookie_is_secure() {
    let mut settings = test_api_settings();
    settings.behind_tls = true;
    let app = TestApp::builder()
        .components(components())
        .settings(settings)
        .spawn()
        .await;
    app.register_and_login("ada@example.com").await;
    let login = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "ada@example.com", "password": "correct horse battery staple"})),
        )
        .await;
    assert!(header(&login, "strict-transport-security").starts_with("max-age=63072000"));
    assert!(header(&login, "set-cookie").contains("; Secure"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_answers_only_the_configured_origins() {
    let mut settings = test_api_settings();
    settings.cors_origins = vec!["https://app.example.com".to_owned()];
    let app = TestApp::builder()
        .components(components())
        .settings(settings)
        .spawn()
        .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, format!("{}/api/v1/projects", app.base_url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.expect("answered");
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        "https://app.example.com"
    );
    assert!(header(&allowed, "access-control-allow-methods").contains("POST"));
    assert_eq!(header(&allowed, "access-control-allow-credentials"), "true");
    let foreign = preflight("https://evil.example.com").await.expect("answered");
    assert!(foreign.headers().get("access-control-allow-origin").is_none());
}
