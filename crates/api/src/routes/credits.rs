//! `/api/v1/credits` and `/api/v1/orgs/{id}/credits`: the balance of the caller's own credits
//! or of an organisation's (from the `CreditLedger` itself, so never behind), the movements
//! behind it and, for an organisation, the usage per member per month (from the
//! `credit_transactions` read model). Who may see an organisation's is the authorization
//! policy's: owners and admins everything, members their own usage.

use crate::auth::AuthUser;
use crate::consistency::{ReadYourWrites, mark_consistency};
use crate::error::{ApiError, Code, FieldError};
use crate::extract::{ApiQuery, PathId};
use crate::paging::{Listed, Page};
use crate::state::AppState;
use crate::views::Balance;
use anyhow::Context as _;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use keyframe_domain::ids::OrganizationId;
use keyframe_domain::owner::Owner;
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
        .routes(routes!(organization_balance))
        .routes(routes!(organization_transactions))
        .routes(routes!(organization_usage))
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
    /// On an organisation's ledger, the member whose job it is for.
    pub member_id: Option<Uuid>,
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
            member_id: row.member_id,
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

/// What one member's jobs used of an organisation's credits in one month.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberUsage {
    /// The month, `YYYY-MM` (UTC; a job counts in the month its credits were reserved).
    pub month: String,
    /// The member.
    pub user_id: Uuid,
    /// Credits charged for their finished jobs.
    pub charged: i64,
    /// Credits held for their jobs that have not ended.
    pub held: i64,
    /// Runs of their jobs that were charged.
    pub charged_runs: i64,
}

/// The usage per member per month, newest month first.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// One entry per member and month with any use.
    pub items: Vec<MemberUsage>,
}

/// Usage query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// How many of the latest months with any use, 1 to 24 (default 3).
    #[param(minimum = 1, maximum = 24)]
    pub months: Option<i64>,
}

/// The caller's balance, reserved and available credits.
#[utoipa::path(get, path = "/api/v1/credits/balance", tag = "credits", security(("bearer" = [])),
    responses((status = 200, body = Balance), (status = 401, body = crate::error::Problem)))]
pub async fn balance(State(state): State<AppState>, caller: AuthUser) -> Result<Json<Balance>, ApiError> {
    let ledger = state
        .app
        .view_ledger(&caller.actor(), Owner::User(caller.user_id))
        .await?;
    Ok(Json(Balance::of(&ledger)))
}

/// An organisation's balance, reserved and available credits (owners and admins).
#[utoipa::path(get, path = "/api/v1/orgs/{id}/credits/balance", tag = "credits", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id")),
    responses((status = 200, body = Balance), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn organization_balance(
    State(state): State<AppState>,
    caller: AuthUser,
    PathId(id): PathId,
) -> Result<Json<Balance>, ApiError> {
    let owner = Owner::Organization(OrganizationId(id));
    let ledger = state.app.view_ledger(&caller.actor(), owner).await?;
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
    transactions_of(&state, caller.user_id.0, read_your_writes, query).await
}

/// An organisation's movements of credits, newest first (owners and admins).
#[utoipa::path(get, path = "/api/v1/orgs/{id}/credits/transactions", tag = "credits", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"), TransactionQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = TransactionPage), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn organization_transactions(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    PathId(id): PathId,
    ApiQuery(query): ApiQuery<TransactionQuery>,
) -> Result<Response, ApiError> {
    let owner = Owner::Organization(OrganizationId(id));
    // Answers from the ledger are the policy's to allow; the balance is not needed here.
    state.app.view_ledger(&caller.actor(), owner).await?;
    transactions_of(&state, id, read_your_writes, query).await
}

/// What each member's jobs used of an organisation's credits per month: everyone's for owners
/// and admins, their own for members.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/usage", tag = "credits", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"), UsageQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the report includes this write")),
    responses((status = 200, body = UsageReport), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn organization_usage(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    PathId(id): PathId,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Response, ApiError> {
    let months = query.months.unwrap_or(3);
    if !(1..=24).contains(&months) {
        return Err(ApiError::Validation(vec![FieldError {
            field: "months".to_owned(),
            message: "must be between 1 and 24".to_owned(),
        }]));
    }
    let owner = Owner::Organization(OrganizationId(id));
    let only = state.app.usage_visible_to(&caller.actor(), owner).await?;
    let caught_up = read_your_writes.wait(&state, credit_transactions::NAME).await?;
    let rows = credit_transactions::usage_by_member(state.database(), id, only.map(|member| member.0), months)
        .await
        .context("summing the usage")?;
    let items = rows
        .into_iter()
        .map(|row| MemberUsage {
            month: row.period,
            user_id: row.member_id,
            charged: row.charged,
            held: row.held,
            charged_runs: row.charged_runs,
        })
        .collect();
    Ok(mark_consistency(caught_up, Json(UsageReport { items })))
}

/// A page of `owner_id`'s movements, after the caller was allowed to see them.
async fn transactions_of(
    state: &AppState,
    owner_id: Uuid,
    read_your_writes: ReadYourWrites,
    query: TransactionQuery,
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
    let caught_up = read_your_writes.wait(state, credit_transactions::NAME).await?;
    let rows = credit_transactions::list_for_owner(state.database(), owner_id, cursor, limit + 1)
        .await
        .context("listing transactions")?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.sequence);
    let page = Page {
        items: rows.into_iter().map(Transaction::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}
