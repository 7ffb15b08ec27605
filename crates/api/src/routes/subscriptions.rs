//! `/api/v1/subscriptions`: buying a plan through Stripe Checkout, Stripe's signed webhooks,
//! and the caller's current plan. A webhook's signature is checked here
//! (`keyframe_billing::stripe::verify`); what its event changes, once per event id, is the
//! use case's (`keyframe_app::subscriptions`).

use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, PathId};
use crate::rules::IDEMPOTENCY_KEY_MAX;
use crate::state::AppState;
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use keyframe_app::error::BillingRefusal;
use keyframe_billing::stripe::{self, SignatureError, WebhookEvent};
use keyframe_domain::ids::OrganizationId;
use keyframe_domain::owner::Owner;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest webhook body: Stripe's events are far smaller, but an invoice with many lines is
/// larger than the API's usual JSON limit.
const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    // Stripe's events are far smaller than this, but an invoice with many lines is larger
    // than the API's usual JSON limit.
    let webhook = OpenApiRouter::new()
        .routes(routes!(webhook))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    OpenApiRouter::new()
        .routes(routes!(checkout))
        .routes(routes!(organization_checkout))
        .routes(routes!(current))
        .routes(routes!(plans))
        .merge(webhook)
}

/// A plan on offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// Its name.
    pub name: String,
    /// Credits each paid month grants.
    pub monthly_credits: i64,
    /// Whether it can be bought through checkout.
    pub purchasable: bool,
}

/// The caller's plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentSubscription {
    /// The plan (the free plan without a paid subscription).
    pub plan: String,
    /// Stripe's status of the paid subscription (`active`, `past_due`, `canceled`, ...);
    /// `null` on the free plan.
    pub status: Option<String>,
    /// Credits each paid month grants.
    pub monthly_credits: i64,
    /// When the paid period ends.
    pub current_period_end: Option<DateTime<Utc>>,
    /// Whether it ends at the end of the period.
    pub cancel_at_period_end: bool,
}

/// `POST /checkout` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// The plan to buy.
    pub plan: String,
}

/// Where to pay.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutView {
    /// Stripe's checkout page: send the buyer there.
    pub checkout_url: String,
    /// The Checkout Session.
    pub session_id: String,
}

/// The answer to Stripe.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// Always `true`: Stripe stops delivering it.
    pub received: bool,
    /// This event id was processed before; nothing was done again.
    pub duplicate: bool,
    /// Keyframe acted on it (`false` for event types it does not handle).
    pub handled: bool,
}

/// The plans on offer.
#[utoipa::path(get, path = "/api/v1/subscriptions/plans", tag = "subscriptions", security(("bearer" = [])),
    responses((status = 200, body = [PlanView])))]
pub async fn plans(State(state): State<AppState>, _caller: AuthUser) -> Json<Vec<PlanView>> {
    let plans = state.app.billing.settings.plans.all().iter().map(|plan| PlanView {
        name: plan.name.clone(),
        monthly_credits: plan.monthly_credits,
        purchasable: plan.stripe_price_id.is_some(),
    });
    Json(plans.collect())
}

/// The caller's plan and its state.
#[utoipa::path(get, path = "/api/v1/subscriptions/current", tag = "subscriptions", security(("bearer" = [])),
    responses((status = 200, body = CurrentSubscription), (status = 401, body = crate::error::Problem)))]
pub async fn current(State(state): State<AppState>, caller: AuthUser) -> Result<Json<CurrentSubscription>, ApiError> {
    let subscription = state.app.subscription(Owner::User(caller.user_id)).await?;
    let plans = &state.app.billing.settings.plans;
    let free = plans.free().map_or("free", |plan| plan.name.as_str());
    let plan = subscription.plan().unwrap_or(free);
    Ok(Json(CurrentSubscription {
        plan: plan.to_owned(),
        status: subscription.status().map(str::to_owned),
        monthly_credits: plans.named(plan).map_or(0, |plan| plan.monthly_credits),
        current_period_end: subscription.current_period_end().filter(|_| !subscription.has_ended()),
        cancel_at_period_end: subscription.cancel_at_period_end(),
    }))
}

/// Start buying a plan: answers the Stripe Checkout page to send the buyer to. An
/// `Idempotency-Key` header makes a repeated request answer the same session.
#[utoipa::path(post, path = "/api/v1/subscriptions/checkout", tag = "subscriptions", security(("bearer" = [])),
    request_body = CheckoutBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Names this purchase: a repeat gets the same session")),
    responses((status = 200, body = CheckoutView),
        (status = 409, body = crate::error::Problem, description = "`already_subscribed`"),
        (status = 422, body = crate::error::Problem, description = "an unknown plan, or one not sold"),
        (status = 502, body = crate::error::Problem, description = "`payment_provider_error`: Stripe refused"),
        (status = 503, body = crate::error::Problem, description = "`billing_not_configured` or `payment_provider_unavailable`")))]
pub async fn checkout(
    State(state): State<AppState>,
    caller: AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Json<CheckoutView>, ApiError> {
    checkout_for(&state, &caller, Owner::User(caller.user_id), &headers, &body).await
}

/// Start buying a plan for an organisation (its owners): its own Stripe customer, its paid
/// invoices granting to its credits.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/subscriptions/checkout", tag = "subscriptions", security(("bearer" = [])),
    request_body = CheckoutBody,
    params(("id" = Uuid, Path, description = "Organisation id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Names this purchase: a repeat gets the same session")),
    responses((status = 200, body = CheckoutView),
        (status = 403, body = crate::error::Problem, description = "`insufficient_role`: only owners buy"),
        (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem, description = "`already_subscribed`"),
        (status = 422, body = crate::error::Problem, description = "an unknown plan, or one not sold"),
        (status = 502, body = crate::error::Problem, description = "`payment_provider_error`: Stripe refused"),
        (status = 503, body = crate::error::Problem, description = "`billing_not_configured` or `payment_provider_unavailable`")))]
pub async fn organization_checkout(
    State(state): State<AppState>,
    caller: AuthUser,
    PathId(id): PathId,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Json<CheckoutView>, ApiError> {
    checkout_for(
        &state,
        &caller,
        Owner::Organization(OrganizationId(id)),
        &headers,
        &body,
    )
    .await
}

/// A Checkout Session for `owner`'s plan, as `caller` asks.
async fn checkout_for(
    state: &AppState,
    caller: &AuthUser,
    owner: Owner,
    headers: &HeaderMap,
    body: &CheckoutBody,
) -> Result<Json<CheckoutView>, ApiError> {
    let client_key = idempotency_key(headers)?;
    let session = state
        .app
        .start_checkout(&caller.actor(), owner, &body.plan, client_key)
        .await?;
    Ok(Json(CheckoutView {
        checkout_url: session.url,
        session_id: session.id,
    }))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_MAX && key.bytes().all(|b| b.is_ascii_graphic()))
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(
                Code::InvalidIdempotencyKey,
                format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"),
            )
        })
}

/// Stripe's webhook: signed with the endpoint secret (`Stripe-Signature`); each event id is
/// processed once. Handles `checkout.session.completed`, `invoice.paid`,
/// `customer.subscription.updated` and `customer.subscription.deleted`; other types are
/// acknowledged and ignored.
#[utoipa::path(post, path = "/api/v1/subscriptions/webhook", tag = "subscriptions",
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex>")),
    request_body(content = Object, description = "A Stripe event, as Stripe sent it"),
    responses((status = 200, body = WebhookReceipt),
        (status = 400, body = crate::error::Problem, description = "`unsigned`, `invalid_signature`, `stale_signature` or `invalid_event`"),
        (status = 422, body = crate::error::Problem, description = "`unknown_customer` or `unknown_plan`: not processed, Stripe delivers it again"),
        (status = 503, body = crate::error::Problem, description = "`billing_not_configured`")))]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    let secret = state
        .app
        .billing
        .settings
        .webhook_secret
        .as_deref()
        .ok_or(BillingRefusal::NotConfigured("KEYFRAME_STRIPE_WEBHOOK_SECRET"))?;
    let signature = headers.get("stripe-signature").and_then(|value| value.to_str().ok());
    stripe::verify(signature, &body, secret, keyframe_domain::clock::now().timestamp()).map_err(|error| {
        let code = match error {
            SignatureError::Missing => Code::Unsigned,
            SignatureError::Stale => Code::StaleSignature,
            SignatureError::Malformed | SignatureError::Mismatch => Code::InvalidSignature,
        };
        tracing::warn!(%error, "a webhook call was refused");
        ApiError::bad_request(code, error.to_string())
    })?;
    let event: WebhookEvent = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(Code::InvalidEvent, format!("not a Stripe event: {e}")))?;
    let outcome = state.app.process_stripe_event(&event).await?;
    Ok(Json(WebhookReceipt {
        received: true,
        duplicate: outcome.duplicate,
        handled: outcome.handled,
    }))
}
