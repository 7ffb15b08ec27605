//! `/api/v1/credits`: the caller's balance (from the `CreditLedger` itself, so never behind)
//! and the movements behind it (from the `credit_transactions` read model).

use crate::auth::AuthUser;
use crate::consistency::{ReadYourWrites, mark_consistency};
use crate::error::{ApiError, Code};
use crate::extract::ApiQuery;
use crate::paging::{Listed, Page};
use crate::state::AppState;
use crate::views::Balance;
use anyhow::Context as _;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use keyframe_projections::credit_transactions::{self, TransactionRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(balance))
        .routes(routes!(transactions))
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

/// A page of the list (see [`Page`]).
pub type TransactionPage = Page<Transaction>;

impl Listed for Transaction {
    const PAGE: &'static str = "TransactionPage";
    const PAGE_DESCRIPTION: &'static str = "A page of movements.";
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

/// The caller's balance, reserved and available credits.
#[utoipa::path(get, path = "/api/v1/credits/balance", tag = "credits", security(("bearer" = [])),
    responses((status = 200, body = Balance), (status = 401, body = crate::error::Problem)))]
pub async fn balance(State(state): State<AppState>, caller: AuthUser) -> Result<Json<Balance>, ApiError> {
    let ledger = state.app.view_ledger(&caller.actor(), caller.user_id).await?;
    Ok(Json(Balance::of(&ledger)))
}

/// The caller's movements of credits, newest first.
#[utoipa::path(get, path = "/api/v1/credits/transactions", tag = "credits", security(("bearer" = [])),
    params(TransactionQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = TransactionPage), (status = 401, body = crate::error::Problem)))]
pub async fn transactions(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    ApiQuery(query): ApiQuery<TransactionQuery>,
) -> Result<Response, ApiError> {
    let (limit, _) = crate::paging::page(query.limit, None)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|raw| {
            raw.parse::<i64>().map_err(|_| {
                ApiError::bad_request(Code::InvalidCursor, "cursor must be a next_cursor from a previous page")
            })
        })
        .transpose()?;
    let caught_up = read_your_writes.wait(&state, credit_transactions::NAME).await?;
    let rows = credit_transactions::list_for_owner(state.pool(), caller.user_id.0, cursor, limit + 1)
        .await
        .context("listing transactions")?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.sequence);
    let page = Page {
        items: rows.into_iter().map(Transaction::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}
