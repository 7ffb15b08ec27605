//! `/api/v1/orgs` and `/api/v1/invitations/accept`: organisations, their members and
//! invitations. Changes are use cases of `keyframe_app::organizations`; who may do what is the
//! authorization policy's (a stranger gets 404, a member whose role is too low 403
//! `insufficient_role`). Lists come from the `organizations` read model.

use crate::auth::AuthUser;
use crate::consistency::{ReadYourWrites, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, PathId};
use crate::paging::{Listed, Page};
use crate::rules::CREDIT_LIMIT_MAX;
use crate::state::AppState;
use crate::views::MemberView;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keyframe_app::organizations::{MemberChange, SentInvitation};
use keyframe_app::policy::Action;
use keyframe_domain::ids::{InvitationId, OrganizationId, UserId};
use keyframe_domain::organization::{MemberRole, Organization};
use keyframe_domain::values::{EmailAddress, OrganizationName, ValidationError};
use keyframe_projections::job_list;
use keyframe_projections::organizations::{self, InvitationRow, OrganizationRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, rename, delete))
        .routes(routes!(members))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(leave))
        .routes(routes!(transfer))
        .routes(routes!(invitations, invite))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept_invitation))
}

/// An organisation, as one of its members sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The caller's role in it.
    #[schema(schema_with = crate::openapi::fields::member_role)]
    pub role: String,
    /// How many members it has.
    pub member_count: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<OrganizationRow> for OrganizationView {
    fn from(row: OrganizationRow) -> Self {
        Self {
            id: row.organization_id,
            name: row.name,
            role: row.role,
            member_count: row.member_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl OrganizationView {
    /// `organization` as `caller` sees it; `None` when they are not a member.
    fn of(organization: &Organization, caller: UserId) -> Option<Self> {
        Some(Self {
            id: organization.id()?.0,
            name: organization.name().as_str().to_owned(),
            role: organization.role_of(caller)?.as_str().to_owned(),
            member_count: i64::try_from(organization.members().len()).unwrap_or(i64::MAX),
            created_at: organization.created_at()?,
            updated_at: organization.updated_at()?,
        })
    }
}

/// A page of organisations.
pub type OrganizationPage = Page<OrganizationView>;

impl Listed for OrganizationView {
    const PAGE: &'static str = "OrganizationPage";
    const PAGE_DESCRIPTION: &'static str = "A page of the caller's organisations, oldest first.";
}

/// A page of members.
pub type MemberPage = Page<MemberView>;

impl Listed for MemberView {
    const PAGE: &'static str = "MemberPage";
    const PAGE_DESCRIPTION: &'static str = "A page of an organisation's members, by user id.";
}

/// A pending invitation.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    /// Its id.
    pub id: Uuid,
    /// The invited address.
    pub email: String,
    /// The role it grants.
    #[schema(schema_with = crate::openapi::fields::member_role)]
    pub role: String,
    /// Who invited.
    pub invited_by: Uuid,
    /// When.
    pub invited_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

impl From<InvitationRow> for InvitationView {
    fn from(row: InvitationRow) -> Self {
        Self {
            id: row.invitation_id,
            email: row.email,
            role: row.role,
            invited_by: row.invited_by,
            invited_at: row.invited_at,
            expires_at: row.expires_at,
        }
    }
}

impl From<SentInvitation> for InvitationView {
    fn from(sent: SentInvitation) -> Self {
        Self {
            id: sent.invitation_id.0,
            email: sent.email.as_str().to_owned(),
            role: sent.role.as_str().to_owned(),
            invited_by: sent.invited_by.0,
            invited_at: sent.invited_at,
            expires_at: sent.expires_at,
        }
    }
}

/// A page of invitations.
pub type InvitationPage = Page<InvitationView>;

impl Listed for InvitationView {
    const PAGE: &'static str = "InvitationPage";
    const PAGE_DESCRIPTION: &'static str = "A page of an organisation's pending invitations, newest first.";
}

/// `POST /orgs` and `PATCH /orgs/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationNameRequest {
    /// 1 to 100 characters.
    #[schema(schema_with = crate::openapi::fields::organization_name)]
    pub name: String,
}

/// `PATCH /orgs/{id}/members/{user_id}` body; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    /// The new role (owners and admins; only owners give or take `owner`).
    #[schema(schema_with = crate::openapi::fields::member_role_or_null)]
    pub role: Option<String>,
    /// Credits a calendar month the member's jobs may use; `null` lifts the limit (owners only).
    #[serde(default, deserialize_with = "crate::extract::present_whole_number_or_null")]
    #[schema(schema_with = crate::openapi::fields::credit_limit_or_null)]
    pub monthly_credit_limit: Option<Option<i64>>,
}

/// `POST /orgs/{id}/transfer` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The member who becomes owner.
    pub user_id: Uuid,
    /// Leave the organisation instead of staying as admin (default false).
    #[serde(default)]
    pub leave: bool,
}

/// `POST /orgs/{id}/invitations` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// The address to invite.
    #[schema(schema_with = crate::openapi::fields::email)]
    pub email: String,
    /// The role it grants (only owners invite owners).
    #[schema(schema_with = crate::openapi::fields::member_role)]
    pub role: String,
}

/// `POST /invitations/accept` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// The token from the invitation mail.
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
}

/// List query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<String>,
}

/// An organisation's id and a member's user id, in the path.
#[derive(Debug, Deserialize)]
pub struct MemberPath {
    id: Uuid,
    user_id: Uuid,
}

/// An organisation's id and an invitation's id, in the path.
#[derive(Debug, Deserialize)]
pub struct InvitationPath {
    id: Uuid,
    invitation_id: Uuid,
}

fn field(error: ValidationError) -> FieldError {
    FieldError {
        field: error.field.to_owned(),
        message: error.message,
    }
}

/// Create an organisation; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "organizations", security(("bearer" = [])),
    request_body = OrganizationNameRequest,
    responses((status = 201, body = OrganizationView, headers(("x-keyframe-position" = i64, description = "Position of the write"))),
        (status = 401, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<OrganizationNameRequest>,
) -> Result<Response, ApiError> {
    let name = OrganizationName::parse("name", &body.name).map_err(|e| ApiError::Validation(vec![field(e)]))?;
    let (organization, position) = state
        .app
        .create_organization(&caller.actor(), name, &caller.metadata(&context))
        .await?;
    let view =
        OrganizationView::of(&organization, caller.user_id).ok_or_else(|| ApiError::not_found("organization"))?;
    let mut response = (StatusCode::CREATED, Json(&view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/orgs/{}", view.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(with_position(position, response))
}

/// The caller's organisations, with their role in each.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "organizations", security(("bearer" = [])), params(ListQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = OrganizationPage), (status = 401, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = crate::paging::page(query.limit, query.cursor.as_deref())?;
    let caught_up = read_your_writes.wait(&state, organizations::NAME).await?;
    let rows = organizations::list_for_member(state.database(), caller.user_id.0, cursor, limit + 1).await?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.organization_id);
    let page = Page {
        items: rows.into_iter().map(OrganizationView::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}

/// One of the caller's organisations.
#[utoipa::path(get, path = "/api/v1/orgs/{id}", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id")),
    responses((status = 200, body = OrganizationView), (status = 401, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)))]
pub async fn show(State(state): State<AppState>, caller: AuthUser, PathId(id): PathId) -> Result<Response, ApiError> {
    let organization = state
        .app
        .organization_for(&caller.actor(), Action::View, OrganizationId(id))
        .await?;
    let view =
        OrganizationView::of(&organization, caller.user_id).ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(Json(view).into_response())
}

/// Rename an organisation (owners and admins).
#[utoipa::path(patch, path = "/api/v1/orgs/{id}", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id")), request_body = OrganizationNameRequest,
    responses((status = 200, body = OrganizationView), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn rename(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<OrganizationNameRequest>,
) -> Result<Response, ApiError> {
    let name = OrganizationName::parse("name", &body.name).map_err(|e| ApiError::Validation(vec![field(e)]))?;
    let (organization, position) = state
        .app
        .rename_organization(&caller.actor(), OrganizationId(id), name, &caller.metadata(&context))
        .await?;
    let view =
        OrganizationView::of(&organization, caller.user_id).ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(with_position(position, Json(view)))
}

/// Delete an organisation (its owners; refused while its jobs wait or run). Its projects are
/// deleted and their videos' storage freed; its history stays in the log.
#[utoipa::path(delete, path = "/api/v1/orgs/{id}", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"),
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Count the jobs up to this write (a job just requested or cancelled)")),
    responses((status = 204), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    // Which jobs still wait or run is the jobs read model's answer: let it catch up first.
    read_your_writes.wait(&state, job_list::NAME).await?;
    let position = state
        .app
        .delete_organization(&caller.actor(), OrganizationId(id), &caller.metadata(&context))
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// The members of an organisation, with their roles.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/members", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"), ListQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = MemberPage), (status = 401, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)))]
pub async fn members(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    PathId(id): PathId,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = crate::paging::page(query.limit, query.cursor.as_deref())?;
    state
        .app
        .organization_for(&caller.actor(), Action::View, OrganizationId(id))
        .await?;
    let caught_up = read_your_writes.wait(&state, organizations::NAME).await?;
    let rows = organizations::members(state.database(), id, cursor, limit + 1).await?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.user_id);
    let page = Page {
        items: rows.into_iter().map(MemberView::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}

/// Change a member's role (owners and admins; only owners give or take `owner`) or monthly
/// credit limit (owners).
#[utoipa::path(patch, path = "/api/v1/orgs/{id}/members/{user_id}", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"), ("user_id" = Uuid, Path, description = "Member's user id")),
    request_body = UpdateMemberRequest,
    responses((status = 200, body = MemberView), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn update_member(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiPath(path): ApiPath<MemberPath>,
    ApiJson(body): ApiJson<UpdateMemberRequest>,
) -> Result<Response, ApiError> {
    let role = body
        .role
        .as_deref()
        .map(|raw| MemberRole::parse("role", raw))
        .transpose()
        .map_err(|e| ApiError::Validation(vec![field(e)]))?;
    if body
        .monthly_credit_limit
        .flatten()
        .is_some_and(|limit| !(0..=CREDIT_LIMIT_MAX).contains(&limit))
    {
        return Err(ApiError::Validation(vec![FieldError {
            field: "monthly_credit_limit".to_owned(),
            message: format!("must be between 0 and {CREDIT_LIMIT_MAX}, or null for no limit"),
        }]));
    }
    let change = MemberChange {
        role,
        monthly_credit_limit: body.monthly_credit_limit,
    };
    let member = UserId(path.user_id);
    let (membership, position) = state
        .app
        .update_member(
            &caller.actor(),
            OrganizationId(path.id),
            member,
            change,
            &caller.metadata(&context),
        )
        .await?;
    Ok(with_position(position, Json(MemberView::of(member, &membership))))
}

/// Remove a member (owners and admins; only owners remove owners). What they made stays.
#[utoipa::path(delete, path = "/api/v1/orgs/{id}/members/{user_id}", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"), ("user_id" = Uuid, Path, description = "Member's user id")),
    responses((status = 204), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub async fn remove_member(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiPath(path): ApiPath<MemberPath>,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .remove_member(
            &caller.actor(),
            OrganizationId(path.id),
            UserId(path.user_id),
            &caller.metadata(&context),
        )
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// Leave an organisation (its last owner cannot). What the caller made stays.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/leave", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id")),
    responses((status = 204), (status = 401, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)))]
pub async fn leave(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .leave_organization(&caller.actor(), OrganizationId(id), &caller.metadata(&context))
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// Hand the ownership to another member (owners). The caller stays as admin, or leaves.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/transfer", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id")), request_body = TransferRequest,
    responses((status = 204), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn transfer(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<TransferRequest>,
) -> Result<Response, ApiError> {
    let (_, position) = state
        .app
        .transfer_organization(
            &caller.actor(),
            OrganizationId(id),
            UserId(body.user_id),
            body.leave,
            &caller.metadata(&context),
        )
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// Invite an address (owners and admins; only owners invite owners). The token goes out by
/// mail; a pending invitation to the same address is replaced.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/invitations", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id")), request_body = InviteRequest,
    responses((status = 201, body = InvitationView), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn invite(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<InviteRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let email = EmailAddress::parse("email", &body.email)
        .map_err(|e| errors.push(field(e)))
        .ok();
    let role = MemberRole::parse("role", &body.role)
        .map_err(|e| errors.push(field(e)))
        .ok();
    let (Some(email), Some(role)) = (email, role) else {
        return Err(ApiError::Validation(errors));
    };
    let (sent, position) = state
        .app
        .invite_member(
            &caller.actor(),
            OrganizationId(id),
            email,
            role,
            &caller.metadata(&context),
        )
        .await?;
    let response = (StatusCode::CREATED, Json(InvitationView::from(sent))).into_response();
    Ok(with_position(position, response))
}

/// An organisation's pending invitations (owners and admins).
#[utoipa::path(get, path = "/api/v1/orgs/{id}/invitations", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"), ListQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = InvitationPage), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn invitations(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    PathId(id): PathId,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = crate::paging::page(query.limit, query.cursor.as_deref())?;
    state
        .app
        .organization_for(&caller.actor(), Action::ManageMembers, OrganizationId(id))
        .await?;
    let caught_up = read_your_writes.wait(&state, organizations::NAME).await?;
    let rows =
        organizations::pending_invitations(state.database(), id, keyframe_domain::clock::now(), cursor, limit + 1)
            .await?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.invitation_id);
    let page = Page {
        items: rows.into_iter().map(InvitationView::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}

/// Withdraw a pending invitation (owners and admins).
#[utoipa::path(delete, path = "/api/v1/orgs/{id}/invitations/{invitation_id}", tag = "organizations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Organisation id"), ("invitation_id" = Uuid, Path, description = "Invitation id")),
    responses((status = 204), (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiPath(path): ApiPath<InvitationPath>,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .revoke_invitation(
            &caller.actor(),
            OrganizationId(path.id),
            InvitationId(path.invitation_id),
            &caller.metadata(&context),
        )
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// Accept an invitation: the caller's verified address must be the invited one.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "organizations", security(("bearer" = [])),
    request_body = AcceptInvitationRequest,
    responses((status = 200, body = OrganizationView, headers(("x-keyframe-position" = i64, description = "Position of the write"))),
        (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem, description = "no invitation has this token"),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<AcceptInvitationRequest>,
) -> Result<Response, ApiError> {
    // A blank token names no invitation: 404, as an unknown one (the use case says so).
    let token = body.token.trim();
    if token.len() > 256 {
        return Err(ApiError::Validation(vec![FieldError {
            field: "token".to_owned(),
            message: "must be the token from the invitation mail".to_owned(),
        }]));
    }
    let (organization, _, position) = state
        .app
        .accept_invitation(&caller.actor(), token, &caller.metadata(&context))
        .await?;
    let view =
        OrganizationView::of(&organization, caller.user_id).ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(with_position(position, Json(view)))
}
