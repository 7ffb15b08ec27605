//! The third-party API keys Keyframe keeps for a user. A key is sealed (AES-256-GCM under a data
//! key of its own, wrapped by the master key) before it reaches the `User` aggregate; only its
//! last four characters are ever shown again.

use crate::App;
use crate::error::AppError;
use chrono::{DateTime, Utc};
use keyframe_domain::ids::UserId;
use keyframe_domain::user::UserCommand;
use keyframe_domain::values::{ApiKeyProvider, ApiKeySecret};
use keyframe_eventlog::metadata::CommandMetadata;

/// A key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    /// Its last four characters.
    pub last4: String,
    /// When it was stored.
    pub stored_at: DateTime<Utc>,
    /// The position of the record.
    pub position: i64,
}

fn sealing_context(user: UserId, provider: &ApiKeyProvider) -> String {
    format!("api-key:{user}:{}", provider.as_str())
}

impl App {
    /// A user stores (or replaces) their key for `provider`, sealed.
    pub async fn store_api_key(
        &self,
        user_id: UserId,
        provider: ApiKeyProvider,
        secret: ApiKeySecret,
        origin: &CommandMetadata,
    ) -> Result<StoredApiKey, AppError> {
        let sealed = self
            .master_key
            .seal(secret.expose().as_bytes(), &sealing_context(user_id, &provider));
        let last4 = secret.last4();
        let now = keyframe_domain::clock::now();
        let command = || UserCommand::StoreApiKey {
            provider: provider.clone(),
            key: sealed.clone(),
            last4: last4.clone(),
            at: now,
        };
        let position = self.execute_on_account(user_id, command, origin).await?;
        Ok(StoredApiKey {
            last4,
            stored_at: now,
            position,
        })
    }

    /// A user forgets their key for `provider`.
    pub async fn remove_api_key(
        &self,
        user_id: UserId,
        provider: ApiKeyProvider,
        origin: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let command = || UserCommand::RemoveApiKey {
            provider: provider.clone(),
            at: keyframe_domain::clock::now(),
        };
        self.execute_on_account(user_id, command, origin).await
    }
}
