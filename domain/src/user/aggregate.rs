//! How the `User` aggregate decides (commands into events) and evolves (events into state).

use super::{ExpiringToken, Role, StoredApiKey, User, UserCommand, UserError, UserEvent};
use crate::values::TokenHash;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(&mut self, command: UserCommand, _: &(), sink: &EventSink<Self>) -> Result<(), UserError> {
        if let UserCommand::RegisterUser {
            user_id,
            email,
            password_hash,
            full_name,
            verification,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(UserError::AlreadyRegistered);
            }
            let registered = UserEvent::UserRegistered {
                user_id,
                email,
                password_hash,
                full_name,
                registered_at: at,
            };
            sink.write(registered, self).await;
            if let Some(token) = verification {
                sink.write(verification_requested(token, at), self).await;
            }
            return Ok(());
        }
        if self.id.is_none() {
            return Err(UserError::NotFound);
        }
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserRegistered {
                user_id,
                email,
                password_hash,
                full_name,
                registered_at,
            } => {
                self.id = Some(user_id);
                self.email = email;
                self.password_hash = password_hash;
                self.full_name = full_name;
                self.registered_at = Some(registered_at);
            }
            UserEvent::EmailVerificationRequested {
                token_hash, expires_at, ..
            } => {
                self.pending_verification = Some(ExpiringToken {
                    hash: token_hash,
                    expires_at,
                });
            }
            UserEvent::EmailVerified { verified_at } => {
                self.email_verified_at = Some(verified_at);
                self.pending_verification = None;
            }
            UserEvent::PasswordResetRequested {
                token_hash, expires_at, ..
            } => {
                self.pending_reset = Some(ExpiringToken {
                    hash: token_hash,
                    expires_at,
                });
            }
            UserEvent::PasswordReset {
                password_hash,
                reset_at,
            } => {
                self.password_hash = password_hash;
                self.pending_reset = None;
                self.login_attempts.reset();
                self.sessions_valid_from = Some(reset_at);
                self.session_kept = None;
                // The reset link reached the mailbox: the address is proven too.
                self.email_verified_at.get_or_insert(reset_at);
                self.pending_verification = None;
            }
            UserEvent::PasswordChanged {
                password_hash,
                kept_session,
                changed_at,
            } => {
                self.password_hash = password_hash;
                self.sessions_valid_from = Some(changed_at);
                self.session_kept = kept_session;
                // A reset link mailed before the change must not undo it.
                self.pending_reset = None;
            }
            UserEvent::AllSessionsEnded { ended_at } => {
                self.sessions_valid_from = Some(ended_at);
                self.session_kept = None;
            }
            UserEvent::ProfileUpdated { full_name, .. } => self.full_name = full_name,
            UserEvent::LoginAttemptAdmitted { attempt, admitted_at } => {
                self.login_attempts.admitted(attempt, admitted_at);
            }
            UserEvent::LoginFailed { attempt, failed_at } => self.login_attempts.failed(attempt, failed_at),
            UserEvent::LoginAttemptPassed { attempt, .. } => self.login_attempts.passed(attempt),
            UserEvent::AccountLocked { locked_until, .. } => self.login_attempts.locked(locked_until),
            UserEvent::FailedLoginsCleared { .. } => self.login_attempts.cleared(),
            UserEvent::TotpEnrolmentStarted { secret, .. } => self.totp_pending = Some(secret),
            UserEvent::TotpEnabled { step, .. } => {
                self.totp_enabled = self.totp_pending.take();
                self.totp_last_step = step;
            }
            UserEvent::TotpDisabled { step, .. } => {
                self.totp_enabled = None;
                self.totp_last_step = step;
            }
            UserEvent::TotpCodeAccepted { step, .. } => self.totp_last_step = step,
            UserEvent::ApiKeyStored {
                provider,
                key,
                last4,
                stored_at,
            } => {
                let stored = StoredApiKey { key, last4, stored_at };
                self.api_keys.insert(provider, stored);
            }
            UserEvent::ApiKeyRemoved { provider, .. } => {
                self.api_keys.remove(&provider);
            }
            UserEvent::RolesChanged { mut roles, .. } => {
                roles.remove(&Role::User);
                self.extra_roles = roles;
            }
            UserEvent::UserSuspended {
                reason, suspended_at, ..
            } => {
                self.suspended = Some(reason);
                self.sessions_valid_from = Some(suspended_at);
                self.session_kept = None;
            }
            UserEvent::UserReactivated { .. } => self.suspended = None,
        }
    }
}

pub(super) fn verification_requested(token: ExpiringToken, at: DateTime<Utc>) -> UserEvent {
    UserEvent::EmailVerificationRequested {
        token_hash: token.hash,
        expires_at: token.expires_at,
        requested_at: at,
    }
}

/// Checks a presented token against the pending one: single use (only the newest pending token
/// works, and using it clears it) and expiry.
fn check_token(pending: Option<&ExpiringToken>, presented: &TokenHash, at: DateTime<Utc>) -> Result<(), UserError> {
    let pending = pending.ok_or(UserError::TokenInvalid)?;
    if pending.hash != *presented {
        return Err(UserError::TokenInvalid);
    }
    if pending.expires_at <= at {
        return Err(UserError::TokenExpired);
    }
    Ok(())
}

impl User {
    /// The events a command on a registered account causes.
    fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        Ok(match command {
            UserCommand::RegisterUser { .. } => return Err(UserError::AlreadyRegistered),
            UserCommand::RequestEmailVerification { token, at } => {
                if self.email_verified() {
                    return Err(UserError::AlreadyVerified);
                }
                vec![verification_requested(token, at)]
            }
            UserCommand::VerifyEmail { token_hash, at } => {
                check_token(self.pending_verification.as_ref(), &token_hash, at)?;
                vec![UserEvent::EmailVerified { verified_at: at }]
            }
            UserCommand::RequestPasswordReset { token, at } => vec![UserEvent::PasswordResetRequested {
                token_hash: token.hash,
                expires_at: token.expires_at,
                requested_at: at,
            }],
            UserCommand::ResetPassword {
                token_hash,
                password_hash,
                at,
            } => {
                check_token(self.pending_reset.as_ref(), &token_hash, at)?;
                vec![UserEvent::PasswordReset {
                    password_hash,
                    reset_at: at,
                }]
            }
            UserCommand::ChangePassword {
                password_hash,
                kept_session,
                at,
            } => vec![UserEvent::PasswordChanged {
                password_hash,
                kept_session,
                changed_at: at,
            }],
            UserCommand::EndAllSessions { at } => vec![UserEvent::AllSessionsEnded { ended_at: at }],
            UserCommand::UpdateProfile { full_name, at } => {
                if full_name == self.full_name {
                    return Ok(Vec::new());
                }
                vec![UserEvent::ProfileUpdated {
                    full_name,
                    updated_at: at,
                }]
            }
            UserCommand::AdmitLoginAttempt { attempt, policy, at } => {
                vec![self.login_attempts.admit(attempt, policy, at)?]
            }
            UserCommand::RecordFailedLogin { attempt, policy, at } => self.login_attempts.fail(attempt, policy, at),
            UserCommand::RecordPassedLoginAttempt { attempt, at } => {
                vec![UserEvent::LoginAttemptPassed { attempt, passed_at: at }]
            }
            UserCommand::ClearFailedLogins { at } => {
                if !self.login_attempts.has_failures() {
                    return Ok(Vec::new());
                }
                vec![UserEvent::FailedLoginsCleared { cleared_at: at }]
            }
            UserCommand::StartTotpEnrolment { secret, at } => {
                if self.totp_enabled.is_some() {
                    return Err(UserError::TotpAlreadyEnabled);
                }
                vec![UserEvent::TotpEnrolmentStarted { secret, started_at: at }]
            }
            UserCommand::EnableTotp { secret, step, at } => {
                if self.totp_enabled.is_some() {
                    return Err(UserError::TotpAlreadyEnabled);
                }
                if self.totp_pending.as_ref() != Some(&secret) {
                    return Err(UserError::TotpNotSetUp);
                }
                self.ensure_fresh_step(step)?;
                vec![UserEvent::TotpEnabled { step, enabled_at: at }]
            }
            UserCommand::DisableTotp { step, at } => {
                if self.totp_enabled.is_none() {
                    return Err(UserError::TotpNotEnabled);
                }
                self.ensure_fresh_step(step)?;
                vec![UserEvent::TotpDisabled { step, disabled_at: at }]
            }
            UserCommand::AcceptTotpCode { step, at } => {
                if self.totp_enabled.is_none() {
                    return Err(UserError::TotpNotEnabled);
                }
                self.ensure_fresh_step(step)?;
                vec![UserEvent::TotpCodeAccepted { step, accepted_at: at }]
            }
            UserCommand::StoreApiKey {
                provider,
                key,
                last4,
                at,
            } => vec![UserEvent::ApiKeyStored {
                provider,
                key,
                last4,
                stored_at: at,
            }],
            UserCommand::MarkEmailVerified { at } => {
                if self.email_verified() {
                    return Ok(Vec::new());
                }
                vec![UserEvent::EmailVerified { verified_at: at }]
            }
            UserCommand::SetRoles { mut roles, by, at } => {
                roles.insert(Role::User);
                if by == self.id && self.is_admin() && !roles.contains(&Role::Admin) {
                    return Err(UserError::CannotActOnSelf);
                }
                if roles == self.roles() {
                    return Ok(Vec::new());
                }
                vec![UserEvent::RolesChanged {
                    roles,
                    changed_by: by,
                    changed_at: at,
                }]
            }
            UserCommand::Suspend { reason, by, at } => {
                if Some(by) == self.id {
                    return Err(UserError::CannotActOnSelf);
                }
                if self.suspended.is_some() {
                    return Err(UserError::AlreadySuspended);
                }
                vec![UserEvent::UserSuspended {
                    reason,
                    suspended_by: by,
                    suspended_at: at,
                }]
            }
            UserCommand::Reactivate { by, at } => {
                if self.suspended.is_none() {
                    return Err(UserError::NotSuspended);
                }
                vec![UserEvent::UserReactivated {
                    reactivated_by: by,
                    reactivated_at: at,
                }]
            }
            UserCommand::RemoveApiKey { provider, at } => {
                if !self.api_keys.contains_key(&provider) {
                    return Err(UserError::ApiKeyNotFound);
                }
                vec![UserEvent::ApiKeyRemoved {
                    provider,
                    removed_at: at,
                }]
            }
        })
    }

    /// RFC 6238 section 5.2: a code is accepted once. Steps only move forward, so a code of the
    /// last accepted step, or of any before it, is a replay.
    fn ensure_fresh_step(&self, step: u64) -> Result<(), UserError> {
        if step <= self.totp_last_step {
            return Err(UserError::TotpCodeReused);
        }
        Ok(())
    }
}
