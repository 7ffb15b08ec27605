//! The `Project` aggregate: a named container for a user's videos and jobs.
//!
//! Only the owner may change or delete a project; to anyone else it does not exist, so the
//! aggregate answers `NotFound` rather than revealing the id is taken.

use crate::ids::{ProjectId, UserId};
use crate::values::{ProjectDescription, ProjectName};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
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

/// Commands for [`Project`].
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

/// Events of [`Project`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProjectEvent {
    /// A project was created.
    ProjectCreated {
        /// The project's id.
        project_id: ProjectId,
        /// Its owner.
        owner_id: UserId,
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

/// Rules a [`ProjectCommand`] can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectError {
    /// `CreateProject` for an id that exists.
    #[error("a project with this id already exists")]
    AlreadyExists,
    /// No such project, it was deleted, or it belongs to someone else.
    #[error("no such project")]
    NotFound,
}

impl Aggregate for Project {
    const TYPE: &'static str = "Project";
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    type Error = ProjectError;
    type Services = ();

    async fn handle(&mut self, command: ProjectCommand, _: &(), sink: &EventSink<Self>) -> Result<(), ProjectError> {
        match command {
            ProjectCommand::CreateProject {
                project_id,
                owner_id,
                name,
                description,
                at,
            } => {
                if self.id.is_some() {
                    return Err(ProjectError::AlreadyExists);
                }
                let event = ProjectEvent::ProjectCreated {
                    project_id,
                    owner_id,
                    name,
                    description,
                    created_at: at,
                };
                sink.write(event, self).await;
            }
            ProjectCommand::UpdateProject {
                actor,
                name,
                description,
                at,
            } => {
                self.ensure_visible_to(actor)?;
                // Only what actually changes is recorded; an update that changes nothing is no event.
                let name = name.filter(|name| *name != self.name);
                let description = description.filter(|description| *description != self.description);
                if name.is_some() || description.is_some() {
                    sink.write(
                        ProjectEvent::ProjectUpdated {
                            name,
                            description,
                            updated_at: at,
                        },
                        self,
                    )
                    .await;
                }
            }
            ProjectCommand::DeleteProject { actor, at } => {
                self.ensure_visible_to(actor)?;
                sink.write(ProjectEvent::ProjectDeleted { deleted_at: at }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ProjectEvent) {
        match event {
            ProjectEvent::ProjectCreated {
                project_id,
                owner_id,
                name,
                description,
                created_at,
            } => {
                self.id = Some(project_id);
                self.created_at = Some(created_at);
                self.updated_at = Some(created_at);
                self.owner_id = Some(owner_id);
                self.name = name;
                self.description = description;
            }
            ProjectEvent::ProjectUpdated {
                name,
                description,
                updated_at,
            } => {
                self.updated_at = Some(updated_at);
                if let Some(name) = name {
                    self.name = name;
                }
                if let Some(description) = description {
                    self.description = description;
                }
            }
            ProjectEvent::ProjectDeleted { .. } => self.deleted = true,
        }
    }
}

impl Project {
    /// Whether `actor` may see and change the project (exists, not deleted, theirs).
    pub fn is_visible_to(&self, actor: UserId) -> bool {
        self.ensure_visible_to(actor).is_ok()
    }

    fn ensure_visible_to(&self, actor: UserId) -> Result<(), ProjectError> {
        if self.id.is_none() || self.deleted || self.owner_id != Some(actor) {
            return Err(ProjectError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    struct Given {
        project_id: ProjectId,
        owner_id: UserId,
        at: DateTime<Utc>,
    }

    impl Given {
        fn new() -> Self {
            Self {
                project_id: ProjectId::new(),
                owner_id: UserId::new(),
                at: Utc::now(),
            }
        }

        fn created(&self) -> ProjectEvent {
            ProjectEvent::ProjectCreated {
                project_id: self.project_id,
                owner_id: self.owner_id,
                name: name("Trailer"),
                description: description("Cuts for the spring trailer"),
                created_at: self.at,
            }
        }

        fn create(&self) -> ProjectCommand {
            ProjectCommand::CreateProject {
                project_id: self.project_id,
                owner_id: self.owner_id,
                name: name("Trailer"),
                description: description("Cuts for the spring trailer"),
                at: self.at,
            }
        }

        fn rename(&self, actor: UserId, to: &str) -> ProjectCommand {
            ProjectCommand::UpdateProject {
                actor,
                name: Some(name(to)),
                description: None,
                at: self.at,
            }
        }

        fn deleted(&self) -> ProjectEvent {
            ProjectEvent::ProjectDeleted { deleted_at: self.at }
        }
    }

    fn name(value: &str) -> ProjectName {
        ProjectName::parse("name", value).expect("valid name")
    }

    fn description(value: &str) -> ProjectDescription {
        ProjectDescription::parse("description", value).expect("valid description")
    }

    #[test]
    fn creating_a_project_records_project_created() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given_no_previous_events()
            .when(g.create())
            .then_expect_events(vec![g.created()]);
    }

    #[test]
    fn creating_an_existing_project_is_refused() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given(vec![g.created()])
            .when(g.create())
            .then_expect_error(ProjectError::AlreadyExists);
    }

    #[test]
    fn updating_records_only_the_changed_fields() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given(vec![g.created()])
            .when(ProjectCommand::UpdateProject {
                actor: g.owner_id,
                name: Some(name("Trailer")),
                description: Some(description("Final cut")),
                at: g.at,
            })
            .then_expect_events(vec![ProjectEvent::ProjectUpdated {
                name: None,
                description: Some(description("Final cut")),
                updated_at: g.at,
            }]);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given(vec![g.created()])
            .when(g.rename(g.owner_id, "Trailer"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn updating_someone_elses_project_is_not_found() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given(vec![g.created()])
            .when(g.rename(UserId::new(), "Mine now"))
            .then_expect_error(ProjectError::NotFound);
    }

    #[test]
    fn updating_a_missing_project_is_not_found() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given_no_previous_events()
            .when(g.rename(g.owner_id, "Anything"))
            .then_expect_error(ProjectError::NotFound);
    }

    #[test]
    fn updating_a_deleted_project_is_not_found() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given(vec![g.created(), g.deleted()])
            .when(g.rename(g.owner_id, "Revived"))
            .then_expect_error(ProjectError::NotFound);
    }

    #[test]
    fn deleting_a_project_records_project_deleted() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given(vec![g.created()])
            .when(ProjectCommand::DeleteProject {
                actor: g.owner_id,
                at: g.at,
            })
            .then_expect_events(vec![g.deleted()]);
    }

    #[test]
    fn deleting_twice_is_not_found() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given(vec![g.created(), g.deleted()])
            .when(ProjectCommand::DeleteProject {
                actor: g.owner_id,
                at: g.at,
            })
            .then_expect_error(ProjectError::NotFound);
    }

    #[test]
    fn deleting_someone_elses_project_is_not_found() {
        let g = Given::new();
        TestFramework::<Project>::with(())
            .given(vec![g.created()])
            .when(ProjectCommand::DeleteProject {
                actor: UserId::new(),
                at: g.at,
            })
            .then_expect_error(ProjectError::NotFound);
    }
}
