//! `/api/v1/credits`: the caller's balance (from the `CreditLedger` itself, so never behind)
//! and the movements behind it (from the `credit_transactions` read model).

use crate::auth::AuthUser;
use crate::consistency::{await_min_position, mark_consistency};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use anyhow::Context as _;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use keyframe_domain::ids::{JobId, UserId};
use keyframe_domain::ledger::{CreditLedger, GrantSource, LedgerCommand, LedgerError};
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use keyframe_projections::credit_transactions::{self, TransactionRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/balance", get(balance))
        .route("/transactions", get(transactions))
}

/// What the caller has.
#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    /// Credits owned.
    pub balance: i64,
    /// Held for jobs that have not ended.
    pub reserved: i64,
    /// What a new job may use: balance less reserved.
    pub available: i64,
}

/// One movement of credits.
#[derive(Debug, Serialize, ToSchema)]
pub struct Transaction {
    /// Its place in the ledger (pass as `cursor` to read on from it).
    pub id: i64,
    /// `grant`, `reservation`, `settlement`, `release` or `refund`.
    pub kind: String,
    /// The change to the balance.
    pub amount: i64,
    /// The change to what is reserved.
    pub reserved: i64,
    /// The balance after, where it changed.
    pub balance: Option<i64>,
    /// The job, for reservations and their ends.
    pub job_id: Option<Uuid>,
    /// Which run of the job, from 0 (a manual retry is a new run, with a reservation of its
    /// own); `null` without a job.
    pub run: Option<i32>,
    /// Where it came from (`signup`, `admin:<id>`, `invoice:<id>`, `allowance:<plan>:<YYYY-MM>`).
    pub reference: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl Balance {
    /// Where `ledger` stands.
    pub fn of(ledger: &CreditLedger) -> Self {
        Self {
            balance: ledger.balance(),
            reserved: ledger.reserved(),
            available: ledger.available(),
        }
    }
}

impl From<TransactionRow> for Transaction {
    fn from(row: TransactionRow) -> Self {
        Self {
            id: row.sequence,
            kind: row.kind,
            amount: row.amount,
            reserved: row.reserved,
            balance: row.balance,
            job_id: row.job_id,
            run: row.job_run,
            reference: row.reference,
            reason: row.reason,
            created_at: row.recorded_at,
        }
    }
}

/// A page of movements.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionPage {
    /// Newest first.
    pub items: Vec<Transaction>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// List query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TransactionQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[+-]?[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

pub(crate) fn ledger_rejected(error: LedgerError) -> ApiError {
    match error {
        LedgerError::InsufficientCredits { .. } => ApiError::BadRequest {
            status: axum::http::StatusCode::PAYMENT_REQUIRED,
            code: "insufficient_credits",
            detail: error.to_string(),
        },
        LedgerError::InvalidAmount { .. } => ApiError::Validation(vec![crate::error::FieldError {
            field: "amount".to_owned(),
            message: error.to_string(),
        }]),
        // The earlier run's release did not go through (the database wavered): try again.
        LedgerError::ReservationOpen { .. } => ApiError::Conflict {
            code: "concurrent_modification",
            detail: format!("{error}; try again"),
        },
        LedgerError::NoReservation | LedgerError::NotOwner => ApiError::Internal(anyhow::Error::new(error)),
    }
}

pub(crate) async fn ledger(state: &AppState, user_id: UserId) -> Result<CreditLedger, ApiError> {
    Ok(state
        .ledgers
        .load(&user_id.to_string())
        .await
        .map_err(|e| ApiError::from_command(e, ledger_rejected))?
        .unwrap_or_default())
}

/// Grants `amount` credits to `owner_id`; answers the position of the grant.
pub(crate) async fn grant(
    state: &AppState,
    owner_id: UserId,
    amount: i64,
    source: GrantSource,
    reason: &str,
    metadata: &CommandMetadata,
) -> Result<i64, ApiError> {
    let command = || LedgerCommand::Grant {
        owner_id,
        amount,
        source: source.clone(),
        reason: reason.to_owned(),
        at: Utc::now(),
    };
    state
        .ledgers
        .execute(&owner_id.to_string(), command, metadata)
        .await
        .map_err(|e| ApiError::from_command(e, ledger_rejected))
}

/// Holds `amount` credits of `owner_id` for `run` of `job_id`, before the run is recorded on
/// the job: not enough available credits is a 402 `insufficient_credits`.
pub(crate) async fn reserve_for_job(
    state: &AppState,
    owner_id: UserId,
    job_id: JobId,
    run: u32,
    amount: i64,
    metadata: &CommandMetadata,
) -> Result<(), ApiError> {
    let command = || LedgerCommand::Reserve {
        owner_id,
        job_id,
        run,
        amount,
        at: Utc::now(),
    };
    state
        .ledgers
        .execute(&owner_id.to_string(), command, metadata)
        .await
        .map(drop)
        .map_err(|e| ApiError::from_command(e, ledger_rejected))
}

/// Gives back the reservation of `run` of `job_id`. Repeats, and runs that never reserved
/// (jobs from before billing), change nothing. A failure is logged, not answered: it runs on
/// the way out of a request that already failed, or as housekeeping the settlement repeats.
pub(crate) async fn release_for_job(
    state: &AppState,
    owner_id: UserId,
    job_id: JobId,
    run: u32,
    reason: &str,
    metadata: &CommandMetadata,
) {
    let command = || LedgerCommand::Release {
        job_id,
        run,
        reason: reason.to_owned(),
        at: Utc::now(),
    };
    match state.ledgers.execute(&owner_id.to_string(), command, metadata).await {
        Ok(_) | Err(CommandError::Rejected(LedgerError::NoReservation)) => {}
        Err(error) => {
            tracing::error!(%error, %job_id, run, "releasing a job's reservation failed; its credits stay held");
        }
    }
}

/// The signup bonus for a new account, at once. Should it fail, the account stands and the
/// settlement process grants the bonus from the `UserRegistered` event (one per user).
pub(crate) async fn grant_signup_bonus(state: &AppState, owner_id: UserId, context: &RequestContext) {
    let amount = state.settings.signup_bonus_credits;
    if amount == 0 {
        return;
    }
    let metadata = context.metadata(Actor::User(owner_id));
    if let Err(error) = grant(
        state,
        owner_id,
        amount,
        GrantSource::SignupBonus,
        "signup bonus",
        &metadata,
    )
    .await
    {
        tracing::warn!(error = %error, user_id = %owner_id, "the signup bonus was not granted here; the settlement process grants it");
    }
}

/// The caller's balance, reserved and available credits.
#[utoipa::path(get, path = "/api/v1/credits/balance", tag = "credits", security(("bearer" = [])),
    responses((status = 200, body = Balance), (status = 401, body = crate::error::Problem)))]
pub async fn balance(State(state): State<AppState>, caller: AuthUser) -> Result<Json<Balance>, ApiError> {
    Ok(Json(Balance::of(&ledger(&state, caller.user_id).await?)))
}

/// The caller's movements of credits, newest first.
#[utoipa::path(get, path = "/api/v1/credits/transactions", tag = "credits", security(("bearer" = [])),
    params(TransactionQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = TransactionPage), (status = 401, body = crate::error::Problem)))]
pub async fn transactions(
    State(state): State<AppState>,
    caller: AuthUser,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<TransactionQuery>,
) -> Result<Response, ApiError> {
    let (limit, _) = crate::routes::page(query.limit, None)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|raw| {
            raw.parse::<i64>().map_err(|_| {
                ApiError::bad_request("invalid_cursor", "cursor must be a next_cursor from a previous page")
            })
        })
        .transpose()?;
    let caught_up = await_min_position(&state, &headers, credit_transactions::NAME).await?;
    let rows = credit_transactions::list_for_owner(&state.pool, caller.user_id.0, cursor, limit + 1)
        .await
        .context("listing transactions")?;
    let (rows, next_cursor) = crate::routes::split_page(rows, limit, |row| row.sequence);
    let page = TransactionPage {
        items: rows.into_iter().map(Transaction::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}
