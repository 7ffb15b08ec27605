//! Accounts end to end, with mail read from a real SMTP listener the way a user would: e-mail
//! verification, password reset, password change, profile, the password policy and lockout.

use keyframe::config::Component;
use keyframe_tests::{TestApp, test_api_settings, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "plum tractor whispers gently";

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

async fn post(app: &TestApp, path: &str, payload: Value) -> reqwest::Response {
    app.request(Method::POST, path, None, Some(payload)).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post(app, "/api/v1/auth/login", json!({"email": email, "password": password})).await
}

async fn register(app: &TestApp, email: &str) {
    let response = post(
        app,
        "/api/v1/auth/register",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), 201);
}

/// Asks for a reset mail for `email` (its first), and confirms it with [`NEW_PASSWORD`].
async fn reset_by_mail(app: &TestApp, email: &str) -> reqwest::Response {
    let request = post(app, "/api/v1/auth/password-reset/request", json!({"email": email})).await;
    assert_eq!(request.status(), 202);
    let mail = app.mail.wait_for(email, "Reset your Keyframe password", 1).await;
    post(
        app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": mail.token(), "new_password": NEW_PASSWORD}),
    )
    .await
}

fn all_components() -> Vec<Component> {
    vec![Component::Api, Component::Relay, Component::Projectors]
}

#[tokio::test(flavor = "multi_thread")]
async fn login_waits_until_the_address_is_verified_with_the_mailed_token_which_works_once() {
    let app = TestApp::spawn().await;
    register(&app, "ada@example.com").await;
    let refused = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(body(refused).await["code"], "email_not_verified");

    let mail = app.mail.wait_for("ada@example.com", "Confirm your e-mail", 1).await;
    assert!(mail.body.contains("/verify-email?token="), "{}", mail.body);
    let token = mail.token();
    let verified = post(&app, "/api/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(verified.status(), 200);
    assert_eq!(body(verified).await["email_verified"], true);
    let again = post(&app, "/api/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(again.status(), 400);
    assert_eq!(body(again).await["code"], "invalid_token");

    assert_eq!(login(&app, "ada@example.com", PASSWORD).await.status(), 200);
    let forged = post(&app, "/api/v1/auth/verify-email", json!({"token": "not-a-token"})).await;
    assert_eq!(body(forged).await["code"], "invalid_token");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resent_verification_mail_replaces_the_first_and_unknown_addresses_get_the_same_202() {
    let app = TestApp::spawn().await;
    register(&app, "ada@example.com").await;
    let first = app.mail.wait_for("ada@example.com", "Confirm your e-mail", 1).await;
    for email in ["ada@example.com", "nobody@example.com"] {
        let response = post(&app, "/api/v1/auth/resend-verification", json!({"email": email})).await;
        assert_eq!(response.status(), 202, "{email}");
    }
    let second = app.mail.wait_for("ada@example.com", "Confirm your e-mail", 2).await;
    assert_ne!(first.token(), second.token());
    let old = post(&app, "/api/v1/auth/verify-email", json!({"token": first.token()})).await;
    assert_eq!(body(old).await["code"], "invalid_token");
    let new = post(&app, "/api/v1/auth/verify-email", json!({"token": second.token()})).await;
    assert_eq!(new.status(), 200);
    assert!(app.mail.to("nobody@example.com").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_verification_or_reset_token_is_refused() {
    let mut settings = test_api_settings();
    settings.email_verification_ttl = Duration::ZERO;
    settings.password_reset_ttl = Duration::ZERO;
    let app = TestApp::builder()
        .components(all_components())
        .settings(settings)
        .spawn()
        .await;
    register(&app, "ada@example.com").await;
    let mail = app.mail.wait_for("ada@example.com", "Confirm your e-mail", 1).await;
    let expired = post(&app, "/api/v1/auth/verify-email", json!({"token": mail.token()})).await;
    assert_eq!(expired.status(), 400);
    assert_eq!(body(expired).await["code"], "token_expired");

    let confirm = reset_by_mail(&app, "ada@example.com").await;
    assert_eq!(confirm.status(), 400);
    assert_eq!(body(confirm).await["code"], "token_expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_works_once_sets_the_password_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    for email in ["nobody@example.com", "ada@example.com"] {
        let response = post(&app, "/api/v1/auth/password-reset/request", json!({"email": email})).await;
        assert_eq!(response.status(), 202, "the same answer for {email}");
        assert_eq!(response.content_length(), Some(0));
    }
    let mail = app
        .mail
        .wait_for("ada@example.com", "Reset your Keyframe password", 1)
        .await;
    let token = mail.token();

    let weak = post(
        &app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": token, "new_password": "passwordpassword"}),
    )
    .await;
    assert_eq!(weak.status(), 422, "the policy holds for resets too");
    let reset = post(
        &app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": token, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(reset.status(), 200);
    let reused = post(
        &app,
        "/api/v1/auth/password-reset/confirm",
        json!({"token": token, "new_password": "another fine passphrase here"}),
    )
    .await;
    assert_eq!(reused.status(), 400);
    assert_eq!(body(reused).await["code"], "invalid_token");

    let me = app
        .request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
        .await;
    assert_eq!(me.status(), 401, "the session from before the reset is over");
    let refresh = post(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": ada.refresh_token}),
    )
    .await;
    assert_eq!(refresh.status(), 401);
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await.status(), 401);
    assert_eq!(login(&app, "ada@example.com", NEW_PASSWORD).await.status(), 200);
    assert!(
        app.mail.to("nobody@example.com").is_empty(),
        "no mail for an address without an account"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_failed_logins_lock_the_account_even_for_the_right_password_and_a_reset_unlocks_it() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let mut answers = Vec::new();
    for (email, password) in [
        ("ada@example.com", "wrong password number one"),
        ("ada@example.com", "wrong password number two"),
        ("ada@example.com", "wrong password number three"),
        ("ada@example.com", "wrong password number four"),
        ("nobody@example.com", "wrong password for nobody"),
        ("ada@example.com", "wrong password number five"),
    ] {
        let response = login(&app, email, password).await;
        answers.push((response.status(), body(response).await));
    }
    for (status, problem) in &answers {
        assert_eq!(*status, 401);
        assert_eq!(problem["code"], "invalid_credentials");
        assert_eq!(
            problem["detail"], answers[0].1["detail"],
            "a wrong e-mail answers like a wrong password"
        );
    }
    wait_for("the lockout event", Duration::from_secs(10), || async {
        app.db
            .all_events()
            .await
            .iter()
            .any(|event| event.event_type == "AccountLocked")
    })
    .await;
    let events = app.db.all_events().await;
    let failed = events.iter().filter(|event| event.event_type == "LoginFailed").count();
    assert_eq!(failed, 5, "counted per account: the unknown address counts for no one");
    let locked = events
        .iter()
        .find(|event| event.event_type == "AccountLocked")
        .expect("locked");
    let locked: Value = serde_json::from_str(locked.payload.get()).expect("json");
    assert_eq!(locked["AccountLocked"]["failures"], 5);

    // Locked, even the right password answers like a wrong one: nothing tells the lock apart
    // from a miss, so it does not reveal that the address has an account.
    let right = login(&app, "ada@example.com", PASSWORD).await;
    assert_eq!(right.status(), 401);
    assert_eq!(body(right).await["detail"], answers[0].1["detail"]);

    let reset = reset_by_mail(&app, "ada@example.com").await;
    assert_eq!(reset.status(), 200);
    assert_eq!(
        login(&app, &ada.email, NEW_PASSWORD).await.status(),
        200,
        "the reset unlocked it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_login_clears_earlier_failures() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    for round in 0..2 {
        for attempt in 0..4 {
            let response = login(&app, &ada.email, &format!("wrong password {round} {attempt} xyz")).await;
            assert_eq!(response.status(), 401);
        }
        // Failures are counted in the background: wait until all four are, then succeed.
        let expected = 4 * (round + 1);
        wait_for("the failures to be counted", Duration::from_secs(10), || async {
            app.db
                .all_events()
                .await
                .iter()
                .filter(|event| event.event_type == "LoginFailed")
                .count()
                == expected
        })
        .await;
        assert_eq!(login(&app, &ada.email, PASSWORD).await.status(), 200, "round {round}");
    }
    let events = app.db.all_events().await;
    assert!(events.iter().all(|event| event.event_type != "AccountLocked"));
    assert_eq!(
        events
            .iter()
            .filter(|event| event.event_type == "FailedLoginsCleared")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_password_needs_the_current_one_and_ends_the_other_sessions() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let other = body(login(&app, &ada.email, PASSWORD).await).await;
    let other_access = other["access_token"].as_str().expect("access");
    // The change ends the other sessions through the sessions read model: let it hold both.
    app.wait_for_sessions_projected(&ada.id, 2).await;
    let change = |current: &str, new: &str| {
        app.request(
            Method::POST,
            "/api/v1/auth/me/password",
            Some(&ada.access_token),
            Some(json!({"current_password": current, "new_password": new})),
        )
    };
    let wrong = change("not my password at all", NEW_PASSWORD).await;
    assert_eq!(wrong.status(), 422);
    assert_eq!(body(wrong).await["errors"][0]["field"], "current_password");
    let weak = change(PASSWORD, "123456789012345").await;
    assert_eq!(weak.status(), 422);
    let problem = body(weak).await;
    assert_eq!(problem["errors"][0]["field"], "new_password");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("is too easy to guess")),
        "{problem}"
    );
    assert_eq!(change(PASSWORD, NEW_PASSWORD).await.status(), 204);

    let mine = app
        .request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
        .await;
    assert_eq!(mine.status(), 200, "the session that changed it stays");
    let theirs = app
        .request(Method::GET, "/api/v1/auth/me", Some(other_access), None)
        .await;
    assert_eq!(theirs.status(), 401, "every other session ends");
    assert_eq!(login(&app, &ada.email, PASSWORD).await.status(), 401);
    assert_eq!(login(&app, &ada.email, NEW_PASSWORD).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_profile_name_can_be_changed_and_removed() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let patch = |payload: Value| app.request(Method::PATCH, "/api/v1/auth/me", Some(&ada.access_token), Some(payload));
    let renamed = patch(json!({"full_name": "Ada King"})).await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(body(renamed).await["full_name"], "Ada King");
    let me = body(
        app.request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
            .await,
    )
    .await;
    assert_eq!(me["full_name"], "Ada King");
    let too_long = patch(json!({"full_name": "x".repeat(201)})).await;
    assert_eq!(too_long.status(), 422);
    let removed = patch(json!({"full_name": null})).await;
    assert_eq!(body(removed).await["full_name"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_common_password_is_refused_at_registration_with_the_reason() {
    let app = TestApp::spawn().await;
    let response = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "ada@example.com", "password": "passwordpassword"}),
    )
    .await;
    assert_eq!(response.status(), 422);
    let problem = body(response).await;
    assert_eq!(problem["errors"][0]["field"], "password");
    let message = problem["errors"][0]["message"].as_str().expect("message");
    assert!(message.starts_with("is too easy to guess: "), "{message}");
    // A long passphrase with no composition at all is fine (NIST: no composition rules).
    let fine = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "ada@example.com", "password": "tangerine orbit quietly sideways"}),
    )
    .await;
    assert_eq!(fine.status(), 201);
}
