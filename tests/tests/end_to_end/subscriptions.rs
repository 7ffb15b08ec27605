//! Subscriptions end to end: checkout through a fake Stripe on loopback that records what
//! Keyframe asks, and webhooks signed with Stripe's scheme delivered to the real HTTP API.

use keyframe::config::Component;
use keyframe_api::settings::ApiSettings;
use keyframe_billing::stripe::StripeConfig;
use keyframe_tests::stripe::{FakeStripe, SECRET_KEY, signature_header};
use keyframe_tests::{TestApp, TestUser, test_api_settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "whsec_keyframe_test_secret";

fn billing_settings(stripe: &FakeStripe) -> ApiSettings {
    let mut settings = test_api_settings();
    settings.signup_bonus_credits = 0;
    settings.billing.plans = "free:0,pro:1000:price_pro,studio:5000:price_studio"
        .parse()
        .expect("plans");
    settings.billing.stripe = Some(StripeConfig {
        api_base: stripe.url.clone(),
        secret_key: SECRET_KEY.to_owned(),
    });
    settings.billing.webhook_secret = Some(WEBHOOK_SECRET.to_owned());
    settings
}

async fn spawn(stripe: &FakeStripe) -> TestApp {
    TestApp::builder()
        .components(vec![Component::Api, Component::Relay, Component::Projectors])
        .settings(billing_settings(stripe))
        .spawn()
        .await
}

async fn checkout(app: &TestApp, user: &TestUser, plan: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/api/v1/subscriptions/checkout", app.base_url))
        .bearer_auth(&user.access_token)
        .json(&json!({ "plan": plan }));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("answered")
}

/// Delivers `event` signed `age_secs` ago with `secret`, as Stripe would.
async fn deliver_signed(app: &TestApp, event: &Value, secret: &str, age_secs: i64) -> reqwest::Response {
    let body = event.to_string();
    let signed_at = chrono::Utc::now().timestamp() - age_secs;
    deliver_raw(app, body, Some(signature_header(secret, signed_at, &event.to_string()))).await
}

async fn deliver(app: &TestApp, event: &Value) -> reqwest::Response {
    deliver_signed(app, event, WEBHOOK_SECRET, 0).await
}

async fn deliver_raw(app: &TestApp, body: String, signature: Option<String>) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/api/v1/subscriptions/webhook", app.base_url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    request.send().await.expect("answered")
}

async fn receipt(answer: reqwest::Response) -> Value {
    assert_eq!(answer.status(), StatusCode::OK);
    answer.json().await.expect("json")
}

async fn problem_code(answer: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(answer.status(), status);
    let problem: Value = answer.json().await.expect("json");
    problem["code"].as_str().expect("code").to_owned()
}

fn event(id: &str, event_type: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": event_type, "created": created, "data": {"object": object}})
}

fn checkout_completed(id: &str, user: &TestUser) -> Value {
    event(
        id,
        "checkout.session.completed",
        1_700_000_000,
        json!({
            "id": "cs_test_1", "object": "checkout.session", "mode": "subscription",
            "client_reference_id": user.id, "customer": "cus_1", "subscription": "sub_1",
            "metadata": {"user_id": user.id, "plan": "pro"},
        }),
    )
}

/// A paid invoice of a subscription period, made now, that names only its customer and price:
/// the user comes from the checkout.
fn invoice_paid(id: &str, invoice_id: &str) -> Value {
    invoice(
        id,
        invoice_id,
        "subscription_cycle",
        "cus_1",
        chrono::Utc::now().timestamp(),
    )
}

fn invoice(id: &str, invoice_id: &str, billing_reason: &str, customer: &str, created: i64) -> Value {
    event(
        id,
        "invoice.paid",
        created,
        json!({
            "id": invoice_id, "object": "invoice", "customer": customer, "subscription": "sub_1",
            "billing_reason": billing_reason,
            "lines": {"data": [{"price": {"id": "price_pro"}}]},
        }),
    )
}

async fn balance(app: &TestApp, user: &TestUser) -> i64 {
    app.get_json(user, "/api/v1/credits/balance").await["balance"]
        .as_i64()
        .expect("balance")
}

#[tokio::test]
async fn checkout_asks_stripe_for_a_session_once_per_idempotency_key() {
    let stripe = FakeStripe::start().await;
    let app = spawn(&stripe).await;
    let user = app.register_and_login("buyer@example.com").await;

    let plans = app.get_json(&user, "/api/v1/subscriptions/plans").await;
    assert_eq!(
        plans,
        json!([
            {"name": "free", "monthly_credits": 0, "purchasable": false},
            {"name": "pro", "monthly_credits": 1000, "purchasable": true},
            {"name": "studio", "monthly_credits": 5000, "purchasable": true},
        ])
    );
    let current = app.get_json(&user, "/api/v1/subscriptions/current").await;
    assert_eq!(
        current,
        json!({"plan": "free", "status": null, "monthly_credits": 0, "current_period_end": null, "cancel_at_period_end": false})
    );

    let first = receipt(checkout(&app, &user, "pro", Some("order-1")).await).await;
    let url = first["checkout_url"].as_str().expect("url");
    assert!(url.starts_with("https://checkout.stripe.com/"), "{url}");
    let requests = stripe.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.field("mode"), Some("subscription"));
    assert_eq!(sent.field("line_items[0][price]"), Some("price_pro"));
    assert_eq!(sent.field("client_reference_id"), Some(user.id.as_str()));
    assert_eq!(
        sent.field("subscription_data[metadata][user_id]"),
        Some(user.id.as_str())
    );
    assert_eq!(sent.field("subscription_data[metadata][plan]"), Some("pro"));
    let key = sent.idempotency_key.clone().expect("an idempotency key");
    assert!(key.contains(&user.id) && key.ends_with("order-1"), "{key}");

    // The client repeats its request: Stripe sees the same key and answers the same session.
    let again = receipt(checkout(&app, &user, "pro", Some("order-1")).await).await;
    assert_eq!(again["session_id"], first["session_id"]);
    assert_eq!(stripe.requests()[1].idempotency_key.as_deref(), Some(key.as_str()));

    // Stripe fails once: Keyframe tries again with the same key, and one session results.
    stripe.fail_next(1);
    let retried = receipt(checkout(&app, &user, "studio", None).await).await;
    let requests = stripe.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[2].idempotency_key, requests[3].idempotency_key);
    assert_eq!(requests[3].field("line_items[0][price]"), Some("price_studio"));
    assert!(
        retried["session_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("cs_test_"))
    );

    // Stripe stays down: 503, never a 500.
    stripe.fail_next(3);
    let code = problem_code(
        checkout(&app, &user, "pro", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(code, "payment_provider_unavailable");

    // Plans that cannot be bought, and bad keys.
    let code = problem_code(
        checkout(&app, &user, "free", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(code, "validation_failed");
    let code = problem_code(
        checkout(&app, &user, "gold", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(code, "validation_failed");
    let code = problem_code(
        checkout(&app, &user, "pro", Some("has space")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(code, "invalid_idempotency_key");
    let anonymous = app
        .request(
            Method::POST,
            "/api/v1/subscriptions/checkout",
            None,
            Some(json!({"plan": "pro"})),
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(stripe.requests().len(), 7, "refused requests never reach Stripe");
}

#[tokio::test]
async fn webhooks_start_the_plan_grant_each_invoice_once_and_end_it() {
    let stripe = FakeStripe::start().await;
    let app = spawn(&stripe).await;
    let user = app.register_and_login("subscriber@example.com").await;

    let started = receipt(deliver(&app, &checkout_completed("evt_1", &user)).await).await;
    assert_eq!(started, json!({"received": true, "duplicate": false, "handled": true}));
    let current = app.get_json(&user, "/api/v1/subscriptions/current").await;
    assert_eq!(
        (current["plan"].as_str(), current["status"].as_str()),
        (Some("pro"), Some("active"))
    );
    assert_eq!(current["monthly_credits"], 1000);
    let code = problem_code(checkout(&app, &user, "studio", None).await, StatusCode::CONFLICT).await;
    assert_eq!(code, "already_subscribed");
    assert!(stripe.requests().is_empty());

    // The first invoice grants the plan's credits; Stripe delivering it again changes nothing.
    let paid = invoice_paid("evt_2", "in_1");
    assert_eq!(receipt(deliver(&app, &paid).await).await["handled"], true);
    assert_eq!(balance(&app, &user).await, 1000);
    let replay = receipt(deliver(&app, &paid).await).await;
    assert_eq!(replay, json!({"received": true, "duplicate": true, "handled": false}));
    // Another event about the same invoice still grants it once.
    assert_eq!(
        receipt(deliver(&app, &invoice_paid("evt_3", "in_1")).await).await["handled"],
        true
    );
    assert_eq!(balance(&app, &user).await, 1000);
    // The next month's invoice grants again; a proration invoice of a plan change does not.
    receipt(deliver(&app, &invoice_paid("evt_4", "in_2")).await).await;
    assert_eq!(balance(&app, &user).await, 2000);
    let now = chrono::Utc::now().timestamp();
    let proration = invoice("evt_4p", "in_2p", "subscription_update", "cus_1", now);
    assert_eq!(receipt(deliver(&app, &proration).await).await["handled"], false);
    assert_eq!(balance(&app, &user).await, 2000);
    // A plan change that starts a new period at once: billed as an update, with the new
    // plan's period line marked as no proration beside the proration of the old plan.
    let new_period = event(
        "evt_4q",
        "invoice.paid",
        now,
        json!({
            "id": "in_3", "object": "invoice", "customer": "cus_1", "billing_reason": "subscription_update",
            "lines": {"data": [
                {"proration": true, "price": {"id": "price_pro"}},
                {"proration": false, "price": {"id": "price_studio"}},
            ]},
        }),
    );
    assert_eq!(receipt(deliver(&app, &new_period).await).await["handled"], true);
    assert_eq!(balance(&app, &user).await, 7000);

    // An upgrade, to end with the period.
    let period_end = 1_702_592_000;
    let updated = event(
        "evt_5",
        "customer.subscription.updated",
        1_700_000_200,
        json!({
            "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active",
            "cancel_at_period_end": true, "current_period_end": period_end,
            "items": {"data": [{"price": {"id": "price_studio"}}]},
            "metadata": {"user_id": user.id, "plan": "pro"},
        }),
    );
    receipt(deliver(&app, &updated).await).await;
    let current = app.get_json(&user, "/api/v1/subscriptions/current").await;
    assert_eq!(current["plan"], "studio");
    assert_eq!(current["monthly_credits"], 5000);
    assert_eq!(current["cancel_at_period_end"], true);
    assert_eq!(current["current_period_end"], "2023-12-14T22:13:20Z");

    // An update Stripe made before the one applied (delivered late) is ignored.
    let late = event(
        "evt_4b",
        "customer.subscription.updated",
        1_700_000_150,
        json!({"id": "sub_1", "customer": "cus_1", "status": "past_due",
            "items": {"data": [{"price": {"id": "price_pro"}}]}}),
    );
    receipt(deliver(&app, &late).await).await;
    assert_eq!(
        app.get_json(&user, "/api/v1/subscriptions/current").await["plan"],
        "studio"
    );

    let deleted = event(
        "evt_6",
        "customer.subscription.deleted",
        1_700_000_300,
        json!({"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "canceled"}),
    );
    receipt(deliver(&app, &deleted).await).await;
    let current = app.get_json(&user, "/api/v1/subscriptions/current").await;
    assert_eq!(
        current,
        json!({"plan": "free", "status": "canceled", "monthly_credits": 0, "current_period_end": null, "cancel_at_period_end": false})
    );
    assert_eq!(balance(&app, &user).await, 7000, "credits granted stay");

    // The movements, once the read model has them.
    keyframe_tests::wait_for(
        "both grants in the transactions",
        std::time::Duration::from_secs(10),
        || async {
            let transactions = app.get_json(&user, "/api/v1/credits/transactions").await;
            let references: Vec<String> = transactions["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|item| item["reference"].as_str().map(str::to_owned))
                .collect();
            references == ["invoice:in_3", "invoice:in_2", "invoice:in_1"]
        },
    )
    .await;
}

#[tokio::test]
async fn unsigned_forged_stale_malformed_and_unknown_calls_change_nothing() {
    let stripe = FakeStripe::start().await;
    let app = spawn(&stripe).await;
    let user = app.register_and_login("wary@example.com").await;
    let paid = invoice_paid("evt_10", "in_10");
    let body = paid.to_string();

    let unsigned = deliver_raw(&app, body.clone(), None).await;
    assert_eq!(problem_code(unsigned, StatusCode::BAD_REQUEST).await, "unsigned");
    let forged = deliver_signed(&app, &paid, "whsec_someone_else", 0).await;
    assert_eq!(problem_code(forged, StatusCode::BAD_REQUEST).await, "invalid_signature");
    let stale = deliver_signed(&app, &paid, WEBHOOK_SECRET, 301).await;
    assert_eq!(problem_code(stale, StatusCode::BAD_REQUEST).await, "stale_signature");
    let now = chrono::Utc::now().timestamp();
    let tampered = deliver_raw(
        &app,
        body.replace("in_10", "in_11"),
        Some(signature_header(WEBHOOK_SECRET, now, &body)),
    )
    .await;
    assert_eq!(
        problem_code(tampered, StatusCode::BAD_REQUEST).await,
        "invalid_signature"
    );
    let garbage = "{not json";
    let malformed = deliver_raw(
        &app,
        garbage.to_owned(),
        Some(signature_header(WEBHOOK_SECRET, now, garbage)),
    )
    .await;
    assert_eq!(problem_code(malformed, StatusCode::BAD_REQUEST).await, "invalid_event");

    // A type Keyframe does not handle is acknowledged, once.
    let unknown = event("evt_11", "customer.created", now, json!({"id": "cus_9"}));
    assert_eq!(
        receipt(deliver(&app, &unknown).await).await,
        json!({"received": true, "duplicate": false, "handled": false})
    );
    assert_eq!(receipt(deliver(&app, &unknown).await).await["duplicate"], true);

    // An invoice that arrives before its checkout cannot be attributed yet: refused, so that
    // Stripe delivers it again, and granted once it can be.
    let early = deliver(&app, &paid).await;
    assert_eq!(
        problem_code(early, StatusCode::UNPROCESSABLE_ENTITY).await,
        "unknown_customer"
    );
    assert_eq!(balance(&app, &user).await, 0);
    receipt(deliver(&app, &checkout_completed("evt_12", &user)).await).await;
    assert_eq!(receipt(deliver(&app, &paid).await).await["handled"], true);
    assert_eq!(balance(&app, &user).await, 1000);

    // An event for a customer that is no Keyframe user's, older than the grace hour: answered
    // 200 unhandled so Stripe does not keep retrying it for days.
    let foreign = invoice("evt_13", "in_foreign", "subscription_cycle", "cus_foreign", now - 7_200);
    let unhandled = json!({"received": true, "duplicate": false, "handled": false});
    assert_eq!(receipt(deliver(&app, &foreign).await).await, unhandled);
    // Not marked processed: sent again (say from Stripe's dashboard), it is looked at again.
    assert_eq!(receipt(deliver(&app, &foreign).await).await, unhandled);

    let ledger_events = app
        .db
        .all_events()
        .await
        .iter()
        .filter(|event| event.aggregate_type == "CreditLedger" && event.aggregate_id == user.id)
        .count();
    assert_eq!(ledger_events, 1, "only the attributed invoice moved credits");
}

#[tokio::test]
async fn an_organisations_owner_buys_its_plan_and_its_invoices_grant_to_the_organisation() {
    let stripe = FakeStripe::start().await;
    let app = spawn(&stripe).await;
    let owner = app.register_and_login("owner@example.com").await;
    let org = app.create_org(&owner, "Studio").await;
    let admin = app.join_org(&owner, &org, "admin@example.com", "admin").await;
    let buy = |user: &TestUser| {
        app.http
            .post(format!("{}/api/v1/orgs/{org}/subscriptions/checkout", app.base_url))
            .bearer_auth(&user.access_token)
            .json(&json!({ "plan": "pro" }))
            .send()
    };

    // Only owners buy; the session names the organisation, as an organisation.
    let refused = buy(&admin).await.expect("answered");
    assert_eq!(problem_code(refused, StatusCode::FORBIDDEN).await, "insufficient_role");
    assert!(stripe.requests().is_empty());
    receipt(buy(&owner).await.expect("answered")).await;
    let requests = stripe.requests();
    let sent = &requests[0];
    assert_eq!(sent.field("client_reference_id"), Some(org.as_str()));
    assert_eq!(sent.field("metadata[owner_kind]"), Some("organization"));
    assert_eq!(
        sent.field("subscription_data[metadata][owner_kind]"),
        Some("organization")
    );

    // Stripe reports the checkout with what Keyframe put on it, then an invoice naming only its
    // customer: the organisation's plan starts and its ledger is granted, not the owner's.
    let completed = event(
        "evt_org_1",
        "checkout.session.completed",
        1_700_000_000,
        json!({
            "id": "cs_org", "object": "checkout.session", "mode": "subscription",
            "client_reference_id": org, "customer": "cus_org", "subscription": "sub_org",
            "metadata": {"user_id": org, "owner_kind": "organization", "plan": "pro"},
        }),
    );
    assert_eq!(receipt(deliver(&app, &completed).await).await["handled"], true);
    let now = chrono::Utc::now().timestamp();
    let paid = invoice("evt_org_2", "in_org_1", "subscription_cycle", "cus_org", now);
    assert_eq!(receipt(deliver(&app, &paid).await).await["handled"], true);
    let credits = app
        .get_json(&owner, &format!("/api/v1/orgs/{org}/credits/balance"))
        .await;
    assert_eq!(credits["balance"], 1000);
    assert_eq!(balance(&app, &owner).await, 0, "the owner's own credits are untouched");
    let personal = app.get_json(&owner, "/api/v1/subscriptions/current").await;
    assert_eq!(personal["plan"], "free", "the owner's own plan is untouched");

    // While it pays for a plan, the organisation cannot be deleted: its invoices would go on.
    let delete = app
        .request(
            Method::DELETE,
            &format!("/api/v1/orgs/{org}"),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(
        problem_code(delete, StatusCode::CONFLICT).await,
        "organization_subscribed"
    );
}
