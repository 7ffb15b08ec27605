//! Organisations end to end: the invitation flow from the mail a real SMTP listener receives,
//! the role matrix route by route, removal across API processes, and the last-owner rule under
//! concurrent demotions. Real Postgres, NATS and HTTP.

use keyframe_tests::{TestApp, TestUser, test_api_settings, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json")
}

async fn code_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

fn position_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-keyframe-position")
        .and_then(|value| value.to_str().ok())
        .expect("a write answers its position")
        .to_owned()
}

#[tokio::test]
async fn an_invitation_is_accepted_from_its_mail_by_the_invited_account_once() {
    let app = TestApp::spawn().await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;

    let invited = app.invite(&owner, &org, "Bob@Example.com", "member").await;
    assert_eq!(invited.status(), 201);
    let invitation = json_of(invited).await;
    assert_eq!(invitation["email"], "bob@example.com");
    assert_eq!(invitation["role"], "member");
    assert_eq!(invitation["invited_by"], owner.id.as_str());
    let token = app.invitation_token("bob@example.com", 1).await;

    // The mailed link opens a page that says what is offered, by whom, and how to accept.
    let page = app
        .http
        .get(format!("{}/invitations?token={token}", app.base_url))
        .send()
        .await
        .expect("answered");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("html");
    for expected in [
        "Studio",
        "member",
        "owner@example.com",
        "POST /api/v1/invitations/accept",
    ] {
        assert!(page.contains(expected), "the page names {expected}: {page}");
    }

    // Someone else's account cannot use it, and is told whose it is.
    let eve = app.register_and_login("eve@example.com").await;
    let (status, code) = code_of(app.accept(&eve, &token).await).await;
    assert_eq!((status, code.as_str()), (403, "invitation_for_another_address"));

    let bob = app.register_and_login("bob@example.com").await;
    let accepted = app.accept(&bob, &token).await;
    assert_eq!(accepted.status(), 200);
    let position = position_of(&accepted);
    let joined = json_of(accepted).await;
    assert_eq!(joined["id"], org.as_str());
    assert_eq!(joined["role"], "member");
    assert_eq!(joined["member_count"], 2);

    // Used twice: refused, and the page says it was used.
    let (status, code) = code_of(app.accept(&bob, &token).await).await;
    assert_eq!((status, code.as_str()), (409, "invitation_used"));
    let page = app
        .http
        .get(format!("{}/invitations?token={token}", app.base_url))
        .send()
        .await
        .expect("answered");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("used already"));

    // Bob's list shows the organisation with his role; the members list shows both.
    let listed = json_of(app.get_after("/api/v1/orgs", &bob.access_token, &position).await).await;
    assert_eq!(listed["items"][0]["id"], org.as_str());
    assert_eq!(listed["items"][0]["role"], "member");
    let members = json_of(
        app.get_after(&format!("/api/v1/orgs/{org}/members"), &bob.access_token, &position)
            .await,
    )
    .await;
    let mut roles: Vec<(String, String)> = members["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            ("bob@example.com".to_owned(), "member".to_owned()),
            ("owner@example.com".to_owned(), "owner".to_owned())
        ]
    );

    // An unknown token: a clear refusal, and a page that says the link does not work.
    let (status, code) = code_of(app.accept(&bob, &format!("{org}.forged")).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    // A blank one names no invitation either (the schema allows it: no 422).
    let (status, code) = code_of(app.accept(&bob, "   ").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let page = app
        .http
        .get(format!("{}/invitations?token={org}.forged", app.base_url))
        .send()
        .await
        .expect("answered");
    assert_eq!(page.status(), 200, "never a 404");
}

#[tokio::test]
async fn revoked_and_replaced_invitations_are_refused_and_the_newest_works() {
    let app = TestApp::spawn().await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let carol = app.register_and_login("carol@example.com").await;

    // Revoked.
    let invitation = json_of(app.invite(&owner, &org, "carol@example.com", "viewer").await).await;
    let revoked_token = app.invitation_token("carol@example.com", 1).await;
    let revoked = app
        .request(
            Method::DELETE,
            &format!(
                "/api/v1/orgs/{org}/invitations/{}",
                invitation["id"].as_str().expect("id")
            ),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(revoked.status(), 204);
    let (status, code) = code_of(app.accept(&carol, &revoked_token).await).await;
    assert_eq!((status, code.as_str()), (409, "invitation_revoked"));

    // Replaced: inviting again replaces the pending invitation; only the newest mail works.
    assert_eq!(
        app.invite(&owner, &org, "carol@example.com", "viewer").await.status(),
        201
    );
    let replaced_token = app.invitation_token("carol@example.com", 2).await;
    let newest = app.invite(&owner, &org, "carol@example.com", "admin").await;
    assert_eq!(newest.status(), 201);
    let position = position_of(&newest);
    let newest_token = app.invitation_token("carol@example.com", 3).await;
    let pending = json_of(
        app.get_after(
            &format!("/api/v1/orgs/{org}/invitations"),
            &owner.access_token,
            &position,
        )
        .await,
    )
    .await;
    let pending = pending["items"].as_array().expect("items");
    assert_eq!(pending.len(), 1, "one pending invitation per address: {pending:?}");
    assert_eq!(pending[0]["role"], "admin");
    let (status, code) = code_of(app.accept(&carol, &replaced_token).await).await;
    assert_eq!((status, code.as_str()), (409, "invitation_replaced"));
    let accepted = json_of(app.accept(&carol, &newest_token).await).await;
    assert_eq!(accepted["role"], "admin");

    // Inviting a member is refused.
    let (status, code) = code_of(app.invite(&owner, &org, "carol@example.com", "member").await).await;
    assert_eq!((status, code.as_str()), (409, "already_member"));
}

#[tokio::test]
async fn an_expired_invitation_or_an_unverified_account_cannot_join() {
    let mut settings = test_api_settings();
    settings.invitation_ttl = Duration::ZERO;
    let app = TestApp::builder().settings(settings).spawn().await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    assert_eq!(
        app.invite(&owner, &org, "dan@example.com", "member").await.status(),
        201
    );
    let token = app.invitation_token("dan@example.com", 1).await;
    let dan = app.register_and_login("dan@example.com").await;
    let (status, code) = code_of(app.accept(&dan, &token).await).await;
    assert_eq!((status, code.as_str()), (409, "invitation_expired"));
}

#[tokio::test]
async fn an_unverified_account_is_told_to_verify_before_joining() {
    let mut settings = test_api_settings();
    settings.require_email_verification = false;
    let app = TestApp::builder().settings(settings).spawn().await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    assert_eq!(
        app.invite(&owner, &org, "fay@example.com", "member").await.status(),
        201
    );
    let token = app.invitation_token("fay@example.com", 1).await;
    let password = "correct horse battery staple";
    let registered = app
        .request(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "fay@example.com", "password": password})),
        )
        .await;
    assert_eq!(registered.status(), 201);
    let login = json_of(
        app.request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "fay@example.com", "password": password})),
        )
        .await,
    )
    .await;
    let fay = TestUser {
        id: login["user"]["id"].as_str().expect("id").to_owned(),
        email: "fay@example.com".to_owned(),
        password: password.to_owned(),
        access_token: login["access_token"].as_str().expect("token").to_owned(),
        refresh_token: login["refresh_token"].as_str().expect("token").to_owned(),
    };
    let (status, code) = code_of(app.accept(&fay, &token).await).await;
    assert_eq!((status, code.as_str()), (403, "email_not_verified"));
}

/// One request: method, path and body.
type Request = (Method, String, Option<Value>);

/// A request and who sends it.
type CallersRequest = (TestUser, Request);

/// The five kinds of caller of the contract's role table.
struct Callers {
    owner: TestUser,
    admin: TestUser,
    member: TestUser,
    viewer: TestUser,
    stranger: TestUser,
}

impl Callers {
    async fn of(app: &TestApp, org: &str, owner: TestUser) -> Self {
        Self {
            admin: app.join_org(&owner, org, "admin@example.com", "admin").await,
            member: app.join_org(&owner, org, "member@example.com", "member").await,
            viewer: app.join_org(&owner, org, "viewer@example.com", "viewer").await,
            stranger: app.register_and_login("stranger@example.com").await,
            owner,
        }
    }

    /// Each caller, in the order of [`Self::all`], sends the same request; answers the statuses
    /// and codes.
    async fn send_each(&self, app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Vec<(u16, String)> {
        let mut answers = Vec::new();
        for (_, caller) in self.all() {
            let response = app
                .request(method.clone(), path, Some(&caller.access_token), body.clone())
                .await;
            answers.push(code_of(response).await);
        }
        answers
    }

    fn all(&self) -> [(&'static str, &TestUser); 5] {
        [
            ("owner", &self.owner),
            ("admin", &self.admin),
            ("member", &self.member),
            ("viewer", &self.viewer),
            ("stranger", &self.stranger),
        ]
    }
}

#[tokio::test]
async fn the_role_table_holds_route_by_route_for_all_five_kinds_of_caller() {
    let app = TestApp::spawn().await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let callers = Callers::of(&app, &org, owner).await;
    // One member per caller to act on, so no caller's change spoils another's.
    let mut subjects = Vec::new();
    for (who, _) in callers.all() {
        let subject = app
            .join_org(&callers.owner, &org, &format!("subject-of-{who}@example.com"), "viewer")
            .await;
        subjects.push(subject);
    }

    let callers_in_order = callers.all();
    // Each caller's request to one route, as (method, path, body), in the order of `all`.
    let per_caller = |make: &dyn Fn(usize, &str, &TestUser) -> Request| {
        callers_in_order
            .iter()
            .enumerate()
            .map(|(index, (who, caller))| ((*caller).clone(), make(index, who, caller)))
            .collect::<Vec<_>>()
    };
    let expect = |route: &'static str, expected: &[u16], answers: Vec<(u16, String)>| {
        let got: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
        assert_eq!(got, expected, "{route}: {answers:?}");
        for (status, code) in answers {
            match status {
                403 => assert!(
                    ["insufficient_role", "owners_only"].contains(&code.as_str()),
                    "{route}: 403 {code}"
                ),
                404 => assert_eq!(code, "not_found", "{route}"),
                _ => {}
            }
        }
    };
    let base = format!("/api/v1/orgs/{org}");
    let table: Vec<(&'static str, [u16; 5], Vec<CallersRequest>)> = vec![
        (
            "GET /orgs/{id}",
            [200, 200, 200, 200, 404],
            per_caller(&|_, _, _| (Method::GET, base.clone(), None)),
        ),
        (
            "GET /orgs/{id}/members",
            [200, 200, 200, 200, 404],
            per_caller(&|_, _, _| (Method::GET, format!("{base}/members"), None)),
        ),
        (
            "PATCH /orgs/{id}",
            [200, 200, 403, 403, 404],
            per_caller(&|_, who, _| {
                (
                    Method::PATCH,
                    base.clone(),
                    Some(json!({ "name": format!("Renamed by {who}") })),
                )
            }),
        ),
        (
            "GET /orgs/{id}/invitations",
            [200, 200, 403, 403, 404],
            per_caller(&|_, _, _| (Method::GET, format!("{base}/invitations"), None)),
        ),
        (
            "POST /orgs/{id}/invitations",
            [201, 201, 403, 403, 404],
            per_caller(&|_, who, _| {
                let body = json!({ "email": format!("invited-by-{who}@example.com"), "role": "viewer" });
                (Method::POST, format!("{base}/invitations"), Some(body))
            }),
        ),
        (
            "PATCH /orgs/{id}/members/{user_id} role",
            [200, 200, 403, 403, 404],
            per_caller(&|index, _, _| {
                (
                    Method::PATCH,
                    format!("{base}/members/{}", subjects[index].id),
                    Some(json!({ "role": "member" })),
                )
            }),
        ),
        (
            "PATCH /orgs/{id}/members/{user_id} credit limit",
            [200, 403, 403, 403, 404],
            per_caller(&|index, _, _| {
                let body = json!({ "monthly_credit_limit": 100 });
                (
                    Method::PATCH,
                    format!("{base}/members/{}", subjects[index].id),
                    Some(body),
                )
            }),
        ),
        (
            "DELETE /orgs/{id}/members/{user_id}",
            [204, 204, 403, 403, 404],
            per_caller(&|index, _, _| (Method::DELETE, format!("{base}/members/{}", subjects[index].id), None)),
        ),
    ];
    for (route, expected, requests) in table {
        let mut answers = Vec::new();
        for (caller, (method, path, body)) in requests {
            answers.push(code_of(app.request(method, &path, Some(&caller.access_token), body).await).await);
        }
        expect(route, &expected, answers);
    }

    // An admin may not act on an owner.
    let (status, code) = code_of(app.set_role(&callers.admin, &org, &callers.owner.id, "member").await).await;
    assert_eq!((status, code.as_str()), (403, "owners_only"));

    // The destructive ones: everyone but the owner first, then the owner.
    let others = &callers_in_order[1..];
    let mut transfers = Vec::new();
    let mut deletions = Vec::new();
    for (_, caller) in others {
        let body = json!({ "user_id": callers.member.id });
        transfers.push(
            code_of(
                app.request(
                    Method::POST,
                    &format!("{base}/transfer"),
                    Some(&caller.access_token),
                    Some(body),
                )
                .await,
            )
            .await,
        );
        deletions.push(
            code_of(
                app.request(Method::DELETE, &base, Some(&caller.access_token), None)
                    .await,
            )
            .await,
        );
    }
    expect(
        "POST /orgs/{id}/transfer by the others",
        &[403, 403, 403, 404],
        transfers,
    );
    expect("DELETE /orgs/{id} by the others", &[403, 403, 403, 404], deletions);
    // To someone outside it: the organisation is there, the transfer cannot be.
    let (status, code) = code_of(
        app.request(
            Method::POST,
            &format!("{base}/transfer"),
            Some(&callers.owner.access_token),
            Some(json!({ "user_id": callers.stranger.id })),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "invalid_transfer"));
    let body = json!({ "user_id": callers.admin.id, "leave": false });
    let transferred = app
        .request(
            Method::POST,
            &format!("{base}/transfer"),
            Some(&callers.owner.access_token),
            Some(body),
        )
        .await;
    assert_eq!(transferred.status(), 204);
    // The old owner is an admin now, and the admin the owner: only the new owner deletes.
    let (status, _) = code_of(
        app.request(Method::DELETE, &base, Some(&callers.owner.access_token), None)
            .await,
    )
    .await;
    assert_eq!(status, 403, "the old owner, now admin, may not delete");
    let deleted = app
        .request(Method::DELETE, &base, Some(&callers.admin.access_token), None)
        .await;
    assert_eq!(deleted.status(), 204);

    // Deleted: no longer there for anyone.
    for (who, caller) in callers.all() {
        let (status, _) = code_of(
            app.request(
                Method::GET,
                &format!("/api/v1/orgs/{org}"),
                Some(&caller.access_token),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(status, 404, "{who} after deletion");
    }
}

#[tokio::test]
async fn the_last_owner_can_neither_leave_nor_be_demoted() {
    let app = TestApp::spawn().await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let admin = app.join_org(&owner, &org, "admin@example.com", "admin").await;
    let leave = code_of(
        app.request(
            Method::POST,
            &format!("/api/v1/orgs/{org}/leave"),
            Some(&owner.access_token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(leave, (409, "last_owner".to_owned()));
    let demoted = code_of(app.set_role(&owner, &org, &owner.id, "admin").await).await;
    assert_eq!(demoted, (409, "last_owner".to_owned()));
    // A credit limit is zero or more, at most a trillion.
    for limit in [json!(-1), json!(1_000_000_000_001_i64), json!("lots")] {
        let answer = app
            .request(
                Method::PATCH,
                &format!("/api/v1/orgs/{org}/members/{}", admin.id),
                Some(&owner.access_token),
                Some(json!({ "monthly_credit_limit": limit })),
            )
            .await;
        assert_eq!(answer.status(), 422, "{limit}");
    }
    // The admin leaves; removing oneself is leaving, not removal.
    let removed_self = code_of(
        app.request(
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/members/{}", owner.id),
            Some(&owner.access_token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(removed_self, (409, "cannot_remove_self".to_owned()));
    let left = app
        .request(
            Method::POST,
            &format!("/api/v1/orgs/{org}/leave"),
            Some(&admin.access_token),
            None,
        )
        .await;
    assert_eq!(left.status(), 204);
}

#[tokio::test]
async fn a_removed_member_loses_access_within_a_second_on_another_api_process() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = TestApp::spawn().await;
    let sibling = app.sibling().spawn().await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let member = app.join_org(&owner, &org, "member@example.com", "member").await;
    let on_sibling = |path: String| {
        let http = app.http.clone();
        let url = format!("{}{path}", sibling.base_url);
        let token = member.access_token.clone();
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("answered")
                .status()
                .as_u16()
        }
    };
    // The sibling has seen the member (and keeps what it learned for its TTL).
    assert_eq!(on_sibling(format!("/api/v1/orgs/{org}")).await, 200);

    let removed = app
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/members/{}", member.id),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    let removed_at = Instant::now();
    wait_for(
        "the sibling to refuse the removed member",
        Duration::from_secs(1),
        || {
            let status = on_sibling(format!("/api/v1/orgs/{org}/members"));
            async move { status.await == 404 }
        },
    )
    .await;
    assert!(removed_at.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_always_leave_one_owner() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = TestApp::spawn().await;
    // The second owner acts through another API process, so the two commands race across
    // processes and only optimistic concurrency on the aggregate orders them.
    let sibling = app.sibling().spawn().await;
    let first = app.register_and_login("first@example.com").await;
    let org = app.create_org(&first, "Studio").await;
    let second = app.join_org(&first, &org, "second@example.com", "owner").await;
    let demote = |base: String, actor: &TestUser, target: &TestUser| {
        let http = app.http.clone();
        let url = format!("{base}/api/v1/orgs/{org}/members/{}", target.id);
        let token = actor.access_token.clone();
        async move {
            let response = http
                .patch(url)
                .bearer_auth(token)
                .json(&json!({ "role": "admin" }))
                .send()
                .await
                .expect("answered");
            let position = response
                .headers()
                .get("x-keyframe-position")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (code_of(response).await, position)
        }
    };
    for round in 0..50 {
        let ((a, a_position), (b, b_position)) = tokio::join!(
            demote(app.base_url.clone(), &first, &second),
            demote(sibling.base_url.clone(), &second, &first)
        );
        let succeeded: Vec<_> = [&a, &b].into_iter().filter(|(status, _)| *status == 200).collect();
        assert_eq!(
            succeeded.len(),
            1,
            "round {round}: exactly one demotion passes: {a:?} {b:?}"
        );
        for (status, code) in [&a, &b] {
            if *status != 200 {
                assert_eq!((*status, code.as_str()), (403, "owners_only"), "round {round}");
            }
        }
        let position = a_position.or(b_position).expect("the demotion's position");
        let members = json_of(
            app.get_after(&format!("/api/v1/orgs/{org}/members"), &first.access_token, &position)
                .await,
        )
        .await;
        let owners: Vec<&str> = members["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|m| m["role"] == "owner")
            .map(|m| m["user_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(owners.len(), 1, "round {round}: one owner remains: {members}");
        // The remaining owner makes the other owner again for the next round.
        let (remaining, demoted) = if owners[0] == first.id {
            (&first, &second)
        } else {
            (&second, &first)
        };
        assert_eq!(app.set_role(remaining, &org, &demoted.id, "owner").await.status(), 200);
    }
}

const ROOT: &str = "root@example.com";
const ROOT_PASSWORD: &str = "granite harbour lamplight seven";

/// A Keyframe whose first administrator is [`ROOT`], with `settings`.
async fn spawn_with_root(mut settings: keyframe_api::settings::ApiSettings) -> TestApp {
    settings.first_admin = Some((ROOT.to_owned(), ROOT_PASSWORD.to_owned()));
    TestApp::builder().settings(settings).spawn().await
}

/// The platform administrator's access token.
async fn root_token(app: &TestApp) -> String {
    let login = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": ROOT, "password": ROOT_PASSWORD})),
        )
        .await;
    assert_eq!(login.status(), 200);
    json_of(login).await["access_token"].as_str().expect("token").to_owned()
}

/// The platform administrator grants `amount` credits to `org`; answers the write's position.
async fn grant_org(app: &TestApp, root: &str, org: &str, amount: i64) -> String {
    let granted = app
        .request(
            Method::POST,
            &format!("/api/v1/admin/orgs/{org}/credits"),
            Some(root),
            Some(json!({"amount": amount, "reason": "team credits"})),
        )
        .await;
    assert_eq!(granted.status(), 200, "grant to the organisation");
    position_of(&granted)
}

async fn request_analysis(app: &TestApp, base: &str, user: &TestUser, project: &str, asset: &str) -> (u16, String) {
    let response = app
        .http
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth(&user.access_token)
        .json(&json!({"type": "analyze", "project_id": project, "asset_id": asset}))
        .send()
        .await
        .expect("answered");
    code_of(response).await
}

/// An organisation's project with one short video in it (an analysis costs one credit).
async fn project_with_video(app: &TestApp, org: &str, by: &TestUser) -> (String, String) {
    let created = app
        .request(
            Method::POST,
            "/api/v1/projects",
            Some(&by.access_token),
            Some(json!({"name": "Team trailer", "organization_id": org})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let project = json_of(created).await["id"].as_str().expect("id").to_owned();
    let asset = app.upload_video(by, &project, &keyframe_tests::short_video()).await;
    (project, asset["id"].as_str().expect("asset id").to_owned())
}

/// `caller` deletes `project`; answers the status.
async fn delete_project(app: &TestApp, project: &str, caller: &TestUser) -> u16 {
    let path = format!("/api/v1/projects/{project}");
    code_of(
        app.request(Method::DELETE, &path, Some(&caller.access_token), None)
            .await,
    )
    .await
    .0
}

#[tokio::test]
async fn the_role_table_holds_for_an_organisations_projects_videos_jobs_and_credits() {
    let app = spawn_with_root(test_api_settings()).await;
    let root = root_token(&app).await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let callers = Callers::of(&app, &org, owner).await;
    // The stranger is a member of another organisation: nothing of this one is theirs either.
    let other_org = app.create_org(&callers.stranger, "Elsewhere").await;
    grant_org(&app, &root, &org, 100).await;

    let statuses = |answers: &[(u16, String)]| answers.iter().map(|(status, _)| *status).collect::<Vec<_>>();

    // Projects: members and above create them in the organisation.
    let mut created = Vec::new();
    for (who, caller) in callers.all() {
        let body = json!({"name": format!("{who}'s cut"), "organization_id": org});
        let response = app
            .request(Method::POST, "/api/v1/projects", Some(&caller.access_token), Some(body))
            .await;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.expect("json");
        if status == 201 {
            assert_eq!(body["organization_id"], org.as_str());
            assert_eq!(body["owner_id"], org.as_str());
            assert_eq!(body["created_by"], caller.id.as_str());
        }
        created.push((status, body["id"].as_str().unwrap_or_default().to_owned()));
    }
    assert_eq!(
        statuses(&created.iter().map(|(s, _)| (*s, String::new())).collect::<Vec<_>>()),
        [201, 201, 201, 403, 404]
    );
    let (owners_project, admins_project, members_project) =
        (created[0].1.clone(), created[1].1.clone(), created[2].1.clone());

    let answers = callers
        .send_each(&app, Method::GET, &format!("/api/v1/projects/{owners_project}"), None)
        .await;
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 200, 404],
        "GET /projects/{{id}}: {answers:?}"
    );

    let path = format!("/api/v1/projects?organization_id={org}");
    let answers = callers.send_each(&app, Method::GET, &path, None).await;
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 200, 404],
        "GET /projects?organization_id: {answers:?}"
    );

    // Without the filter a member's list holds their organisations' projects; a stranger's
    // holds none of them.
    app.create_project(&callers.viewer, "viewer's own").await;
    let listed = json_of(
        app.request(
            Method::GET,
            "/api/v1/projects?limit=100",
            Some(&callers.viewer.access_token),
            None,
        )
        .await,
    )
    .await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    for project in [&owners_project, &admins_project, &members_project] {
        assert!(ids.contains(&project.as_str()), "the viewer lists {project}: {ids:?}");
    }
    let listed = json_of(
        app.request(
            Method::GET,
            "/api/v1/projects?limit=100",
            Some(&callers.stranger.access_token),
            None,
        )
        .await,
    )
    .await;
    assert!(
        listed["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|p| p["owner_id"] != org.as_str())
    );

    let path = format!("/api/v1/projects/{owners_project}");
    let body = json!({"name": "renamed by the team"});
    let answers = callers.send_each(&app, Method::PATCH, &path, Some(body)).await;
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 403, 404],
        "PATCH /projects/{{id}}: {answers:?}"
    );

    // Videos: members upload; viewers may not; strangers do not find the project.
    let video = keyframe_tests::short_video();
    let asset = app.upload_video(&callers.member, &owners_project, &video).await;
    let asset = asset["id"].as_str().expect("asset").to_owned();
    for (caller, expected) in [(&callers.viewer, 403), (&callers.stranger, 404)] {
        let response = app
            .http
            .post(format!(
                "{}/api/v1/projects/{owners_project}/assets?filename=clip.mp4",
                app.base_url
            ))
            .bearer_auth(&caller.access_token)
            .header("content-type", "video/mp4")
            .body(std::fs::read(&video).expect("video"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), expected);
    }
    let path = format!("/api/v1/projects/{owners_project}/assets");
    let answers = callers.send_each(&app, Method::GET, &path, None).await;
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 200, 404],
        "GET /projects/{{id}}/assets: {answers:?}"
    );

    // Jobs: members and above request them, on the organisation's credits.
    let mut jobs = Vec::new();
    for (_, caller) in callers.all() {
        let response = app
            .request(
                Method::POST,
                "/api/v1/jobs",
                Some(&caller.access_token),
                Some(json!({"type": "analyze", "project_id": owners_project, "asset_id": asset})),
            )
            .await;
        let status = response.status().as_u16();
        let position = response
            .headers()
            .get("x-keyframe-position")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json::<Value>().await.expect("json");
        jobs.push((status, body["id"].as_str().unwrap_or_default().to_owned(), position));
    }
    assert_eq!(
        jobs.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
        [202, 202, 202, 403, 404]
    );
    let members_job = jobs[2].1.clone();
    let last_job_position = jobs[2].2.clone().expect("position");
    let answers = callers
        .send_each(&app, Method::GET, &format!("/api/v1/jobs/{members_job}"), None)
        .await;
    assert_eq!(
        statuses(&answers),
        [200, 200, 200, 200, 404],
        "GET /jobs/{{id}}: {answers:?}"
    );
    let listed = json_of(
        app.get_after(
            &format!("/api/v1/jobs?organization_id={org}"),
            &callers.viewer.access_token,
            &last_job_position,
        )
        .await,
    )
    .await;
    assert_eq!(
        listed["items"].as_array().expect("items").len(),
        3,
        "the viewer sees the team's jobs"
    );

    // The progress stream is the members' too; to a stranger it and the artifacts do not exist.
    let stream = |user: &TestUser, path: String| {
        app.http
            .get(format!("{}{path}", app.base_url))
            .bearer_auth(&user.access_token)
            .send()
    };
    let events = format!("/api/v1/jobs/{members_job}/events");
    let seen = stream(&callers.viewer, events.clone()).await.expect("answered");
    assert_eq!(seen.status(), 200, "a viewer follows the job");
    drop(seen);
    for path in [events, format!("/api/v1/jobs/{members_job}/artifacts/thumbnail-1.jpg")] {
        let (status, code) = code_of(stream(&callers.stranger, path.clone()).await.expect("answered")).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
    }

    // The organisation paid, not the members: their own credits are untouched.
    let personal = json_of(
        app.request(
            Method::GET,
            "/api/v1/credits/balance",
            Some(&callers.member.access_token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(personal["reserved"], 0);

    // Credits: owners and admins see the balance and movements; members their own usage.
    for (route, expected) in [
        (format!("/api/v1/orgs/{org}/credits/balance"), [200, 200, 403, 403, 404]),
        (
            format!("/api/v1/orgs/{org}/credits/transactions"),
            [200, 200, 403, 403, 404],
        ),
        (format!("/api/v1/orgs/{org}/usage"), [200, 200, 200, 403, 404]),
    ] {
        let mut answers = Vec::new();
        for (_, caller) in callers.all() {
            answers.push(code_of(app.get_after(&route, &caller.access_token, &last_job_position).await).await);
        }
        assert_eq!(statuses(&answers), expected, "{route}: {answers:?}");
    }
    let balance = json_of(
        app.request(
            Method::GET,
            &format!("/api/v1/orgs/{org}/credits/balance"),
            Some(&callers.admin.access_token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (balance["balance"].as_i64(), balance["reserved"].as_i64()),
        (Some(100), Some(3))
    );
    let own_usage = json_of(
        app.get_after(
            &format!("/api/v1/orgs/{org}/usage"),
            &callers.member.access_token,
            &last_job_position,
        )
        .await,
    )
    .await;
    let own_usage = own_usage["items"].as_array().expect("items");
    assert_eq!(own_usage.len(), 1, "{own_usage:?}");
    assert_eq!(
        (own_usage[0]["user_id"].as_str(), own_usage[0]["held"].as_i64()),
        (Some(callers.member.id.as_str()), Some(1))
    );

    // Cancelling: members may (anyone's job); viewers may not; strangers do not find it.
    let mut answers = Vec::new();
    for (_, caller) in callers.all().into_iter().skip(2) {
        answers.push(
            code_of(
                app.request(
                    Method::POST,
                    &format!("/api/v1/jobs/{}/cancel", jobs[0].1),
                    Some(&caller.access_token),
                    None,
                )
                .await,
            )
            .await,
        );
    }
    assert_eq!(
        statuses(&answers),
        [200, 403, 404],
        "POST /jobs/{{id}}/cancel: {answers:?}"
    );

    // Deleting a project: owners and admins any, members their own only.
    assert_eq!(
        delete_project(&app, &admins_project, &callers.member).await,
        403,
        "a member deletes only their own"
    );
    assert_eq!(delete_project(&app, &admins_project, &callers.viewer).await, 403);
    assert_eq!(delete_project(&app, &admins_project, &callers.stranger).await, 404);
    assert_eq!(delete_project(&app, &members_project, &callers.member).await, 204);
    assert_eq!(delete_project(&app, &admins_project, &callers.owner).await, 204);

    // Buying a plan is the owners'.
    let path = format!("/api/v1/orgs/{org}/subscriptions/checkout");
    let answers = callers
        .send_each(&app, Method::POST, &path, Some(json!({"plan": "pro"})))
        .await;
    assert!(![403, 404].contains(&answers[0].0), "the owner may buy: {answers:?}");
    assert_eq!(statuses(&answers)[1..], [403, 403, 403, 404], "checkout: {answers:?}");

    // Platform administrators see every organisation; nobody else does.
    let listed = json_of(
        app.request(Method::GET, "/api/v1/admin/orgs?limit=100", Some(&root), None)
            .await,
    )
    .await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(names.contains(&"Studio") && names.contains(&"Elsewhere"), "{names:?}");
    let detail = json_of(
        app.request(Method::GET, &format!("/api/v1/admin/orgs/{org}"), Some(&root), None)
            .await,
    )
    .await;
    assert!(detail["members"].as_array().expect("members").len() >= 4, "{detail}");
    assert_eq!(detail["credits"]["balance"], 100);
    let refused = app
        .request(
            Method::GET,
            "/api/v1/admin/orgs",
            Some(&callers.owner.access_token),
            None,
        )
        .await;
    assert_eq!(refused.status(), 403);
    let elsewhere = app
        .request(
            Method::GET,
            &format!("/api/v1/orgs/{other_org}"),
            Some(&callers.owner.access_token),
            None,
        )
        .await;
    assert_eq!(elsewhere.status(), 404, "nor does one organisation's owner see another");
}

#[tokio::test]
async fn deleting_an_organisation_waits_for_its_jobs_then_frees_its_projects_and_storage() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = spawn_with_root(test_api_settings()).await;
    let root = root_token(&app).await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let member = app.join_org(&owner, &org, "member@example.com", "member").await;
    grant_org(&app, &root, &org, 10).await;
    let (project, asset) = project_with_video(&app, &org, &member).await;
    assert!(!app.stored_files().is_empty());
    let requested = app
        .request(
            Method::POST,
            "/api/v1/jobs",
            Some(&member.access_token),
            Some(json!({"type": "analyze", "project_id": project, "asset_id": asset})),
        )
        .await;
    assert_eq!(requested.status(), 202);
    let position = position_of(&requested);
    let job = json_of(requested).await["id"].as_str().expect("id").to_owned();

    let delete = |position: String| {
        let request = app
            .http
            .delete(format!("{}/api/v1/orgs/{org}", app.base_url))
            .bearer_auth(&owner.access_token)
            .header("x-keyframe-min-position", position);
        async move { code_of(request.send().await.expect("answered")).await }
    };
    assert_eq!(delete(position).await, (409, "organization_busy".to_owned()));

    let cancelled = app
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{job}/cancel"),
            Some(&member.access_token),
            None,
        )
        .await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(delete(position_of(&cancelled)).await.0, 204);

    // Gone for everyone, its video's bytes removed; its history stays in the log.
    for user in [&owner, &member] {
        let status = app
            .request(
                Method::GET,
                &format!("/api/v1/projects/{project}"),
                Some(&user.access_token),
                None,
            )
            .await
            .status();
        assert_eq!(status, 404);
    }
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
    let events = app.db.all_events().await;
    assert!(events.iter().any(|e| e.event_type == "OrganizationDeleted"));
    assert!(events.iter().any(|e| e.event_type == "ProjectAssetsReleased"));
}

#[tokio::test]
async fn an_organisations_credits_and_member_limits_hold_under_concurrent_requests() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let app = spawn_with_root(test_api_settings()).await;
    let sibling = app.sibling().spawn().await;
    let root = root_token(&app).await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let mut members = vec![owner.clone()];
    for n in 1..4 {
        members.push(
            app.join_org(&owner, &org, &format!("member{n}@example.com"), "member")
                .await,
        );
    }
    let (project, asset) = project_with_video(&app, &org, &owner).await;
    grant_org(&app, &root, &org, 30).await;

    // 100 requests at once by four members through two API processes, credit for 30.
    let mut requests = Vec::new();
    for round in 0..25 {
        for (index, member) in members.iter().enumerate() {
            let base = if (round + index) % 2 == 0 {
                app.base_url.clone()
            } else {
                sibling.base_url.clone()
            };
            let (project, asset, member) = (project.clone(), asset.clone(), member.clone());
            let app = &app;
            requests.push(async move {
                (
                    member.id.clone(),
                    request_analysis(app, &base, &member, &project, &asset).await,
                )
            });
        }
    }
    let answers = futures::future::join_all(requests).await;
    let accepted: Vec<&String> = answers
        .iter()
        .filter(|(_, (status, _))| *status == 202)
        .map(|(who, _)| who)
        .collect();
    assert_eq!(accepted.len(), 30, "exactly the credit's worth of jobs");
    for (_, (status, code)) in &answers {
        assert!(
            *status == 202 || (*status, code.as_str()) == (402, "insufficient_credits"),
            "{status} {code}"
        );
    }

    // A member's monthly limit holds under concurrency too: five more jobs' worth.
    let limited = &members[1];
    let used = accepted.iter().filter(|who| **who == &limited.id).count() as i64;
    let set = app
        .request(
            Method::PATCH,
            &format!("/api/v1/orgs/{org}/members/{}", limited.id),
            Some(&owner.access_token),
            Some(json!({"monthly_credit_limit": used + 5})),
        )
        .await;
    assert_eq!(set.status(), 200);
    grant_org(&app, &root, &org, 50).await;
    let mut requests = Vec::new();
    for n in 0..20 {
        let base = if n % 2 == 0 {
            app.base_url.clone()
        } else {
            sibling.base_url.clone()
        };
        let app = &app;
        let (project, asset) = (project.clone(), asset.clone());
        requests.push(async move { request_analysis(app, &base, limited, &project, &asset).await });
    }
    let answers = futures::future::join_all(requests).await;
    assert_eq!(
        answers.iter().filter(|(status, _)| *status == 202).count(),
        5,
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(status, code)| *status == 202 || (*status, code.as_str()) == (402, "member_credit_limit"))
    );

    // The usage per member sums to the ledger: what is held is the organisation's reserved
    // credits, and nothing was charged yet.
    let balance = json_of(
        app.request(
            Method::GET,
            &format!("/api/v1/orgs/{org}/credits/balance"),
            Some(&owner.access_token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        (balance["balance"].as_i64(), balance["reserved"].as_i64()),
        (Some(80), Some(35))
    );
    let head: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&app.db.postgres().pool)
        .await
        .expect("head");
    let usage = json_of(
        app.get_after(
            &format!("/api/v1/orgs/{org}/usage"),
            &owner.access_token,
            &head.to_string(),
        )
        .await,
    )
    .await;
    let items = usage["items"].as_array().expect("items");
    let held: i64 = items.iter().filter_map(|row| row["held"].as_i64()).sum();
    let charged: i64 = items.iter().filter_map(|row| row["charged"].as_i64()).sum();
    assert_eq!((held, charged), (35, 0), "{usage}");
    let limited_row = items
        .iter()
        .find(|row| row["user_id"] == limited.id.as_str())
        .expect("the limited member's usage");
    assert_eq!(limited_row["held"].as_i64(), Some(used + 5));
}

#[tokio::test]
async fn an_organisations_storage_quota_holds_under_concurrent_uploads_by_its_members() {
    if keyframe_tests::skipped_in_the_embedded_suite() {
        return;
    }
    let video = keyframe_tests::short_video();
    let size = std::fs::metadata(&video).expect("video").len();
    // Both API processes store into the same place, as a deployment's replicas do.
    let storage = test_api_settings().storage;
    let settings = || {
        let mut settings = test_api_settings();
        settings.organization_storage_quota_bytes = size * 5 / 2;
        settings.storage = storage.clone();
        settings
    };
    let app = TestApp::builder().settings(settings()).spawn().await;
    let sibling = app.sibling().settings(settings()).spawn().await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let mut members = vec![owner.clone()];
    for n in 1..3 {
        members.push(
            app.join_org(&owner, &org, &format!("member{n}@example.com"), "member")
                .await,
        );
    }
    let created = app
        .request(
            Method::POST,
            "/api/v1/projects",
            Some(&owner.access_token),
            Some(json!({"name": "Shared", "organization_id": org})),
        )
        .await;
    let project = json_of(created).await["id"].as_str().expect("id").to_owned();
    let bytes = std::fs::read(&video).expect("video");
    let uploads = members.iter().enumerate().map(|(n, member)| {
        let base = if n % 2 == 0 { &app.base_url } else { &sibling.base_url };
        app.http
            .post(format!("{base}/api/v1/projects/{project}/assets?filename=clip{n}.mp4"))
            .bearer_auth(&member.access_token)
            .header("content-type", "video/mp4")
            .body(bytes.clone())
            .send()
    });
    let mut answers = Vec::new();
    for response in futures::future::join_all(uploads).await {
        answers.push(code_of(response.expect("answered")).await);
    }
    let stored = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(stored, 2, "two videos fit the organisation's quota: {answers:?}");
    assert!(
        answers
            .iter()
            .any(|answer| *answer == (413, "quota_exceeded".to_owned())),
        "{answers:?}"
    );
    assert_eq!(app.stored_files().len(), 2, "the refused upload left nothing behind");
}

#[tokio::test]
async fn a_removed_members_progress_stream_ends_before_the_next_event() {
    // Every event of the stream asks again whether the follower may see the job.
    let mut settings = test_api_settings();
    settings.session_check_ttl = Duration::ZERO;
    settings.first_admin = Some((ROOT.to_owned(), ROOT_PASSWORD.to_owned()));
    let app = TestApp::builder().settings(settings).spawn().await;
    let root = root_token(&app).await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let member = app.join_org(&owner, &org, "member@example.com", "member").await;
    grant_org(&app, &root, &org, 10).await;
    let (project, asset) = project_with_video(&app, &org, &owner).await;
    let requested = app
        .request(
            Method::POST,
            "/api/v1/jobs",
            Some(&owner.access_token),
            Some(json!({"type": "analyze", "project_id": project, "asset_id": asset})),
        )
        .await;
    let job = json_of(requested).await["id"].as_str().expect("id").to_owned();

    let mut stream = app
        .http
        .get(format!("{}/api/v1/jobs/{job}/events", app.base_url))
        .bearer_auth(&member.access_token)
        .send()
        .await
        .expect("answered");
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: snapshot") {
        let chunk = stream.chunk().await.expect("readable").expect("the snapshot");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let removed = app
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{org}/members/{}", member.id),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    let cancelled = app
        .request(
            Method::POST,
            &format!("/api/v1/jobs/{job}/cancel"),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(cancelled.status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.chunk().await.expect("readable") {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends");
    assert!(
        !seen.contains("JobCancelled"),
        "nothing after the removal reached them: {seen}"
    );
}
