//! `/api/v1/admin`: administration, for users with the `admin` role. The authorization policy
//! is asked once, by [`require_admin`] in front of every route here (and again by each use
//! case): a plain user gets 403 on every admin route, and an admin route cannot forget the
//! check.
//!
//! Lists and reads come from the `user_directory` read model; changes go to the `User`
//! aggregate with the administrator as the actor.

use crate::auth::AuthUser;
use crate::consistency::{ReadYourWrites, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::paging::{Listed, Page};
use crate::rules::GRANT_MAX_CREDITS;
use crate::state::AppState;
use crate::views::MemberView;
use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keyframe_app::policy::{Action, Resource, require};
use keyframe_database::portable;
use keyframe_domain::ids::{OrganizationId, UserId};
use keyframe_domain::owner::Owner;
use keyframe_domain::user::Role;
use keyframe_domain::values::Reason;
use keyframe_projections::organizations::{self, OrganizationSummary};
use keyframe_projections::user_directory::{self, UserRow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(show_user))
        .routes(routes!(set_roles))
        .routes(routes!(suspend))
        .routes(routes!(reactivate))
        .routes(routes!(grant_credits))
        .routes(routes!(list_organizations))
        .routes(routes!(show_organization))
        .routes(routes!(grant_organization_credits))
        .routes(routes!(stats))
}

/// Lets only administrators through: 401 without a valid session, 403 for everyone else. The
/// checked caller is handed on to the handler.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match AuthUser::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(problem) => return problem.into_response(),
    };
    if let Err(refused) = require(&caller.actor(), Action::Administer, &Resource::Accounts) {
        return ApiError::from(refused).into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

/// An account as administrators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserView {
    /// The user's id.
    pub id: Uuid,
    /// E-mail address.
    pub email: String,
    /// Display name.
    pub full_name: Option<String>,
    /// Roles held.
    pub roles: Vec<String>,
    /// Whether the address is verified.
    pub email_verified: bool,
    /// Whether TOTP is on.
    pub two_factor_enabled: bool,
    /// `active` or `suspended`.
    pub status: &'static str,
    /// Why it is suspended, while it is.
    pub suspended_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for AdminUserView {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.user_id,
            email: row.email,
            full_name: row.full_name,
            roles: row.roles,
            email_verified: row.email_verified,
            two_factor_enabled: row.two_factor,
            status: if row.suspended_reason.is_some() {
                "suspended"
            } else {
                "active"
            },
            suspended_reason: row.suspended_reason,
            created_at: row.created_at,
        }
    }
}

/// A page of the list (see [`Page`]).
pub type AdminUserPage = Page<AdminUserView>;

impl Listed for AdminUserView {
    const PAGE: &'static str = "AdminUserPage";
    const PAGE_DESCRIPTION: &'static str = "A page of accounts.";
}

/// List query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AdminListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// `PUT /users/{id}/roles` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRolesRequest {
    /// `user` and optionally `admin` (`user` is always kept).
    #[schema(schema_with = crate::openapi::fields::roles)]
    pub roles: Vec<String>,
}

/// `POST /users/{id}/suspend` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    /// Why, 1 to 500 characters; recorded in the event.
    #[schema(schema_with = crate::openapi::fields::reason)]
    pub reason: String,
}

/// System figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemStats {
    /// Accounts.
    pub users: i64,
    /// With a verified address.
    pub users_verified: i64,
    /// Suspended.
    pub users_suspended: i64,
    /// Administrators.
    pub admins: i64,
    /// With TOTP on.
    pub users_with_two_factor: i64,
    /// Live sessions.
    pub active_sessions: i64,
    /// Live projects.
    pub projects: i64,
    /// Events in the log.
    pub events: i64,
}

/// Every account, newest first.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])), params(AdminListQuery),
    responses((status = 200, body = AdminUserPage), (status = 401, body = crate::error::Problem),
        (status = 403, description = "`admin_only`", body = crate::error::Problem)))]
pub async fn list_users(
    State(state): State<AppState>,
    read_your_writes: ReadYourWrites,
    ApiQuery(query): ApiQuery<AdminListQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::Validation(vec![FieldError {
            field: "limit".to_owned(),
            message: "must be between 1 and 100".to_owned(),
        }]));
    }
    let caught_up = read_your_writes.wait(&state, user_directory::NAME).await?;
    let mut rows = user_directory::list(state.database(), query.cursor, limit + 1).await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more.then(|| rows.last().map(|row| row.user_id.to_string())).flatten();
    let page = Page {
        items: rows.into_iter().map(AdminUserView::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}

/// One account.
#[utoipa::path(get, path = "/api/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = AdminUserView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn show_user(
    State(state): State<AppState>,
    read_your_writes: ReadYourWrites,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let caught_up = read_your_writes.wait(&state, user_directory::NAME).await?;
    let row = user_directory::get(state.database(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(mark_consistency(caught_up, Json(AdminUserView::from(row))))
}

/// Set a user's roles.
#[utoipa::path(put, path = "/api/v1/admin/users/{id}/roles", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = SetRolesRequest,
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "`cannot_act_on_self`", body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn set_roles(
    State(state): State<AppState>,
    context: RequestContext,
    admin: AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<SetRolesRequest>,
) -> Result<Response, ApiError> {
    let roles: BTreeSet<Role> = body
        .roles
        .iter()
        .map(|name| Role::parse(name))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            ApiError::Validation(vec![FieldError {
                field: "roles".to_owned(),
                message: "each role must be `user` or `admin`".to_owned(),
            }])
        })?;
    let position = state
        .app
        .set_roles(&admin.actor(), UserId(id), roles, &admin.metadata(&context))
        .await?;
    Ok(with_position(position, axum::http::StatusCode::NO_CONTENT))
}

/// Suspend a user: no more logins, and every session ends.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/suspend", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = SuspendRequest,
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "`already_suspended` or `cannot_act_on_self`", body = crate::error::Problem)))]
pub async fn suspend(
    State(state): State<AppState>,
    context: RequestContext,
    admin: AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<SuspendRequest>,
) -> Result<Response, ApiError> {
    let reason = Reason::parse("reason", &body.reason)?;
    let position = state
        .app
        .suspend(&admin.actor(), UserId(id), &reason, &admin.metadata(&context))
        .await?;
    Ok(with_position(position, axum::http::StatusCode::NO_CONTENT))
}

/// Lift a user's suspension.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/reactivate", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "`not_suspended`", body = crate::error::Problem)))]
pub async fn reactivate(
    State(state): State<AppState>,
    context: RequestContext,
    admin: AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .reactivate(&admin.actor(), UserId(id), &admin.metadata(&context))
        .await?;
    Ok(with_position(position, axum::http::StatusCode::NO_CONTENT))
}

/// Figures about the whole system.
#[utoipa::path(get, path = "/api/v1/admin/stats", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = SystemStats), (status = 403, body = crate::error::Problem)))]
pub async fn stats(State(state): State<AppState>, read_your_writes: ReadYourWrites) -> Result<Response, ApiError> {
    let caught_up = read_your_writes.wait(&state, user_directory::NAME).await?;
    let users = user_directory::counts(state.database()).await?;
    let (active_sessions, projects, events): (i64, i64, i64) = portable!(state.database().reader(), pool => {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM session_list WHERE ended_at IS NULL AND refresh_expires_at > $1),
                    (SELECT count(*) FROM project_list WHERE deleted_at IS NULL),
                    (SELECT coalesce(max(global_position), 0) FROM events)",
        )
        .bind(keyframe_domain::clock::now())
        .fetch_one(pool)
        .await
    })?;
    let stats = SystemStats {
        users: users.total,
        users_verified: users.verified,
        users_suspended: users.suspended,
        admins: users.admins,
        users_with_two_factor: users.two_factor,
        active_sessions,
        projects,
        events,
    };
    Ok(mark_consistency(caught_up, Json(stats)))
}

/// `POST /admin/users/{id}/credits` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantCreditsRequest {
    /// Credits to grant, 1 to 1,000,000.
    #[schema(schema_with = crate::openapi::fields::granted_credits)]
    #[serde(deserialize_with = "crate::extract::whole_number")]
    pub amount: i64,
    /// Why (kept with the grant).
    #[schema(schema_with = crate::openapi::fields::reason)]
    pub reason: String,
}

/// Grant credits to a user.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/credits", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = GrantCreditsRequest,
    responses((status = 200, body = crate::views::Balance), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn grant_credits(
    State(state): State<AppState>,
    context: RequestContext,
    admin: AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<GrantCreditsRequest>,
) -> Result<Response, ApiError> {
    grant(&state, &context, &admin, Owner::User(UserId(id)), body).await
}

/// Grant credits to an organisation.
#[utoipa::path(post, path = "/api/v1/admin/orgs/{id}/credits", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id")), request_body = GrantCreditsRequest,
    responses((status = 200, body = crate::views::Balance), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn grant_organization_credits(
    State(state): State<AppState>,
    context: RequestContext,
    admin: AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<GrantCreditsRequest>,
) -> Result<Response, ApiError> {
    grant(&state, &context, &admin, Owner::Organization(OrganizationId(id)), body).await
}

/// An administrator's grant to `owner`, checked.
async fn grant(
    state: &AppState,
    context: &RequestContext,
    admin: &AuthUser,
    owner: Owner,
    body: GrantCreditsRequest,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    if !(1..=GRANT_MAX_CREDITS).contains(&body.amount) {
        errors.push(FieldError {
            field: "amount".to_owned(),
            message: "must be between 1 and 1000000".to_owned(),
        });
    }
    let reason = Reason::parse("reason", &body.reason).map_err(|error| {
        errors.push(FieldError {
            field: error.field.to_owned(),
            message: error.message,
        })
    });
    let Ok(reason) = reason else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (position, ledger) = state
        .app
        .grant_by_administrator(&admin.actor(), owner, body.amount, &reason, &admin.metadata(context))
        .await?;
    Ok(with_position(position, Json(crate::views::Balance::of(&ledger))))
}

/// An organisation, for administrators.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminOrganizationView {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// How many members it has.
    pub member_count: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was deleted; `null` while it stands.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<OrganizationSummary> for AdminOrganizationView {
    fn from(row: OrganizationSummary) -> Self {
        Self {
            id: row.organization_id,
            name: row.name,
            member_count: row.member_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        }
    }
}

/// A page of organisations.
pub type AdminOrganizationPage = Page<AdminOrganizationView>;

impl Listed for AdminOrganizationView {
    const PAGE: &'static str = "AdminOrganizationPage";
    const PAGE_DESCRIPTION: &'static str = "A page of organisations, oldest first.";
}

/// An organisation with its members and credits, for administrators.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminOrganizationDetail {
    /// The organisation.
    #[serde(flatten)]
    pub organization: AdminOrganizationView,
    /// Its members, by user id (at most 1,000).
    pub members: Vec<MemberView>,
    /// Its credits.
    pub credits: crate::views::Balance,
}

/// Every organisation, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/orgs", tag = "admin", security(("bearer" = [])),
    params(OrganizationListQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = AdminOrganizationPage), (status = 401, body = crate::error::Problem),
        (status = 403, description = "`admin_only`", body = crate::error::Problem)))]
pub async fn list_organizations(
    State(state): State<AppState>,
    admin: AuthUser,
    read_your_writes: ReadYourWrites,
    ApiQuery(query): ApiQuery<OrganizationListQuery>,
) -> Result<Response, ApiError> {
    require(&admin.actor(), Action::View, &Resource::Accounts)?;
    let (limit, cursor) = crate::paging::page(query.limit, query.cursor.as_deref())?;
    let caught_up = read_your_writes.wait(&state, organizations::NAME).await?;
    let rows = organizations::list_all(state.database(), cursor, limit + 1).await?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.organization_id);
    let page = Page {
        items: rows.into_iter().map(AdminOrganizationView::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}

/// One organisation with its members and credits.
#[utoipa::path(get, path = "/api/v1/admin/orgs/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"),
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the answer includes this write")),
    responses((status = 200, body = AdminOrganizationDetail), (status = 401, body = crate::error::Problem),
        (status = 403, description = "`admin_only`", body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn show_organization(
    State(state): State<AppState>,
    admin: AuthUser,
    read_your_writes: ReadYourWrites,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    require(&admin.actor(), Action::View, &Resource::Accounts)?;
    let caught_up = read_your_writes.wait(&state, organizations::NAME).await?;
    let organization = organizations::get_any(state.database(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    let members = organizations::members(state.database(), id, None, 1_000).await?;
    let ledger = state.app.ledger(Owner::Organization(OrganizationId(id))).await?;
    let detail = AdminOrganizationDetail {
        organization: organization.into(),
        members: members.into_iter().map(MemberView::from).collect(),
        credits: crate::views::Balance::of(&ledger),
    };
    Ok(mark_consistency(caught_up, Json(detail)))
}

/// Organisation list query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrganizationListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<String>,
}
