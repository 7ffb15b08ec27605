//! The `Project` aggregate: a named container for a user's videos and jobs.
//!
//! Only the owner may change or delete a project; to anyone else it does not exist, so the
//! aggregate answers `NotFound` rather than revealing the id is taken.

mod aggregate;
mod command;
mod error;
mod event;

pub use command::ProjectCommand;
pub use error::ProjectError;
pub use event::ProjectEvent;

use crate::ids::{ProjectId, UserId};
use crate::values::{ProjectDescription, ProjectName};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A project.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Project {
    id: Option<ProjectId>,
    owner_id: Option<UserId>,
    name: ProjectName,
    description: ProjectDescription,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    deleted: bool,
}

impl Project {
    /// The project's id; `None` before creation.
    pub fn id(&self) -> Option<ProjectId> {
        self.id
    }

    /// Its owner.
    pub fn owner_id(&self) -> Option<UserId> {
        self.owner_id
    }

    /// Its name.
    pub fn name(&self) -> &ProjectName {
        &self.name
    }

    /// Its description.
    pub fn description(&self) -> &ProjectDescription {
        &self.description
    }

    /// When it was created.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }

    /// When it last changed.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    /// Whether it was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }
}

#[cfg(test)]
mod tests;
