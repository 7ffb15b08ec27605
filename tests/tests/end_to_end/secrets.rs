//! The secrets a user hands Keyframe: the TOTP second factor (setup, enable, the two-step login,
//! no code accepted twice, disable) and third-party API keys (stored sealed, shown by their last
//! four characters); and a scan of the whole event store after all of it for anything secret
//! in clear.

use keyframe_tests::{TestApp, TestUser};
use reqwest::Method;
use serde_json::{Value, json};
use totp_rs::TOTP;

const STEP: u64 = 30;

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970")
}

/// Sets up and enables TOTP for `user` with the current code; answers the authenticator, the
/// secret as shown, and the code that enabled it.
async fn enable_totp(app: &TestApp, user: &TestUser) -> (TOTP, String, String) {
    let setup = |password: &str| {
        app.request(
            Method::POST,
            "/api/v1/auth/2fa/setup",
            Some(&user.access_token),
            Some(json!({"password": password})),
        )
    };
    // A stolen access token alone cannot set up a second factor.
    assert_eq!(setup("not the password at all").await.status(), 422);
    let setup = setup(&user.password).await;
    assert_eq!(setup.status(), 200);
    let setup = body(setup).await;
    let url = setup["otpauth_url"].as_str().expect("url");
    assert!(url.starts_with("otpauth://totp/Keyframe:"), "{url}");
    let totp = TOTP::from_url(url).expect("an otpauth URL");
    assert_eq!(totp.get_secret_base32(), setup["secret"].as_str().expect("secret"));
    let code = totp.generate(now());
    let enable = app
        .request(
            Method::POST,
            "/api/v1/auth/2fa/enable",
            Some(&user.access_token),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(enable.status(), 204);
    (totp, setup["secret"].as_str().expect("secret").to_owned(), code)
}

async fn password_step(app: &TestApp, user: &TestUser) -> String {
    let first = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": user.email, "password": user.password})),
        )
        .await;
    assert_eq!(first.status(), 200);
    let challenge = body(first).await;
    assert_eq!(challenge["mfa_required"], true);
    assert!(
        challenge.get("access_token").is_none(),
        "no session before the second factor"
    );
    challenge["mfa_token"].as_str().expect("mfa token").to_owned()
}

async fn code_step(app: &TestApp, mfa_token: &str, code: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        "/api/v1/auth/login/totp",
        None,
        Some(json!({"mfa_token": mfa_token, "code": code})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn with_totp_on_a_login_needs_a_code_and_no_code_works_twice() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let (totp, _, enabling_code) = enable_totp(&app, &ada).await;
    // The code that enabled it is spent already.
    let mfa_token = password_step(&app, &ada).await;
    let replayed_enable = code_step(&app, &mfa_token, &enabling_code).await;
    assert_eq!(replayed_enable.status(), 401);
    assert_eq!(body(replayed_enable).await["code"], "totp_code_reused");

    let wrong = code_step(&app, &mfa_token, "000000").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(body(wrong).await["code"], "invalid_totp_code");
    let forged = code_step(&app, "not-a-token", &totp.generate(now() + STEP)).await;
    assert_eq!(body(forged).await["code"], "invalid_mfa_token");
    // The mfa token is no access token.
    let as_access = app
        .request(Method::GET, "/api/v1/auth/me", Some(&mfa_token), None)
        .await;
    assert_eq!(as_access.status(), 401);

    // The next step's code (within the allowed skew) logs in, once.
    let next = totp.generate(now() + STEP);
    let pair = code_step(&app, &mfa_token, &next).await;
    assert_eq!(pair.status(), 200);
    let pair = body(pair).await;
    let me = app
        .request(Method::GET, "/api/v1/auth/me", pair["access_token"].as_str(), None)
        .await;
    assert_eq!(me.status(), 200);
    let again = code_step(&app, &password_step(&app, &ada).await, &next).await;
    assert_eq!(again.status(), 401);
    assert_eq!(body(again).await["code"], "totp_code_reused");

    let settings = body(
        app.request(Method::GET, "/api/v1/settings", Some(&ada.access_token), None)
            .await,
    )
    .await;
    assert_eq!(settings["two_factor_enabled"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_totp_needs_a_fresh_code_and_then_a_password_is_enough_again() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let (totp, _, _) = enable_totp(&app, &ada).await;
    let disable = |code: String| {
        app.request(
            Method::POST,
            "/api/v1/auth/2fa/disable",
            Some(&ada.access_token),
            Some(json!({"code": code})),
        )
    };
    let wrong = disable("123456".to_owned()).await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(body(wrong).await["code"], "invalid_totp_code");
    assert_eq!(disable(totp.generate(now() + STEP)).await.status(), 204);
    let login = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": ada.email, "password": ada.password})),
        )
        .await;
    assert_eq!(login.status(), 200);
    assert!(body(login).await["access_token"].is_string());
    let off = disable(totp.generate(now() + STEP)).await;
    assert_eq!(off.status(), 409);
    assert_eq!(body(off).await["code"], "totp_not_enabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_are_stored_sealed_and_shown_only_by_their_last_four_characters() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let bob = app.register_and_login("bob@example.com").await;
    let key = "sk-live-0123456789abcdefWXYZ";
    let app = &app;
    let put = |token: String, provider: &str, api_key: &str| {
        let path = format!("/api/v1/settings/api-keys/{provider}");
        let payload = json!({"api_key": api_key});
        async move { app.request(Method::PUT, &path, Some(&token), Some(payload)).await }
    };
    let stored = put(ada.access_token.clone(), "openai", key).await;
    assert_eq!(stored.status(), 200);
    let stored = stored.text().await.expect("text");
    assert!(!stored.contains("0123456789"), "{stored}");
    let stored: Value = serde_json::from_str(&stored).expect("json");
    assert_eq!(
        (stored["provider"].as_str(), stored["last4"].as_str()),
        (Some("openai"), Some("WXYZ"))
    );

    let settings = app
        .request(Method::GET, "/api/v1/settings", Some(&ada.access_token), None)
        .await
        .text()
        .await
        .expect("text");
    assert!(!settings.contains("0123456789"));
    let settings: Value = serde_json::from_str(&settings).expect("json");
    assert_eq!(settings["api_keys"][0]["last4"], "WXYZ");
    let bobs = body(
        app.request(Method::GET, "/api/v1/settings", Some(&bob.access_token), None)
            .await,
    )
    .await;
    assert_eq!(bobs["api_keys"], json!([]), "another user sees none of them");

    let bad_provider = put(ada.access_token.clone(), "Open%20AI", key).await;
    assert_eq!(bad_provider.status(), 422);
    let short = put(ada.access_token.clone(), "openai", "short").await;
    assert_eq!(short.status(), 422);
    let replaced = body(put(ada.access_token.clone(), "openai", "sk-live-another-key-7777").await).await;
    assert_eq!(replaced["last4"], "7777");

    let delete = |token: String| async move {
        app.request(Method::DELETE, "/api/v1/settings/api-keys/openai", Some(&token), None)
            .await
    };
    assert_eq!(
        delete(bob.access_token.clone()).await.status(),
        404,
        "bob has none to delete"
    );
    assert_eq!(delete(ada.access_token.clone()).await.status(), 204);
    assert_eq!(delete(ada.access_token.clone()).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_every_flow_no_password_token_code_secret_or_api_key_is_in_the_event_store() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let mut secrets = vec![
        ada.password.clone(),
        ada.access_token.clone(),
        ada.refresh_token.clone(),
    ];

    let refreshed = body(
        app.request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await,
    )
    .await;
    secrets.push(refreshed["refresh_token"].as_str().expect("refresh").to_owned());
    secrets.push(refreshed["access_token"].as_str().expect("access").to_owned());

    let api_key = "sk-live-scan-me-if-you-can-0000";
    let put = app
        .request(
            Method::PUT,
            "/api/v1/settings/api-keys/replicate",
            Some(&ada.access_token),
            Some(json!({"api_key": api_key})),
        )
        .await;
    assert_eq!(put.status(), 200);
    secrets.push(api_key.to_owned());

    let (totp, secret, _) = enable_totp(&app, &ada).await;
    secrets.push(secret);
    let mfa_token = password_step(&app, &ada).await;
    let code = totp.generate(now() + STEP);
    assert_eq!(code_step(&app, &mfa_token, &code).await.status(), 200);
    secrets.push(mfa_token);

    let reset = app
        .request(
            Method::POST,
            "/api/v1/auth/password-reset/request",
            None,
            Some(json!({"email": ada.email})),
        )
        .await;
    assert_eq!(reset.status(), 202);
    let mail = app.mail.wait_for(&ada.email, "Reset your Keyframe password", 1).await;
    let new_password = "lantern meadow cobalt drift";
    let confirm = app
        .request(
            Method::POST,
            "/api/v1/auth/password-reset/confirm",
            None,
            Some(json!({"token": mail.token(), "new_password": new_password})),
        )
        .await;
    assert_eq!(confirm.status(), 200);
    secrets.push(mail.token());
    secrets.push(new_password.to_owned());
    for mail in app.mail.to(&ada.email) {
        secrets.push(mail.token());
    }

    let events = app.db.all_events().await;
    let kinds: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    for expected in [
        "EmailVerified",
        "ApiKeyStored",
        "TotpEnabled",
        "TotpCodeAccepted",
        "PasswordReset",
    ] {
        assert!(kinds.contains(&expected), "the flow wrote {expected}");
    }
    // Every payload and every metadata value, as the store holds them.
    let everything = app
        .db
        .all_events()
        .await
        .iter()
        .map(|event| {
            let metadata = serde_json::to_string(&event.metadata).expect("JSON");
            format!("{}{metadata}", event.payload.get())
        })
        .collect::<Vec<_>>()
        .join("\n");
    for secret in &secrets {
        assert!(secret.len() >= 6);
        assert!(
            !everything.contains(secret.as_str()),
            "found a secret in clear in the event store"
        );
        // Nor the random part of an opaque token alone.
        if let Some((_, random)) = secret.split_once('.') {
            assert!(!everything.contains(random), "found part of a token in clear");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_totp_codes_count_towards_the_lockout_and_the_password_step_does_not_clear_them() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let (totp, _, _) = enable_totp(&app, &ada).await;
    // Setting up took one wrong password already (see enable_totp): four wrong codes more, split
    // over two password steps, reach the threshold of five.
    for _ in 0..2 {
        let mfa_token = password_step(&app, &ada).await;
        for _ in 0..2 {
            let wrong = code_step(&app, &mfa_token, "000000").await;
            assert_eq!(wrong.status(), 401);
        }
    }
    keyframe_tests::wait_for("the lockout", std::time::Duration::from_secs(10), || async {
        app.db
            .all_events()
            .await
            .iter()
            .any(|event| event.event_type == "AccountLocked")
    })
    .await;
    let refused = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": ada.email, "password": ada.password})),
        )
        .await;
    assert_eq!(refused.status(), 401, "locked: even the right password is refused");
    let disable = app
        .request(
            Method::POST,
            "/api/v1/auth/2fa/disable",
            Some(&ada.access_token),
            Some(json!({"code": totp.generate(now() + STEP)})),
        )
        .await;
    assert_eq!(disable.status(), 403);
    assert_eq!(body(disable).await["code"], "account_locked");
}
