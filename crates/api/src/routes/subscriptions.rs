//! `/api/v1/subscriptions`: buying a plan through Stripe Checkout, Stripe's signed webhooks,
//! and the caller's current plan.
//!
//! Stripe is the source of what was paid; Keyframe learns it only from webhooks, each verified
//! (`keyframe_billing::stripe::verify`) and processed once: the event id is recorded after
//! processing, and processing itself is idempotent (the `Subscription` aggregate ignores an
//! event it has applied, the `CreditLedger` grants each invoice once), so two deliveries
//! racing each other still change things once. A paid invoice grants its plan's monthly
//! credits.

use crate::auth::AuthUser;
use crate::error::{ApiError, Code, FieldError};
use crate::extract::ApiJson;
use crate::rules::IDEMPOTENCY_KEY_MAX;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use keyframe_billing::plans::Plan;
use keyframe_billing::stripe::{self, CheckoutRequest, SignatureError, StripeError, WebhookEvent};
use keyframe_domain::ids::UserId;
use keyframe_domain::ledger::GrantSource;
use keyframe_domain::subscription::{StripeSubscriptionState, Subscription, SubscriptionChange, SubscriptionCommand};
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Largest webhook body: Stripe's events are far smaller, but an invoice with many lines is
/// larger than the API's usual JSON limit.
const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;
/// How long an event Keyframe cannot attribute to a user is refused (so that Stripe delivers
/// it again once the checkout that introduces its customer has arrived). Past it the event is
/// acknowledged unhandled and logged: a Stripe account may hold customers that are not
/// Keyframe's, and refusing their events for days would make Stripe disable the endpoint.
const ATTRIBUTION_GRACE_SECS: i64 = 3_600;
/// The invoices that pay a subscription period: only they grant the plan's credits (not
/// prorations of a plan change, nor one-off invoices).
const PERIOD_INVOICES: [&str; 2] = ["subscription_create", "subscription_cycle"];

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/checkout", post(checkout))
        .route(
            "/webhook",
            post(webhook).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
        .route("/current", get(current))
        .route("/plans", get(plans))
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

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Validation(vec![FieldError {
        field: field.to_owned(),
        message: message.into(),
    }])
}

fn not_configured(what: &str) -> ApiError {
    ApiError::Upstream {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: Code::BillingNotConfigured,
        detail: format!("payments are not set up on this server ({what} missing)"),
    }
}

async fn subscription_of(state: &AppState, user_id: UserId) -> Result<Subscription, ApiError> {
    Ok(state
        .buses()
        .subscriptions
        .load(&user_id.to_string())
        .await
        .map_err(ApiError::from)?
        .unwrap_or_default())
}

/// The plans on offer.
#[utoipa::path(get, path = "/api/v1/subscriptions/plans", tag = "subscriptions", security(("bearer" = [])),
    responses((status = 200, body = [PlanView])))]
pub async fn plans(State(state): State<AppState>, _caller: AuthUser) -> Json<Vec<PlanView>> {
    let plans = state.settings.billing.plans.all().iter().map(|plan| PlanView {
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
    let subscription = subscription_of(&state, caller.user_id).await?;
    let plans = &state.settings.billing.plans;
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
    let billing = &state.settings.billing;
    let plan = billing
        .plans
        .named(&body.plan)
        .ok_or_else(|| invalid("plan", "no such plan; see GET /api/v1/subscriptions/plans"))?;
    let price_id = plan
        .stripe_price_id
        .as_deref()
        .ok_or_else(|| invalid("plan", "this plan is not sold"))?;
    let client_key = idempotency_key(&headers)?;
    let stripe = state
        .stripe
        .as_ref()
        .ok_or_else(|| not_configured("KEYFRAME_STRIPE_SECRET_KEY"))?;
    let subscription = subscription_of(&state, caller.user_id).await?;
    if !subscription.has_ended() {
        return Err(ApiError::Conflict {
            code: Code::AlreadySubscribed,
            detail: "a subscription is running; change or cancel it in the billing portal".to_owned(),
        });
    }
    let user_id = caller.user_id.to_string();
    let customer_id = match subscription.customer_id() {
        Some(known) => Some(known.to_owned()),
        None => {
            sqlx::query_scalar(
                "SELECT customer_id FROM stripe_customers WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(caller.user_id.0)
            .fetch_optional(state.pool())
            .await?
        }
    };
    // Scoped by user, so one client's key can never answer another user's session.
    let key = format!(
        "keyframe-checkout-{user_id}-{}",
        client_key.unwrap_or_else(|| Uuid::now_v7().to_string())
    );
    let request = CheckoutRequest {
        user_id: &user_id,
        plan: &plan.name,
        price_id,
        customer_id: customer_id.as_deref(),
        success_url: &billing.success_url,
        cancel_url: &billing.cancel_url,
    };
    let session = stripe
        .create_checkout_session(&request, &key)
        .await
        .map_err(|error| match error {
            StripeError::Rejected { .. } => {
                tracing::error!(%error, plan = %plan.name, "Stripe refused a Checkout Session");
                ApiError::Upstream {
                    status: StatusCode::BAD_GATEWAY,
                    code: Code::PaymentProviderError,
                    detail: error.to_string(),
                }
            }
            StripeError::Unavailable(_) => {
                tracing::warn!(%error, "Stripe is unavailable");
                ApiError::Upstream {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: Code::PaymentProviderUnavailable,
                    detail: "the payment provider cannot be reached; try again shortly".to_owned(),
                }
            }
        })?;
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
        .settings
        .billing
        .webhook_secret
        .as_deref()
        .ok_or_else(|| not_configured("KEYFRAME_STRIPE_WEBHOOK_SECRET"))?;
    let signature = headers.get("stripe-signature").and_then(|value| value.to_str().ok());
    stripe::verify(signature, &body, secret, Utc::now().timestamp()).map_err(|error| {
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
    let seen: Option<String> = sqlx::query_scalar("SELECT event_id FROM stripe_webhook_events WHERE event_id = $1")
        .bind(&event.id)
        .fetch_optional(state.pool())
        .await?;
    if seen.is_some() {
        return Ok(Json(WebhookReceipt {
            received: true,
            duplicate: true,
            handled: false,
        }));
    }
    let outcome = match event.event_type.as_str() {
        "checkout.session.completed" => checkout_completed(&state, &event).await?,
        "invoice.paid" => invoice_paid(&state, &event).await?,
        "customer.subscription.updated" => subscription_updated(&state, &event).await?,
        "customer.subscription.deleted" => subscription_deleted(&state, &event).await?,
        _ => Outcome::Ignored,
    };
    // An event acknowledged without an owner is not marked processed: sent again later (from
    // Stripe's dashboard, once the customer is known), it is processed then.
    if outcome != Outcome::Unattributed {
        sqlx::query("INSERT INTO stripe_webhook_events (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&event.id)
            .bind(&event.event_type)
            .execute(state.pool())
            .await?;
    }
    let handled = outcome == Outcome::Handled;
    tracing::info!(event_id = %event.id, event_type = %event.event_type, handled, "Stripe event processed");
    Ok(Json(WebhookReceipt {
        received: true,
        duplicate: false,
        handled,
    }))
}

/// What processing an event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Keyframe acted on it.
    Handled,
    /// Nothing in it for Keyframe (a type it does not handle, an invoice that pays no period).
    Ignored,
    /// No user could be found for it, past the grace: acknowledged, not marked processed.
    Unattributed,
}

fn missing(event: &WebhookEvent, field: &str) -> ApiError {
    ApiError::bad_request(
        Code::InvalidEvent,
        format!("{} {} has no {field}", event.event_type, event.id),
    )
}

fn metadata(event: &WebhookEvent) -> CommandMetadata {
    let mut metadata = CommandMetadata::system().with_actor(Actor::System);
    metadata.causation_id = format!("stripe:{}", event.id);
    metadata
}

/// Whose the event is: the user id Keyframe put in the object's metadata at checkout (at the
/// first of `pointers` that has one), else the user of its Stripe customer. `None` for an event
/// no user can be found for after [`ATTRIBUTION_GRACE_SECS`]; within it, 422 so Stripe retries.
async fn owner_of(state: &AppState, event: &WebhookEvent, pointers: &[&str]) -> Result<Option<UserId>, ApiError> {
    if let Some(user_id) = event.first_text(pointers).and_then(|id| id.parse::<Uuid>().ok()) {
        return Ok(Some(UserId(user_id)));
    }
    let customer = event.text("/customer").ok_or_else(|| missing(event, "customer"))?;
    let user_id: Option<Uuid> = sqlx::query_scalar("SELECT user_id FROM stripe_customers WHERE customer_id = $1")
        .bind(customer)
        .fetch_optional(state.pool())
        .await?;
    if let Some(user_id) = user_id {
        return Ok(Some(UserId(user_id)));
    }
    if Utc::now().timestamp() - event.created > ATTRIBUTION_GRACE_SECS {
        tracing::error!(event_id = %event.id, event_type = %event.event_type, customer,
            "a Stripe event for a customer that is no Keyframe user's; acknowledged unhandled");
        return Ok(None);
    }
    tracing::warn!(event_id = %event.id, customer, "a Stripe event for a customer no checkout introduced yet");
    Err(ApiError::BadRequest {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: Code::UnknownCustomer,
        detail: format!("customer {customer} is no Keyframe user's (yet)"),
    })
}

/// The plan a subscription object is for: by its price, else by the plan Keyframe put in its
/// metadata.
fn plan_of<'a>(state: &'a AppState, event: &WebhookEvent, prices: &[&str], names: &[&str]) -> Option<&'a Plan> {
    let plans = &state.settings.billing.plans;
    event
        .first_text(prices)
        .and_then(|price| plans.priced(price))
        .or_else(|| event.first_text(names).and_then(|name| plans.named(name)))
}

fn unknown_plan(event: &WebhookEvent) -> ApiError {
    tracing::error!(event_id = %event.id, "a Stripe event names a plan this server does not know; check KEYFRAME_PLANS");
    ApiError::BadRequest {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: Code::UnknownPlan,
        detail: format!("{} {} is for no configured plan", event.event_type, event.id),
    }
}

async fn change_subscription(
    state: &AppState,
    event: &WebhookEvent,
    owner_id: UserId,
    change: SubscriptionChange,
) -> Result<(), ApiError> {
    let command = || SubscriptionCommand {
        owner_id,
        stripe_event_id: event.id.clone(),
        stripe_created: event.created_at(),
        change: change.clone(),
    };
    state
        .buses()
        .subscriptions
        .execute(&owner_id.to_string(), command, &metadata(event))
        .await
        .map_err(ApiError::from)?;
    Ok(())
}

async fn checkout_completed(state: &AppState, event: &WebhookEvent) -> Result<Outcome, ApiError> {
    if event.text("/mode") != Some("subscription") {
        return Ok(Outcome::Ignored);
    }
    let Some(owner_id) = owner_of(state, event, &["/client_reference_id", "/metadata/user_id"]).await? else {
        return Ok(Outcome::Unattributed);
    };
    let customer_id = event.text("/customer").ok_or_else(|| missing(event, "customer"))?;
    let subscription_id = event
        .text("/subscription")
        .ok_or_else(|| missing(event, "subscription"))?;
    let plan = plan_of(state, event, &[], &["/metadata/plan"]).ok_or_else(|| unknown_plan(event))?;
    sqlx::query("INSERT INTO stripe_customers (customer_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(customer_id)
        .bind(owner_id.0)
        .execute(state.pool())
        .await?;
    let started = StripeSubscriptionState {
        subscription_id: subscription_id.to_owned(),
        customer_id: customer_id.to_owned(),
        plan: plan.name.clone(),
        status: "active".to_owned(),
        current_period_end: None,
        cancel_at_period_end: false,
    };
    change_subscription(state, event, owner_id, SubscriptionChange::Started(started)).await?;
    Ok(Outcome::Handled)
}

async fn invoice_paid(state: &AppState, event: &WebhookEvent) -> Result<Outcome, ApiError> {
    let invoice_id = event.text("/id").ok_or_else(|| missing(event, "id"))?;
    let period = period_line(event);
    let pays_a_period = match event.text("/billing_reason") {
        Some(reason) if PERIOD_INVOICES.contains(&reason) => true,
        // A plan change that starts a new period at once bills it as an update: its period
        // line is marked as no proration.
        Some("subscription_update") => period.is_some_and(|line| is_proration(line) == Some(false)),
        _ => false,
    };
    if !pays_a_period {
        return Ok(Outcome::Ignored);
    }
    let Some(owner_id) = owner_of(
        state,
        event,
        &[
            "/parent/subscription_details/metadata/user_id",
            "/subscription_details/metadata/user_id",
            "/lines/data/0/metadata/user_id",
        ],
    )
    .await?
    else {
        return Ok(Outcome::Unattributed);
    };
    let plans = &state.settings.billing.plans;
    let period_price = period
        .and_then(|line| {
            line.pointer("/pricing/price_details/price")
                .or_else(|| line.pointer("/price/id"))
        })
        .and_then(|price| price.as_str());
    let priced = period_price.and_then(|price| plans.priced(price));
    let plan = match priced.or_else(|| {
        plan_of(
            state,
            event,
            &[],
            &[
                "/parent/subscription_details/metadata/plan",
                "/subscription_details/metadata/plan",
                "/lines/data/0/metadata/plan",
            ],
        )
    }) {
        Some(plan) => plan,
        None => {
            let subscription = subscription_of(state, owner_id).await?;
            subscription
                .plan()
                .and_then(|name| state.settings.billing.plans.named(name))
                .ok_or_else(|| unknown_plan(event))?
        }
    };
    if plan.monthly_credits == 0 {
        return Ok(Outcome::Handled);
    }
    let source = GrantSource::Subscription {
        invoice_id: invoice_id.to_owned(),
        stripe_event_id: event.id.clone(),
    };
    let reason = format!("{} plan, invoice {invoice_id} paid", plan.name);
    state
        .app
        .grant(owner_id, plan.monthly_credits, source, &reason, &metadata(event))
        .await?;
    Ok(Outcome::Handled)
}

/// The invoice line that pays the subscription's period: the first that is no proration.
fn period_line(event: &WebhookEvent) -> Option<&serde_json::Value> {
    event
        .data
        .object
        .pointer("/lines/data")?
        .as_array()?
        .iter()
        .find(|line| is_proration(line) != Some(true))
}

/// Whether an invoice line is a proration, where it says (older API versions on the line,
/// newer ones under its parent).
fn is_proration(line: &serde_json::Value) -> Option<bool> {
    line.pointer("/proration")
        .or_else(|| line.pointer("/parent/subscription_item_details/proration"))
        .and_then(|value| value.as_bool())
}

fn subscription_state(state: &AppState, event: &WebhookEvent) -> Result<StripeSubscriptionState, ApiError> {
    let plan = plan_of(
        state,
        event,
        &["/items/data/0/price/id", "/plan/id"],
        &["/metadata/plan"],
    )
    .ok_or_else(|| unknown_plan(event))?;
    let period_end = ["/current_period_end", "/items/data/0/current_period_end"]
        .iter()
        .find_map(|pointer| event.data.object.pointer(pointer).and_then(|v| v.as_i64()))
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0));
    Ok(StripeSubscriptionState {
        subscription_id: event.text("/id").ok_or_else(|| missing(event, "id"))?.to_owned(),
        customer_id: event
            .text("/customer")
            .ok_or_else(|| missing(event, "customer"))?
            .to_owned(),
        plan: plan.name.clone(),
        status: event
            .text("/status")
            .ok_or_else(|| missing(event, "status"))?
            .to_owned(),
        current_period_end: period_end,
        cancel_at_period_end: event
            .data
            .object
            .pointer("/cancel_at_period_end")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

async fn subscription_updated(state: &AppState, event: &WebhookEvent) -> Result<Outcome, ApiError> {
    let Some(owner_id) = owner_of(state, event, &["/metadata/user_id"]).await? else {
        return Ok(Outcome::Unattributed);
    };
    let updated = subscription_state(state, event)?;
    change_subscription(state, event, owner_id, SubscriptionChange::Updated(updated)).await?;
    Ok(Outcome::Handled)
}

async fn subscription_deleted(state: &AppState, event: &WebhookEvent) -> Result<Outcome, ApiError> {
    let Some(owner_id) = owner_of(state, event, &["/metadata/user_id"]).await? else {
        return Ok(Outcome::Unattributed);
    };
    let subscription_id = event.text("/id").ok_or_else(|| missing(event, "id"))?.to_owned();
    change_subscription(state, event, owner_id, SubscriptionChange::Ended { subscription_id }).await?;
    Ok(Outcome::Handled)
}
