//! The `User` aggregate: an account, identified by a unique e-mail address and a password hash,
//! with its e-mail verification, password resets and changes, and the lockout that follows
//! repeated failed logins.
//!
//! E-mail uniqueness spans aggregates, so it is enforced before `RegisterUser` runs, by the
//! reservation table (see the API's registration handler); the aggregate guards its own life.
//! Tokens sent by mail reach the aggregate only as hashes, with their expiry; the API passes
//! the time and the lockout policy in, so the rules here are pure.

use crate::ids::UserId;
use crate::values::{EmailAddress, FullName, PasswordHash, TokenHash};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A Keyframe account.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct User {
    id: Option<UserId>,
    email: EmailAddress,
    password_hash: PasswordHash,
    full_name: Option<FullName>,
    registered_at: Option<DateTime<Utc>>,
    email_verified_at: Option<DateTime<Utc>>,
    /// The newest verification token sent, until it is used.
    pending_verification: Option<ExpiringToken>,
    /// The newest password-reset token sent, until it is used.
    pending_reset: Option<ExpiringToken>,
    /// Failed logins since the last success, lockout or reset.
    failed_logins: Vec<DateTime<Utc>>,
    locked_until: Option<DateTime<Utc>>,
    /// Sessions that started before this instant are over (a password reset ends them all).
    sessions_valid_from: Option<DateTime<Utc>>,
}

/// A single-use token sent by mail, as the aggregate keeps it: its hash and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringToken {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// When failed logins lock an account, and for how long (from configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that lock the account.
    pub threshold: u32,
    /// How far back failures count.
    pub window: Duration,
    /// How long the lock lasts.
    pub lock_for: Duration,
}

impl User {
    /// The user's id, once registered.
    pub fn id(&self) -> Option<UserId> {
        self.id
    }

    /// The normalised e-mail address.
    pub fn email(&self) -> &EmailAddress {
        &self.email
    }

    /// The password hash to verify a login against.
    pub fn password_hash(&self) -> &PasswordHash {
        &self.password_hash
    }

    /// The name the user gave, if any.
    pub fn full_name(&self) -> Option<&FullName> {
        self.full_name.as_ref()
    }

    /// When the account was created.
    pub fn registered_at(&self) -> Option<DateTime<Utc>> {
        self.registered_at
    }

    /// Whether the owner proved the address by using a mailed token.
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// Until when the account is locked, if it is locked at `now`.
    pub fn locked_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }

    /// Whether failed logins were counted since the last success.
    pub fn has_failed_logins(&self) -> bool {
        !self.failed_logins.is_empty()
    }

    /// Sessions that started before this are no longer valid.
    pub fn sessions_valid_from(&self) -> Option<DateTime<Utc>> {
        self.sessions_valid_from
    }

    /// The roles the user holds (administration comes later; everyone is a `user`).
    pub fn roles(&self) -> Vec<String> {
        vec!["user".to_owned()]
    }
}

/// Commands for [`User`].
#[derive(Debug)]
pub enum UserCommand {
    /// Create the account. The e-mail must already be reserved and the password hashed.
    RegisterUser {
        /// The new user's id (also the aggregate id).
        user_id: UserId,
        /// The reserved, normalised address.
        email: EmailAddress,
        /// argon2id hash of the chosen password.
        password_hash: PasswordHash,
        /// Optional display name.
        full_name: Option<FullName>,
        /// The verification token to mail, if the address is to be verified.
        verification: Option<ExpiringToken>,
        /// When the request arrived.
        at: DateTime<Utc>,
    },
    /// Send a new verification token (the previous one stops working).
    RequestEmailVerification {
        /// The new token.
        token: ExpiringToken,
        /// When.
        at: DateTime<Utc>,
    },
    /// Prove the address with the mailed token.
    VerifyEmail {
        /// Hash of the presented token.
        token_hash: TokenHash,
        /// When.
        at: DateTime<Utc>,
    },
    /// Send a password-reset token (the previous one stops working).
    RequestPasswordReset {
        /// The new token.
        token: ExpiringToken,
        /// When.
        at: DateTime<Utc>,
    },
    /// Set a new password with the mailed token; ends every session and lifts a lockout.
    ResetPassword {
        /// Hash of the presented token.
        token_hash: TokenHash,
        /// argon2id hash of the new password.
        password_hash: PasswordHash,
        /// When.
        at: DateTime<Utc>,
    },
    /// Set a new password; the API has checked the current one.
    ChangePassword {
        /// argon2id hash of the new password.
        password_hash: PasswordHash,
        /// When.
        at: DateTime<Utc>,
    },
    /// Change the display name.
    UpdateProfile {
        /// The new name; `None` removes it.
        full_name: Option<FullName>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A login with this account's e-mail gave a wrong password.
    RecordFailedLogin {
        /// The lockout rule in force.
        policy: LockoutPolicy,
        /// When.
        at: DateTime<Utc>,
    },
    /// A login succeeded: earlier failures stop counting.
    ClearFailedLogins {
        /// When.
        at: DateTime<Utc>,
    },
}

/// Events of [`User`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    /// An account was created.
    UserRegistered {
        /// The user's id.
        user_id: UserId,
        /// Normalised e-mail address.
        email: EmailAddress,
        /// argon2id PHC string; never the password.
        password_hash: PasswordHash,
        /// Optional display name.
        full_name: Option<FullName>,
        /// When it happened.
        registered_at: DateTime<Utc>,
    },
    /// A verification token was mailed.
    EmailVerificationRequested {
        /// SHA-256 of the token (never the token).
        token_hash: TokenHash,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// When it was sent.
        requested_at: DateTime<Utc>,
    },
    /// The address was proven.
    EmailVerified {
        /// When.
        verified_at: DateTime<Utc>,
    },
    /// A password-reset token was mailed.
    PasswordResetRequested {
        /// SHA-256 of the token (never the token).
        token_hash: TokenHash,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// When it was sent.
        requested_at: DateTime<Utc>,
    },
    /// The password was reset with a mailed token: every session before it is over and any
    /// lockout is lifted.
    PasswordReset {
        /// argon2id PHC string of the new password.
        password_hash: PasswordHash,
        /// When.
        reset_at: DateTime<Utc>,
    },
    /// The user changed the password.
    PasswordChanged {
        /// argon2id PHC string of the new password.
        password_hash: PasswordHash,
        /// When.
        changed_at: DateTime<Utc>,
    },
    /// The user changed the display name.
    ProfileUpdated {
        /// The new name (`null`: removed).
        full_name: Option<FullName>,
        /// When.
        updated_at: DateTime<Utc>,
    },
    /// A login gave a wrong password.
    LoginFailed {
        /// When.
        failed_at: DateTime<Utc>,
    },
    /// Too many failed logins: no login until `locked_until`.
    AccountLocked {
        /// Failed logins within the window that caused it.
        failures: u32,
        /// When the lock ends.
        locked_until: DateTime<Utc>,
        /// When it began.
        locked_at: DateTime<Utc>,
    },
    /// A login succeeded after failures; they no longer count.
    FailedLoginsCleared {
        /// When.
        cleared_at: DateTime<Utc>,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
            Self::EmailVerificationRequested { .. } => "EmailVerificationRequested",
            Self::EmailVerified { .. } => "EmailVerified",
            Self::PasswordResetRequested { .. } => "PasswordResetRequested",
            Self::PasswordReset { .. } => "PasswordReset",
            Self::PasswordChanged { .. } => "PasswordChanged",
            Self::ProfileUpdated { .. } => "ProfileUpdated",
            Self::LoginFailed { .. } => "LoginFailed",
            Self::AccountLocked { .. } => "AccountLocked",
            Self::FailedLoginsCleared { .. } => "FailedLoginsCleared",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Rules a [`UserCommand`] can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The aggregate already holds a registered account.
    #[error("this account is already registered")]
    AlreadyRegistered,
    /// No account under this id.
    #[error("no such account")]
    NotFound,
    /// The address is verified already.
    #[error("the e-mail address is already verified")]
    AlreadyVerified,
    /// The token is not the newest one sent, or it was used.
    #[error("the token is not valid or was already used")]
    TokenInvalid,
    /// The token's time is over.
    #[error("the token has expired")]
    TokenExpired,
}

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
                self.failed_logins.clear();
                self.locked_until = None;
                self.sessions_valid_from = Some(reset_at);
                // The reset link reached the mailbox: the address is proven too.
                self.email_verified_at.get_or_insert(reset_at);
                self.pending_verification = None;
            }
            UserEvent::PasswordChanged { password_hash, .. } => {
                self.password_hash = password_hash;
                // A reset link mailed before the change must not undo it.
                self.pending_reset = None;
            }
            UserEvent::ProfileUpdated { full_name, .. } => self.full_name = full_name,
            UserEvent::LoginFailed { failed_at } => self.failed_logins.push(failed_at),
            UserEvent::AccountLocked { locked_until, .. } => {
                self.locked_until = Some(locked_until);
                self.failed_logins.clear();
            }
            UserEvent::FailedLoginsCleared { .. } => self.failed_logins.clear(),
        }
    }
}

fn verification_requested(token: ExpiringToken, at: DateTime<Utc>) -> UserEvent {
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
            UserCommand::ChangePassword { password_hash, at } => vec![UserEvent::PasswordChanged {
                password_hash,
                changed_at: at,
            }],
            UserCommand::UpdateProfile { full_name, at } => {
                if full_name == self.full_name {
                    return Ok(Vec::new());
                }
                vec![UserEvent::ProfileUpdated {
                    full_name,
                    updated_at: at,
                }]
            }
            UserCommand::RecordFailedLogin { policy, at } => {
                // Failures during a lock are not counted: the login was refused before the
                // password was checked.
                if self.locked_until(at).is_some() {
                    return Ok(Vec::new());
                }
                let window_start = at - policy.window;
                let recent = self
                    .failed_logins
                    .iter()
                    .filter(|failed| **failed > window_start)
                    .count();
                let failures = u32::try_from(recent).unwrap_or(u32::MAX).saturating_add(1);
                let mut events = vec![UserEvent::LoginFailed { failed_at: at }];
                if failures >= policy.threshold {
                    events.push(UserEvent::AccountLocked {
                        failures,
                        locked_until: at + policy.lock_for,
                        locked_at: at,
                    });
                }
                events
            }
            UserCommand::ClearFailedLogins { at } => {
                if self.failed_logins.is_empty() {
                    return Ok(Vec::new());
                }
                vec![UserEvent::FailedLoginsCleared { cleared_at: at }]
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    struct Given {
        id: UserId,
        at: DateTime<Utc>,
    }

    const POLICY: LockoutPolicy = LockoutPolicy {
        threshold: 3,
        window: Duration::minutes(15),
        lock_for: Duration::minutes(30),
    };

    fn hash(text: &str) -> TokenHash {
        TokenHash(format!("hash-of-{text}"))
    }

    fn password(text: &str) -> PasswordHash {
        PasswordHash(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${text}"))
    }

    impl Given {
        fn new() -> Self {
            Self {
                id: UserId::new(),
                at: Utc::now(),
            }
        }

        fn token(&self, text: &str) -> ExpiringToken {
            ExpiringToken {
                hash: hash(text),
                expires_at: self.at + Duration::hours(1),
            }
        }

        fn registered(&self) -> UserEvent {
            UserEvent::UserRegistered {
                user_id: self.id,
                email: EmailAddress::parse("email", "ada@example.com").expect("valid"),
                password_hash: password("first"),
                full_name: Some(FullName::parse("full_name", "Ada Lovelace").expect("valid")),
                registered_at: self.at,
            }
        }

        fn register(&self, verification: Option<ExpiringToken>) -> UserCommand {
            let UserEvent::UserRegistered {
                email,
                password_hash,
                full_name,
                ..
            } = self.registered()
            else {
                unreachable!("registered() makes a UserRegistered");
            };
            UserCommand::RegisterUser {
                user_id: self.id,
                email,
                password_hash,
                full_name,
                verification,
                at: self.at,
            }
        }

        fn verification_sent(&self, text: &str) -> UserEvent {
            verification_requested(self.token(text), self.at)
        }

        fn reset_sent(&self, text: &str) -> UserEvent {
            UserEvent::PasswordResetRequested {
                token_hash: hash(text),
                expires_at: self.at + Duration::hours(1),
                requested_at: self.at,
            }
        }

        fn failed(&self, minutes: i64) -> UserEvent {
            UserEvent::LoginFailed {
                failed_at: self.at + Duration::minutes(minutes),
            }
        }
    }

    fn user() -> TestFramework<User> {
        TestFramework::<User>::with(())
    }

    #[test]
    fn registering_records_the_user_and_the_verification_mail() {
        let g = Given::new();
        user()
            .given_no_previous_events()
            .when(g.register(Some(g.token("verify"))))
            .then_expect_events(vec![g.registered(), g.verification_sent("verify")]);
    }

    #[test]
    fn registering_without_verification_records_only_the_user() {
        let g = Given::new();
        user()
            .given_no_previous_events()
            .when(g.register(None))
            .then_expect_events(vec![g.registered()]);
    }

    #[test]
    fn registering_twice_is_refused() {
        let g = Given::new();
        user()
            .given(vec![g.registered()])
            .when(g.register(None))
            .then_expect_error(UserError::AlreadyRegistered);
    }

    #[test]
    fn commands_on_an_account_that_does_not_exist_are_refused() {
        let g = Given::new();
        user()
            .given_no_previous_events()
            .when(UserCommand::ClearFailedLogins { at: g.at })
            .then_expect_error(UserError::NotFound);
    }

    #[test]
    fn the_mailed_token_verifies_the_address_once() {
        let g = Given::new();
        let verify = || UserCommand::VerifyEmail {
            token_hash: hash("verify"),
            at: g.at,
        };
        user()
            .given(vec![g.registered(), g.verification_sent("verify")])
            .when(verify())
            .then_expect_events(vec![UserEvent::EmailVerified { verified_at: g.at }]);
        user()
            .given(vec![
                g.registered(),
                g.verification_sent("verify"),
                UserEvent::EmailVerified { verified_at: g.at },
            ])
            .when(verify())
            .then_expect_error(UserError::TokenInvalid);
    }

    #[test]
    fn a_verification_token_that_expired_or_was_replaced_is_refused() {
        let g = Given::new();
        user()
            .given(vec![g.registered(), g.verification_sent("verify")])
            .when(UserCommand::VerifyEmail {
                token_hash: hash("verify"),
                at: g.at + Duration::hours(2),
            })
            .then_expect_error(UserError::TokenExpired);
        user()
            .given(vec![
                g.registered(),
                g.verification_sent("old"),
                g.verification_sent("new"),
            ])
            .when(UserCommand::VerifyEmail {
                token_hash: hash("old"),
                at: g.at,
            })
            .then_expect_error(UserError::TokenInvalid);
    }

    #[test]
    fn a_new_verification_mail_is_refused_once_verified() {
        let g = Given::new();
        user()
            .given(vec![g.registered(), UserEvent::EmailVerified { verified_at: g.at }])
            .when(UserCommand::RequestEmailVerification {
                token: g.token("again"),
                at: g.at,
            })
            .then_expect_error(UserError::AlreadyVerified);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::RequestEmailVerification {
                token: g.token("again"),
                at: g.at,
            })
            .then_expect_events(vec![g.verification_sent("again")]);
    }

    #[test]
    fn a_reset_request_records_the_token_hash() {
        let g = Given::new();
        user()
            .given(vec![g.registered()])
            .when(UserCommand::RequestPasswordReset {
                token: g.token("reset"),
                at: g.at,
            })
            .then_expect_events(vec![g.reset_sent("reset")]);
    }

    #[test]
    fn the_reset_token_sets_the_password_once_and_not_after_it_expired() {
        let g = Given::new();
        let reset = |at| UserCommand::ResetPassword {
            token_hash: hash("reset"),
            password_hash: password("second"),
            at,
        };
        let done = UserEvent::PasswordReset {
            password_hash: password("second"),
            reset_at: g.at,
        };
        user()
            .given(vec![g.registered(), g.reset_sent("reset")])
            .when(reset(g.at))
            .then_expect_events(vec![done.clone()]);
        user()
            .given(vec![g.registered(), g.reset_sent("reset"), done])
            .when(reset(g.at))
            .then_expect_error(UserError::TokenInvalid);
        user()
            .given(vec![g.registered(), g.reset_sent("reset")])
            .when(reset(g.at + Duration::hours(1)))
            .then_expect_error(UserError::TokenExpired);
        user()
            .given(vec![g.registered()])
            .when(reset(g.at))
            .then_expect_error(UserError::TokenInvalid);
    }

    #[test]
    fn a_password_change_voids_a_reset_link_sent_before_it() {
        let g = Given::new();
        user()
            .given(vec![
                g.registered(),
                g.reset_sent("reset"),
                UserEvent::PasswordChanged {
                    password_hash: password("changed"),
                    changed_at: g.at,
                },
            ])
            .when(UserCommand::ResetPassword {
                token_hash: hash("reset"),
                password_hash: password("second"),
                at: g.at,
            })
            .then_expect_error(UserError::TokenInvalid);
    }

    #[test]
    fn changing_the_password_and_the_profile_record_what_changed() {
        let g = Given::new();
        user()
            .given(vec![g.registered()])
            .when(UserCommand::ChangePassword {
                password_hash: password("second"),
                at: g.at,
            })
            .then_expect_events(vec![UserEvent::PasswordChanged {
                password_hash: password("second"),
                changed_at: g.at,
            }]);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::UpdateProfile {
                full_name: None,
                at: g.at,
            })
            .then_expect_events(vec![UserEvent::ProfileUpdated {
                full_name: None,
                updated_at: g.at,
            }]);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::UpdateProfile {
                full_name: Some(FullName::parse("full_name", "Ada Lovelace").expect("valid")),
                at: g.at,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_failure_that_reaches_the_threshold_locks_the_account() {
        let g = Given::new();
        let at = g.at + Duration::minutes(2);
        user()
            .given(vec![g.registered(), g.failed(0), g.failed(1)])
            .when(UserCommand::RecordFailedLogin { policy: POLICY, at })
            .then_expect_events(vec![
                UserEvent::LoginFailed { failed_at: at },
                UserEvent::AccountLocked {
                    failures: 3,
                    locked_until: at + Duration::minutes(30),
                    locked_at: at,
                },
            ]);
    }

    #[test]
    fn failures_outside_the_window_or_before_a_success_do_not_count() {
        let g = Given::new();
        let at = g.at + Duration::minutes(20);
        user()
            .given(vec![g.registered(), g.failed(0), g.failed(1)])
            .when(UserCommand::RecordFailedLogin { policy: POLICY, at })
            .then_expect_events(vec![UserEvent::LoginFailed { failed_at: at }]);
        let cleared = UserEvent::FailedLoginsCleared { cleared_at: g.at };
        user()
            .given(vec![g.registered(), g.failed(0), g.failed(1), cleared])
            .when(UserCommand::RecordFailedLogin {
                policy: POLICY,
                at: g.at,
            })
            .then_expect_events(vec![UserEvent::LoginFailed { failed_at: g.at }]);
    }

    #[test]
    fn a_success_clears_failures_only_when_there_are_some() {
        let g = Given::new();
        user()
            .given(vec![g.registered(), g.failed(0)])
            .when(UserCommand::ClearFailedLogins { at: g.at })
            .then_expect_events(vec![UserEvent::FailedLoginsCleared { cleared_at: g.at }]);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::ClearFailedLogins { at: g.at })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_reset_lifts_the_lock_and_ends_older_sessions() {
        let g = Given::new();
        let locked = UserEvent::AccountLocked {
            failures: 3,
            locked_until: g.at + Duration::minutes(30),
            locked_at: g.at,
        };
        let mut account = User::default();
        for event in [
            g.registered(),
            locked,
            g.reset_sent("reset"),
            UserEvent::PasswordReset {
                password_hash: password("second"),
                reset_at: g.at,
            },
        ] {
            if matches!(event, UserEvent::PasswordReset { .. }) {
                assert!(account.locked_until(g.at).is_some());
            }
            account.apply(event);
        }
        assert_eq!(account.locked_until(g.at), None);
        assert_eq!(account.sessions_valid_from(), Some(g.at));
        assert!(account.email_verified(), "the reset link proved the mailbox");
    }
}
