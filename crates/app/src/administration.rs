//! Administration: an administrator sets a user's roles, suspends them (every session ends) and
//! lifts a suspension. Each goes through the authorization policy first.

use crate::App;
use crate::error::AppError;
use crate::policy::{Action, Actor, Resource, require};
use crate::sessions::EveryLiveSession;
use keyframe_domain::ids::UserId;
use keyframe_domain::session::{EndRequester, SessionEndReason};
use keyframe_domain::user::{Role, UserCommand};
use keyframe_domain::values::Reason;
use keyframe_eventlog::metadata::CommandMetadata;
use std::collections::BTreeSet;

impl App {
    /// Runs an administrator's command on account `user_id` (not found when there is none).
    async fn administer(
        &self,
        admin: &Actor,
        user_id: UserId,
        command: impl FnMut() -> UserCommand,
        origin: &CommandMetadata,
    ) -> Result<i64, AppError> {
        require(admin, Action::Administer, &Resource::Accounts)?;
        let position = self.execute_on_account(user_id, command, origin).await?;
        self.session_guard.user_changed(user_id);
        Ok(position)
    }

    /// An administrator sets `user_id`'s roles.
    pub async fn set_roles(
        &self,
        admin: &Actor,
        user_id: UserId,
        roles: BTreeSet<Role>,
        origin: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let command = || UserCommand::SetRoles {
            roles: roles.clone(),
            by: Some(admin.user_id),
            at: keyframe_domain::clock::now(),
        };
        self.administer(admin, user_id, command, origin).await
    }

    /// An administrator suspends `user_id`: no more logins, and every session ends. Answers the
    /// position of the last event written.
    pub async fn suspend(
        &self,
        admin: &Actor,
        user_id: UserId,
        reason: &Reason,
        origin: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let command = || UserCommand::Suspend {
            reason: reason.as_str().to_owned(),
            by: admin.user_id,
            at: keyframe_domain::clock::now(),
        };
        let position = self.administer(admin, user_id, command, origin).await?;
        // The suspension already refuses every session (the guard and refresh check it); ending
        // each one puts it on the record and out of the sessions list.
        let which = EveryLiveSession {
            user: user_id,
            requested_by: EndRequester::Authority,
            reason: SessionEndReason::UserSuspended,
            also: None,
            keep: None,
            listed_after: Some(position),
        };
        let ended = self.end_all_sessions(which, origin).await?;
        Ok(ended.unwrap_or(position).max(position))
    }

    /// An administrator lifts `user_id`'s suspension.
    pub async fn reactivate(&self, admin: &Actor, user_id: UserId, origin: &CommandMetadata) -> Result<i64, AppError> {
        let command = || UserCommand::Reactivate {
            by: admin.user_id,
            at: keyframe_domain::clock::now(),
        };
        self.administer(admin, user_id, command, origin).await
    }
}
