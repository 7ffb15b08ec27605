//! Roles and administration end to end: the first administrator from configuration (made
//! idempotently), the admin endpoints, suspension and reactivation, and that a plain user gets
//! 403 on every admin route.

use keyframe::config::Component;
use keyframe_tests::{TestApp, TestUser, test_api_settings};
use reqwest::Method;
use serde_json::{Value, json};

const ROOT: &str = "root@example.com";
const ROOT_PASSWORD: &str = "granite harbour lamplight seven";

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

fn with_first_admin(email: &str) -> keyframe_api::settings::ApiSettings {
    with_first_admin_password(email, ROOT_PASSWORD)
}

fn with_first_admin_password(email: &str, password: &str) -> keyframe_api::settings::ApiSettings {
    let mut settings = test_api_settings();
    settings.first_admin = Some((email.to_owned(), password.to_owned()));
    settings
}

async fn spawn_with_root() -> TestApp {
    TestApp::builder()
        .components(vec![Component::Api, Component::Relay, Component::Projectors])
        .settings(with_first_admin(ROOT))
        .spawn()
        .await
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

async fn root_token(app: &TestApp) -> String {
    let response = login(app, ROOT, ROOT_PASSWORD).await;
    assert_eq!(
        response.status(),
        200,
        "the first admin logs in without a verification mail"
    );
    let pair = body(response).await;
    assert_eq!(pair["user"]["roles"], json!(["user", "admin"]));
    pair["access_token"].as_str().expect("access").to_owned()
}

fn count(events: &[keyframe_domain::log::RecordedEvent], kind: &str) -> usize {
    events.iter().filter(|event| event.event_type == kind).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_admin_comes_from_configuration_once_however_often_keyframe_starts() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = spawn_with_root().await;
    root_token(&app).await;
    // A second process with the same configuration changes nothing.
    let again = app.sibling().settings(with_first_admin(ROOT)).spawn().await;
    drop(again);
    let events = app.db.all_events().await;
    assert_eq!(count(&events, "UserRegistered"), 1);
    assert_eq!(count(&events, "EmailVerified"), 1);
    assert_eq!(count(&events, "RolesChanged"), 1);
    let registered = events
        .iter()
        .find(|e| e.event_type == "UserRegistered")
        .expect("registered");
    assert_eq!(registered.metadata["actor"], "system");

    // An existing account is promoted only with its own password and a verified address:
    // whoever registered the address first must not become an administrator.
    let bob = app.register_and_login("bob@example.com").await;
    let refused = app.sibling().settings(with_first_admin(&bob.email)).try_spawn().await;
    let refusal = format!("{:#}", refused.err().expect("refused to start"));
    assert!(refusal.contains("refusing to make it an administrator"), "{refusal}");
    let unverified = "mallory@example.com";
    let register = app
        .request(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": unverified, "password": ROOT_PASSWORD})),
        )
        .await;
    assert_eq!(register.status(), 201);
    assert!(
        app.sibling()
            .settings(with_first_admin(unverified))
            .try_spawn()
            .await
            .is_err()
    );
    let promoted = app
        .sibling()
        .settings(with_first_admin_password(&bob.email, &bob.password))
        .spawn()
        .await;
    drop(promoted);
    let relogin = body(login(&app, &bob.email, &bob.password).await).await;
    assert_eq!(relogin["user"]["roles"], json!(["user", "admin"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_user_gets_403_on_every_admin_route_and_no_token_gets_401() {
    let app = spawn_with_root().await;
    let ada = app.register_and_login("ada@example.com").await;
    let target = format!("/api/v1/admin/users/{}", ada.id);
    let routes = [
        (Method::GET, "/api/v1/admin/users".to_owned(), None),
        (Method::GET, target.clone(), None),
        (
            Method::PUT,
            format!("{target}/roles"),
            Some(json!({"roles": ["user", "admin"]})),
        ),
        (Method::POST, format!("{target}/suspend"), Some(json!({"reason": "x"}))),
        (Method::POST, format!("{target}/reactivate"), None),
        (Method::GET, "/api/v1/admin/stats".to_owned(), None),
    ];
    for (method, path, payload) in routes {
        let as_user = app
            .request(method.clone(), &path, Some(&ada.access_token), payload.clone())
            .await;
        assert_eq!(as_user.status(), 403, "{method} {path}");
        assert_eq!(body(as_user).await["code"], "admin_only");
        let anonymous = app.request(method.clone(), &path, None, payload).await;
        assert_eq!(anonymous.status(), 401, "{method} {path} without a token");
    }
    let me = body(
        app.request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
            .await,
    )
    .await;
    assert_eq!(me["roles"], json!(["user"]), "nothing changed");
}

async fn admin(app: &TestApp, token: &str, method: Method, path: &str, payload: Option<Value>) -> reqwest::Response {
    app.request(method, &format!("/api/v1/admin{path}"), Some(token), payload)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_user_is_logged_out_everywhere_cannot_log_in_and_is_back_after_reactivation() {
    let app = spawn_with_root().await;
    let root = root_token(&app).await;
    let ada: TestUser = app.register_and_login("ada@example.com").await;
    let path = format!("/users/{}", ada.id);

    let suspended = admin(
        &app,
        &root,
        Method::POST,
        &format!("{path}/suspend"),
        Some(json!({"reason": "chargeback"})),
    )
    .await;
    assert_eq!(suspended.status(), 204);
    let position = suspended.headers()["x-keyframe-position"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let me = app
        .request(Method::GET, "/api/v1/auth/me", Some(&ada.access_token), None)
        .await;
    assert_eq!(me.status(), 401, "the session ended with the suspension");
    let refresh = app
        .request(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    assert_eq!(refresh.status(), 401);
    let refused = login(&app, &ada.email, &ada.password).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(body(refused).await["code"], "account_suspended");
    let again = admin(
        &app,
        &root,
        Method::POST,
        &format!("{path}/suspend"),
        Some(json!({"reason": "twice"})),
    )
    .await;
    assert_eq!(body(again).await["code"], "already_suspended");

    let shown = app.get_after(&format!("/api/v1/admin{path}"), &root, &position).await;
    let shown = body(shown).await;
    assert_eq!(
        (shown["status"].as_str(), shown["suspended_reason"].as_str()),
        (Some("suspended"), Some("chargeback"))
    );
    let events = app.db.all_events().await;
    let ended = events
        .iter()
        .filter(|event| event.event_type == "SessionEnded" && event.payload.get().contains("user_suspended"))
        .count();
    assert_eq!(ended, 1, "the session's end says why");

    let back = admin(&app, &root, Method::POST, &format!("{path}/reactivate"), None).await;
    assert_eq!(back.status(), 204);
    assert_eq!(login(&app, &ada.email, &ada.password).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_list_users_set_roles_and_see_stats_but_cannot_demote_or_suspend_themselves() {
    let app = spawn_with_root().await;
    let root = root_token(&app).await;
    let ada = app.register_and_login("ada@example.com").await;
    let root_id = body(app.request(Method::GET, "/api/v1/auth/me", Some(&root), None).await).await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let granted = admin(
        &app,
        &root,
        Method::PUT,
        &format!("/users/{}/roles", ada.id),
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_eq!(granted.status(), 204);
    let position = granted.headers()["x-keyframe-position"]
        .to_str()
        .expect("ascii")
        .to_owned();
    // Her existing session carries the new role at once.
    let stats = app.get_after("/api/v1/admin/stats", &ada.access_token, &position).await;
    assert_eq!(stats.status(), 200);
    let stats = body(stats).await;
    assert_eq!(stats["admins"].as_i64(), Some(2));
    assert!(stats["users"].as_i64() >= Some(2) && stats["active_sessions"].as_i64() >= Some(1));

    let listed = app.get_after("/api/v1/admin/users?limit=1", &root, &position).await;
    let listed = body(listed).await;
    assert_eq!(listed["items"][0]["email"], "ada@example.com", "newest first");
    assert_eq!(listed["items"][0]["roles"], json!(["user", "admin"]));
    let cursor = listed["next_cursor"].as_str().expect("a second page");
    let second = body(
        admin(
            &app,
            &root,
            Method::GET,
            &format!("/users?limit=1&cursor={cursor}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(second["items"][0]["email"], ROOT);
    assert!(second["items"][0].get("password_hash").is_none());

    let bad_role = admin(
        &app,
        &root,
        Method::PUT,
        &format!("/users/{}/roles", ada.id),
        Some(json!({"roles": ["god"]})),
    )
    .await;
    assert_eq!(bad_role.status(), 422);
    let demote_self = admin(
        &app,
        &root,
        Method::PUT,
        &format!("/users/{root_id}/roles"),
        Some(json!({"roles": ["user"]})),
    )
    .await;
    assert_eq!(body(demote_self).await["code"], "cannot_act_on_self");
    let suspend_self = admin(
        &app,
        &root,
        Method::POST,
        &format!("/users/{root_id}/suspend"),
        Some(json!({"reason": "oops"})),
    )
    .await;
    assert_eq!(body(suspend_self).await["code"], "cannot_act_on_self");
    let nobody = admin(
        &app,
        &root,
        Method::POST,
        &format!("/users/{}/suspend", uuid::Uuid::now_v7()),
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(nobody.status(), 404);

    // Taking the role back works at once, too.
    let revoked = admin(
        &app,
        &root,
        Method::PUT,
        &format!("/users/{}/roles", ada.id),
        Some(json!({"roles": ["user"]})),
    )
    .await;
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        admin(&app, &ada.access_token, Method::GET, "/stats", None)
            .await
            .status(),
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_accounts_get_the_signup_bonus_and_an_admin_grant_adds_to_it_on_the_record() {
    let app = spawn_with_root().await;
    let root = root_token(&app).await;
    let user = app.register_and_login("saver@example.com").await;
    let balance = body(
        app.request(Method::GET, "/api/v1/credits/balance", Some(&user.access_token), None)
            .await,
    )
    .await;
    assert_eq!(balance, json!({"balance": 100, "reserved": 0, "available": 100}));

    let path = format!("/api/v1/admin/users/{}/credits", user.id);
    let refused = app
        .request(
            Method::POST,
            &path,
            Some(&user.access_token),
            Some(json!({"amount": 5, "reason": "me"})),
        )
        .await;
    assert_eq!(refused.status(), 403, "only administrators grant");
    let invalid = app
        .request(
            Method::POST,
            &path,
            Some(&root),
            Some(json!({"amount": 0, "reason": ""})),
        )
        .await;
    assert_eq!(invalid.status(), 422);
    let missing = app
        .request(
            Method::POST,
            &format!("/api/v1/admin/users/{}/credits", uuid::Uuid::now_v7()),
            Some(&root),
            Some(json!({"amount": 5, "reason": "nobody"})),
        )
        .await;
    assert_eq!(missing.status(), 404);
    let granted = app
        .request(
            Method::POST,
            &path,
            Some(&root),
            Some(json!({"amount": 250, "reason": "beta tester"})),
        )
        .await;
    assert_eq!(granted.status(), 200);
    let position = granted.headers()["x-keyframe-position"]
        .to_str()
        .expect("position")
        .to_owned();
    assert_eq!(body(granted).await["balance"], 350);

    let page = body(
        app.get_after("/api/v1/credits/transactions?limit=1", &user.access_token, &position)
            .await,
    )
    .await;
    assert_eq!(page["items"][0]["kind"], "grant");
    assert_eq!(page["items"][0]["amount"], 250);
    assert_eq!(page["items"][0]["balance"], 350);
    assert_eq!(page["items"][0]["reason"], "beta tester");
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let rest = body(
        app.request(
            Method::GET,
            &format!("/api/v1/credits/transactions?cursor={cursor}"),
            Some(&user.access_token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(rest["items"][0]["reference"], "signup");
    assert_eq!(rest["items"][0]["amount"], 100);
    assert_eq!(rest["next_cursor"], Value::Null);
    let ledger_events: Vec<_> = app
        .db
        .all_events()
        .await
        .into_iter()
        .filter(|event| event.aggregate_type == "CreditLedger" && event.aggregate_id == user.id)
        .collect();
    assert_eq!(count(&ledger_events, "CreditsGranted"), 2);
}

/// A reason travels into the log and into read models' text columns, which cannot hold a NUL:
/// once such a grant was recorded, `credit_transactions` failed on it and retried for ever, and
/// every later movement stayed out of the list. Now the request is refused and the list keeps up.
#[tokio::test]
async fn a_reason_with_a_nul_character_is_refused_and_the_transactions_list_keeps_up() {
    let app = spawn_with_root().await;
    let root = root_token(&app).await;
    let user = app.register_and_login("nul-reason@example.com").await;
    let path = format!("/api/v1/admin/users/{}/credits", user.id);
    for reason in ["beta\u{0}tester", "bell\u{7}"] {
        let refused = app
            .request(
                Method::POST,
                &path,
                Some(&root),
                Some(json!({"amount": 5, "reason": reason})),
            )
            .await;
        assert_eq!(refused.status(), 422, "{reason:?}");
        assert_eq!(body(refused).await["errors"][0]["field"], "reason");
    }
    let suspended = app
        .request(
            Method::POST,
            &format!("/api/v1/admin/users/{}/suspend", user.id),
            Some(&root),
            Some(json!({"reason": "nul\u{0}"})),
        )
        .await;
    assert_eq!(suspended.status(), 422);
    let granted = app
        .request(
            Method::POST,
            &path,
            Some(&root),
            Some(json!({"amount": 5, "reason": "welcome"})),
        )
        .await;
    assert_eq!(granted.status(), 200);
    let position = granted.headers()["x-keyframe-position"]
        .to_str()
        .expect("position")
        .to_owned();
    let listed = app
        .get_after("/api/v1/credits/transactions", &user.access_token, &position)
        .await;
    assert_eq!(
        listed.headers().get("x-keyframe-consistent"),
        None,
        "the list caught up"
    );
    let items = body(listed).await["items"].clone();
    assert_eq!(items[0]["reason"], "welcome");
}
