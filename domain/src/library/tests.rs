//! Given / when / then for every command: the exact events, or the exact error.

use super::*;
use crate::ids::{AssetId, ProjectId, UserId};
use crate::media::{Container, VideoFacts};
use crate::owner::Owner;
use chrono::{DateTime, Utc};
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
            owner: Owner::User(self.owner_id),
            uploaded_by: self.owner_id,
            video: video.clone(),
            quota_bytes: QUOTA,
            at: self.at,
        }
    }

    fn uploaded(&self, video: &StoredVideo) -> LibraryEvent {
        LibraryEvent::AssetUploaded {
            asset_id: video.asset_id,
            project_id: video.project_id,
            owner: Owner::User(self.owner_id),
            uploaded_by: Some(self.owner_id),
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
            owner: Owner::Organization(crate::ids::OrganizationId::new()),
            uploaded_by: g.owner_id,
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
