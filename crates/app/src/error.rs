//! What a use case answers instead of success: the domain's refusals as they are, and the
//! few failures of the application's own (not found, forbidden, invalid input, an upload
//! refused, the store unreachable). Transports map it once (`impl From<AppError> for ApiError`
//! at the HTTP edge).

use chrono::{DateTime, Utc};
use keyframe_domain::job::JobError;
use keyframe_domain::ledger::LedgerError;
use keyframe_domain::library::LibraryError;
use keyframe_domain::organization::{MemberRole, OrganizationError};
use keyframe_domain::project::ProjectError;
use keyframe_domain::session::SessionError;
use keyframe_domain::subscription::SubscriptionError;
use keyframe_domain::user::UserError;
use keyframe_domain::values::ValidationError;
use keyframe_eventlog::commands::CommandError;

/// Everything a use case can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// It does not exist, or the actor may not know it does (see the authorization policy).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The actor may not do this: it is for administrators (see the authorization policy).
    #[error("this is for administrators")]
    Forbidden,
    /// The actor's role in the organisation that owns it is too low (see the authorization
    /// policy).
    #[error("this needs the role {needed} in the organisation (you are {held})")]
    RoleTooLow {
        /// The least role that may.
        needed: MemberRole,
        /// The actor's.
        held: MemberRole,
    },
    /// Input broke its rules, one entry per field.
    #[error("invalid input")]
    Invalid(Vec<ValidationError>),
    /// An upload was refused before it was recorded; nothing of it is kept.
    #[error(transparent)]
    Upload(#[from] UploadRefused),
    /// A job's rules refused.
    #[error(transparent)]
    Job(#[from] JobError),
    /// A project's rules refused.
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// A credit ledger's rules refused.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An account's rules refused.
    #[error(transparent)]
    User(#[from] UserError),
    /// A session's rules refused.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// An organisation's rules refused.
    #[error(transparent)]
    Organization(#[from] OrganizationError),
    /// A media library's rules refused.
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// A check of the caller's credentials or standing refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Buying a plan, or a Stripe event, refused.
    #[error(transparent)]
    Billing(#[from] BillingRefusal),
    /// A subscription's rules refused.
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    /// Other writers changed the aggregate throughout the retries.
    #[error("the resource was being changed by other requests; try again")]
    Concurrent,
    /// The event store cannot be reached.
    #[error("the event store is unreachable: {0}")]
    Unavailable(String),
    /// Anything unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// One field's problem.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![ValidationError {
            field,
            message: message.into(),
        }])
    }
}

impl<E> From<CommandError<E>> for AppError
where
    E: std::error::Error + Into<AppError>,
{
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Rejected(error) => error.into(),
            CommandError::Conflict { .. } => Self::Concurrent,
            CommandError::Unavailable(detail) => Self::Unavailable(detail),
            CommandError::Store(detail) => Self::Internal(anyhow::anyhow!("event store: {detail}")),
        }
    }
}

impl From<ValidationError> for AppError {
    fn from(error: ValidationError) -> Self {
        Self::Invalid(vec![error])
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        if keyframe_database::errors::database_unreachable(&error) {
            Self::Unavailable(error.to_string())
        } else {
            Self::Internal(anyhow::Error::new(error).context("database"))
        }
    }
}

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefused {
    /// Larger than any upload may be.
    #[error("uploads are limited to {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Does not fit in what is left of the owner's quota.
    #[error(
        "the upload does not fit in your storage quota: {used} of {quota} bytes used; delete a project to free space"
    )]
    QuotaExceeded {
        /// Bytes used.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// Not a container Keyframe takes.
    #[error("not a video Keyframe accepts: upload MP4, MOV, WebM, Matroska or AVI")]
    UnsupportedMedia,
    /// The probe found no readable video in it, or it is too long.
    #[error("{0}")]
    InvalidVideo(String),
    /// The client's bytes stopped coming.
    #[error("the upload broke off")]
    Interrupted,
    /// This server cannot read videos: ffprobe could not be run (ffmpeg is not installed).
    #[error("this Keyframe cannot read videos now ({0}): ask its operator to install ffmpeg and ffprobe")]
    VideoToolsUnavailable(String),
}

/// Why a check of credentials or of an account's standing refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The e-mail or password is wrong (or the account is locked: a login does not tell).
    #[error("the e-mail or password is wrong")]
    InvalidCredentials,
    /// Failed attempts locked the account (said only to a caller who holds a session).
    #[error("too many failed attempts; try again after {} or reset the password", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    AccountLocked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
    /// As many guesses for the account as the lockout allows are being judged already.
    #[error("{threshold} attempts for this account are being judged already; try again shortly")]
    TooManyAttempts {
        /// The lockout's threshold.
        threshold: u32,
    },
    /// The account is suspended.
    #[error("this account is suspended; contact support")]
    AccountSuspended,
    /// The address must be verified before logging in.
    #[error(
        "confirm the e-mail address with the link we sent first (POST /api/v1/auth/resend-verification sends another)"
    )]
    EmailNotVerified,
    /// Another account holds the address.
    #[error("an account with this e-mail exists")]
    EmailTaken,
    /// The account behind a token no longer exists.
    #[error("the account no longer exists")]
    AccountGone,
    /// A second-factor code that is not the authenticator's current one.
    #[error("the code is not the current one of the authenticator")]
    WrongCode,
    /// The same, as the second step of a login.
    #[error("the code is not the current one of the authenticator")]
    WrongLoginCode,
    /// The second step of a login, for an account whose second factor is off.
    #[error("two-factor authentication is off; log in again")]
    SecondFactorOff,
    /// The code of a login's second step was used already.
    #[error("this code was already used; wait for the next one")]
    LoginCodeReused,
    /// The session cannot be ended as asked.
    #[error("{0}")]
    SessionConflict(String),
    /// A replaced refresh token came back: its session is revoked.
    #[error("this refresh token was already used; the session is revoked for safety, log in again")]
    RefreshTokenReused,
}

/// Why buying a plan, or processing a Stripe event, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingRefusal {
    /// Payments are not set up on this server: the named setting is missing.
    #[error("payments are not set up on this server ({0} missing)")]
    NotConfigured(&'static str),
    /// A subscription is running already.
    #[error("a subscription is running; change or cancel it in the billing portal")]
    AlreadySubscribed,
    /// Stripe refused.
    #[error("{0}")]
    ProviderRejected(String),
    /// Stripe cannot be reached.
    #[error("the payment provider cannot be reached; try again shortly")]
    ProviderUnavailable,
    /// The event lacks what its type needs.
    #[error("{0}")]
    InvalidEvent(String),
    /// The event's customer is no Keyframe user's (yet): Stripe should deliver it again.
    #[error("customer {0} is no Keyframe user's (yet)")]
    UnknownCustomer(String),
    /// The event is for no configured plan.
    #[error("{0}")]
    UnknownPlan(String),
}
