//! Projects: creating, changing and deleting them. Deleting one also releases its videos from
//! the owner's storage quota and removes their bytes (see [`App::release_project`]).

use crate::App;
use crate::error::AppError;
use crate::policy::{Action, Actor, Resource, Standing, require};
use chrono::{DateTime, Utc};
use keyframe_domain::ids::{OrganizationId, ProjectId};
use keyframe_domain::owner::Owner;
use keyframe_domain::project::{Project, ProjectCommand};
use keyframe_domain::values::{ProjectDescription, ProjectName};
use keyframe_eventlog::metadata::CommandMetadata;

/// A project as a use case answers it.
#[derive(Debug, Clone)]
pub struct ProjectFacts {
    /// Its id.
    pub project_id: ProjectId,
    /// Whose it is.
    pub owner: Owner,
    /// Its name.
    pub name: ProjectName,
    /// Its description.
    pub description: ProjectDescription,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl App {
    /// The project `project_id`, for `actor` to do `action` to (not found unless allowed).
    pub async fn project_for(&self, actor: &Actor, action: Action, project_id: ProjectId) -> Result<Project, AppError> {
        let project = self
            .buses
            .projects
            .load(&project_id.to_string())
            .await?
            .unwrap_or_default();
        let standing = match project.owner() {
            Some(owner) => self.standing(actor, owner).await?,
            None => Standing::Stranger,
        };
        let resource = Resource::Project {
            standing,
            created_by_actor: project.created_by() == Some(actor.user_id),
            gone: project.id().is_none() || project.is_deleted(),
        };
        require(actor, action, &resource)?;
        Ok(project)
    }

    /// `actor` creates a project of their own, or of `organization` (members and above); answers
    /// it and the position of its creation.
    pub async fn create_project(
        &self,
        actor: &Actor,
        organization: Option<OrganizationId>,
        name: ProjectName,
        description: ProjectDescription,
        metadata: &CommandMetadata,
    ) -> Result<(ProjectFacts, i64), AppError> {
        let owner = organization.map_or(Owner::User(actor.user_id), Owner::Organization);
        // Creating a project puts it into the owner's workspace (their library of projects).
        let standing = self.standing(actor, owner).await?;
        require(actor, Action::AddTo, &Resource::Library { standing })?;
        let project_id = ProjectId::new();
        let now = keyframe_domain::clock::now();
        let command = || ProjectCommand::CreateProject {
            project_id,
            owner,
            created_by: actor.user_id,
            name: name.clone(),
            description: description.clone(),
            at: now,
        };
        let position = self
            .buses
            .projects
            .execute_new(&project_id.to_string(), command, metadata)
            .await?;
        let facts = ProjectFacts {
            project_id,
            owner,
            name,
            description,
            created_at: now,
            updated_at: now,
        };
        Ok((facts, position))
    }

    /// `actor` renames or re-describes a project (`None` keeps what is there); answers the
    /// project after the change and the change's position.
    pub async fn update_project(
        &self,
        actor: &Actor,
        project_id: ProjectId,
        name: Option<ProjectName>,
        description: Option<ProjectDescription>,
        metadata: &CommandMetadata,
    ) -> Result<(Project, i64), AppError> {
        self.project_for(actor, Action::Change, project_id).await?;
        let now = keyframe_domain::clock::now();
        let command = || ProjectCommand::UpdateProject {
            name: name.clone(),
            description: description.clone(),
            at: now,
        };
        let position = self
            .buses
            .projects
            .execute(&project_id.to_string(), command, metadata)
            .await?;
        let project = self.project_for(actor, Action::View, project_id).await?;
        Ok((project, position))
    }

    /// `actor` deletes a project; its videos stop counting against the quota and their bytes
    /// go. Answers the deletion's position.
    pub async fn delete_project(
        &self,
        actor: &Actor,
        project_id: ProjectId,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let project = self.project_for(actor, Action::Delete, project_id).await?;
        let owner = project.owner().ok_or(AppError::NotFound("project"))?;
        let command = || ProjectCommand::DeleteProject {
            at: keyframe_domain::clock::now(),
        };
        let position = self
            .buses
            .projects
            .execute(&project_id.to_string(), command, metadata)
            .await?;
        // Should this process stop in between, the next upload over the quota releases them
        // (see `App::upload_video`).
        self.release_project(owner, project_id, metadata).await?;
        Ok(position)
    }
}
