//! Who owns a resource: a user, or an organisation.
//!
//! Projects, videos, jobs, credit ledgers, media libraries and subscriptions belong to an
//! owner. In events an owner is written as two fields, `owner_id` (the user's or the
//! organisation's id) and `owner_kind` (`"organization"`; absent for a user, which is how every
//! event before organisations reads), so a reader that knew only users still finds `owner_id`
//! where it was. Embed it with `#[serde(flatten)]`.

use crate::ids::{OrganizationId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// The owner of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "OwnerFields", into = "OwnerFields")]
pub enum Owner {
    /// A user's own.
    User(UserId),
    /// An organisation's, shared by its members.
    Organization(OrganizationId),
}

impl Owner {
    /// The owner's id: the user's or the organisation's (also the id of its ledger, library and
    /// subscription aggregates).
    pub fn id(self) -> Uuid {
        match self {
            Self::User(user) => user.0,
            Self::Organization(organization) => organization.0,
        }
    }

    /// The user, for a personal owner.
    pub fn user(self) -> Option<UserId> {
        match self {
            Self::User(user) => Some(user),
            Self::Organization(_) => None,
        }
    }

    /// The organisation, for an organisation's.
    pub fn organization(self) -> Option<OrganizationId> {
        match self {
            Self::Organization(organization) => Some(organization),
            Self::User(_) => None,
        }
    }

    /// `user` or `organization`.
    pub fn kind(self) -> OwnerKind {
        match self {
            Self::User(_) => OwnerKind::User,
            Self::Organization(_) => OwnerKind::Organization,
        }
    }
}

impl Default for Owner {
    fn default() -> Self {
        Self::User(UserId::default())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().as_str(), self.id())
    }
}

/// What kind of owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    /// A user.
    #[default]
    User,
    /// An organisation.
    Organization,
}

impl OwnerKind {
    /// The name in events and read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Organization => "organization",
        }
    }

    fn is_user(&self) -> bool {
        *self == Self::User
    }
}

/// An owner as it is written in events.
#[derive(Serialize, Deserialize)]
struct OwnerFields {
    owner_id: Uuid,
    #[serde(default, skip_serializing_if = "OwnerKind::is_user")]
    owner_kind: OwnerKind,
}

impl From<OwnerFields> for Owner {
    fn from(fields: OwnerFields) -> Self {
        match fields.owner_kind {
            OwnerKind::User => Self::User(UserId(fields.owner_id)),
            OwnerKind::Organization => Self::Organization(OrganizationId(fields.owner_id)),
        }
    }
}

impl From<Owner> for OwnerFields {
    fn from(owner: Owner) -> Self {
        Self {
            owner_id: owner.id(),
            owner_kind: owner.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Event {
        Happened {
            #[serde(flatten)]
            owner: Owner,
            amount: i64,
        },
    }

    #[test]
    fn a_user_owner_is_written_as_before_organisations_and_read_back() {
        let user = UserId::new();
        let event = Event::Happened {
            owner: Owner::User(user),
            amount: 5,
        };
        let written = serde_json::to_value(&event).expect("serialises");
        assert_eq!(written, json!({"Happened": {"owner_id": user.0, "amount": 5}}));
        assert_eq!(serde_json::from_value::<Event>(written).expect("reads"), event);
    }

    #[test]
    fn an_organisation_owner_carries_its_kind() {
        let organization = OrganizationId::new();
        let event = Event::Happened {
            owner: Owner::Organization(organization),
            amount: 5,
        };
        let written = serde_json::to_value(&event).expect("serialises");
        assert_eq!(
            written,
            json!({"Happened": {"owner_id": organization.0, "owner_kind": "organization", "amount": 5}})
        );
        assert_eq!(serde_json::from_value::<Event>(written).expect("reads"), event);
    }
}
