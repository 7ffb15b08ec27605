//! The events of the `Project` aggregate: a published contract (names and payloads never change).

use crate::ids::{ProjectId, UserId};
use crate::owner::Owner;
use crate::values::{ProjectDescription, ProjectName};
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Events of [`Project`](super::Project).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProjectEvent {
    /// A project was created.
    ProjectCreated {
        /// The project's id.
        project_id: ProjectId,
        /// Its owner: `owner_id`, and `owner_kind: "organization"` for an organisation's.
        #[serde(flatten)]
        owner: Owner,
        /// Who created it (absent before organisations: the owner did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_by: Option<UserId>,
        /// Its name.
        name: ProjectName,
        /// Its description.
        description: ProjectDescription,
        /// When.
        created_at: DateTime<Utc>,
    },
    /// Name and/or description changed; only the changed fields are present.
    ProjectUpdated {
        /// The new name, if it changed.
        name: Option<ProjectName>,
        /// The new description, if it changed.
        description: Option<ProjectDescription>,
        /// When.
        updated_at: DateTime<Utc>,
    },
    /// The project was deleted.
    ProjectDeleted {
        /// When.
        deleted_at: DateTime<Utc>,
    },
}

impl DomainEvent for ProjectEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ProjectCreated { .. } => "ProjectCreated",
            Self::ProjectUpdated { .. } => "ProjectUpdated",
            Self::ProjectDeleted { .. } => "ProjectDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
