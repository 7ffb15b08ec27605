//! Each owner's media library: uploading videos into a project under the storage quota, and
//! releasing the videos of deleted projects.
//!
//! An upload streams to storage as it arrives, hashed and counted on the way, and is never
//! held in memory whole. It must start like an accepted container (checked before a byte is
//! stored), stay under the size limit and the owner's remaining quota, and ffprobe must find
//! a video stream in it. Then the owner's `MediaLibrary` records it, which is where the quota
//! holds against concurrent uploads. Anything refused is removed from storage before the
//! answer goes out.

use crate::App;
use crate::error::{AppError, UploadRefused};
use crate::policy::{Action, Actor};
use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use keyframe_domain::ids::{AssetId, ProjectId, UserId};
use keyframe_domain::library::{LibraryCommand, LibraryError, MediaLibrary, StoredVideo};
use keyframe_domain::media::VideoFacts;
use keyframe_domain::owner::Owner;
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::CommandMetadata;
use keyframe_media::container::{SNIFF_LEN, sniff};
use keyframe_media::probe::{self, ProbeError};
use keyframe_media::storage::ObjectWriter;
use sha2::{Digest, Sha256};

/// An upload's bytes as they arrive; an `Err` is the client's stream breaking off.
pub type Upload = BoxStream<'static, Result<Bytes, String>>;

/// One upload as the client sent it.
pub struct NewUpload {
    /// The project it goes into.
    pub project_id: ProjectId,
    /// The name it is shown under.
    pub filename: String,
    /// The length the client declared, when it did (checked before anything is stored).
    pub declared_bytes: Option<u64>,
    /// The bytes.
    pub chunks: Upload,
}

impl App {
    /// `owner`'s library, if anything was ever uploaded into it.
    pub async fn library(&self, owner: Owner) -> Result<Option<MediaLibrary>, AppError> {
        Ok(self.buses.libraries.load(&owner.id().to_string()).await?)
    }

    /// The storage `owner`'s videos may take: a user's quota, or an organisation's.
    pub fn storage_quota_of(&self, owner: Owner) -> u64 {
        match owner {
            Owner::User(_) => self.settings.storage_quota_bytes,
            Owner::Organization(_) => self.settings.organization_storage_quota_bytes,
        }
    }

    /// `actor` uploads a video into a project they may add to (theirs, or an organisation's): streamed, checked and recorded;
    /// whatever is refused leaves nothing in storage. Answers the recorded video and the
    /// position of its record.
    ///
    /// Run it on a task of its own: a client that goes away must not stop the clean-up
    /// half-way.
    pub async fn upload_video(
        &self,
        actor: &Actor,
        mut upload: NewUpload,
        metadata: &CommandMetadata,
    ) -> Result<(StoredVideo, i64), AppError> {
        let owner = match self.project_for(actor, Action::AddTo, upload.project_id).await {
            Ok(project) => project.owner().ok_or(AppError::NotFound("project"))?,
            Err(refused) => return Err(drained(&mut upload.chunks, refused).await),
        };
        let max = self.settings.max_upload_bytes;
        let quota = self.storage_quota_of(owner);
        let used = self.library(owner).await?.map_or(0, |library| library.used_bytes());
        let room = quota.saturating_sub(used);
        let chunks = &mut upload.chunks;
        if upload.declared_bytes.is_some_and(|length| length > max) {
            return Err(drained(chunks, UploadRefused::TooLarge { limit: max }.into()).await);
        }
        if upload.declared_bytes.is_some_and(|length| length > room) {
            return Err(drained(chunks, UploadRefused::QuotaExceeded { used, quota }.into()).await);
        }
        // The first bytes decide whether anything is stored at all.
        let mut head = BytesMut::new();
        while head.len() < SNIFF_LEN {
            match chunks.next().await {
                Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                Some(Err(_)) => return Err(UploadRefused::Interrupted.into()),
                None => break,
            }
        }
        let Some(container) = sniff(&head) else {
            return Err(drained(chunks, UploadRefused::UnsupportedMedia.into()).await);
        };

        let asset_id = AssetId::new();
        let storage_key = format!("assets/{}/{asset_id}", owner.id());
        let mut writer = self.storage.writer(&storage_key).await?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut next = Some(Ok(head.freeze()));
        while let Some(chunk) = next {
            let Ok(chunk) = chunk else {
                return Err(abandon(writer, UploadRefused::Interrupted.into()).await);
            };
            size += chunk.len() as u64;
            if size > max {
                let refused = abandon(writer, UploadRefused::TooLarge { limit: max }.into()).await;
                return Err(drained(chunks, refused).await);
            }
            if size > room {
                let refused = abandon(writer, UploadRefused::QuotaExceeded { used, quota }.into()).await;
                return Err(drained(chunks, refused).await);
            }
            hasher.update(&chunk);
            if let Err(error) = writer.write(chunk).await {
                return Err(abandon(writer, AppError::Internal(error)).await);
            }
            next = chunks.next().await;
        }
        writer.finish().await?;

        // From here the object exists: every refusal removes it.
        let stored = async {
            let facts = self.probe_stored(asset_id, &storage_key).await?;
            let video = StoredVideo {
                asset_id,
                project_id: upload.project_id,
                filename: upload.filename,
                storage_key: storage_key.clone(),
                container,
                size_bytes: size,
                sha256: hex(&hasher.finalize()),
                facts,
            };
            let position = self.record_upload(owner, actor.user_id, &video, metadata).await?;
            Ok::<_, AppError>((video, position))
        }
        .await;
        if stored.is_err()
            && let Err(cleanup) = self.storage.delete(&storage_key).await
        {
            tracing::error!(
                error = format!("{cleanup:#}"),
                storage_key,
                "a refused upload could not be removed"
            );
        }
        stored
    }

    /// What ffprobe finds in a stored upload: refused unless it holds a readable video no
    /// longer than the limit.
    async fn probe_stored(&self, asset_id: AssetId, storage_key: &str) -> Result<VideoFacts, AppError> {
        // From S3 the probe reads a copy, in a directory of this upload's own.
        let scratch = std::env::temp_dir().join(format!("keyframe-upload-{asset_id}"));
        tokio::fs::create_dir_all(&scratch)
            .await
            .context("making scratch space")?;
        let probed = async {
            let path = self.storage.local_copy(storage_key, &scratch).await?;
            Ok::<_, AppError>(probe::probe(&path).await)
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        let facts = probed?.map_err(|error| match error {
            // Not installed (or not on the PATH): the operator's to fix, and said as such. Any
            // other failure to run it (no memory, no file handles) stays this server's fault.
            ProbeError::Tool(error) if error.tool_missing() => {
                UploadRefused::VideoToolsUnavailable(error.to_string()).into()
            }
            ProbeError::Tool(error) => AppError::Internal(anyhow::Error::new(error).context("running ffprobe")),
            refused => UploadRefused::InvalidVideo(refused.to_string()).into(),
        })?;
        if facts.duration_ms.is_some_and(|ms| ms > VideoFacts::MAX_DURATION_MS) {
            return Err(UploadRefused::InvalidVideo("the video is longer than 12 hours".to_owned()).into());
        }
        Ok(facts)
    }

    /// Records the upload in the owner's library. Over the quota, the videos of projects that
    /// were deleted but never released (the process stopped between the two) are released
    /// first, and the upload is tried once more.
    async fn record_upload(
        &self,
        owner: Owner,
        uploaded_by: UserId,
        video: &StoredVideo,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let quota_bytes = self.storage_quota_of(owner);
        let command = || LibraryCommand::RecordUpload {
            owner,
            uploaded_by,
            video: video.clone(),
            quota_bytes,
            at: keyframe_domain::clock::now(),
        };
        let libraries = &self.buses.libraries;
        let quota_exceeded = |used_bytes| UploadRefused::QuotaExceeded {
            used: used_bytes,
            quota: quota_bytes,
        };
        let library_id = owner.id().to_string();
        match libraries.execute(&library_id, command, metadata).await {
            Ok(position) => Ok(position),
            Err(CommandError::Rejected(LibraryError::QuotaExceeded { used_bytes, .. })) => {
                if !self.release_deleted_projects(owner, metadata).await? {
                    return Err(quota_exceeded(used_bytes).into());
                }
                match libraries.execute(&library_id, command, metadata).await {
                    Err(CommandError::Rejected(LibraryError::QuotaExceeded { used_bytes, .. })) => {
                        Err(quota_exceeded(used_bytes).into())
                    }
                    other => Ok(other?),
                }
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Releases the videos of `owner`'s deleted projects still counted in the library;
    /// answers whether any were.
    async fn release_deleted_projects(&self, owner: Owner, metadata: &CommandMetadata) -> Result<bool, AppError> {
        let Some(library) = self.library(owner).await? else {
            return Ok(false);
        };
        let mut released = false;
        for project_id in library.projects() {
            let project = self.buses.projects.load(&project_id.to_string()).await?;
            if project.is_none_or(|project| project.is_deleted()) {
                self.release_project(owner, project_id, metadata).await?;
                released = true;
            }
        }
        Ok(released)
    }

    /// Releases a deleted project's videos from the owner's quota and removes their bytes.
    pub(crate) async fn release_project(
        &self,
        owner: Owner,
        project_id: ProjectId,
        metadata: &CommandMetadata,
    ) -> Result<(), AppError> {
        let keys = self
            .library(owner)
            .await?
            .map(|library| library.storage_keys_of(project_id))
            .unwrap_or_default();
        let command = || LibraryCommand::ReleaseProject {
            project_id,
            at: keyframe_domain::clock::now(),
        };
        self.buses
            .libraries
            .execute(&owner.id().to_string(), command, metadata)
            .await?;
        for key in keys {
            if let Err(error) = self.storage.delete(&key).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    key,
                    "a released video's bytes could not be removed"
                );
            }
        }
        Ok(())
    }
}

/// Reads what is left of a refused upload, up to a bound, before answering. An HTTP/1.1
/// client still sending its body when the server answers and closes often sees only the broken
/// connection, never the answer; reading on (what lingering close does) lets the refusal reach
/// it. Past 64 MiB or two seconds the connection is dropped all the same.
async fn drained(chunks: &mut Upload, error: AppError) -> AppError {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let mut drained = 0;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(chunk)) = chunks.next().await {
            drained += chunk.len();
            if drained > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
    error
}

async fn abandon(writer: ObjectWriter, error: AppError) -> AppError {
    if let Err(cleanup) = writer.abort().await {
        tracing::error!(
            error = format!("{cleanup:#}"),
            "an abandoned upload could not be removed"
        );
    }
    error
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
