//! Sessions and access tokens end to end: refresh-token families with reuse detection, revoking
//! one session or all of them, how fast a revoked session's access tokens stop working (here
//! and in another API process), and the access-token attack matrix.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyframe_tests::{TestApp, TestUser, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": token})),
    )
    .await
}

/// Logs `user` in once more, from a client calling itself `agent`; the token pair, with the
/// position of the new session in the log under `"position"`.
async fn login_again(app: &TestApp, user: &TestUser, agent: &str) -> Value {
    let response = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base_url))
        .header("user-agent", agent)
        .json(&json!({"email": user.email, "password": user.password}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let position = response.headers()["x-keyframe-position"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let mut pair = body(response).await;
    pair["position"] = json!(position);
    pair
}

fn session_of(access_token: &str) -> String {
    let claims = access_token.split('.').nth(1).expect("claims");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64")).expect("json");
    claims["sid"].as_str().expect("sid").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_with_a_used_token_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let first = refresh(&app, &ada.refresh_token).await;
    assert_eq!(first.status(), 200);
    let pair = body(first).await;
    let current_refresh = pair["refresh_token"].as_str().expect("refresh").to_owned();
    let current_access = pair["access_token"].as_str().expect("access").to_owned();

    // The token from the login was traded in; presenting it again means it leaked.
    let replayed = refresh(&app, &ada.refresh_token).await;
    assert_eq!(replayed.status(), 401);
    assert_eq!(body(replayed).await["code"], "refresh_token_reused");

    // The whole family is gone: the newest refresh token and every access token of it.
    let legitimate = refresh(&app, &current_refresh).await;
    assert_eq!(legitimate.status(), 401, "the family's newest token is revoked too");
    for token in [&ada.access_token, &current_access] {
        let me = app.request(Method::GET, "/api/v1/auth/me", Some(token), None).await;
        assert_eq!(me.status(), 401);
        assert_eq!(body(me).await["code"], "session_ended");
    }

    // The reuse is on the record, and why the session ended.
    let session = session_of(&ada.access_token);
    let events: Vec<(String, Value)> = app
        .db
        .all_events()
        .await
        .into_iter()
        .filter(|event| event.aggregate_id == session)
        .map(|event| {
            (
                event.event_type,
                serde_json::from_str(event.payload.get()).expect("json"),
            )
        })
        .collect();
    let types: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        types,
        [
            "SessionStarted",
            "RefreshTokenRotated",
            "RefreshTokenReuseDetected",
            "SessionEnded"
        ]
    );
    assert_eq!(events[3].1["SessionEnded"]["reason"], "refresh_token_reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_the_family_never_had_is_refused_without_revoking_it() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let session = session_of(&ada.access_token);
    let forged = refresh(&app, &format!("{session}.bm90LXRoZS10b2tlbg")).await;
    assert_eq!(forged.status(), 401);
    assert_eq!(body(forged).await["code"], "invalid_refresh_token");
    assert_eq!(
        refresh(&app, &ada.refresh_token).await.status(),
        200,
        "the real token still works"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_sessions_access_token_is_refused_at_once_here_and_within_a_second_elsewhere() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = TestApp::spawn().await;
    let other_process = app.sibling().spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let phone = login_again(&app, &ada, "phone").await;
    let phone_access = phone["access_token"].as_str().expect("access").to_owned();
    let me_elsewhere = || {
        app.http
            .get(format!("{}/api/v1/auth/me", other_process.base_url))
            .bearer_auth(&phone_access)
            .send()
    };
    // The other process has seen the session live, so it holds that answer for a while.
    assert_eq!(me_elsewhere().await.expect("answered").status(), 200);

    let revoke = app
        .request(
            Method::DELETE,
            &format!("/api/v1/auth/sessions/{}", session_of(&phone_access)),
            Some(&ada.access_token),
            None,
        )
        .await;
    assert_eq!(revoke.status(), 204);
    let revoked_at = Instant::now();
    let here = app
        .request(Method::GET, "/api/v1/auth/me", Some(&phone_access), None)
        .await;
    assert_eq!(here.status(), 401, "refused at once by the process that revoked it");

    wait_for(
        "the other process to refuse the token",
        Duration::from_secs(1),
        || async { me_elsewhere().await.expect("answered").status() == 401 },
    )
    .await;
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    let still = app
        .request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
        .await;
    assert_eq!(still.status(), 200, "the session that revoked the other one stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sessions_list_shows_each_device_and_which_one_is_asking() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let laptop = login_again(&app, &ada, "laptop-browser/1.0").await;
    let laptop_access = laptop["access_token"].as_str().expect("access");
    let bob = app.register_and_login("bob@example.com").await;

    // Read-your-writes: the list waits until it holds the laptop's login.
    let listed = app
        .http
        .get(format!("{}/api/v1/auth/sessions", app.base_url))
        .bearer_auth(laptop_access)
        .header(
            "x-keyframe-min-position",
            laptop["position"].as_str().expect("position"),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(listed.status(), 200);
    assert!(listed.headers().get("x-keyframe-consistent").is_none());
    let listed = body(listed).await;
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{listed}");
    let current: Vec<&Value> = items.iter().filter(|item| item["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], session_of(laptop_access).as_str());
    assert_eq!(current[0]["device"], "laptop-browser/1.0");
    assert_eq!(current[0]["ip"], "127.0.0.1");
    assert!(current[0]["created_at"].is_string() && current[0]["last_used_at"].is_string());
    assert_eq!(listed["next_cursor"], Value::Null);

    // Another user's session is not there, and cannot be revoked: 404, as if it did not exist.
    let bobs = session_of(&bob.access_token);
    assert!(items.iter().all(|item| item["id"] != bobs.as_str()));
    let foreign = app
        .request(
            Method::DELETE,
            &format!("/api/v1/auth/sessions/{bobs}"),
            Some(laptop_access),
            None,
        )
        .await;
    assert_eq!(foreign.status(), 404);
    let bob_me = app
        .request(Method::GET, "/api/v1/auth/me", Some(&bob.access_token), None)
        .await;
    assert_eq!(bob_me.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_ends_every_session_of_the_user_and_no_one_elses() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let tablet = login_again(&app, &ada, "tablet").await;
    let bob = app.register_and_login("bob@example.com").await;
    // Logout-all reads the sessions from the read model: wait until it holds both.
    app.wait_for_sessions_projected(&ada.id, 2).await;

    let out = app
        .request(Method::POST, "/api/v1/auth/logout-all", Some(&ada.access_token), None)
        .await;
    assert_eq!(out.status(), 204);
    let tablet_access = tablet["access_token"].as_str().expect("access");
    let tablet_refresh = tablet["refresh_token"].as_str().expect("refresh");
    for token in [ada.access_token.as_str(), tablet_access] {
        let me = app.request(Method::GET, "/api/v1/auth/me", Some(token), None).await;
        assert_eq!(me.status(), 401);
    }
    for token in [ada.refresh_token.as_str(), tablet_refresh] {
        assert_eq!(refresh(&app, token).await.status(), 401);
    }
    let bob_me = app
        .request(Method::GET, "/api/v1/auth/me", Some(&bob.access_token), None)
        .await;
    assert_eq!(bob_me.status(), 200, "another user's session is untouched");
}

/// The secret, issuer and audience of the test settings.
const SECRET: &[u8] = b"test-secret-test-secret-test-secret-0123";

fn sign(header: &Header, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).expect("encode")
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_expired_and_misused_tokens_are_all_refused_with_401() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": "keyframe", "aud": "keyframe-api", "sub": ada.id, "sid": session_of(&ada.access_token),
        "typ": "access", "iat": now, "exp": now + 600, "jti": uuid::Uuid::now_v7(),
    });
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    header.typ = Some("at+jwt".to_owned());
    let with = |field: &str, value: Value| {
        let mut changed = claims.clone();
        changed[field] = value;
        sign(&header, &changed, SECRET)
    };

    // The control: a token made this way by the test is accepted, so each refusal below is the
    // one broken property.
    let genuine = sign(&header, &claims, SECRET);
    let accepted = app.request(Method::GET, "/api/v1/projects", Some(&genuine), None).await;
    assert_eq!(accepted.status(), 200);

    let encoded_claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = json!(uuid::Uuid::now_v7());
    let genuine_parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        genuine_parts[0],
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        genuine_parts[2]
    );
    let mut unknown_kid = header.clone();
    unknown_kid.kid = Some("k9".to_owned());
    let mut no_kid = header.clone();
    no_kid.kid = None;
    let mut hs512 = header.clone();
    hs512.alg = Algorithm::HS512;
    let mut refresh_typ = header.clone();
    refresh_typ.typ = Some("JWT".to_owned());

    let attacks = [
        ("alg none", format!("{none_header}.{encoded_claims}.")),
        (
            "another key",
            sign(&header, &claims, b"not-the-secret-not-the-secret-0123456"),
        ),
        ("wrong aud", with("aud", json!("someone-else"))),
        ("wrong iss", with("iss", json!("evil"))),
        ("expired", with("exp", json!(now - 3600))),
        ("no exp", {
            let mut changed = claims.clone();
            changed.as_object_mut().expect("object").remove("exp");
            sign(&header, &changed, SECRET)
        }),
        ("claims typ refresh", with("typ", json!("refresh"))),
        ("header typ not at+jwt", sign(&refresh_typ, &claims, SECRET)),
        ("the refresh token itself", ada.refresh_token.clone()),
        ("tampered payload", tampered),
        ("unknown kid", sign(&unknown_kid, &claims, SECRET)),
        ("no kid", sign(&no_kid, &claims, SECRET)),
        ("HS512", sign(&hs512, &claims, SECRET)),
        (
            "a session that does not exist",
            with("sid", json!(uuid::Uuid::now_v7())),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (attack, token) in attacks {
        let response = app.request(Method::GET, "/api/v1/projects", Some(&token), None).await;
        assert_eq!(response.status(), 401, "{attack}");
        let problem = body(response).await;
        assert!(problem["code"].is_string(), "{attack}: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_and_a_password_change_end_sessions_the_sessions_list_never_saw() {
    // No projectors: the sessions list stays empty, as if its projector had stalled.
    let mut settings = keyframe_tests::test_api_settings();
    settings.read_your_writes_timeout = Duration::from_millis(200);
    let app = &TestApp::builder()
        .components(vec![
            keyframe::config::Component::Api,
            keyframe::config::Component::Relay,
        ])
        .settings(settings)
        .spawn()
        .await;
    let ada = app.register_and_login("ada@example.com").await;
    let laptop = login_again(app, &ada, "laptop").await;
    let phone = login_again(app, &ada, "phone").await;
    let token = |pair: &Value, field: &str| pair[field].as_str().expect("token").to_owned();
    let me = |access: String| async move {
        app.request(Method::GET, "/api/v1/auth/me", Some(&access), None)
            .await
            .status()
    };

    let change = app
        .request(
            Method::POST,
            "/api/v1/auth/me/password",
            Some(&token(&laptop, "access_token")),
            Some(json!({"current_password": ada.password, "new_password": "plum tractor whispers gently"})),
        )
        .await;
    assert_eq!(change.status(), 204);
    assert_eq!(
        me(token(&laptop, "access_token")).await,
        200,
        "the session that changed it stays"
    );
    assert_eq!(me(ada.access_token.clone()).await, 401);
    assert_eq!(me(token(&phone, "access_token")).await, 401);
    assert_eq!(refresh(app, &token(&phone, "refresh_token")).await.status(), 401);
    let refreshed = refresh(app, &token(&laptop, "refresh_token")).await;
    assert_eq!(refreshed.status(), 200, "and can still refresh");
    let laptop_access = token(&body(refreshed).await, "access_token");

    let out = app
        .request(Method::POST, "/api/v1/auth/logout-all", Some(&laptop_access), None)
        .await;
    assert_eq!(out.status(), 204);
    assert_eq!(me(laptop_access).await, 401);
}
