//! A small fake of Stripe's HTTP API on loopback: it records every request Keyframe makes and
//! answers Checkout Session creation the way Stripe does (bearer key checked, form fields
//! checked, the same `Idempotency-Key` answering the same session, a reused key with other
//! parameters refused). It can be told to fail the next requests, as an outage would.
//!
//! Also here: signing webhook bodies with Stripe's scheme, written out independently of
//! Keyframe's own code so that a mistake there cannot hide behind the same mistake here.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The secret key the fake accepts.
pub const SECRET_KEY: &str = "sk_test_keyframe";

/// One request as received.
#[derive(Debug, Clone)]
pub struct StripeRequest {
    /// `/v1/checkout/sessions`.
    pub path: String,
    /// Its `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The form fields, in order.
    pub form: Vec<(String, String)>,
}

impl StripeRequest {
    /// The value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Recorded {
    requests: Vec<StripeRequest>,
    /// Idempotency key -> (the form it came with, the session answered).
    sessions: HashMap<String, (Vec<(String, String)>, serde_json::Value)>,
    failures_left: u32,
}

/// The running fake.
pub struct FakeStripe {
    /// Its base URL (`KEYFRAME_STRIPE_API_BASE`).
    pub url: String,
    recorded: Arc<Mutex<Recorded>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeStripe {
    /// Starts it on a free loopback port.
    pub async fn start() -> Self {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .with_state(recorded.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, recorded, task }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<StripeRequest> {
        self.recorded.lock().expect("lock").requests.clone()
    }

    /// The next `count` requests are answered 500, as in an outage.
    pub fn fail_next(&self, count: u32) {
        self.recorded.lock().expect("lock").failures_left = count;
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn stripe_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": "invalid_request_error", "message": message}})),
    )
        .into_response()
}

async fn create_session(State(recorded): State<Arc<Mutex<Recorded>>>, headers: HeaderMap, body: String) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut recorded = recorded.lock().expect("lock");
    recorded.requests.push(StripeRequest {
        path: "/v1/checkout/sessions".to_owned(),
        idempotency_key: idempotency_key.clone(),
        form: form.clone(),
    });
    if recorded.failures_left > 0 {
        recorded.failures_left -= 1;
        return stripe_error(StatusCode::INTERNAL_SERVER_ERROR, "An unknown error occurred");
    }
    let authorised = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    if !authorised {
        return stripe_error(StatusCode::UNAUTHORIZED, "Invalid API Key provided");
    }
    let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, v)| v.clone());
    if field("mode").as_deref() != Some("subscription") || field("line_items[0][price]").is_none() {
        return stripe_error(StatusCode::BAD_REQUEST, "Missing required param: line_items[0][price].");
    }
    if field("line_items[0][price]").is_some_and(|price| !price.starts_with("price_")) {
        return stripe_error(StatusCode::BAD_REQUEST, "No such price");
    }
    if let Some(key) = &idempotency_key
        && let Some((first_form, session)) = recorded.sessions.get(key)
    {
        if *first_form != form {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            );
        }
        return Json(session.clone()).into_response();
    }
    let id = format!("cs_test_{}", uuid::Uuid::now_v7().simple());
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "mode": "subscription",
        "client_reference_id": field("client_reference_id"),
        "url": format!("https://checkout.stripe.com/c/pay/{id}"),
    });
    if let Some(key) = idempotency_key {
        recorded.sessions.insert(key, (form, session.clone()));
    }
    Json(session).into_response()
}

/// The `Stripe-Signature` header for `body` signed at `timestamp` with `secret`, as Stripe
/// makes it: HMAC-SHA256 over `"{timestamp}.{body}"`, keyed by the secret's bytes as written.
pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}
