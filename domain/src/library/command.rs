//! The commands of the `MediaLibrary` aggregate.

use super::StoredVideo;
use crate::ids::{ProjectId, UserId};
use crate::owner::Owner;
use chrono::{DateTime, Utc};

/// Commands for [`MediaLibrary`](super::MediaLibrary).
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a command lives for one call; boxing buys nothing"
)]
pub enum LibraryCommand {
    /// Record an uploaded video, if it fits in the quota.
    RecordUpload {
        /// The library's owner (its id is also the aggregate id).
        owner: Owner,
        /// The member who uploaded it.
        uploaded_by: UserId,
        /// The video.
        video: StoredVideo,
        /// The most bytes the owner's videos may take.
        quota_bytes: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Release every video of a deleted project, freeing its storage.
    ReleaseProject {
        /// The project.
        project_id: ProjectId,
        /// When.
        at: DateTime<Utc>,
    },
}
