//! Given / when / then for every command: the exact events, or the exact error.

use super::*;
use crate::ids::{ProjectId, UserId};
use crate::owner::Owner;
use crate::values::{ProjectDescription, ProjectName};
use chrono::{DateTime, Utc};
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
            owner: Owner::User(self.owner_id),
            created_by: Some(self.owner_id),
            name: name("Trailer"),
            description: description("Cuts for the spring trailer"),
            created_at: self.at,
        }
    }

    fn create(&self) -> ProjectCommand {
        ProjectCommand::CreateProject {
            project_id: self.project_id,
            owner: Owner::User(self.owner_id),
            created_by: self.owner_id,
            name: name("Trailer"),
            description: description("Cuts for the spring trailer"),
            at: self.at,
        }
    }

    fn rename(&self, to: &str) -> ProjectCommand {
        ProjectCommand::UpdateProject {
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
        .when(g.rename("Trailer"))
        .then_expect_events(vec![]);
}

#[test]
fn updating_a_missing_project_is_not_found() {
    let g = Given::new();
    TestFramework::<Project>::with(())
        .given_no_previous_events()
        .when(g.rename("Anything"))
        .then_expect_error(ProjectError::NotFound);
}

#[test]
fn updating_a_deleted_project_is_not_found() {
    let g = Given::new();
    TestFramework::<Project>::with(())
        .given(vec![g.created(), g.deleted()])
        .when(g.rename("Revived"))
        .then_expect_error(ProjectError::NotFound);
}

#[test]
fn deleting_a_project_records_project_deleted() {
    let g = Given::new();
    TestFramework::<Project>::with(())
        .given(vec![g.created()])
        .when(ProjectCommand::DeleteProject { at: g.at })
        .then_expect_events(vec![g.deleted()]);
}

#[test]
fn deleting_twice_is_not_found() {
    let g = Given::new();
    TestFramework::<Project>::with(())
        .given(vec![g.created(), g.deleted()])
        .when(ProjectCommand::DeleteProject { at: g.at })
        .then_expect_error(ProjectError::NotFound);
}

#[test]
fn an_organisations_project_records_its_owner_and_creator() {
    let g = Given::new();
    let organization = crate::ids::OrganizationId::new();
    TestFramework::<Project>::with(())
        .given_no_previous_events()
        .when(ProjectCommand::CreateProject {
            project_id: g.project_id,
            owner: Owner::Organization(organization),
            created_by: g.owner_id,
            name: name("Trailer"),
            description: description(""),
            at: g.at,
        })
        .then_expect_events(vec![ProjectEvent::ProjectCreated {
            project_id: g.project_id,
            owner: Owner::Organization(organization),
            created_by: Some(g.owner_id),
            name: name("Trailer"),
            description: description(""),
            created_at: g.at,
        }]);
}

#[test]
fn a_project_created_before_organisations_reads_as_its_owners() {
    let g = Given::new();
    let written = serde_json::json!({"ProjectCreated": {
        "project_id": g.project_id, "owner_id": g.owner_id, "name": "Trailer", "description": "",
        "created_at": g.at,
    }});
    let event: ProjectEvent = serde_json::from_value(written).expect("an old event reads");
    let mut project = Project::default();
    cqrs_es::Aggregate::apply(&mut project, event);
    assert_eq!(project.owner(), Some(Owner::User(g.owner_id)));
    assert_eq!(project.created_by(), Some(g.owner_id));
}
