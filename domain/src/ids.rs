//! Identifier newtypes. Every id is a UUIDv7, so ids sort by creation time.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self(Uuid::nil())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
    };
}

id_type!(
    /// A registered user.
    UserId
);
id_type!(
    /// One guess at an account's credentials (a password or a second-factor code), from its
    /// admission to its verdict.
    LoginAttemptId
);
id_type!(
    /// A login session (one per login, lives across refresh-token rotations).
    SessionId
);
id_type!(
    /// A project, owned by a user or an organisation.
    ProjectId
);
id_type!(
    /// An organisation: a team that owns projects, videos, jobs, credits and storage together.
    OrganizationId
);
id_type!(
    /// An invitation to join an organisation.
    InvitationId
);
id_type!(
    /// An uploaded video.
    AssetId
);
id_type!(
    /// A job: an analysis or a clip cut of a video.
    JobId
);
