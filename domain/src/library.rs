//! The `MediaLibrary` aggregate: one per user (its id is the user's), holding every video the
//! user uploaded and how much storage they take.
//!
//! The storage quota is a rule over all of a user's uploads, so it lives on one aggregate: two
//! uploads that finish together both load the same library, and optimistic concurrency lets
//! only one append at a time, so the second sees the first's bytes before it is accepted. No
//! interleaving of concurrent uploads can push the total over the quota.

use crate::ids::{AssetId, ProjectId, UserId};
use crate::media::{Container, VideoFacts};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A user's videos and the storage they use.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MediaLibrary {
    owner_id: Option<UserId>,
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

/// Commands for [`MediaLibrary`].
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a command lives for one call; boxing buys nothing"
)]
pub enum LibraryCommand {
    /// Record an uploaded video, if it fits in the quota.
    RecordUpload {
        /// The library's owner (also the aggregate id).
        owner_id: UserId,
        /// The video.
        video: StoredVideo,
        /// The most bytes the user's videos may take.
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

/// Events of [`MediaLibrary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LibraryEvent {
    /// A video was uploaded, stored and probed.
    AssetUploaded {
        /// The video's id.
        asset_id: AssetId,
        /// Its project.
        project_id: ProjectId,
        /// Its owner.
        owner_id: UserId,
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

/// Rules a [`LibraryCommand`] can break.
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

impl Aggregate for MediaLibrary {
    const TYPE: &'static str = "MediaLibrary";
    type Command = LibraryCommand;
    type Event = LibraryEvent;
    type Error = LibraryError;
    type Services = ();

    async fn handle(&mut self, command: LibraryCommand, _: &(), sink: &EventSink<Self>) -> Result<(), LibraryError> {
        match command {
            LibraryCommand::RecordUpload {
                owner_id,
                video,
                quota_bytes,
                at,
            } => {
                if self.owner_id.is_some_and(|owner| owner != owner_id) {
                    return Err(LibraryError::NotOwner);
                }
                if self.assets.contains_key(&video.asset_id) {
                    return Err(LibraryError::AssetExists);
                }
                if self.used_bytes.saturating_add(video.size_bytes) > quota_bytes {
                    return Err(LibraryError::QuotaExceeded {
                        used_bytes: self.used_bytes,
                        quota_bytes,
                        size_bytes: video.size_bytes,
                    });
                }
                let event = LibraryEvent::AssetUploaded {
                    asset_id: video.asset_id,
                    project_id: video.project_id,
                    owner_id,
                    filename: video.filename,
                    storage_key: video.storage_key,
                    container: video.container,
                    size_bytes: video.size_bytes,
                    sha256: video.sha256,
                    facts: video.facts,
                    uploaded_at: at,
                };
                sink.write(event, self).await;
            }
            LibraryCommand::ReleaseProject { project_id, at } => {
                let released: Vec<(&AssetId, &LibraryAsset)> = self
                    .assets
                    .iter()
                    .filter(|(_, asset)| asset.project_id == project_id)
                    .collect();
                // Releasing twice, or a project without videos, changes nothing: no event.
                if released.is_empty() {
                    return Ok(());
                }
                let event = LibraryEvent::ProjectAssetsReleased {
                    project_id,
                    asset_ids: released.iter().map(|(id, _)| **id).collect(),
                    storage_keys: released.iter().map(|(_, asset)| asset.storage_key.clone()).collect(),
                    bytes: released.iter().map(|(_, asset)| asset.size_bytes).sum(),
                    released_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: LibraryEvent) {
        match event {
            LibraryEvent::AssetUploaded {
                asset_id,
                project_id,
                owner_id,
                filename,
                storage_key,
                container,
                size_bytes,
                facts,
                ..
            } => {
                self.owner_id = Some(owner_id);
                self.used_bytes = self.used_bytes.saturating_add(size_bytes);
                self.assets.insert(
                    asset_id,
                    LibraryAsset {
                        project_id,
                        filename,
                        storage_key,
                        container,
                        size_bytes,
                        facts,
                    },
                );
            }
            LibraryEvent::ProjectAssetsReleased { asset_ids, bytes, .. } => {
                for asset_id in asset_ids {
                    self.assets.remove(&asset_id);
                }
                self.used_bytes = self.used_bytes.saturating_sub(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    const QUOTA: u64 = 1_000;

    struct Given {
        owner_id: UserId,
        project_id: ProjectId,
        at: DateTime<Utc>,
    }

    impl Given {
        fn new() -> Self {
            Self {
                owner_id: UserId::new(),
                project_id: ProjectId::new(),
                at: Utc::now(),
            }
        }

        fn video(&self, size_bytes: u64) -> StoredVideo {
            StoredVideo {
                asset_id: AssetId::new(),
                project_id: self.project_id,
                filename: "clip.mp4".to_owned(),
                storage_key: format!("assets/{}", uuid::Uuid::now_v7()),
                container: Container::Mp4,
                size_bytes,
                sha256: "ab".repeat(32),
                facts: VideoFacts {
                    duration_ms: Some(4_000),
                    width: 320,
                    height: 240,
                    frame_rate: Some(25.0),
                    video_codec: "h264".to_owned(),
                    audio_codec: Some("aac".to_owned()),
                    bit_rate: None,
                },
            }
        }

        fn record(&self, video: &StoredVideo) -> LibraryCommand {
            LibraryCommand::RecordUpload {
                owner_id: self.owner_id,
                video: video.clone(),
                quota_bytes: QUOTA,
                at: self.at,
            }
        }

        fn uploaded(&self, video: &StoredVideo) -> LibraryEvent {
            LibraryEvent::AssetUploaded {
                asset_id: video.asset_id,
                project_id: video.project_id,
                owner_id: self.owner_id,
                filename: video.filename.clone(),
                storage_key: video.storage_key.clone(),
                container: video.container,
                size_bytes: video.size_bytes,
                sha256: video.sha256.clone(),
                facts: video.facts.clone(),
                uploaded_at: self.at,
            }
        }
    }

    #[test]
    fn an_upload_within_the_quota_is_recorded_with_its_facts() {
        let g = Given::new();
        let video = g.video(400);
        TestFramework::<MediaLibrary>::with(())
            .given_no_previous_events()
            .when(g.record(&video))
            .then_expect_events(vec![g.uploaded(&video)]);
    }

    #[test]
    fn an_upload_that_fills_the_quota_exactly_is_accepted() {
        let g = Given::new();
        let first = g.video(600);
        let second = g.video(400);
        TestFramework::<MediaLibrary>::with(())
            .given(vec![g.uploaded(&first)])
            .when(g.record(&second))
            .then_expect_events(vec![g.uploaded(&second)]);
    }

    #[test]
    fn an_upload_over_the_quota_is_refused_with_the_figures() {
        let g = Given::new();
        let first = g.video(600);
        TestFramework::<MediaLibrary>::with(())
            .given(vec![g.uploaded(&first)])
            .when(g.record(&g.video(401)))
            .then_expect_error(LibraryError::QuotaExceeded {
                used_bytes: 600,
                quota_bytes: QUOTA,
                size_bytes: 401,
            });
    }

    #[test]
    fn recording_the_same_asset_twice_is_refused() {
        let g = Given::new();
        let video = g.video(10);
        TestFramework::<MediaLibrary>::with(())
            .given(vec![g.uploaded(&video)])
            .when(g.record(&video))
            .then_expect_error(LibraryError::AssetExists);
    }

    #[test]
    fn another_users_upload_cannot_enter_the_library() {
        let g = Given::new();
        let video = g.video(10);
        TestFramework::<MediaLibrary>::with(())
            .given(vec![g.uploaded(&video)])
            .when(LibraryCommand::RecordUpload {
                owner_id: UserId::new(),
                video: g.video(10),
                quota_bytes: QUOTA,
                at: g.at,
            })
            .then_expect_error(LibraryError::NotOwner);
    }

    #[test]
    fn releasing_a_project_frees_its_bytes_for_new_uploads() {
        let g = Given::new();
        let first = g.video(600);
        let second = g.video(400);
        let released = LibraryEvent::ProjectAssetsReleased {
            project_id: g.project_id,
            asset_ids: vec![first.asset_id, second.asset_id],
            storage_keys: vec![first.storage_key.clone(), second.storage_key.clone()],
            bytes: 1_000,
            released_at: g.at,
        };
        TestFramework::<MediaLibrary>::with(())
            .given(vec![g.uploaded(&first), g.uploaded(&second)])
            .when(LibraryCommand::ReleaseProject {
                project_id: g.project_id,
                at: g.at,
            })
            .then_expect_events(vec![released.clone()]);
        let after = g.video(1_000);
        TestFramework::<MediaLibrary>::with(())
            .given(vec![g.uploaded(&first), g.uploaded(&second), released])
            .when(g.record(&after))
            .then_expect_events(vec![g.uploaded(&after)]);
    }

    #[test]
    fn releasing_a_project_without_videos_records_nothing() {
        let g = Given::new();
        let video = g.video(10);
        TestFramework::<MediaLibrary>::with(())
            .given(vec![g.uploaded(&video)])
            .when(LibraryCommand::ReleaseProject {
                project_id: ProjectId::new(),
                at: g.at,
            })
            .then_expect_events(vec![]);
    }
}
