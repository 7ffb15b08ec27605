//! The `Project` aggregate: a named container for videos and jobs, owned by a user or an
//! organisation.
//!
//! Who may change or delete it is the authorization policy's to decide (the owner; in an
//! organisation, by role, and members their own): the aggregate only refuses what no one can do,
//! like changing a deleted project.

mod aggregate;
mod command;
mod error;
mod event;

pub use command::ProjectCommand;
pub use error::ProjectError;
pub use event::ProjectEvent;

use crate::ids::{ProjectId, UserId};
use crate::owner::Owner;
use crate::values::{ProjectDescription, ProjectName};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A project.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Project {
    id: Option<ProjectId>,
    owner: Option<Owner>,
    created_by: Option<UserId>,
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
    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }

    /// Who created it.
    pub fn created_by(&self) -> Option<UserId> {
        self.created_by
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
