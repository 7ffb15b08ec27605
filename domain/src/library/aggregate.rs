//! How the `MediaLibrary` aggregate decides (commands into events) and evolves (events into state).

use super::{LibraryAsset, LibraryCommand, LibraryError, LibraryEvent, MediaLibrary};
use crate::ids::AssetId;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

impl Aggregate for MediaLibrary {
    const TYPE: &'static str = "MediaLibrary";
    type Command = LibraryCommand;
    type Event = LibraryEvent;
    type Error = LibraryError;
    type Services = ();

    async fn handle(&mut self, command: LibraryCommand, _: &(), sink: &EventSink<Self>) -> Result<(), LibraryError> {
        match command {
            LibraryCommand::RecordUpload {
                owner,
                uploaded_by,
                video,
                quota_bytes,
                at,
            } => {
                if self.owner.is_some_and(|known| known != owner) {
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
                    owner,
                    uploaded_by: Some(uploaded_by),
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
                owner,
                filename,
                storage_key,
                container,
                size_bytes,
                facts,
                ..
            } => {
                self.owner = Some(owner);
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
