//! Who is a member of which organisation, with which role: the answer every request on an
//! organisation's resources needs.
//!
//! Roles are never copied into tokens, where they would outlive a removal or a demotion. They
//! come from the `Organization` aggregate in the event store (not from a read model, so they
//! hold even while the projectors lag), and each answer is kept for the same TTL as the session
//! guard's (500 ms by default): a member removed through another process loses access within
//! that, and what this process changes counts at once.

use crate::error::AppError;
use crate::ttl_cache::TtlCache;
use keyframe_domain::ids::OrganizationId;
use keyframe_domain::organization::Organization;
use keyframe_eventlog::commands::CommandBus;
use std::sync::Arc;
use std::time::Duration;

/// The cache of organisations' members.
pub struct MembershipGuard {
    ttl: Duration,
    organizations: TtlCache<OrganizationId, Arc<Organization>>,
}

impl MembershipGuard {
    /// A guard that trusts what it learned for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            organizations: TtlCache::new(),
        }
    }

    /// The organisation as of at most the TTL ago (empty when it never existed).
    pub async fn organization(
        &self,
        bus: &CommandBus<Organization>,
        organization_id: OrganizationId,
    ) -> Result<Arc<Organization>, AppError> {
        // A deleted organisation never comes back.
        if let Some(known) = self
            .organizations
            .get(&organization_id, self.ttl, |known| known.is_deleted())
        {
            return Ok(known);
        }
        let loaded = Arc::new(
            bus.load_current(&organization_id.to_string())
                .await?
                .unwrap_or_default(),
        );
        self.organizations.put(organization_id, Arc::clone(&loaded), self.ttl);
        Ok(loaded)
    }

    /// Forgets what it knew of `organization_id`, after this process changed it.
    pub fn changed(&self, organization_id: OrganizationId) {
        self.organizations.forget(&organization_id);
    }
}
