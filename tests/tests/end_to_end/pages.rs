//! The pages the mailed links open, end to end as a browser uses them: the link is taken from
//! the mail the test SMTP server received, opened with a GET, and its form sent back as
//! `application/x-www-form-urlencoded`. Covers e-mail verification and password reset, their
//! used, expired and incomplete links, a refused password, malformed bodies, escaping, the rate
//! limit, and the headers that keep the token in the URL to the page.

use keyframe::config::Component;
use keyframe_domain::values::PASSWORD_MIN_CHARS;
use keyframe_tests::smtp::ReceivedMail;
use keyframe_tests::{TestApp, test_api_settings};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "plum tractor whispers gently";
const VERIFICATION_MAIL: &str = "Confirm your e-mail";
const RESET_MAIL: &str = "Reset your Keyframe password";
/// A token of the right shape that no account holds.
const UNKNOWN_TOKEN: &str = "00000000-0000-0000-0000-000000000000.bm90LWEtcmVhbC1zZWNyZXQ";

/// A page as the browser received it.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    html: String,
}

impl Page {
    async fn of(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let html = response.text().await.expect("a body");
        Self { status, headers, html }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// The headers every page carries, and nothing that runs or loads from elsewhere.
    fn assert_safe(&self) {
        assert_eq!(self.header("content-type"), "text/html; charset=utf-8");
        assert_eq!(self.header("cache-control"), "no-store");
        assert_eq!(self.header("referrer-policy"), "no-referrer");
        assert_eq!(self.header("x-content-type-options"), "nosniff");
        let csp = self.header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "the CSP has {directive}: {csp}");
        }
        assert!(!self.html.contains("<script"), "no JavaScript: {}", self.html);
        assert!(!self.html.contains("://"), "no resource from elsewhere: {}", self.html);
        assert!(self.html.starts_with("<!doctype html>"), "{}", self.html);
    }

    /// The token is in the page once, as the value of the form's hidden input.
    fn assert_carries_only_in_the_form(&self, token: &str) {
        assert!(
            self.html
                .contains(&format!(r#"<input type="hidden" name="token" value="{token}">"#)),
            "{}",
            self.html
        );
        assert_eq!(self.html.matches(token).count(), 1, "{}", self.html);
    }
}

fn all_components() -> Vec<Component> {
    vec![Component::Api, Component::Relay, Component::Projectors]
}

/// The link in `mail` to `path`, as a path and query on the test's own server (the mail names
/// the configured public URL, which is not the test's port).
fn link(mail: &ReceivedMail, path: &str) -> String {
    let line = mail
        .body
        .lines()
        .find(|line| line.contains(&format!("{path}?token=")))
        .unwrap_or_else(|| panic!("no {path} link in the mail: {}", mail.body));
    let start = line.find(path).expect("the path is on the line");
    line[start..].trim().to_owned()
}

/// `GET path_and_query`, as following a link.
async fn open(app: &TestApp, path_and_query: &str) -> Page {
    let response = app
        .http
        .get(format!("{}{path_and_query}", app.base_url))
        .send()
        .await
        .expect("the page is answered");
    Page::of(response).await
}

/// Sends a form to `path`, as a browser does.
async fn submit(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Page {
    let response = app
        .http
        .post(format!("{}{path}", app.base_url))
        .form(fields)
        .send()
        .await
        .expect("the form is answered");
    Page::of(response).await
}

async fn register(app: &TestApp, email: &str) {
    let response = app
        .request(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(response.status(), 201);
}

async fn login(app: &TestApp, email: &str, password: &str) -> StatusCode {
    app.request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
    .status()
}

/// Asks for a reset mail for `email` and answers its token and link (the `count`-th such mail).
async fn reset_mail(app: &TestApp, email: &str, count: usize) -> (String, String) {
    let request = app
        .request(
            Method::POST,
            "/api/v1/auth/password-reset/request",
            None,
            Some(json!({"email": email})),
        )
        .await;
    assert_eq!(request.status(), 202);
    let mail = app.mail.wait_for(email, RESET_MAIL, count).await;
    (mail.token(), link(&mail, "/reset-password"))
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_the_verification_link_only_asks_and_the_posted_form_confirms_the_address() {
    let app = TestApp::spawn().await;
    register(&app, "ada@example.com").await;
    let mail = app.mail.wait_for("ada@example.com", VERIFICATION_MAIL, 1).await;
    let token = mail.token();
    let link = link(&mail, "/verify-email");
    assert_eq!(link, format!("/verify-email?token={token}"));

    // A mail scanner opens the link first, then the person does.
    for _ in 0..2 {
        let form = open(&app, &link).await;
        assert_eq!(form.status, 200);
        form.assert_safe();
        assert!(form.html.contains("Confirm your e-mail address"), "{}", form.html);
        assert!(
            form.html.contains(r#"<form method="post" action="/verify-email">"#),
            "{}",
            form.html
        );
        assert!(form.html.contains(r#"<button type="submit">"#), "{}", form.html);
        assert!(form.html.contains(r#"<html lang="en">"#), "{}", form.html);
        assert!(form.html.contains(r#"name="viewport""#), "{}", form.html);
        form.assert_carries_only_in_the_form(&token);
    }
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD).await,
        403,
        "opening the link confirmed nothing"
    );

    let confirmed = submit(&app, "/verify-email", &[("token", token.as_str())]).await;
    assert_eq!(confirmed.status, 200);
    confirmed.assert_safe();
    assert!(confirmed.html.contains("Address confirmed"), "{}", confirmed.html);
    assert!(!confirmed.html.contains(&token), "the answer does not repeat the token");
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_used_verification_link_says_it_no_longer_works_and_that_a_confirmed_address_needs_nothing_more() {
    let app = TestApp::spawn().await;
    register(&app, "ada@example.com").await;
    let token = app.mail.wait_for("ada@example.com", VERIFICATION_MAIL, 1).await.token();
    let first = submit(&app, "/verify-email", &[("token", token.as_str())]).await;
    assert_eq!(first.status, 200);

    let again = submit(&app, "/verify-email", &[("token", token.as_str())]).await;
    assert_eq!(again.status, 400);
    again.assert_safe();
    assert!(again.html.contains("This link no longer works"), "{}", again.html);
    assert!(again.html.contains("already confirmed"), "{}", again.html);
    assert!(
        again.html.contains("POST /api/v1/auth/resend-verification"),
        "{}",
        again.html
    );
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_verification_link_says_so_and_how_to_get_a_new_one() {
    let mut settings = test_api_settings();
    settings.email_verification_ttl = Duration::ZERO;
    let app = TestApp::builder()
        .components(all_components())
        .settings(settings)
        .spawn()
        .await;
    register(&app, "ada@example.com").await;
    let mail = app.mail.wait_for("ada@example.com", VERIFICATION_MAIL, 1).await;
    let token = mail.token();
    let form = open(&app, &link(&mail, "/verify-email")).await;
    assert_eq!(form.status, 200, "the link opens; only the form's answer tells");

    let expired = submit(&app, "/verify-email", &[("token", token.as_str())]).await;
    assert_eq!(expired.status, 400);
    expired.assert_safe();
    assert!(expired.html.contains("This link has expired"), "{}", expired.html);
    assert!(
        expired.html.contains("POST /api/v1/auth/resend-verification"),
        "{}",
        expired.html
    );
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await, 403, "still unverified");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reset_link_sets_the_new_password_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let ada = app.register_and_login("ada@example.com").await;
    let (token, link) = reset_mail(&app, "ada@example.com", 1).await;
    assert_eq!(link, format!("/reset-password?token={token}"));

    let form = open(&app, &link).await;
    assert_eq!(form.status, 200);
    form.assert_safe();
    assert!(form.html.contains("Choose a new password"), "{}", form.html);
    assert!(
        form.html.contains(r#"<form method="post" action="/reset-password">"#),
        "{}",
        form.html
    );
    for attribute in [
        r#"name="new_password""#.to_owned(),
        r#"type="password""#.to_owned(),
        r#"autocomplete="new-password""#.to_owned(),
        format!(r#"minlength="{PASSWORD_MIN_CHARS}""#),
    ] {
        assert!(form.html.contains(&attribute), "{attribute}: {}", form.html);
    }
    form.assert_carries_only_in_the_form(&token);
    let me = app
        .request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
        .await;
    assert_eq!(me.status(), 200, "opening the link ends nothing");

    let changed = submit(
        &app,
        "/reset-password",
        &[("token", token.as_str()), ("new_password", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(changed.status, 200);
    changed.assert_safe();
    assert!(
        changed
            .html
            .contains("Password changed. Every session of this account was ended; log in again with the new password."),
        "{}",
        changed.html
    );
    assert!(!changed.html.contains(NEW_PASSWORD), "the password is never shown");

    let me = app
        .request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
        .await;
    assert_eq!(me.status(), 401, "the session from before the reset is over");
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await, 401);
    assert_eq!(login(&app, "ada@example.com", NEW_PASSWORD).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_password_shows_the_form_again_with_the_reason_and_the_link_still_works() {
    let app = TestApp::spawn().await;
    app.register_and_login("lovelace@example.com").await;
    let (token, _) = reset_mail(&app, "lovelace@example.com", 1).await;

    let short = submit(
        &app,
        "/reset-password",
        &[("token", token.as_str()), ("new_password", "tiny-pw-42")],
    )
    .await;
    assert_eq!(short.status, 422);
    short.assert_safe();
    assert!(
        short
            .html
            .contains(&format!("must be at least {PASSWORD_MIN_CHARS} characters")),
        "{}",
        short.html
    );
    assert!(
        short.html.contains(r#"type="password""#),
        "the form again: {}",
        short.html
    );
    assert!(short.html.contains(r#"aria-invalid="true""#), "{}", short.html);
    assert!(!short.html.contains("tiny-pw-42"), "the password is never echoed");
    short.assert_carries_only_in_the_form(&token);

    // The policy's message quotes the refused word: it reaches the page escaped.
    let personal = submit(
        &app,
        "/reset-password",
        &[
            ("token", token.as_str()),
            ("new_password", "purple lovelace rides a bicycle"),
        ],
    )
    .await;
    assert_eq!(personal.status, 422);
    assert!(
        personal.html.contains("must not contain &quot;lovelace&quot;"),
        "{}",
        personal.html
    );
    assert!(!personal.html.contains("\"lovelace\""), "{}", personal.html);
    personal.assert_carries_only_in_the_form(&token);

    let changed = submit(
        &app,
        "/reset-password",
        &[("token", token.as_str()), ("new_password", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(
        changed.status, 200,
        "the refusals left the link unspent: {}",
        changed.html
    );
    assert_eq!(login(&app, "lovelace@example.com", NEW_PASSWORD).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_used_reset_link_says_it_no_longer_works_and_how_to_ask_for_a_new_one() {
    let app = TestApp::spawn().await;
    app.register_and_login("ada@example.com").await;
    let (token, _) = reset_mail(&app, "ada@example.com", 1).await;
    let changed = submit(
        &app,
        "/reset-password",
        &[("token", token.as_str()), ("new_password", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(changed.status, 200);

    let again = submit(
        &app,
        "/reset-password",
        &[
            ("token", token.as_str()),
            ("new_password", "another fine passphrase here"),
        ],
    )
    .await;
    assert_eq!(again.status, 400);
    again.assert_safe();
    assert!(again.html.contains("This link no longer works"), "{}", again.html);
    assert!(
        again.html.contains("POST /api/v1/auth/password-reset/request"),
        "{}",
        again.html
    );
    assert_eq!(
        login(&app, "ada@example.com", NEW_PASSWORD).await,
        200,
        "the used link changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_reset_link_says_so_and_leaves_the_password_as_it_was() {
    let mut settings = test_api_settings();
    settings.password_reset_ttl = Duration::ZERO;
    let app = TestApp::builder()
        .components(all_components())
        .settings(settings)
        .spawn()
        .await;
    app.register_and_login("ada@example.com").await;
    let (token, _) = reset_mail(&app, "ada@example.com", 1).await;

    let expired = submit(
        &app,
        "/reset-password",
        &[("token", token.as_str()), ("new_password", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(expired.status, 400);
    expired.assert_safe();
    assert!(expired.html.contains("This link has expired"), "{}", expired.html);
    assert!(expired.html.contains("Your password is unchanged."), "{}", expired.html);
    assert!(
        expired.html.contains("POST /api/v1/auth/password-reset/request"),
        "{}",
        expired.html
    );
    assert_eq!(login(&app, "ada@example.com", PASSWORD).await, 200);
    assert_eq!(login(&app, "ada@example.com", NEW_PASSWORD).await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_without_its_whole_token_explains_that_it_is_incomplete() {
    let app = TestApp::spawn().await;
    for path in [
        "/verify-email",
        "/verify-email?token=",
        "/reset-password?token=",
        "/reset-password?token=00000000-0000-0000",
    ] {
        let page = open(&app, path).await;
        assert_eq!(page.status, 400, "{path}");
        page.assert_safe();
        assert!(page.html.contains("This link is incomplete"), "{path}: {}", page.html);
        assert!(!page.html.contains("<form"), "{path}: nothing to send");
    }
    let empty = submit(&app, "/verify-email", &[("token", "")]).await;
    assert_eq!(empty.status, 400);
    assert!(empty.html.contains("This link is incomplete"), "{}", empty.html);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_the_form_is_answered_with_a_page_not_an_error() {
    let app = TestApp::spawn().await;
    for (path, content_type, body) in [
        ("/verify-email", "application/json", r#"{"token": "x.y"}"#),
        ("/reset-password", "text/plain", "token=x.y&new_password=z"),
    ] {
        let response = app
            .http
            .post(format!("{}{path}", app.base_url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("answered");
        let page = Page::of(response).await;
        assert_eq!(page.status, 400, "{path} with {content_type}");
        page.assert_safe();
        assert!(page.html.contains("The form could not be read"), "{}", page.html);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn text_from_the_link_is_escaped_into_the_page() {
    let app = TestApp::spawn().await;
    let page = open(
        &app,
        "/verify-email?token=00000000-0000-0000-0000-000000000000.%3Cb%3E%22x%27%26",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.html
            .contains(r#"value="00000000-0000-0000-0000-000000000000.&lt;b&gt;&quot;x&#x27;&amp;""#),
        "{}",
        page.html
    );
    assert!(!page.html.contains("<b>"), "{}", page.html);
}

#[tokio::test(flavor = "multi_thread")]
async fn sent_forms_count_against_the_client_address_and_the_limit_answers_with_a_page() {
    let mut settings = test_api_settings();
    settings.rate_limits.auth_per_ip_per_minute = 3;
    let app = TestApp::builder()
        .components(all_components())
        .settings(settings)
        .spawn()
        .await;
    for _ in 0..5 {
        let page = open(&app, &format!("/verify-email?token={UNKNOWN_TOKEN}")).await;
        assert_eq!(page.status, 200, "opening a link is not counted");
    }
    for _ in 0..3 {
        let page = submit(&app, "/verify-email", &[("token", UNKNOWN_TOKEN)]).await;
        assert_eq!(page.status, 400);
        assert!(page.html.contains("This link no longer works"), "{}", page.html);
    }
    let limited = submit(
        &app,
        "/reset-password",
        &[("token", UNKNOWN_TOKEN), ("new_password", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(limited.status, 429);
    limited.assert_safe();
    assert!(limited.html.contains("Too many attempts"), "{}", limited.html);
    assert!(!limited.header("retry-after").is_empty(), "says when to try again");
}
