//! The `MediaLibrary` aggregate: one per owner, a user or an organisation (its id is the
//! owner's), holding every video uploaded into the owner's projects and how much storage they
//! take.
//!
//! The storage quota is a rule over all of a user's uploads, so it lives on one aggregate: two
//! uploads that finish together both load the same library, and optimistic concurrency lets
//! only one append at a time, so the second sees the first's bytes before it is accepted. No
//! interleaving of concurrent uploads can push the total over the quota.

mod aggregate;
mod command;
mod error;
mod event;

pub use command::LibraryCommand;
pub use error::LibraryError;
pub use event::LibraryEvent;

use crate::ids::{AssetId, ProjectId};
use crate::media::{Container, VideoFacts};
use crate::owner::Owner;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An owner's videos and the storage they use.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MediaLibrary {
    owner: Option<Owner>,
    assets: BTreeMap<AssetId, LibraryAsset>,
    used_bytes: u64,
}

/// One video in the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryAsset {
    /// The project it was uploaded into.
    pub project_id: ProjectId,
    /// The name the client gave it (display only; storage names are generated).
    pub filename: String,
    /// Where storage keeps it.
    pub storage_key: String,
    /// Its container.
    pub container: Container,
    /// Its size.
    pub size_bytes: u64,
    /// What the probe found.
    pub facts: VideoFacts,
}

impl MediaLibrary {
    /// Bytes the user's videos take.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// The video `asset_id` if it is in `project_id`: a video in another project, or
    /// released, is not found.
    pub fn asset_in(&self, project_id: ProjectId, asset_id: AssetId) -> Option<&LibraryAsset> {
        self.assets
            .get(&asset_id)
            .filter(|asset| asset.project_id == project_id)
    }

    /// Where storage keeps the videos of `project_id`.
    pub fn storage_keys_of(&self, project_id: ProjectId) -> Vec<String> {
        self.assets
            .values()
            .filter(|asset| asset.project_id == project_id)
            .map(|asset| asset.storage_key.clone())
            .collect()
    }

    /// The projects that still hold videos.
    pub fn projects(&self) -> Vec<ProjectId> {
        let mut projects: Vec<ProjectId> = self.assets.values().map(|asset| asset.project_id).collect();
        projects.sort_unstable();
        projects.dedup();
        projects
    }
}

/// A video that has been stored and probed, ready to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVideo {
    /// Its new id.
    pub asset_id: AssetId,
    /// The project it goes into (the caller checked it is the owner's).
    pub project_id: ProjectId,
    /// The client's name for it.
    pub filename: String,
    /// Where storage keeps it.
    pub storage_key: String,
    /// Its container.
    pub container: Container,
    /// Its size.
    pub size_bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// What the probe found.
    pub facts: VideoFacts,
}

#[cfg(test)]
mod tests;
