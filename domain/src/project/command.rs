//! The commands of the `Project` aggregate.

use crate::ids::{ProjectId, UserId};
use crate::owner::Owner;
use crate::values::{ProjectDescription, ProjectName};
use chrono::{DateTime, Utc};

/// Commands for [`Project`](super::Project). Who may give them is the authorization policy's
/// to decide, before the command.
#[derive(Debug)]
pub enum ProjectCommand {
    /// Create a project owned by `owner`.
    CreateProject {
        /// The new project's id (also the aggregate id).
        project_id: ProjectId,
        /// Whose it is: the creator's own, or an organisation's.
        owner: Owner,
        /// The creating user.
        created_by: UserId,
        /// Its name.
        name: ProjectName,
        /// Its description (may be empty).
        description: ProjectDescription,
        /// When.
        at: DateTime<Utc>,
    },
    /// Change the name and/or description; fields left `None` stay as they are.
    UpdateProject {
        /// The new name, if it changes.
        name: Option<ProjectName>,
        /// The new description, if it changes.
        description: Option<ProjectDescription>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Delete the project.
    DeleteProject {
        /// When.
        at: DateTime<Utc>,
    },
}
