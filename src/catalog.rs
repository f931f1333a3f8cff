//! The built-in role catalog: one entry per (role, resource types), with the ClusterRole it
//! grants inside resources. `kubectl org roles` shows it. Kept as plain data so the mapping
//! is reviewable in one place; an Organization remaps a catalog role, or adds its own, through
//! `spec.roles`.
//!
//! Kubernetes has no finer grain than its built-in `admin`, `edit` and `view` ClusterRoles,
//! so the many specialist roles of the product documents share those three. The names stay
//! distinct so that an organization with finer ClusterRoles can remap each one separately.

use crate::api::organization::RoleLevel;

/// One built-in role: what it is called, where it may be bound and what it grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogRole {
    /// The name used in RoleBindings and Invitations.
    pub name: &'static str,
    /// Whether the role applies to the organization itself or inside its resources.
    pub level: RoleLevel,
    /// The resource types it can be bound to; empty = every type the organization uses.
    pub resource_types: &'static [&'static str],
    /// The ClusterRole granted inside each resource in scope; None grants nothing inside
    /// resources.
    pub cluster_role: Option<&'static str>,
    /// What the role lets a person do, in our words; shown by `kubectl org roles`.
    pub description: &'static str,
}

/// Resource type of hosted deployments (the default type of an organization).
pub const DEPLOYMENT: &str = "deployment";
/// Resource type of Elasticsearch projects.
pub const ELASTICSEARCH: &str = "elasticsearch";
/// Resource type of Observability projects.
pub const OBSERVABILITY: &str = "observability";
/// Resource type of Security projects.
pub const SECURITY: &str = "security";
/// Resource type of connected (self-managed) clusters.
pub const CONNECTED_CLUSTER: &str = "connected-cluster";

/// The role every owner in spec.owners gets.
pub const ORGANIZATION_OWNER: &str = "organization-owner";
/// The organization-level role that reads the organization but nothing inside resources.
pub const BILLING_ADMIN: &str = "billing-admin";

/// Every built-in role, grouped by resource type.
pub const BUILTIN: &[CatalogRole] = &[
    // The organization itself.
    CatalogRole {
        name: ORGANIZATION_OWNER,
        level: RoleLevel::Organization,
        resource_types: &[],
        cluster_role: Some("admin"),
        description: "Runs the organization: manages its Memberships, Invitations and \
                      RoleBindings in the home namespace, and holds the `admin` ClusterRole \
                      inside every resource of every type, including resources added later.",
    },
    CatalogRole {
        name: BILLING_ADMIN,
        level: RoleLevel::Organization,
        resource_types: &[],
        cluster_role: None,
        description: "For whoever handles the organization's accounts: can read the \
                      Organization and its members, but holds no ClusterRole inside any \
                      resource.",
    },
    // Hosted deployments.
    CatalogRole {
        name: "admin",
        level: RoleLevel::Resource,
        resource_types: &[DEPLOYMENT],
        cluster_role: Some("admin"),
        description: "Full control of the deployments in scope, access control included: the \
                      `admin` ClusterRole in each deployment namespace (Elastic's superuser).",
    },
    CatalogRole {
        name: "editor",
        level: RoleLevel::Resource,
        resource_types: &[DEPLOYMENT],
        cluster_role: Some("edit"),
        description: "Works on the deployments in scope without changing who has access: the \
                      `edit` ClusterRole in each deployment namespace (Elastic's editor).",
    },
    CatalogRole {
        name: "viewer",
        level: RoleLevel::Resource,
        resource_types: &[DEPLOYMENT],
        cluster_role: Some("view"),
        description: "Looks at the deployments in scope without changing them: the `view` \
                      ClusterRole in each deployment namespace (Elastic's viewer).",
    },
    // Elasticsearch projects.
    CatalogRole {
        name: "admin",
        level: RoleLevel::Resource,
        resource_types: &[ELASTICSEARCH],
        cluster_role: Some("admin"),
        description: "Full control of the Elasticsearch projects in scope, access control \
                      included, through the `admin` ClusterRole in each project namespace.",
    },
    CatalogRole {
        name: "developer",
        level: RoleLevel::Resource,
        resource_types: &[ELASTICSEARCH],
        cluster_role: Some("edit"),
        description: "Builds on the Elasticsearch projects in scope: creates and changes their \
                      workloads and configuration through the `edit` ClusterRole, but cannot \
                      change who has access.",
    },
    CatalogRole {
        name: "viewer",
        level: RoleLevel::Resource,
        resource_types: &[ELASTICSEARCH],
        cluster_role: Some("view"),
        description: "Read-only access to the Elasticsearch projects in scope through the \
                      `view` ClusterRole.",
    },
    // Observability projects.
    CatalogRole {
        name: "admin",
        level: RoleLevel::Resource,
        resource_types: &[OBSERVABILITY],
        cluster_role: Some("admin"),
        description: "Full control of the Observability projects in scope, access control \
                      included, through the `admin` ClusterRole in each project namespace.",
    },
    CatalogRole {
        name: "editor",
        level: RoleLevel::Resource,
        resource_types: &[OBSERVABILITY],
        cluster_role: Some("edit"),
        description: "Configures and operates the Observability projects in scope through the \
                      `edit` ClusterRole, without changing who has access.",
    },
    CatalogRole {
        name: "viewer",
        level: RoleLevel::Resource,
        resource_types: &[OBSERVABILITY],
        cluster_role: Some("view"),
        description: "Read-only access to the Observability projects in scope through the \
                      `view` ClusterRole.",
    },
    // Security projects: the general roles, then the specialist ones, which share `view`
    // or `edit` until an organization remaps them.
    CatalogRole {
        name: "admin",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("admin"),
        description: "Full control of the Security projects in scope, access control \
                      included, through the `admin` ClusterRole in each project namespace.",
    },
    CatalogRole {
        name: "editor",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("edit"),
        description: "Configures and operates the Security projects in scope through the \
                      `edit` ClusterRole, without changing who has access.",
    },
    CatalogRole {
        name: "viewer",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("view"),
        description: "Read-only access to the Security projects in scope through the `view` \
                      ClusterRole.",
    },
    CatalogRole {
        name: "tier-1-analyst",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("view"),
        description: "For first-line alert triage in the Security projects in scope. Maps to \
                      `view`; an organization can remap it to a finer ClusterRole in spec.roles.",
    },
    CatalogRole {
        name: "tier-2-analyst",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("view"),
        description: "For analysts who triage alerts and open investigations and cases in the \
                      Security projects in scope. Maps to `view`; an organization can remap it \
                      to a finer ClusterRole in spec.roles.",
    },
    CatalogRole {
        name: "tier-3-analyst",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("edit"),
        description: "For senior analysts who take investigations further, working with rules, \
                      lists, cases and response actions in the Security projects in scope. Maps \
                      to `edit`; an organization can remap it to a finer ClusterRole in \
                      spec.roles.",
    },
    CatalogRole {
        name: "threat-intelligence-analyst",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("view"),
        description: "For analysts who study alerts and threat intelligence in the Security \
                      projects in scope. Maps to `view`; an organization can remap it to a \
                      finer ClusterRole in spec.roles.",
    },
    CatalogRole {
        name: "rule-author",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("edit"),
        description: "For detection engineers who write detection rules and tune their \
                      exceptions in the Security projects in scope. Maps to `edit`; an \
                      organization can remap it to a finer ClusterRole in spec.roles.",
    },
    CatalogRole {
        name: "soc-manager",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("edit"),
        description: "For whoever leads the security operations team: alerts, cases, \
                      investigations, endpoint policies and response actions in the Security \
                      projects in scope. Maps to `edit`; an organization can remap it to a \
                      finer ClusterRole in spec.roles.",
    },
    CatalogRole {
        name: "endpoint-operations-analyst",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("edit"),
        description: "For operators who run response actions on endpoints and keep endpoint \
                      policies and integrations in order in the Security projects in scope. \
                      Maps to `edit`; an organization can remap it to a finer ClusterRole in \
                      spec.roles.",
    },
    CatalogRole {
        name: "platform-engineer",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("edit"),
        description: "For engineers who maintain the agents, integrations, endpoints and \
                      detection content behind the Security projects in scope. Maps to `edit`; \
                      an organization can remap it to a finer ClusterRole in spec.roles.",
    },
    CatalogRole {
        name: "detections-admin",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("edit"),
        description: "For whoever owns the detection engine of the Security projects in scope, \
                      including rule actions that notify outside systems. Maps to `edit`; an \
                      organization can remap it to a finer ClusterRole in spec.roles.",
    },
    CatalogRole {
        name: "endpoint-policy-manager",
        level: RoleLevel::Resource,
        resource_types: &[SECURITY],
        cluster_role: Some("edit"),
        description: "For whoever maintains endpoint policies, their artifacts and the related \
                      integrations in the Security projects in scope. Maps to `edit`; an \
                      organization can remap it to a finer ClusterRole in spec.roles.",
    },
    // Connected clusters.
    CatalogRole {
        name: "viewer",
        level: RoleLevel::Resource,
        resource_types: &[CONNECTED_CLUSTER],
        cluster_role: Some("view"),
        description: "Follows the connected clusters in scope, reading their reports and \
                      settings through the `view` ClusterRole.",
    },
    CatalogRole {
        name: "admin",
        level: RoleLevel::Resource,
        resource_types: &[CONNECTED_CLUSTER],
        cluster_role: Some("admin"),
        description: "Manages connected clusters through the `admin` ClusterRole. Scoped to \
                      all connected clusters it covers every one, including clusters connected \
                      later, and may connect and disconnect them; scoped to named clusters it \
                      manages just those.",
    },
    // Presets in the style of Elice Cloud: bound to any type the organization uses.
    CatalogRole {
        name: "owner",
        level: RoleLevel::Resource,
        resource_types: &[],
        cluster_role: Some("admin"),
        description: "Runs the resources in scope, of any type, with the `admin` ClusterRole, \
                      access control included. Unlike organization-owner it does not manage \
                      the organization's members.",
    },
    CatalogRole {
        name: "contributor",
        level: RoleLevel::Resource,
        resource_types: &[],
        cluster_role: Some("edit"),
        description: "For people who build and operate workloads in the resources in scope, of \
                      any type, through the `edit` ClusterRole, without control over access.",
    },
    CatalogRole {
        name: "support",
        level: RoleLevel::Resource,
        resource_types: &[],
        cluster_role: Some("view"),
        description: "For operations staff who troubleshoot the resources in scope, of any \
                      type. Maps to `view`; an organization can remap it in spec.roles to a \
                      ClusterRole that also allows hands-on fixes.",
    },
    CatalogRole {
        name: "reader",
        level: RoleLevel::Resource,
        resource_types: &[],
        cluster_role: Some("view"),
        description: "Read-only access to the resources in scope, of any type, through the \
                      `view` ClusterRole: for people who need to look but never change \
                      anything.",
    },
];

/// The catalog entries named `name` (several when a name exists for several types, e.g.
/// `admin`).
pub fn named(name: &str) -> impl Iterator<Item = &'static CatalogRole> {
    BUILTIN.iter().filter(move |role| role.name == name)
}

/// Every ClusterRole the catalog maps to, sorted and deduplicated (the operator's
/// ServiceAccount needs `bind` on exactly these).
pub fn cluster_roles() -> Vec<&'static str> {
    let mut roles: Vec<&'static str> = BUILTIN
        .iter()
        .filter_map(|role| role.cluster_role)
        .collect();
    roles.sort_unstable();
    roles.dedup();
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fields::is_dns_label;

    #[test]
    fn names_are_dns_labels() {
        for role in BUILTIN {
            assert!(is_dns_label(role.name), "{} is not a DNS label", role.name);
        }
    }

    #[test]
    fn resource_types_are_dns_labels() {
        for role in BUILTIN {
            for t in role.resource_types {
                assert!(is_dns_label(t), "{t} (of {}) is not a DNS label", role.name);
            }
        }
    }

    #[test]
    fn no_two_entries_share_a_name_and_a_type() {
        for (i, a) in BUILTIN.iter().enumerate() {
            for b in &BUILTIN[i + 1..] {
                if a.name != b.name {
                    continue;
                }
                // An entry for every type overlaps with any other entry of the same name.
                let overlap = a.resource_types.is_empty()
                    || b.resource_types.is_empty()
                    || a.resource_types
                        .iter()
                        .any(|t| b.resource_types.contains(t));
                assert!(!overlap, "{} is defined twice for the same type", a.name);
            }
        }
    }

    #[test]
    fn resource_roles_have_a_cluster_role() {
        for role in BUILTIN.iter().filter(|r| r.level == RoleLevel::Resource) {
            assert!(role.cluster_role.is_some(), "{} grants nothing", role.name);
        }
    }

    #[test]
    fn organization_roles_apply_to_no_type() {
        for role in BUILTIN
            .iter()
            .filter(|r| r.level == RoleLevel::Organization)
        {
            assert!(role.resource_types.is_empty(), "{}", role.name);
        }
    }

    #[test]
    fn descriptions_are_present() {
        for role in BUILTIN {
            assert!(!role.description.trim().is_empty(), "{}", role.name);
        }
    }

    #[test]
    fn named_finds_every_type() {
        let mut types: Vec<&str> = named("admin")
            .flat_map(|r| r.resource_types.iter().copied())
            .collect();
        types.sort_unstable();
        assert_eq!(
            types,
            [
                CONNECTED_CLUSTER,
                DEPLOYMENT,
                ELASTICSEARCH,
                OBSERVABILITY,
                SECURITY
            ]
        );
    }

    #[test]
    fn cluster_roles_are_the_builtin_three() {
        assert_eq!(cluster_roles(), ["admin", "edit", "view"]);
    }

    #[test]
    fn every_security_role_of_the_design_is_present() {
        const DESIGN: &[&str] = &[
            "admin",
            "editor",
            "viewer",
            "tier-1-analyst",
            "tier-2-analyst",
            "tier-3-analyst",
            "threat-intelligence-analyst",
            "rule-author",
            "soc-manager",
            "endpoint-operations-analyst",
            "platform-engineer",
            "detections-admin",
            "endpoint-policy-manager",
        ];
        for name in DESIGN {
            assert!(
                named(name).any(|role| role.resource_types == [SECURITY]),
                "{name} missing"
            );
        }
    }
}
