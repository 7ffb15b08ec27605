//! The `User` aggregate: an account, identified by a unique e-mail address and a password hash,
//! with its e-mail verification, password resets and changes, and the lockout that follows
//! repeated failed logins, its second factor (TOTP), the third-party API keys it keeps, its
//! roles, and suspension by an administrator.
//!
//! E-mail uniqueness spans aggregates, so it is enforced before `RegisterUser` runs, by the
//! reservation table (see the API's registration handler); the aggregate guards its own life.
//! Tokens sent by mail reach the aggregate only as hashes, with their expiry; the API passes
//! the time and the lockout policy in, so the rules here are pure.

mod login_attempts;

pub use login_attempts::LoginAttempts;

use crate::ids::{LoginAttemptId, SessionId, UserId};
use crate::values::{ApiKeyProvider, EmailAddress, FullName, PasswordHash, SealedSecret, TokenHash};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A Keyframe account.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
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
    /// Guesses at the credentials: admitted, failed, and the lock they led to.
    login_attempts: LoginAttempts,
    /// Sessions that started before this instant are over (a password reset or change, a
    /// suspension, logging out everywhere), except `session_kept`.
    sessions_valid_from: Option<DateTime<Utc>>,
    /// The one session a password change leaves alive: the one that made it.
    session_kept: Option<SessionId>,
    /// A TOTP secret set up but not yet confirmed with a code.
    totp_pending: Option<SealedSecret>,
    /// The TOTP secret in force, once enabled.
    totp_enabled: Option<SealedSecret>,
    /// The newest 30-second step whose code was accepted: no code of it or before works again.
    totp_last_step: u64,
    /// Third-party API keys, sealed, by provider.
    api_keys: BTreeMap<ApiKeyProvider, StoredApiKey>,
    /// Roles beyond `user`, which everyone holds.
    extra_roles: BTreeSet<Role>,
    /// Why an administrator suspended the account, while it is suspended.
    suspended: Option<String>,
}

/// What a user may do. Everyone is a `user`; an `admin` also administers Keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Uses Keyframe.
    User,
    /// Administers users and the system.
    Admin,
}

impl Role {
    /// The role's name in the API and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A third-party API key as the account keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredApiKey {
    /// The key, sealed.
    pub key: SealedSecret,
    /// Its last four characters.
    pub last4: String,
    /// When it was stored.
    pub stored_at: DateTime<Utc>,
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
        self.login_attempts.locked_until(now)
    }

    /// Whether failed logins were counted since the last success.
    pub fn has_failed_logins(&self) -> bool {
        self.login_attempts.has_failures()
    }

    /// Whether `session`, started at `started_at`, was ended by a user-wide "end every session"
    /// (a reset, a change, a suspension, logging out everywhere), reached or not.
    pub fn ended_session(&self, session: SessionId, started_at: DateTime<Utc>) -> bool {
        self.sessions_valid_from.is_some_and(|from| started_at < from) && self.session_kept != Some(session)
    }

    /// The user-wide fence: sessions started before it are over, except the one kept.
    pub fn session_fence(&self) -> Option<(DateTime<Utc>, Option<SessionId>)> {
        self.sessions_valid_from.map(|from| (from, self.session_kept))
    }

    /// The TOTP secret in force, when the second factor is on.
    pub fn totp_secret(&self) -> Option<&SealedSecret> {
        self.totp_enabled.as_ref()
    }

    /// The TOTP secret set up and awaiting its first code.
    pub fn totp_pending(&self) -> Option<&SealedSecret> {
        self.totp_pending.as_ref()
    }

    /// The stored third-party API keys.
    pub fn api_keys(&self) -> &BTreeMap<ApiKeyProvider, StoredApiKey> {
        &self.api_keys
    }

    /// The roles the user holds: `user`, and whatever was granted.
    pub fn roles(&self) -> BTreeSet<Role> {
        let mut roles = self.extra_roles.clone();
        roles.insert(Role::User);
        roles
    }

    /// The role names, for the API.
    pub fn role_names(&self) -> Vec<String> {
        self.roles().into_iter().map(|role| role.as_str().to_owned()).collect()
    }

    /// Whether the user is an administrator.
    pub fn is_admin(&self) -> bool {
        self.extra_roles.contains(&Role::Admin)
    }

    /// Why the account is suspended, if it is.
    pub fn suspension(&self) -> Option<&str> {
        self.suspended.as_deref()
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
    /// Set a new password; the API has checked the current one. Every other session ends.
    ChangePassword {
        /// argon2id hash of the new password.
        password_hash: PasswordHash,
        /// The session that asked, which stays.
        kept_session: Option<SessionId>,
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
    /// Let one guess at the credentials (a password or a second-factor code) be judged: refused
    /// while the account is locked or while the window's failures and the guesses still being
    /// judged reach the policy's threshold. Every guess is admitted before it is judged, so no
    /// concurrency, in one process or many, judges more than the threshold.
    AdmitLoginAttempt {
        /// The guess.
        attempt: LoginAttemptId,
        /// The lockout rule in force.
        policy: LockoutPolicy,
        /// When.
        at: DateTime<Utc>,
    },
    /// An admitted guess was wrong. Always recorded (the guess was judged), and locks the
    /// account when it brings the window's failures to the threshold.
    RecordFailedLogin {
        /// The guess.
        attempt: LoginAttemptId,
        /// The lockout rule in force.
        policy: LockoutPolicy,
        /// When.
        at: DateTime<Utc>,
    },
    /// An admitted guess was right: it no longer counts against the window.
    RecordPassedLoginAttempt {
        /// The guess.
        attempt: LoginAttemptId,
        /// When.
        at: DateTime<Utc>,
    },
    /// End every session of the user (logging out everywhere).
    EndAllSessions {
        /// When.
        at: DateTime<Utc>,
    },
    /// A login succeeded: earlier failures stop counting.
    ClearFailedLogins {
        /// When.
        at: DateTime<Utc>,
    },
    /// Set up a TOTP secret (it works only once confirmed by [`UserCommand::EnableTotp`]).
    StartTotpEnrolment {
        /// The secret, sealed.
        secret: SealedSecret,
        /// When.
        at: DateTime<Utc>,
    },
    /// Turn the second factor on; the API checked a code of the pending secret.
    EnableTotp {
        /// The pending secret the code was checked against (a setup made meanwhile is not it).
        secret: SealedSecret,
        /// The time step of that code.
        step: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Turn the second factor off; the API checked a code of the secret in force.
    DisableTotp {
        /// The time step of that code.
        step: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A login's second step: the API checked a code of the secret in force.
    AcceptTotpCode {
        /// The time step of that code.
        step: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Keep a third-party API key (replacing one of the same provider).
    StoreApiKey {
        /// Whose key it is.
        provider: ApiKeyProvider,
        /// The key, sealed.
        key: SealedSecret,
        /// Its last four characters.
        last4: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Forget a third-party API key.
    RemoveApiKey {
        /// Whose key it is.
        provider: ApiKeyProvider,
        /// When.
        at: DateTime<Utc>,
    },
    /// Mark the address verified without a mailed token: for the first administrator, whose
    /// address comes from configuration.
    MarkEmailVerified {
        /// When.
        at: DateTime<Utc>,
    },
    /// Set the user's roles (`user` is always kept); the API checked the actor is an admin.
    SetRoles {
        /// The roles wanted.
        roles: BTreeSet<Role>,
        /// The administrator, or `None` for Keyframe itself (the first admin from configuration).
        by: Option<UserId>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Suspend the account; the API checked the actor is an admin.
    Suspend {
        /// Why, for the record and the user.
        reason: String,
        /// The administrator.
        by: UserId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Lift a suspension; the API checked the actor is an admin.
    Reactivate {
        /// The administrator.
        by: UserId,
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
    /// The user changed the password: every session before it is over but `kept_session`.
    PasswordChanged {
        /// argon2id PHC string of the new password.
        password_hash: PasswordHash,
        /// The session that made the change, which stays.
        #[serde(default)]
        kept_session: Option<SessionId>,
        /// When.
        changed_at: DateTime<Utc>,
    },
    /// The user logged out everywhere: every session before it is over.
    AllSessionsEnded {
        /// When.
        ended_at: DateTime<Utc>,
    },
    /// The user changed the display name.
    ProfileUpdated {
        /// The new name (`null`: removed).
        full_name: Option<FullName>,
        /// When.
        updated_at: DateTime<Utc>,
    },
    /// A guess at the credentials may be judged: until its verdict it counts against the
    /// lockout window like a failure (a verdict lost to a crash leaves it counted).
    LoginAttemptAdmitted {
        /// The guess.
        attempt: LoginAttemptId,
        /// When.
        admitted_at: DateTime<Utc>,
    },
    /// A login gave a wrong password (or a wrong second-factor code).
    LoginFailed {
        /// The admitted guess it judged (absent on events recorded before guesses were admitted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<LoginAttemptId>,
        /// When.
        failed_at: DateTime<Utc>,
    },
    /// An admitted guess was right; it stops counting against the window. (Earlier failures
    /// still count until a whole login clears them.)
    LoginAttemptPassed {
        /// The guess.
        attempt: LoginAttemptId,
        /// When.
        passed_at: DateTime<Utc>,
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
    /// A TOTP secret was set up, awaiting a first code.
    TotpEnrolmentStarted {
        /// The secret, sealed under the master key (never in clear).
        secret: SealedSecret,
        /// When.
        started_at: DateTime<Utc>,
    },
    /// The second factor is on.
    TotpEnabled {
        /// The time step of the code that confirmed it.
        step: u64,
        /// When.
        enabled_at: DateTime<Utc>,
    },
    /// The second factor is off.
    TotpDisabled {
        /// The time step of the code that allowed it.
        step: u64,
        /// When.
        disabled_at: DateTime<Utc>,
    },
    /// A login's TOTP code was accepted; no code of this step or earlier works again.
    TotpCodeAccepted {
        /// Its time step.
        step: u64,
        /// When.
        accepted_at: DateTime<Utc>,
    },
    /// A third-party API key was stored.
    ApiKeyStored {
        /// Whose key it is.
        provider: ApiKeyProvider,
        /// The key, sealed under the master key (never in clear).
        key: SealedSecret,
        /// Its last four characters.
        last4: String,
        /// When.
        stored_at: DateTime<Utc>,
    },
    /// A third-party API key was removed.
    ApiKeyRemoved {
        /// Whose key it was.
        provider: ApiKeyProvider,
        /// When.
        removed_at: DateTime<Utc>,
    },
    /// The user's roles changed.
    RolesChanged {
        /// All roles held now (always with `user`).
        roles: BTreeSet<Role>,
        /// The administrator (`null`: Keyframe itself, from configuration).
        changed_by: Option<UserId>,
        /// When.
        changed_at: DateTime<Utc>,
    },
    /// An administrator suspended the account: no login, every session ended.
    UserSuspended {
        /// Why.
        reason: String,
        /// The administrator.
        suspended_by: UserId,
        /// When.
        suspended_at: DateTime<Utc>,
    },
    /// An administrator lifted the suspension.
    UserReactivated {
        /// The administrator.
        reactivated_by: UserId,
        /// When.
        reactivated_at: DateTime<Utc>,
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
            Self::AllSessionsEnded { .. } => "AllSessionsEnded",
            Self::ProfileUpdated { .. } => "ProfileUpdated",
            Self::LoginAttemptAdmitted { .. } => "LoginAttemptAdmitted",
            Self::LoginFailed { .. } => "LoginFailed",
            Self::LoginAttemptPassed { .. } => "LoginAttemptPassed",
            Self::AccountLocked { .. } => "AccountLocked",
            Self::FailedLoginsCleared { .. } => "FailedLoginsCleared",
            Self::TotpEnrolmentStarted { .. } => "TotpEnrolmentStarted",
            Self::TotpEnabled { .. } => "TotpEnabled",
            Self::TotpDisabled { .. } => "TotpDisabled",
            Self::TotpCodeAccepted { .. } => "TotpCodeAccepted",
            Self::ApiKeyStored { .. } => "ApiKeyStored",
            Self::ApiKeyRemoved { .. } => "ApiKeyRemoved",
            Self::RolesChanged { .. } => "RolesChanged",
            Self::UserSuspended { .. } => "UserSuspended",
            Self::UserReactivated { .. } => "UserReactivated",
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
    /// The second factor is already on.
    #[error("two-factor authentication is already enabled")]
    TotpAlreadyEnabled,
    /// No TOTP secret was set up to enable.
    #[error("set up two-factor authentication first")]
    TotpNotSetUp,
    /// The second factor is off.
    #[error("two-factor authentication is not enabled")]
    TotpNotEnabled,
    /// A code of this time step (or an earlier one) was already used.
    #[error("this code was already used; wait for the next one")]
    TotpCodeReused,
    /// No key stored for this provider.
    #[error("no API key is stored for this provider")]
    ApiKeyNotFound,
    /// An administrator may not take their own admin role or suspend themselves (Keyframe
    /// would risk having no administrator left).
    #[error("administrators cannot demote or suspend themselves")]
    CannotActOnSelf,
    /// The account is suspended already.
    #[error("the account is already suspended")]
    AlreadySuspended,
    /// The account is not suspended.
    #[error("the account is not suspended")]
    NotSuspended,
    /// Failed logins locked the account; no guess is judged until the lock ends or a reset.
    #[error("the account is locked after repeated failed attempts")]
    AccountLocked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
    /// The window's failures and the guesses being judged reach the threshold: no more guesses
    /// are judged until one of them is known right, or the window moves on.
    #[error("too many attempts are being judged for this account; try again shortly")]
    LoginAttemptsExhausted,
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

        /// The account locked now, for the policy's 30 minutes, by three failures.
        fn locked(&self) -> UserEvent {
            UserEvent::AccountLocked {
                failures: 3,
                locked_until: self.at + Duration::minutes(30),
                locked_at: self.at,
            }
        }

        fn failed(&self, minutes: i64) -> UserEvent {
            UserEvent::LoginFailed {
                attempt: None,
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
                    kept_session: None,
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
                kept_session: None,
                at: g.at,
            })
            .then_expect_events(vec![UserEvent::PasswordChanged {
                password_hash: password("second"),
                kept_session: None,
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

    fn admitted(attempt: LoginAttemptId, at: DateTime<Utc>) -> UserEvent {
        UserEvent::LoginAttemptAdmitted {
            attempt,
            admitted_at: at,
        }
    }

    fn fail(attempt: LoginAttemptId, at: DateTime<Utc>) -> UserCommand {
        UserCommand::RecordFailedLogin {
            attempt,
            policy: POLICY,
            at,
        }
    }

    fn failed_attempt(attempt: LoginAttemptId, at: DateTime<Utc>) -> UserEvent {
        UserEvent::LoginFailed {
            attempt: Some(attempt),
            failed_at: at,
        }
    }

    #[test]
    fn a_guess_is_admitted_while_the_window_has_room() {
        let g = Given::new();
        let attempt = LoginAttemptId::new();
        user()
            .given(vec![g.registered(), g.failed(0), g.failed(1)])
            .when(UserCommand::AdmitLoginAttempt {
                attempt,
                policy: POLICY,
                at: g.at + Duration::minutes(2),
            })
            .then_expect_events(vec![admitted(attempt, g.at + Duration::minutes(2))]);
    }

    #[test]
    fn guesses_still_being_judged_fill_the_window_like_failures() {
        let g = Given::new();
        let (first, second) = (LoginAttemptId::new(), LoginAttemptId::new());
        user()
            .given(vec![
                g.registered(),
                g.failed(0),
                admitted(first, g.at),
                admitted(second, g.at),
            ])
            .when(UserCommand::AdmitLoginAttempt {
                attempt: LoginAttemptId::new(),
                policy: POLICY,
                at: g.at,
            })
            .then_expect_error(UserError::LoginAttemptsExhausted);
    }

    #[test]
    fn a_locked_account_admits_no_guess() {
        let g = Given::new();
        let locked = g.locked();
        user()
            .given(vec![g.registered(), locked])
            .when(UserCommand::AdmitLoginAttempt {
                attempt: LoginAttemptId::new(),
                policy: POLICY,
                at: g.at + Duration::minutes(29),
            })
            .then_expect_error(UserError::AccountLocked {
                until: g.at + Duration::minutes(30),
            });
    }

    #[test]
    fn the_failure_that_reaches_the_threshold_locks_the_account() {
        let g = Given::new();
        let at = g.at + Duration::minutes(2);
        let attempt = LoginAttemptId::new();
        user()
            .given(vec![g.registered(), g.failed(0), g.failed(1), admitted(attempt, at)])
            .when(fail(attempt, at))
            .then_expect_events(vec![
                failed_attempt(attempt, at),
                UserEvent::AccountLocked {
                    failures: 3,
                    locked_until: at + Duration::minutes(30),
                    locked_at: at,
                },
            ]);
    }

    #[test]
    fn a_judged_failure_is_recorded_even_when_the_account_is_already_locked() {
        let g = Given::new();
        let attempt = LoginAttemptId::new();
        let locked = g.locked();
        user()
            .given(vec![g.registered(), admitted(attempt, g.at), locked])
            .when(fail(attempt, g.at))
            .then_expect_events(vec![failed_attempt(attempt, g.at)]);
    }

    #[test]
    fn a_right_guess_is_recorded_as_passed() {
        let g = Given::new();
        let attempt = LoginAttemptId::new();
        user()
            .given(vec![g.registered(), admitted(attempt, g.at)])
            .when(UserCommand::RecordPassedLoginAttempt { attempt, at: g.at })
            .then_expect_events(vec![UserEvent::LoginAttemptPassed {
                attempt,
                passed_at: g.at,
            }]);
    }

    #[test]
    fn failures_outside_the_window_or_before_a_success_do_not_count() {
        let g = Given::new();
        let at = g.at + Duration::minutes(20);
        let attempt = LoginAttemptId::new();
        user()
            .given(vec![g.registered(), g.failed(0), g.failed(1)])
            .when(fail(attempt, at))
            .then_expect_events(vec![failed_attempt(attempt, at)]);
        let cleared = UserEvent::FailedLoginsCleared { cleared_at: g.at };
        user()
            .given(vec![g.registered(), g.failed(0), g.failed(1), cleared])
            .when(fail(attempt, g.at))
            .then_expect_events(vec![failed_attempt(attempt, g.at)]);
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
        let locked = g.locked();
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
        assert_eq!(account.session_fence(), Some((g.at, None)));
        assert!(account.ended_session(SessionId::new(), g.at - Duration::seconds(1)));
        assert!(!account.ended_session(SessionId::new(), g.at));
        assert!(account.email_verified(), "the reset link proved the mailbox");
    }

    fn sealed(text: &str) -> SealedSecret {
        SealedSecret {
            key_id: "m1".to_owned(),
            wrapped_key: format!("wrapped-{text}"),
            ciphertext: format!("sealed-{text}"),
        }
    }

    fn enrolled(g: &Given) -> Vec<UserEvent> {
        vec![
            g.registered(),
            UserEvent::TotpEnrolmentStarted {
                secret: sealed("totp"),
                started_at: g.at,
            },
        ]
    }

    fn enabled(g: &Given, step: u64) -> Vec<UserEvent> {
        let mut events = enrolled(g);
        events.push(UserEvent::TotpEnabled { step, enabled_at: g.at });
        events
    }

    #[test]
    fn a_code_of_the_pending_secret_enables_the_second_factor() {
        let g = Given::new();
        user()
            .given(enrolled(&g))
            .when(UserCommand::EnableTotp {
                secret: sealed("totp"),
                step: 100,
                at: g.at,
            })
            .then_expect_events(vec![UserEvent::TotpEnabled {
                step: 100,
                enabled_at: g.at,
            }]);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::EnableTotp {
                secret: sealed("totp"),
                step: 100,
                at: g.at,
            })
            .then_expect_error(UserError::TotpNotSetUp);
        user()
            .given(enrolled(&g))
            .when(UserCommand::EnableTotp {
                secret: sealed("another setup"),
                step: 100,
                at: g.at,
            })
            .then_expect_error(UserError::TotpNotSetUp);
        user()
            .given(enabled(&g, 100))
            .when(UserCommand::StartTotpEnrolment {
                secret: sealed("again"),
                at: g.at,
            })
            .then_expect_error(UserError::TotpAlreadyEnabled);
    }

    #[test]
    fn a_totp_code_is_never_accepted_twice_nor_an_older_one() {
        let g = Given::new();
        for step in [100, 99] {
            user()
                .given(enabled(&g, 100))
                .when(UserCommand::AcceptTotpCode { step, at: g.at })
                .then_expect_error(UserError::TotpCodeReused);
        }
        user()
            .given(enabled(&g, 100))
            .when(UserCommand::AcceptTotpCode { step: 101, at: g.at })
            .then_expect_events(vec![UserEvent::TotpCodeAccepted {
                step: 101,
                accepted_at: g.at,
            }]);
    }

    #[test]
    fn disabling_needs_a_fresh_code_and_the_factor_on() {
        let g = Given::new();
        user()
            .given(enabled(&g, 100))
            .when(UserCommand::DisableTotp { step: 101, at: g.at })
            .then_expect_events(vec![UserEvent::TotpDisabled {
                step: 101,
                disabled_at: g.at,
            }]);
        user()
            .given(enabled(&g, 100))
            .when(UserCommand::DisableTotp { step: 100, at: g.at })
            .then_expect_error(UserError::TotpCodeReused);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::DisableTotp { step: 101, at: g.at })
            .then_expect_error(UserError::TotpNotEnabled);
    }

    #[test]
    fn api_keys_are_stored_sealed_replaced_and_removed() {
        let g = Given::new();
        let provider = ApiKeyProvider::parse("provider", "openai").expect("valid");
        let stored = UserEvent::ApiKeyStored {
            provider: provider.clone(),
            key: sealed("key"),
            last4: "abcd".to_owned(),
            stored_at: g.at,
        };
        user()
            .given(vec![g.registered()])
            .when(UserCommand::StoreApiKey {
                provider: provider.clone(),
                key: sealed("key"),
                last4: "abcd".to_owned(),
                at: g.at,
            })
            .then_expect_events(vec![stored.clone()]);
        user()
            .given(vec![g.registered(), stored])
            .when(UserCommand::RemoveApiKey {
                provider: provider.clone(),
                at: g.at,
            })
            .then_expect_events(vec![UserEvent::ApiKeyRemoved {
                provider: provider.clone(),
                removed_at: g.at,
            }]);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::RemoveApiKey { provider, at: g.at })
            .then_expect_error(UserError::ApiKeyNotFound);
    }

    #[test]
    fn roles_always_keep_user_and_an_admin_cannot_demote_themselves() {
        let g = Given::new();
        let admin = UserId::new();
        let both: BTreeSet<Role> = [Role::User, Role::Admin].into();
        user()
            .given(vec![g.registered()])
            .when(UserCommand::SetRoles {
                roles: [Role::Admin].into(),
                by: Some(admin),
                at: g.at,
            })
            .then_expect_events(vec![UserEvent::RolesChanged {
                roles: both.clone(),
                changed_by: Some(admin),
                changed_at: g.at,
            }]);
        let promoted = UserEvent::RolesChanged {
            roles: both.clone(),
            changed_by: None,
            changed_at: g.at,
        };
        user()
            .given(vec![g.registered(), promoted.clone()])
            .when(UserCommand::SetRoles {
                roles: [Role::User].into(),
                by: Some(g.id),
                at: g.at,
            })
            .then_expect_error(UserError::CannotActOnSelf);
        user()
            .given(vec![g.registered(), promoted])
            .when(UserCommand::SetRoles {
                roles: both,
                by: None,
                at: g.at,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn suspension_and_reactivation_by_an_administrator() {
        let g = Given::new();
        let admin = UserId::new();
        let suspended = UserEvent::UserSuspended {
            reason: "spam".to_owned(),
            suspended_by: admin,
            suspended_at: g.at,
        };
        user()
            .given(vec![g.registered()])
            .when(UserCommand::Suspend {
                reason: "spam".to_owned(),
                by: admin,
                at: g.at,
            })
            .then_expect_events(vec![suspended.clone()]);
        user()
            .given(vec![g.registered(), suspended.clone()])
            .when(UserCommand::Suspend {
                reason: "again".to_owned(),
                by: admin,
                at: g.at,
            })
            .then_expect_error(UserError::AlreadySuspended);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::Suspend {
                reason: "me".to_owned(),
                by: g.id,
                at: g.at,
            })
            .then_expect_error(UserError::CannotActOnSelf);
        user()
            .given(vec![g.registered(), suspended])
            .when(UserCommand::Reactivate { by: admin, at: g.at })
            .then_expect_events(vec![UserEvent::UserReactivated {
                reactivated_by: admin,
                reactivated_at: g.at,
            }]);
        user()
            .given(vec![g.registered()])
            .when(UserCommand::Reactivate { by: admin, at: g.at })
            .then_expect_error(UserError::NotSuspended);
    }

    #[test]
    fn a_password_change_ends_every_older_session_but_the_one_that_made_it() {
        let g = Given::new();
        let (kept, other) = (SessionId::new(), SessionId::new());
        let before = g.at - Duration::minutes(1);
        let mut account = User::default();
        account.apply(g.registered());
        account.apply(UserEvent::PasswordChanged {
            password_hash: password("second"),
            kept_session: Some(kept),
            changed_at: g.at,
        });
        assert!(!account.ended_session(kept, before));
        assert!(account.ended_session(other, before));
        assert!(
            !account.ended_session(other, g.at + Duration::seconds(1)),
            "a later login lives"
        );
        account.apply(UserEvent::AllSessionsEnded { ended_at: g.at });
        assert!(
            account.ended_session(kept, before),
            "logging out everywhere spares none"
        );
    }
}
