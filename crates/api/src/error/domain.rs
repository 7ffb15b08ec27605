//! How the domain's and the application's refusals answer over HTTP: one `From` per error
//! type, so handlers use `?` and no route maps an error itself.

use super::{ApiError, Code, FieldError};
use axum::http::StatusCode;
use keyframe_app::error::{AppError, BillingRefusal, Refusal, UploadRefused};
use keyframe_domain::job::JobError;
use keyframe_domain::ledger::LedgerError;
use keyframe_domain::library::LibraryError;
use keyframe_domain::organization::OrganizationError;
use keyframe_domain::project::ProjectError;
use keyframe_domain::session::SessionError;
use keyframe_domain::subscription::SubscriptionError;
use keyframe_domain::user::UserError;
use keyframe_eventlog::commands::CommandError;

impl<E> From<CommandError<E>> for ApiError
where
    E: std::error::Error + Into<ApiError>,
{
    fn from(error: CommandError<E>) -> Self {
        Self::from_command(error, Into::into)
    }
}

fn conflict(code: Code, error: &impl ToString) -> ApiError {
    ApiError::Conflict {
        code,
        detail: error.to_string(),
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::NotFound(what) => Self::not_found(what),
            AppError::Forbidden => Self::Forbidden {
                code: Code::AdminOnly,
                detail: "this endpoint is for administrators".to_owned(),
            },
            AppError::Invalid(errors) => Self::Validation(
                errors
                    .into_iter()
                    .map(|error| FieldError {
                        field: error.field.to_owned(),
                        message: error.message,
                    })
                    .collect(),
            ),
            AppError::Upload(refused) => refused.into(),
            AppError::Refused(refusal) => refusal.into(),
            AppError::Session(error) => error.into(),
            AppError::Billing(refusal) => refusal.into(),
            AppError::Subscription(error) => error.into(),
            AppError::Job(error) => error.into(),
            AppError::Project(error) => error.into(),
            AppError::Ledger(error) => error.into(),
            AppError::User(error) => error.into(),
            AppError::Library(error) => error.into(),
            AppError::Organization(error) => error.into(),
            AppError::RoleTooLow { .. } => Self::Forbidden {
                code: Code::InsufficientRole,
                detail: error.to_string(),
            },
            AppError::Concurrent => Self::concurrent_modification(),
            AppError::Unavailable(detail) => Self::database_unreachable(&detail),
            AppError::Internal(error) => Self::Internal(error),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let detail = refusal.to_string();
        match refusal {
            Refusal::InvalidCredentials => Self::unauthorized(Code::InvalidCredentials, detail),
            Refusal::AccountLocked { .. } => Self::Forbidden {
                code: Code::AccountLocked,
                detail,
            },
            Refusal::TooManyAttempts { .. } => conflict(Code::TooManyAttempts, &detail),
            Refusal::AccountSuspended => Self::Forbidden {
                code: Code::AccountSuspended,
                detail,
            },
            Refusal::EmailNotVerified => Self::Forbidden {
                code: Code::EmailNotVerified,
                detail,
            },
            Refusal::EmailTaken => conflict(Code::EmailTaken, &detail),
            Refusal::AccountGone => Self::unauthorized(Code::InvalidToken, detail),
            Refusal::WrongCode => Self::bad_request(Code::InvalidTotpCode, detail),
            Refusal::WrongLoginCode => Self::unauthorized(Code::InvalidTotpCode, detail),
            Refusal::SecondFactorOff => Self::unauthorized(Code::InvalidMfaToken, detail),
            Refusal::LoginCodeReused => Self::unauthorized(Code::TotpCodeReused, detail),
            Refusal::SessionConflict(_) => conflict(Code::SessionConflict, &detail),
            Refusal::RefreshTokenReused => Self::unauthorized(Code::RefreshTokenReused, detail),
        }
    }
}

impl From<BillingRefusal> for ApiError {
    fn from(refusal: BillingRefusal) -> Self {
        let detail = refusal.to_string();
        let upstream = |status, code| Self::Upstream {
            status,
            code,
            detail: detail.clone(),
        };
        match refusal {
            BillingRefusal::NotConfigured(_) => upstream(StatusCode::SERVICE_UNAVAILABLE, Code::BillingNotConfigured),
            BillingRefusal::AlreadySubscribed => conflict(Code::AlreadySubscribed, &detail),
            BillingRefusal::ProviderRejected(_) => upstream(StatusCode::BAD_GATEWAY, Code::PaymentProviderError),
            BillingRefusal::ProviderUnavailable => {
                upstream(StatusCode::SERVICE_UNAVAILABLE, Code::PaymentProviderUnavailable)
            }
            BillingRefusal::InvalidEvent(_) => Self::bad_request(Code::InvalidEvent, detail),
            BillingRefusal::UnknownCustomer(_) => Self::BadRequest {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: Code::UnknownCustomer,
                detail,
            },
            BillingRefusal::UnknownPlan(_) => Self::BadRequest {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: Code::UnknownPlan,
                detail,
            },
        }
    }
}

impl From<UploadRefused> for ApiError {
    fn from(refused: UploadRefused) -> Self {
        let (status, code) = match refused {
            UploadRefused::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, Code::TooLarge),
            UploadRefused::QuotaExceeded { .. } => (StatusCode::PAYLOAD_TOO_LARGE, Code::QuotaExceeded),
            UploadRefused::UnsupportedMedia => (StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::UnsupportedMedia),
            UploadRefused::InvalidVideo(_) => (StatusCode::UNPROCESSABLE_ENTITY, Code::InvalidVideo),
            UploadRefused::Interrupted => (StatusCode::BAD_REQUEST, Code::UploadInterrupted),
            UploadRefused::VideoToolsUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Code::VideoToolsUnavailable),
        };
        Self::BadRequest {
            status,
            code,
            detail: refused.to_string(),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> Self {
        match error {
            JobError::NotFound => Self::not_found("job"),
            JobError::NotCancellable { .. } => conflict(Code::JobNotCancellable, &error),
            JobError::NotRetryable { .. } | JobError::StaleRun { .. } => conflict(Code::JobNotRetryable, &error),
            JobError::StillActive { .. } => conflict(Code::JobActive, &error),
            JobError::AlreadyExists => conflict(Code::JobExists, &error),
            JobError::StaleTicket
            | JobError::NotRunnable { .. }
            | JobError::AttemptSuperseded { .. }
            | JobError::InvalidArtifact { .. } => conflict(Code::JobState, &error),
        }
    }
}

impl From<ProjectError> for ApiError {
    fn from(error: ProjectError) -> Self {
        match error {
            ProjectError::NotFound => Self::not_found("project"),
            ProjectError::AlreadyExists => conflict(Code::ProjectExists, &error),
        }
    }
}

impl From<OrganizationError> for ApiError {
    fn from(error: OrganizationError) -> Self {
        let detail = error.to_string();
        let forbidden = |code| Self::Forbidden {
            code,
            detail: detail.clone(),
        };
        match error {
            OrganizationError::NotFound => Self::not_found("organization"),
            OrganizationError::MemberNotFound => Self::not_found("member"),
            OrganizationError::NotPermitted { .. } => forbidden(Code::InsufficientRole),
            OrganizationError::OwnersOnly => forbidden(Code::OwnersOnly),
            OrganizationError::InvitationForAnotherAddress { .. } => forbidden(Code::InvitationForAnotherAddress),
            OrganizationError::InvalidCreditLimit => Self::Validation(vec![FieldError {
                field: "monthly_credit_limit".to_owned(),
                message: detail,
            }]),
            OrganizationError::InvitationNotFound => Self::not_found("invitation"),
            OrganizationError::AlreadyExists => Self::Internal(anyhow::Error::new(error)),
            OrganizationError::LastOwner => conflict(Code::LastOwner, &detail),
            OrganizationError::AlreadyMember => conflict(Code::AlreadyMember, &detail),
            OrganizationError::CannotRemoveSelf => conflict(Code::CannotRemoveSelf, &detail),
            OrganizationError::InvalidTransfer => conflict(Code::InvalidTransfer, &detail),
            OrganizationError::JobsActive { .. } => conflict(Code::OrganizationBusy, &detail),
            OrganizationError::PlanActive => conflict(Code::OrganizationSubscribed, &detail),
            OrganizationError::InvitationUsed => conflict(Code::InvitationUsed, &detail),
            OrganizationError::InvitationRevoked => conflict(Code::InvitationRevoked, &detail),
            OrganizationError::InvitationReplaced => conflict(Code::InvitationReplaced, &detail),
            OrganizationError::InvitationExpired => conflict(Code::InvitationExpired, &detail),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::InsufficientCredits { .. } => Self::BadRequest {
                status: StatusCode::PAYMENT_REQUIRED,
                code: Code::InsufficientCredits,
                detail: error.to_string(),
            },
            LedgerError::MemberCreditLimit { .. } => Self::BadRequest {
                status: StatusCode::PAYMENT_REQUIRED,
                code: Code::MemberCreditLimit,
                detail: error.to_string(),
            },
            LedgerError::InvalidAmount { .. } => Self::Validation(vec![FieldError {
                field: "amount".to_owned(),
                message: error.to_string(),
            }]),
            // The earlier run's release did not go through (the database wavered): try again.
            LedgerError::ReservationOpen { .. } => Self::Conflict {
                code: Code::ConcurrentModification,
                detail: format!("{error}; try again"),
            },
            LedgerError::NoReservation | LedgerError::NotOwner => Self::Internal(anyhow::Error::new(error)),
        }
    }
}

impl From<LibraryError> for ApiError {
    fn from(error: LibraryError) -> Self {
        match error {
            LibraryError::QuotaExceeded {
                used_bytes,
                quota_bytes,
                ..
            } => UploadRefused::QuotaExceeded {
                used: used_bytes,
                quota: quota_bytes,
            }
            .into(),
            LibraryError::AssetExists | LibraryError::NotOwner => Self::Internal(anyhow::Error::new(error)),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        let detail = error.to_string();
        match error {
            UserError::AlreadyRegistered => conflict(Code::AlreadyRegistered, &detail),
            UserError::AlreadyVerified => conflict(Code::AlreadyVerified, &detail),
            UserError::NotFound => Self::not_found("account"),
            UserError::TokenInvalid => Self::bad_request(Code::InvalidToken, detail),
            UserError::TokenExpired => Self::bad_request(Code::TokenExpired, detail),
            UserError::TotpAlreadyEnabled => conflict(Code::TotpAlreadyEnabled, &detail),
            UserError::TotpNotSetUp => conflict(Code::TotpNotSetUp, &detail),
            UserError::TotpNotEnabled => conflict(Code::TotpNotEnabled, &detail),
            UserError::TotpCodeReused => Self::bad_request(Code::TotpCodeReused, detail),
            UserError::ApiKeyNotFound => Self::not_found("API key"),
            UserError::CannotActOnSelf => conflict(Code::CannotActOnSelf, &detail),
            UserError::AlreadySuspended => conflict(Code::AlreadySuspended, &detail),
            UserError::NotSuspended => conflict(Code::NotSuspended, &detail),
            UserError::AccountLocked { .. } | UserError::LoginAttemptsExhausted => {
                Self::unauthorized(Code::InvalidCredentials, "the e-mail or password is wrong")
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::AlreadyStarted => conflict(Code::SessionExists, &error),
            SessionError::RefreshTokenReused => Self::unauthorized(
                Code::RefreshTokenReused,
                "this refresh token was already used; log in again",
            ),
            SessionError::NotFound
            | SessionError::Ended
            | SessionError::RefreshTokenInvalid
            | SessionError::RefreshTokenExpired => Self::unauthorized(
                Code::InvalidRefreshToken,
                "the refresh token is invalid, used or expired",
            ),
        }
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(error: SubscriptionError) -> Self {
        match error {
            SubscriptionError::NotOwner => conflict(Code::SubscriptionConflict, &error),
        }
    }
}
