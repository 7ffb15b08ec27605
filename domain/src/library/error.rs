//! The rules a `MediaLibrary` command can break.

/// Rules a [`LibraryCommand`](super::LibraryCommand) can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    /// The video does not fit in what is left of the quota.
    #[error("storage quota exceeded: {used_bytes} of {quota_bytes} bytes used, the upload has {size_bytes}")]
    QuotaExceeded {
        /// Bytes already used.
        used_bytes: u64,
        /// The quota.
        quota_bytes: u64,
        /// The upload's size.
        size_bytes: u64,
    },
    /// The asset id is taken.
    #[error("an asset with this id already exists")]
    AssetExists,
    /// The command names another user's library.
    #[error("this library belongs to another user")]
    NotOwner,
}
