//! The events of the `MediaLibrary` aggregate: a published contract (names and payloads never
//! change).

use crate::ids::{AssetId, ProjectId, UserId};
use crate::media::{Container, VideoFacts};
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Events of [`MediaLibrary`](super::MediaLibrary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LibraryEvent {
    /// A video was uploaded, stored and probed.
    AssetUploaded {
        /// The video's id.
        asset_id: AssetId,
        /// Its project.
        project_id: ProjectId,
        /// Its owner: `owner_id`, and `owner_kind: "organization"` for an organisation's.
        #[serde(flatten)]
        owner: Owner,
        /// The member who uploaded it (absent before organisations: the owner did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uploaded_by: Option<UserId>,
        /// The client's name for it.
        filename: String,
        /// Where storage keeps it.
        storage_key: String,
        /// Its container.
        container: Container,
        /// Its size.
        size_bytes: u64,
        /// SHA-256 of its bytes, hex.
        sha256: String,
        /// What the probe found: duration, resolution, codecs.
        facts: VideoFacts,
        /// When.
        uploaded_at: DateTime<Utc>,
    },
    /// The videos of a deleted project were released; their bytes no longer count.
    ProjectAssetsReleased {
        /// The project.
        project_id: ProjectId,
        /// The videos released.
        asset_ids: Vec<AssetId>,
        /// Their storage keys, for whoever removes the bytes.
        storage_keys: Vec<String>,
        /// The bytes freed.
        bytes: u64,
        /// When.
        released_at: DateTime<Utc>,
    },
}

impl DomainEvent for LibraryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AssetUploaded { .. } => "AssetUploaded",
            Self::ProjectAssetsReleased { .. } => "ProjectAssetsReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
