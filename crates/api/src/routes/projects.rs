//! `/api/v1/projects`: a user's projects. Changes are use cases of `keyframe_app::projects`;
//! lists and reads come from the `project_list` read model. Another user's project is a 404.

use crate::auth::AuthUser;
use crate::consistency::{ReadYourWrites, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::paging::{Listed, Page};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keyframe_app::policy::Action;
use keyframe_domain::ids::{OrganizationId, ProjectId};
use keyframe_domain::owner::{Owner, OwnerKind};
use keyframe_domain::project::Project;
use keyframe_domain::values::{ProjectDescription, ProjectName};
use keyframe_projections::project_list::{self, ProjectRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, delete))
}

/// A project.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    /// The project's id.
    pub id: Uuid,
    /// Its owner: the user's id, or the organisation's.
    pub owner_id: Uuid,
    /// The organisation that owns it; `null` for a personal project.
    pub organization_id: Option<Uuid>,
    /// Who created it.
    pub created_by: Option<Uuid>,
    /// Its name.
    pub name: String,
    /// Its description ('' when none).
    pub description: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<ProjectRow> for ProjectView {
    fn from(row: ProjectRow) -> Self {
        Self {
            id: row.project_id,
            organization_id: (row.owner_kind == OwnerKind::Organization.as_str()).then_some(row.owner_id),
            owner_id: row.owner_id,
            created_by: row.created_by,
            name: row.name,
            description: row.description,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl ProjectView {
    fn of(project: &Project) -> Option<Self> {
        let owner = project.owner()?;
        Some(Self {
            id: project.id()?.0,
            owner_id: owner.id(),
            organization_id: owner.organization().map(|organization| organization.0),
            created_by: project.created_by().map(|user| user.0),
            name: project.name().as_str().to_owned(),
            description: project.description().as_str().to_owned(),
            created_at: project.created_at()?,
            updated_at: project.updated_at()?,
        })
    }
}

/// A page of the list (see [`Page`]).
pub type ProjectPage = Page<ProjectView>;

impl Listed for ProjectView {
    const PAGE: &'static str = "ProjectPage";
    const PAGE_DESCRIPTION: &'static str = "A page of projects.";
}

/// `POST /projects` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectRequest {
    /// 1 to 200 characters.
    #[schema(schema_with = crate::openapi::fields::project_name)]
    pub name: String,
    /// Up to 5000 characters.
    #[schema(schema_with = crate::openapi::fields::project_description_or_null)]
    pub description: Option<String>,
    /// The organisation it is for (members and above); absent or null: the caller's own.
    pub organization_id: Option<Uuid>,
}

/// `PATCH /projects/{id}` body; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectRequest {
    /// 1 to 200 characters.
    #[schema(schema_with = crate::openapi::fields::project_name_or_null)]
    pub name: Option<String>,
    /// Up to 5000 characters.
    #[schema(schema_with = crate::openapi::fields::project_description_or_null)]
    pub description: Option<String>,
}

/// List query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this organisation's projects (else the caller's own and all their organisations').
    pub organization_id: Option<Uuid>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<String>,
}

/// Create a project.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", security(("bearer" = [])),
    request_body = CreateProjectRequest,
    responses((status = 201, body = ProjectView, headers(("x-keyframe-position" = i64, description = "Position of the write"))),
        (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<CreateProjectRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let name = ProjectName::parse("name", &body.name)
        .map_err(|e| errors.push(field(e)))
        .ok();
    let description = ProjectDescription::parse("description", body.description.as_deref().unwrap_or_default())
        .map_err(|e| errors.push(field(e)))
        .ok();
    let (Some(name), Some(description), true) = (name, description, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let (project, position) = state
        .app
        .create_project(
            &caller.actor(),
            body.organization_id.map(OrganizationId),
            name,
            description,
            &caller.metadata(&context),
        )
        .await?;
    let project_id = project.project_id;
    let view = ProjectView {
        id: project_id.0,
        owner_id: project.owner.id(),
        organization_id: project.owner.organization().map(|organization| organization.0),
        created_by: Some(caller.user_id.0),
        name: project.name.as_str().to_owned(),
        description: project.description.as_str().to_owned(),
        created_at: project.created_at,
        updated_at: project.updated_at,
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/projects/{project_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(with_position(position, response))
}

fn field(error: keyframe_domain::values::ValidationError) -> FieldError {
    FieldError {
        field: error.field.to_owned(),
        message: error.message,
    }
}

/// The caller's projects and their organisations' (or one organisation's), newest first.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", security(("bearer" = [])), params(ListQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = ProjectPage), (status = 401, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = crate::paging::page(query.limit, query.cursor.as_deref())?;
    let owners: Vec<Uuid> = state
        .app
        .owners_visible_to(&caller.actor(), query.organization_id.map(OrganizationId))
        .await?
        .into_iter()
        .map(Owner::id)
        .collect();
    let caught_up = read_your_writes.wait(&state, project_list::NAME).await?;
    let rows = project_list::list_for_owners(state.database(), &owners, cursor, limit + 1).await?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.project_id);
    let page = Page {
        items: rows.into_iter().map(ProjectView::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}

/// A project the caller may see (their own, or one of their organisations').
#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "projects", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id"),
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the read includes this write")),
    responses((status = 200, body = ProjectView), (status = 404, body = crate::error::Problem)))]
pub async fn show(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    // Whether the caller may see it is the aggregate's (through the policy), never the row's.
    let project = state
        .app
        .project_for(&caller.actor(), Action::View, ProjectId(id))
        .await?;
    let caught_up = read_your_writes.wait(&state, project_list::NAME).await?;
    let view = match project_list::get(state.database(), id).await? {
        Some(row) => ProjectView::from(row),
        None => ProjectView::of(&project).ok_or_else(|| ApiError::not_found("project"))?,
    };
    Ok(mark_consistency(caught_up, Json(view)))
}

/// Rename or re-describe a project.
#[utoipa::path(patch, path = "/api/v1/projects/{id}", tag = "projects", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id")), request_body = UpdateProjectRequest,
    responses((status = 200, body = ProjectView), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateProjectRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let name = body
        .name
        .as_deref()
        .map(|raw| ProjectName::parse("name", raw))
        .transpose()
        .map_err(|e| errors.push(field(e)))
        .ok();
    let description = body
        .description
        .as_deref()
        .map(|raw| ProjectDescription::parse("description", raw))
        .transpose()
        .map_err(|e| errors.push(field(e)))
        .ok();
    let (Some(name), Some(description)) = (name, description) else {
        return Err(ApiError::Validation(errors));
    };
    let (project, position) = state
        .app
        .update_project(
            &caller.actor(),
            ProjectId(id),
            name,
            description,
            &caller.metadata(&context),
        )
        .await?;
    let view = ProjectView::of(&project).ok_or_else(|| ApiError::not_found("project"))?;
    Ok(with_position(position, Json(view)))
}

/// Delete a project.
#[utoipa::path(delete, path = "/api/v1/projects/{id}", tag = "projects", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id")),
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .delete_project(&caller.actor(), ProjectId(id), &caller.metadata(&context))
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}
