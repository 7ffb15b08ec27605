//! How the `Project` aggregate decides (commands into events) and evolves (events into state).

use super::{Project, ProjectCommand, ProjectError, ProjectEvent};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

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
                owner,
                created_by,
                name,
                description,
                at,
            } => {
                if self.id.is_some() {
                    return Err(ProjectError::AlreadyExists);
                }
                let event = ProjectEvent::ProjectCreated {
                    project_id,
                    owner,
                    created_by: Some(created_by),
                    name,
                    description,
                    created_at: at,
                };
                sink.write(event, self).await;
            }
            ProjectCommand::UpdateProject { name, description, at } => {
                self.ensure_live()?;
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
            ProjectCommand::DeleteProject { at } => {
                self.ensure_live()?;
                sink.write(ProjectEvent::ProjectDeleted { deleted_at: at }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ProjectEvent) {
        match event {
            ProjectEvent::ProjectCreated {
                project_id,
                owner,
                created_by,
                name,
                description,
                created_at,
            } => {
                self.id = Some(project_id);
                self.created_at = Some(created_at);
                self.updated_at = Some(created_at);
                self.owner = Some(owner);
                // Before organisations every project was made by its owner.
                self.created_by = created_by.or(owner.user());
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
    /// Whether it exists and is not deleted.
    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.deleted
    }

    fn ensure_live(&self) -> Result<(), ProjectError> {
        if self.is_live() {
            Ok(())
        } else {
            Err(ProjectError::NotFound)
        }
    }
}
