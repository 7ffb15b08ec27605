//! Accounts: registering, proving the e-mail address, mailed tokens, resetting and changing the
//! password, the profile, and finding an account by its address.
//!
//! An address belongs to one account: `email_reservations` holds it before the account is
//! registered, and a failed registration frees it again.

use crate::App;
use crate::acting;
use crate::error::{AppError, Refusal};
use crate::lockout::{Judgment, refuse_while_locked, refused_guess};
use crate::opaque_tokens::{hash_opaque_token, new_opaque_token, opaque_token_owner};
use crate::sessions::EveryLiveSession;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use keyframe_database::{Database, portable};
use keyframe_domain::ids::{SessionId, UserId};
use keyframe_domain::session::{EndRequester, SessionEndReason};
use keyframe_domain::user::{ExpiringToken, User, UserCommand, UserError};
use keyframe_domain::values::{EmailAddress, FullName, Password, PasswordHash};
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use uuid::Uuid;

/// An account to create.
pub(crate) struct NewAccount {
    /// Its id.
    pub user_id: UserId,
    /// The address, unique across accounts.
    pub email: EmailAddress,
    /// The password's hash.
    pub password_hash: PasswordHash,
    /// Display name.
    pub full_name: Option<FullName>,
    /// The verification token to mail, if any.
    pub verification: Option<ExpiringToken>,
}

/// The kinds of single-use token Keyframe mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailedToken {
    /// Proves the e-mail address.
    Verification,
    /// Sets a new password.
    PasswordReset,
}

impl App {
    /// Registers an account and mails the link that proves its address; grants the signup
    /// bonus. Answers the account and the position of its registration.
    pub async fn register(
        &self,
        email: EmailAddress,
        password: Password,
        full_name: Option<FullName>,
        origin: &CommandMetadata,
    ) -> Result<(UserId, User, i64), AppError> {
        let password_hash = self.passwords.hash(password).await?;
        let user_id = UserId::new();
        let ttl = self.settings.identity.email_verification_ttl;
        let (verification_token, verification_hash) = new_opaque_token(user_id.0);
        let verification = ExpiringToken {
            hash: verification_hash,
            expires_at: keyframe_domain::clock::now() + ttl,
        };
        let account = NewAccount {
            user_id,
            email: email.clone(),
            password_hash,
            full_name,
            verification: Some(verification),
        };
        let position = self.create_account(account, &acting(origin, Actor::Anonymous)).await?;
        self.grant_signup_bonus(user_id, &acting(origin, Actor::User(user_id)))
            .await;
        let user = self
            .buses
            .users
            .load_current(&user_id.to_string())
            .await?
            .ok_or_else(|| anyhow::anyhow!("user {user_id} vanished after registration"))?;
        let mail = self.mailer.verification(&email, &verification_token, ttl);
        self.mailer.send_in_background(mail);
        Ok((user_id, user, position))
    }

    /// Reserves the address (`EmailTaken` when another account holds it) and registers the
    /// account; a failed registration frees the address again.
    pub(crate) async fn create_account(
        &self,
        account: NewAccount,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let NewAccount {
            user_id,
            email,
            password_hash,
            full_name,
            verification,
        } = account;
        let reserved = portable!(self.database.writer(), pool => { sqlx::query(
                "INSERT INTO email_reservations (email, user_id, reserved_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
                .bind(email.as_str())
                .bind(user_id.0)
                .bind(keyframe_domain::clock::now())
                .execute(pool)
                .await .map(|done| done.rows_affected()) })?
            == 1;
        if !reserved {
            return Err(Refusal::EmailTaken.into());
        }
        let now = keyframe_domain::clock::now();
        let command = || UserCommand::RegisterUser {
            user_id,
            email: email.clone(),
            password_hash: password_hash.clone(),
            full_name: full_name.clone(),
            verification: verification.clone(),
            at: now,
        };
        match self
            .buses
            .users
            .execute_new(&user_id.to_string(), command, metadata)
            .await
        {
            Ok(position) => Ok(position),
            Err(error) => {
                // Registration failed: free the address for another try, unless the user was
                // written after all (a connection lost after the commit answers like a failure).
                let freed = portable!(self.database.writer(), pool => { sqlx::query(
                    "DELETE FROM email_reservations WHERE email = $1 AND user_id = $2
                     AND NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = $3 AND aggregate_id = $4)",
                )
                .bind(email.as_str())
                .bind(user_id.0)
                .bind(User::TYPE)
                .bind(user_id.to_string())
                .execute(pool)
                .await .map(|done| done.rows_affected()) });
                if let Err(cleanup) = freed {
                    tracing::warn!(error = %cleanup, email_owner = %user_id, "an e-mail reservation stays behind");
                }
                Err(error.into())
            }
        }
    }

    /// The account `user_id` as it stands now; gone (it never is, but a token outlived it) is
    /// `AccountGone`.
    pub async fn account(&self, user_id: UserId) -> Result<User, AppError> {
        self.buses
            .users
            .load_current(&user_id.to_string())
            .await?
            .ok_or_else(|| Refusal::AccountGone.into())
    }

    /// Runs a command on `user_id`'s account; answers the position of what it wrote.
    pub(crate) async fn execute_on_account(
        &self,
        user_id: UserId,
        command: impl FnMut() -> UserCommand,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        Ok(self
            .buses
            .users
            .execute(&user_id.to_string(), command, metadata)
            .await?)
    }

    /// The account registered under `raw_email`, if any. A malformed address has none.
    pub async fn find_account(&self, raw_email: &str) -> Result<Option<(UserId, User)>, AppError> {
        let Some(user_id) = self.find_account_id(raw_email).await? else {
            return Ok(None);
        };
        let user = self.buses.users.load_current(&user_id.to_string()).await?;
        Ok(user.map(|user| (user_id, user)))
    }

    /// The id of the account registered under `raw_email`, if any, without loading it.
    pub(crate) async fn find_account_id(&self, raw_email: &str) -> Result<Option<UserId>, AppError> {
        let Ok(email) = EmailAddress::parse("email", raw_email) else {
            return Ok(None);
        };
        let user_id = portable!(self.database.reader(), pool => { sqlx::query_scalar::<_, Uuid>("SELECT user_id FROM email_reservations WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(pool)
            .await })?;
        Ok(user_id.map(UserId))
    }

    /// The account a mailed token names; an unknown or malformed token is `TokenInvalid`.
    async fn token_account(&self, token: &str) -> Result<(UserId, User), AppError> {
        let invalid = || AppError::User(UserError::TokenInvalid);
        let user_id = opaque_token_owner(token).map(UserId).ok_or_else(invalid)?;
        let user = self.buses.users.load_current(&user_id.to_string()).await?;
        Ok((user_id, user.ok_or_else(invalid)?))
    }

    /// Proves an account's address with the token from its verification mail; answers the
    /// account after it and the position.
    pub async fn verify_email(&self, token: &str, origin: &CommandMetadata) -> Result<(UserId, User, i64), AppError> {
        let (user_id, _) = self.token_account(token).await?;
        let token_hash = hash_opaque_token(token);
        let command = || UserCommand::VerifyEmail {
            token_hash: token_hash.clone(),
            at: keyframe_domain::clock::now(),
        };
        let metadata = acting(origin, Actor::User(user_id));
        let position = self.execute_on_account(user_id, command, &metadata).await?;
        Ok((user_id, self.account(user_id).await?, position))
    }

    /// If `raw_email` has an account (for a verification, an unverified one), records a new
    /// token of `kind` and mails it; otherwise does nothing. Failures are logged: the caller
    /// answers the same whatever happens, so nothing tells whether the address has an account.
    pub async fn mail_token(&self, raw_email: &str, kind: MailedToken, origin: &CommandMetadata) {
        let account = match self.find_account(raw_email).await {
            Ok(account) => account,
            Err(error) => {
                tracing::error!(error = %error, "looking up an account for a mail failed");
                return;
            }
        };
        let Some((user_id, user)) = account else {
            return;
        };
        if kind == MailedToken::Verification && user.email_verified() {
            return;
        }
        let ttl = match kind {
            MailedToken::Verification => self.settings.identity.email_verification_ttl,
            MailedToken::PasswordReset => self.settings.identity.password_reset_ttl,
        };
        let (token, hash) = new_opaque_token(user_id.0);
        let command = || {
            let token = ExpiringToken {
                hash: hash.clone(),
                expires_at: keyframe_domain::clock::now() + ttl,
            };
            match kind {
                MailedToken::Verification => UserCommand::RequestEmailVerification {
                    token,
                    at: keyframe_domain::clock::now(),
                },
                MailedToken::PasswordReset => UserCommand::RequestPasswordReset {
                    token,
                    at: keyframe_domain::clock::now(),
                },
            }
        };
        let metadata = acting(origin, Actor::Anonymous);
        if let Err(error) = self.execute_on_account(user_id, command, &metadata).await {
            tracing::error!(user = %user_id, error = %error, "recording a mailed token failed");
            return;
        }
        let mail = match kind {
            MailedToken::Verification => self.mailer.verification(user.email(), &token, ttl),
            MailedToken::PasswordReset => self.mailer.password_reset(user.email(), &token, ttl),
        };
        self.mailer.send_in_background(mail);
    }

    /// Sets a new password with the token from a reset mail; every session of the account ends
    /// and a lockout lifts. Answers the account after it and the position.
    pub async fn reset_password(
        &self,
        token: &str,
        raw_new_password: &str,
        origin: &CommandMetadata,
    ) -> Result<(UserId, User, i64), AppError> {
        let (user_id, user) = self.token_account(token).await?;
        let password = new_password(raw_new_password, &user)?;
        let password_hash = self.passwords.hash(password).await?;
        let token_hash = hash_opaque_token(token);
        let command = || UserCommand::ResetPassword {
            token_hash: token_hash.clone(),
            password_hash: password_hash.clone(),
            at: keyframe_domain::clock::now(),
        };
        let metadata = acting(origin, Actor::User(user_id));
        let position = self.execute_on_account(user_id, command, &metadata).await?;
        self.session_guard.user_changed(user_id);
        // The reset already ends every older session (the guard and refresh check the reset's
        // time); ending each one as well puts it on the record and out of the sessions list.
        let which = EveryLiveSession {
            user: user_id,
            requested_by: EndRequester::Authority,
            reason: SessionEndReason::PasswordReset,
            also: None,
            keep: None,
            listed_after: Some(position),
        };
        self.end_all_sessions(which, &metadata).await?;
        Ok((user_id, self.account(user_id).await?, position))
    }

    /// A signed-in user changes their password, proving the current one (a guess that counts
    /// under the lockout like a login); every other session ends. Answers the position of the
    /// last event written.
    pub async fn change_password(
        &self,
        user_id: UserId,
        session: SessionId,
        current_password: &str,
        raw_new_password: &str,
        origin: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let user = self.account(user_id).await?;
        refuse_while_locked(&user)?;
        // A stolen session guessing the password counts against the account like a login.
        let lockout = self.settings.identity.lockout;
        let user = match self.judge_password(user_id, current_password, origin).await? {
            Judgment::Right(user, ()) => *user,
            Judgment::Wrong { .. } => {
                return Err(AppError::invalid(
                    "current_password",
                    "is not the account's current password",
                ));
            }
            Judgment::NotAdmitted { locked_until } => return Err(refused_guess(locked_until, lockout.threshold)),
        };
        let password = new_password(raw_new_password, &user)?;
        let password_hash = self.passwords.hash(password).await?;
        let command = || UserCommand::ChangePassword {
            password_hash: password_hash.clone(),
            kept_session: Some(session),
            at: keyframe_domain::clock::now(),
        };
        let position = self.execute_on_account(user_id, command, origin).await?;
        self.session_guard.user_changed(user_id);
        let which = EveryLiveSession {
            user: user_id,
            requested_by: EndRequester::Owner(user_id),
            reason: SessionEndReason::PasswordChanged,
            also: None,
            keep: Some(session),
            listed_after: Some(position),
        };
        let ended = self.end_all_sessions(which, origin).await?;
        Ok(ended.unwrap_or(position).max(position))
    }

    /// Judges `password` as a guess at `user_id`'s password under the lockout (see
    /// [`crate::lockout`]).
    pub(crate) async fn judge_password(
        &self,
        user_id: UserId,
        password: &str,
        metadata: &CommandMetadata,
    ) -> Result<Judgment<()>, AppError> {
        let check = async |user: &User| {
            let hash = Some(user.password_hash().clone());
            Ok(self.passwords.verify(password.to_owned(), hash).await?.then_some(()))
        };
        let lockout = self.settings.identity.lockout;
        self.logins
            .judge(&self.buses.users, lockout, metadata, user_id, check)
            .await
    }

    /// A signed-in user changes their display name (`None` removes it); answers the account
    /// after it and the position.
    pub async fn update_profile(
        &self,
        user_id: UserId,
        full_name: Option<FullName>,
        origin: &CommandMetadata,
    ) -> Result<(User, i64), AppError> {
        let command = || UserCommand::UpdateProfile {
            full_name: full_name.clone(),
            at: keyframe_domain::clock::now(),
        };
        let position = self.execute_on_account(user_id, command, origin).await?;
        Ok((self.account(user_id).await?, position))
    }
}

/// A new password for `user`, checked against the policy with the account's own details.
fn new_password(raw: &str, user: &User) -> Result<Password, AppError> {
    let full_name = user.full_name().map(FullName::as_str).unwrap_or_default();
    Ok(Password::parse(
        "new_password",
        raw,
        &[user.email().as_str(), full_name],
    )?)
}

/// Claims every registered account's address in `email_reservations`, from the log: what a
/// database the log was imported into needs before anyone can log in or register (the
/// reservations are not events; the registrations that made them are). Answers how many it
/// claimed; an address already claimed is left as it is.
pub async fn reserve_registered_addresses(database: &Database) -> Result<u64, AppError> {
    use keyframe_domain::user::UserEvent;
    let registrations: Vec<(String, DateTime<Utc>)> = portable!(database.reader(), pool => {
        sqlx::query_as(
            "SELECT CAST(payload AS TEXT), recorded_at FROM events
             WHERE aggregate_type = $1 AND event_type = 'UserRegistered' ORDER BY global_position",
        )
        .bind(User::TYPE)
        .fetch_all(pool)
        .await
    })?;
    let mut tx = database.begin().await?;
    let mut claimed = 0;
    for (payload, registered_at) in registrations {
        let Ok(UserEvent::UserRegistered { user_id, email, .. }) = serde_json::from_str(&payload) else {
            continue;
        };
        claimed += portable!(tx.conn(), conn => {
            sqlx::query(
                "INSERT INTO email_reservations (email, user_id, reserved_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(email.as_str())
            .bind(user_id.0)
            .bind(registered_at)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
        })?;
    }
    tx.commit().await?;
    Ok(claimed)
}
