//! Every problem code Keyframe answers, in one list. The codes are a contract: clients branch
//! on them, so a code is never renamed or reused (add a new one instead).

use std::fmt;

/// Defines [`Code`] and its stable strings together, so the two cannot drift apart.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A problem's stable machine-readable `code`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in the order listed.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// The code as clients see it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    // Requests Keyframe cannot read.
    /// The request itself is malformed.
    BadRequest = "bad_request",
    /// The JSON body is not JSON.
    MalformedJson = "malformed_json",
    /// The body does not have the expected shape.
    InvalidBody = "invalid_body",
    /// The body is larger than accepted.
    PayloadTooLarge = "payload_too_large",
    /// The body's media type is not accepted.
    UnsupportedMediaType = "unsupported_media_type",
    /// A path parameter is malformed.
    InvalidPath = "invalid_path",
    /// A path id is not a UUID.
    InvalidId = "invalid_id",
    /// The query string does not have the expected shape.
    InvalidQuery = "invalid_query",
    /// A list cursor is not one Keyframe gave.
    InvalidCursor = "invalid_cursor",
    /// `x-keyframe-min-position` is not a positive integer.
    InvalidPosition = "invalid_position",
    /// `Last-Event-ID` is not an event id.
    InvalidLastEventId = "invalid_last_event_id",
    /// Fields broke their rules (see `errors`).
    ValidationFailed = "validation_failed",
    /// No such endpoint, or no such resource the caller may see.
    NotFound = "not_found",
    /// The endpoint does not take the method.
    MethodNotAllowed = "method_not_allowed",
    /// Over a rate limit.
    RateLimited = "rate_limited",
    /// Other requests were changing the resource; try again.
    ConcurrentModification = "concurrent_modification",
    /// A dependency is down.
    Unavailable = "unavailable",
    /// Something unexpected; quote the request id.
    InternalError = "internal_error",

    // Identity.
    /// No access token.
    MissingToken = "missing_token",
    /// The token (access, or a mailed one) is invalid or expired.
    InvalidToken = "invalid_token",
    /// A mailed token is past its time.
    TokenExpired = "token_expired",
    /// The session of the token has ended.
    SessionEnded = "session_ended",
    /// No refresh token.
    MissingRefreshToken = "missing_refresh_token",
    /// The refresh token is invalid, used or expired.
    InvalidRefreshToken = "invalid_refresh_token",
    /// A used refresh token came back: its whole family is revoked.
    RefreshTokenReused = "refresh_token_reused",
    /// The session exists already.
    SessionExists = "session_exists",
    /// The session was changed concurrently.
    SessionConflict = "session_conflict",
    /// The e-mail or password is wrong.
    InvalidCredentials = "invalid_credentials",
    /// The account is locked after failed attempts.
    AccountLocked = "account_locked",
    /// Enough guesses for this account are being judged already.
    TooManyAttempts = "too_many_attempts",
    /// The account is suspended.
    AccountSuspended = "account_suspended",
    /// The address is not verified yet.
    EmailNotVerified = "email_not_verified",
    /// The address is registered already.
    EmailTaken = "email_taken",
    /// The account is registered already.
    AlreadyRegistered = "already_registered",
    /// The address is verified already.
    AlreadyVerified = "already_verified",
    /// The second-factor step's token is invalid or expired.
    InvalidMfaToken = "invalid_mfa_token",
    /// The TOTP code is wrong.
    InvalidTotpCode = "invalid_totp_code",
    /// The TOTP code was used already.
    TotpCodeReused = "totp_code_reused",
    /// TOTP is on already.
    TotpAlreadyEnabled = "totp_already_enabled",
    /// TOTP has not been set up.
    TotpNotSetUp = "totp_not_set_up",
    /// TOTP is not on.
    TotpNotEnabled = "totp_not_enabled",

    // Administration.
    /// The endpoint is for administrators.
    AdminOnly = "admin_only",
    /// An administrator may not do this to their own account.
    CannotActOnSelf = "cannot_act_on_self",
    /// The account is suspended already.
    AlreadySuspended = "already_suspended",
    /// The account is not suspended.
    NotSuspended = "not_suspended",

    // Organisations.
    /// The caller's role in the organisation is too low for this.
    InsufficientRole = "insufficient_role",
    /// Only an owner may change, invite or remove an owner.
    OwnersOnly = "owners_only",
    /// The change would leave the organisation without an owner.
    LastOwner = "last_owner",
    /// The address or account is a member already.
    AlreadyMember = "already_member",
    /// Removing oneself: leave instead.
    CannotRemoveSelf = "cannot_remove_self",
    /// Ownership goes to a member who is not an owner yet.
    InvalidTransfer = "invalid_transfer",
    /// Jobs of the organisation are queued or running.
    OrganizationBusy = "organization_busy",
    /// The organisation pays for a plan.
    OrganizationSubscribed = "organization_subscribed",
    /// The invitation was accepted already.
    InvitationUsed = "invitation_used",
    /// The invitation was revoked.
    InvitationRevoked = "invitation_revoked",
    /// A newer invitation to the same address replaced it.
    InvitationReplaced = "invitation_replaced",
    /// The invitation has expired.
    InvitationExpired = "invitation_expired",
    /// The invitation is for another address than the caller's.
    InvitationForAnotherAddress = "invitation_for_another_address",

    // Projects, videos and jobs.
    /// A project with this id exists already.
    ProjectExists = "project_exists",
    /// The upload is larger than any upload may be.
    TooLarge = "too_large",
    /// The upload does not fit in the storage quota.
    QuotaExceeded = "quota_exceeded",
    /// Not a video container Keyframe takes.
    UnsupportedMedia = "unsupported_media",
    /// No readable video stream, or too long.
    InvalidVideo = "invalid_video",
    /// The upload broke off.
    UploadInterrupted = "upload_interrupted",
    /// The server cannot read videos now: ffmpeg is not installed on it.
    VideoToolsUnavailable = "video_tools_unavailable",
    /// The multipart body could not be read.
    InvalidMultipart = "invalid_multipart",
    /// The multipart body holds no file part.
    MissingFile = "missing_file",
    /// The job has ended and cannot be cancelled.
    JobNotCancellable = "job_not_cancellable",
    /// The job cannot be run again now.
    JobNotRetryable = "job_not_retryable",
    /// The job is still queued or running.
    JobActive = "job_active",
    /// A job with this id exists already.
    JobExists = "job_exists",
    /// The job's state does not allow this.
    JobState = "job_state",

    // Credits and subscriptions.
    /// Not enough available credits.
    InsufficientCredits = "insufficient_credits",
    /// The job would take the member past their monthly credit limit in the organisation.
    MemberCreditLimit = "member_credit_limit",
    /// No such plan.
    UnknownPlan = "unknown_plan",
    /// The subscription is held already.
    AlreadySubscribed = "already_subscribed",
    /// The subscription belongs to another account.
    SubscriptionConflict = "subscription_conflict",
    /// Payments are not set up on this server.
    BillingNotConfigured = "billing_not_configured",
    /// The payment provider refused.
    PaymentProviderError = "payment_provider_error",
    /// The payment provider cannot be reached.
    PaymentProviderUnavailable = "payment_provider_unavailable",
    /// A webhook carries no signature.
    Unsigned = "unsigned",
    /// A webhook's signature does not verify.
    InvalidSignature = "invalid_signature",
    /// A webhook's signature is too old.
    StaleSignature = "stale_signature",
    /// A webhook's event could not be read.
    InvalidEvent = "invalid_event",
    /// A webhook names a customer Keyframe does not know.
    UnknownCustomer = "unknown_customer",
    /// An idempotency key is malformed.
    InvalidIdempotencyKey = "invalid_idempotency_key",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_lower_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is listed twice");
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text} is not lower snake case"
            );
        }
    }
}
