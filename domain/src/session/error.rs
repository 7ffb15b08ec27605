//! The rules a `Session` command can break.

/// Rules a [`SessionCommand`](super::SessionCommand) can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `StartSession` on a session that exists.
    #[error("this session has already started")]
    AlreadyStarted,
    /// The session does not exist, or belongs to someone else.
    #[error("no such session")]
    NotFound,
    /// The session was ended (logout).
    #[error("this session has ended")]
    Ended,
    /// The presented refresh token is not the session's current one, nor one it replaced.
    #[error("the refresh token is not valid")]
    RefreshTokenInvalid,
    /// The presented refresh token was already traded in: the family must end
    /// ([`SessionCommand::RevokeForReuse`](super::SessionCommand::RevokeForReuse)).
    #[error("the refresh token was already used")]
    RefreshTokenReused,
    /// The refresh token's lifetime is over.
    #[error("the refresh token has expired")]
    RefreshTokenExpired,
}
