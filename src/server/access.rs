//! Who is asking and for which tenant: the roles of scoped keys and the principal the
//! authentication layer puts into each request's extensions.
//!
//! The layers of the listener run in this order, each in its own file:
//! browser safety (`Host`, `Origin`, content types) → authentication (the key, its
//! role against the route's required role; inserts a [`Principal`]) → tenant dispatch
//! (the tenant's own router, chosen from the principal and `X-Scope-OrgID`).
//! Without any key configured no principal is inserted: the request acts as an admin of
//! every tenant, which is today's zero-config behaviour on loopback.

use serde::{Deserialize, Serialize};

/// The tenant of a setup that configures none; needs no header.
pub const DEFAULT_TENANT: &str = "default";

/// The header an operator key names its tenant with (Loki's and Mimir's).
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// What a key may do, smallest first; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `_bulk`, document writes, the agent protocol and heartbeats; nothing that reads
    /// data back.
    Ingest,
    /// Searches, counts, scrolls, PromQL and series, the UI's read pages, alerts, rules
    /// and history listings.
    Read,
    /// Read, plus rule writes and deletes, dry runs and backtests, silences.
    Edit,
    /// Everything, including index deletion, key management and (for operator keys)
    /// other tenants.
    Admin,
}

impl Role {
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// The tenants a key may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Exactly these tenants (usually one); the first is used without a header.
    Some(Vec<String>),
    /// Every tenant (`tenants = ["*"]`): an operator key, which picks one with
    /// `X-Scope-OrgID` and otherwise acts for [`DEFAULT_TENANT`].
    All,
}

impl TenantScope {
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Some(tenants) => tenants.iter().any(|allowed| allowed == tenant),
        }
    }

    /// The tenant a request without `X-Scope-OrgID` acts for.
    pub fn default_tenant(&self) -> &str {
        match self {
            TenantScope::Some(tenants) => tenants.first().map_or(DEFAULT_TENANT, String::as_str),
            TenantScope::All => DEFAULT_TENANT,
        }
    }
}

/// The authenticated caller, in the request's extensions after authentication.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name (audit trail, logs); never its secret.
    pub key_name: String,
    pub role: Role,
    pub tenants: TenantScope,
}

impl Principal {
    /// The caller when no key is configured: everything, for every tenant.
    pub fn unauthenticated_admin() -> Principal {
        Principal {
            key_name: "anonymous".to_owned(),
            role: Role::Admin,
            tenants: TenantScope::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_smaller_ones() {
        assert!(Role::Admin.allows(Role::Ingest));
        assert!(Role::Edit.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Edit));
        assert!(!Role::Ingest.allows(Role::Read));
    }

    #[test]
    fn a_tenant_key_acts_for_its_own_tenant_only() {
        let scope = TenantScope::Some(vec!["team-a".to_owned()]);
        assert!(scope.allows("team-a"));
        assert!(!scope.allows("team-b"));
        assert_eq!(scope.default_tenant(), "team-a");
        assert!(TenantScope::All.allows("team-b"));
        assert_eq!(TenantScope::All.default_tenant(), DEFAULT_TENANT);
    }
}
