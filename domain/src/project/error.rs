//! The rules a `Project` command can break.

/// Rules a [`ProjectCommand`](super::ProjectCommand) can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectError {
    /// `CreateProject` for an id that exists.
    #[error("a project with this id already exists")]
    AlreadyExists,
    /// No such project, or it was deleted.
    #[error("no such project")]
    NotFound,
}
