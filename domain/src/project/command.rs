//! The commands of the `Project` aggregate.

use crate::ids::{ProjectId, UserId};
use crate::values::{ProjectDescription, ProjectName};
use chrono::{DateTime, Utc};

/// Commands for [`Project`](super::Project).
#[derive(Debug)]
pub enum ProjectCommand {
    /// Create a project owned by `owner_id`.
    CreateProject {
        /// The new project's id (also the aggregate id).
        project_id: ProjectId,
        /// The creating user.
        owner_id: UserId,
        /// Its name.
        name: ProjectName,
        /// Its description (may be empty).
        description: ProjectDescription,
        /// When.
        at: DateTime<Utc>,
    },
    /// Change the name and/or description; fields left `None` stay as they are.
    UpdateProject {
        /// Who asks.
        actor: UserId,
        /// The new name, if it changes.
        name: Option<ProjectName>,
        /// The new description, if it changes.
        description: Option<ProjectDescription>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Delete the project.
    DeleteProject {
        /// Who asks.
        actor: UserId,
        /// When.
        at: DateTime<Utc>,
    },
}
