//! The TOTP second factor (RFC 6238: SHA-1, six digits, 30-second steps, one step of clock skew
//! either way): setting it up, turning it on and off, and the code step of a login.
//!
//! The secret is sealed under the master key before it reaches an event. Every accepted code
//! records its time step, and the `User` aggregate refuses a step at or before the last one, so
//! no code works twice. A wrong code counts as a failed login, so the lockout also bounds
//! guessing the six digits.

use crate::App;
use crate::acting;
use crate::error::{AppError, Refusal};
use crate::lockout::{Judgment, refuse_while_locked, refused_guess};
use crate::sessions::SessionStarted;
use keyframe_domain::ids::UserId;
use keyframe_domain::user::{User, UserCommand, UserError};
use keyframe_domain::values::SealedSecret;
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use rand::RngCore;
use totp_rs::{Algorithm, TOTP};

/// Bytes of a new secret: 160 bits, RFC 4226's recommendation for SHA-1.
const SECRET_BYTES: usize = 20;
/// Seconds per step.
const STEP_SECS: u64 = 30;
/// The issuer shown in authenticator apps.
const ISSUER: &str = "Keyframe";

/// A new secret, for an authenticator app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The secret, base32 (to type in).
    pub secret_base32: String,
    /// `otpauth://totp/...` (to show as a QR code).
    pub otpauth_url: String,
}

fn sealing_context(user: UserId) -> String {
    format!("totp-secret:{user}")
}

fn totp(secret: Vec<u8>, account: &str) -> Result<TOTP, AppError> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        0,
        STEP_SECS,
        secret,
        Some(ISSUER.to_owned()),
        // The label may not hold ':' (the otpauth URL's issuer separator); an address may.
        account.replace(':', "_"),
    )
    .map_err(|e| AppError::Internal(anyhow::anyhow!("building the TOTP: {e}")))
}

impl App {
    /// The time step whose code `code` is, among the current one and one either side; `None`
    /// when it is none of them.
    fn matching_step(
        &self,
        user_id: UserId,
        user: &User,
        sealed: &SealedSecret,
        code: &str,
    ) -> Result<Option<u64>, AppError> {
        let secret = self
            .master_key
            .open(sealed, &sealing_context(user_id))
            .map_err(|e| AppError::Internal(anyhow::anyhow!("opening a TOTP secret: {e}")))?;
        let totp = totp(secret, user.email().as_str())?;
        let code = code.trim();
        if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let now = u64::try_from(keyframe_domain::clock::now().timestamp()).unwrap_or_default();
        Ok([now.saturating_sub(STEP_SECS), now, now + STEP_SECS]
            .into_iter()
            .find(|time| totp.check(code, *time))
            .map(|time| time / STEP_SECS))
    }

    /// A signed-in user makes a new TOTP secret (replacing one set up and not yet enabled),
    /// proving their password: a stolen access token alone must not be able to put a second
    /// factor of its own in front of the owner. Answers the secret and the position.
    pub async fn set_up_totp(
        &self,
        user_id: UserId,
        password: &str,
        origin: &CommandMetadata,
    ) -> Result<(TotpEnrolment, i64), AppError> {
        let user = self.account(user_id).await?;
        refuse_while_locked(&user)?;
        if user.totp_secret().is_some() {
            return Err(UserError::TotpAlreadyEnabled.into());
        }
        let lockout = self.settings.identity.lockout;
        let user = match self.judge_password(user_id, password, origin).await? {
            Judgment::Right(user, ()) => *user,
            Judgment::Wrong { .. } => return Err(AppError::invalid("password", "is not the account's password")),
            Judgment::NotAdmitted { locked_until } => return Err(refused_guess(locked_until, lockout.threshold)),
        };
        let mut secret = vec![0_u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let sealed = self.master_key.seal(&secret, &sealing_context(user_id));
        let totp = totp(secret, user.email().as_str())?;
        let command = || UserCommand::StartTotpEnrolment {
            secret: sealed.clone(),
            at: keyframe_domain::clock::now(),
        };
        let position = self.execute_on_account(user_id, command, origin).await?;
        let enrolment = TotpEnrolment {
            secret_base32: totp.get_secret_base32(),
            otpauth_url: totp.get_url(),
        };
        Ok((enrolment, position))
    }

    /// A signed-in user turns the second factor on with a code of the secret just set up.
    pub async fn enable_totp(&self, user_id: UserId, code: &str, origin: &CommandMetadata) -> Result<i64, AppError> {
        let user = self.account(user_id).await?;
        if user.totp_secret().is_some() {
            return Err(UserError::TotpAlreadyEnabled.into());
        }
        let pending = user.totp_pending().ok_or(AppError::User(UserError::TotpNotSetUp))?;
        let step = self
            .matching_step(user_id, &user, pending, code)?
            .ok_or(AppError::Refused(Refusal::WrongCode))?;
        let command = || UserCommand::EnableTotp {
            secret: pending.clone(),
            step,
            at: keyframe_domain::clock::now(),
        };
        self.execute_on_account(user_id, command, origin).await
    }

    /// A signed-in user turns the second factor off with a current code (a guess that counts
    /// under the lockout).
    pub async fn disable_totp(&self, user_id: UserId, code: &str, origin: &CommandMetadata) -> Result<i64, AppError> {
        let user = self.account(user_id).await?;
        refuse_while_locked(&user)?;
        if user.totp_secret().is_none() {
            return Err(UserError::TotpNotEnabled.into());
        }
        let check = async |user: &User| match user.totp_secret() {
            Some(secret) => self.matching_step(user_id, user, secret, code),
            None => Err(UserError::TotpNotEnabled.into()),
        };
        let lockout = self.settings.identity.lockout;
        let step = match self
            .logins
            .judge(&self.buses.users, lockout, origin, user_id, check)
            .await?
        {
            Judgment::Right(_, step) => step,
            Judgment::Wrong { .. } => return Err(Refusal::WrongCode.into()),
            Judgment::NotAdmitted { locked_until } => return Err(refused_guess(locked_until, lockout.threshold)),
        };
        let command = || UserCommand::DisableTotp {
            step,
            at: keyframe_domain::clock::now(),
        };
        self.execute_on_account(user_id, command, origin).await
    }

    /// The second step of a login with a second factor, for the user whose password the first
    /// step proved: a current code starts the session.
    pub async fn log_in_with_code(
        &self,
        user_id: UserId,
        code: &str,
        origin: &CommandMetadata,
    ) -> Result<SessionStarted, AppError> {
        let metadata = acting(origin, Actor::User(user_id));
        let user = self.account(user_id).await?;
        refuse_while_locked(&user)?;
        if user.suspension().is_some() {
            return Err(Refusal::AccountSuspended.into());
        }
        if user.totp_secret().is_none() {
            return Err(Refusal::SecondFactorOff.into());
        }
        let check = async |user: &User| match user.totp_secret() {
            Some(secret) => self.matching_step(user_id, user, secret, code),
            None => Err(Refusal::SecondFactorOff.into()),
        };
        let lockout = self.settings.identity.lockout;
        let (user, step) = match self
            .logins
            .judge(&self.buses.users, lockout, &metadata, user_id, check)
            .await?
        {
            Judgment::Right(user, step) => (*user, step),
            Judgment::Wrong { .. } => return Err(Refusal::WrongLoginCode.into()),
            Judgment::NotAdmitted { locked_until } => return Err(refused_guess(locked_until, lockout.threshold)),
        };
        let command = || UserCommand::AcceptTotpCode {
            step,
            at: keyframe_domain::clock::now(),
        };
        match self.buses.users.execute(&user_id.to_string(), command, &metadata).await {
            Ok(_) => {}
            Err(CommandError::Rejected(UserError::TotpCodeReused)) => return Err(Refusal::LoginCodeReused.into()),
            Err(error) => return Err(error.into()),
        }
        self.start_session(user_id, user, origin).await
    }
}
