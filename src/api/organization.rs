//! Organization: a tenant (cluster-scoped). Its home namespace holds the organization's
//! Memberships, Invitations and RoleBindings.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::fields::{
    Email, GoDuration, NO_CONTROL_CHARACTERS, NO_SPACE_OR_CONTROL_CHARACTERS, dns_label_schema,
};
use super::scope::RoleAssignment;

/// The resource type an organization uses when it declares none.
pub const DEFAULT_RESOURCE_TYPE: &str = "deployment";
/// How long an invitation stays valid when neither the Organization nor the Invitation
/// says otherwise.
pub const DEFAULT_INVITATION_TTL: &str = "72h";

/// An organization: owners, members, the resource types it uses and how its invitations
/// and memberships behave.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "kube-org.io",
    version = "v1alpha1",
    kind = "Organization",
    shortname = "org",
    category = "kube-org",
    status = "OrganizationStatus",
    doc = "An organization: a tenant with owners and members, whose resources are namespaces labelled kube-org.io/organization=<name>.",
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Home", type_ = "string", json_path = ".status.homeNamespace"),
    printcolumn(name = "Owners", type_ = "integer", json_path = ".status.owners"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.members"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pendingInvitations", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.homeNamespace) || (size(self.metadata.name) <= 59 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("without spec.homeNamespace the name must be a DNS label of at most 59 characters, so that org-<name> is a valid namespace name")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.homeNamespace) == has(oldSelf.homeNamespace) && (!has(self.homeNamespace) || self.homeNamespace == oldSelf.homeNamespace)").message("homeNamespace cannot be changed after the organization is created")
)]
pub struct OrganizationSpec {
    /// The name people see, e.g. "Acme Platform Team" (at most 200 characters, on one
    /// line: it becomes the sender name of invitation emails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    #[x_kube(validation = Rule::new(NO_CONTROL_CHARACTERS).message("displayName must be one line of text: no line breaks, tabs or other control characters"))]
    pub display_name: Option<String>,

    /// The owners' email addresses (at least one). Each owner gets a Membership and an
    /// organization-owner binding managed by kube-org; removing an address removes that
    /// binding, not other roles the person holds.
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = ListMerge::Set, validation = Rule::new("size(self) > 0").message("an organization needs at least one owner in spec.owners"))]
    pub owners: Vec<Email>,

    /// The namespace that holds the organization's Memberships, Invitations and
    /// RoleBindings. Default `org-<name>`. kube-org creates it when missing and then
    /// deletes it with the organization; an existing namespace is used (never deleted)
    /// only when a cluster admin labelled it `kube-org.io/organization=<name>`. Cannot be
    /// changed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "dns_label_schema")]
    pub home_namespace: Option<String>,

    /// The resource types this organization uses (default `[deployment]`). A resource
    /// is a namespace labelled kube-org.io/organization=<name> and
    /// kube-org.io/resource-type=<type>.
    #[serde(default = "default_resource_types")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub resource_types: Vec<ResourceTypeName>,

    /// Custom roles, and overrides of the built-in catalog: a role with the name of a
    /// catalog role replaces that catalog role entirely for this organization (level,
    /// resource types, ClusterRole and description; no catalog entry of the name applies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub roles: Vec<CustomRole>,

    /// How invitations behave: lifetime, sender, accept link, automatic re-sending.
    #[serde(default)]
    pub invitations: InvitationPolicy,

    /// Who may become a member.
    #[serde(default)]
    pub membership: MembershipPolicy,

    /// How the cluster names people: the prefixes its authenticator puts before the
    /// email and each group (as in the apiserver's claim mappings, e.g. `oidc:`).
    /// Unset fields take the operator's defaults (`--username-prefix`,
    /// `--groups-prefix`).
    #[serde(default, skip_serializing_if = "IdentityPolicy::is_empty")]
    pub identity: IdentityPolicy,
}

/// How the cluster's authenticator names people (see the README, "Identity").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityPolicy {
    /// What the cluster puts before a person's email to make their user name, e.g.
    /// `oidc:` (the apiserver's `claimMappings.username.prefix`, or the expression's
    /// prefix). A member's RBAC subject is this prefix + the email in lower case, unless
    /// the Membership sets `spec.user`. `""` means none; unset means the operator's
    /// `--username-prefix`. Never `system:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new("!self.startsWith('system:')").message("usernamePrefix cannot start with system: (Kubernetes system identities are not people)"),
        validation = Rule::new(NO_SPACE_OR_CONTROL_CHARACTERS).message("usernamePrefix must have no spaces, line breaks or other control characters")
    )]
    pub username_prefix: Option<String>,

    /// What the cluster puts before each group name (the apiserver's
    /// `claimMappings.groups.prefix`), e.g. `oidc:`. `""` means none; unset means the
    /// operator's `--groups-prefix`. Never `system:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = Rule::new("!self.startsWith('system:')").message("groupsPrefix cannot start with system: (Kubernetes system groups are not people)"),
        validation = Rule::new(NO_SPACE_OR_CONTROL_CHARACTERS).message("groupsPrefix must have no spaces, line breaks or other control characters")
    )]
    pub groups_prefix: Option<String>,
}

impl IdentityPolicy {
    pub fn is_empty(&self) -> bool {
        self.username_prefix.is_none() && self.groups_prefix.is_none()
    }
}

fn default_resource_types() -> Vec<ResourceTypeName> {
    vec![ResourceTypeName(DEFAULT_RESOURCE_TYPE.to_string())]
}

/// The name of a resource type.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ResourceTypeName(#[schemars(schema_with = "dns_label_schema")] pub String);

/// Whether a role applies to the organization itself or inside its resources.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum RoleLevel {
    /// The organization as a whole (owner, billing admin).
    Organization,
    /// Inside resources (admin, editor, viewer, ...).
    Resource,
}

/// A custom role or an override of a catalog role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.level != 'organization' || !has(self.resourceTypes) || size(self.resourceTypes) == 0").message("an organization-level role applies to no resource types; leave resourceTypes empty")
)]
pub struct CustomRole {
    /// The role's name, used in RoleBindings and Invitations. The name of a catalog role
    /// replaces that role entirely for this organization.
    #[schemars(schema_with = "dns_label_schema")]
    pub name: String,

    /// `organization` or `resource` (default).
    #[serde(default = "default_role_level")]
    pub level: RoleLevel,

    /// The resource types the role may be bound to; empty means every type the
    /// organization uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub resource_types: Vec<ResourceTypeName>,

    /// The ClusterRole granted inside each resource in scope (through a namespaced
    /// RoleBinding). Empty for a role that grants nothing inside resources. kube-org's
    /// ServiceAccount must be allowed to bind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(NO_SPACE_OR_CONTROL_CHARACTERS).message("clusterRole must be a ClusterRole name: no spaces, line breaks or other control characters"))]
    pub cluster_role: Option<String>,

    /// What the role is for, in a sentence (shown by `kubectl org roles` and in
    /// invitation emails; one line, at most 512 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(NO_CONTROL_CHARACTERS).message("description must be one line of text: no line breaks, tabs or other control characters"))]
    pub description: Option<String>,
}

fn default_role_level() -> RoleLevel {
    RoleLevel::Resource
}

/// How the organization's invitations behave.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationPolicy {
    /// How long an invitation stays valid, e.g. `72h` (the default), `30m`, `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<GoDuration>,

    /// The sender address of invitation emails; default: the operator's `--smtp-from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Email>,

    /// The base URL of the accept endpoint as invitees reach it, e.g.
    /// `https://org.example.com`; the email links to `<acceptURL>/invitations/accept`.
    /// Default: the operator's `--accept-base-url`.
    #[serde(default, rename = "acceptURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("acceptURL must start with https:// or http://"),
        validation = Rule::new(NO_SPACE_OR_CONTROL_CHARACTERS).message("acceptURL must be a URL without spaces, line breaks or other control characters")
    )]
    pub accept_url: Option<String>,

    /// How many times an expired invitation is re-sent automatically with a new link
    /// (default 0: never).
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub auto_resend: i32,

    /// When true, accepting needs the invitee to sign in at the cluster's OpenID
    /// Connect provider (the operator's `--oidc-issuer-url`) with a verified email equal
    /// to the invited one; the Membership then records who signed in
    /// (`status.subject`). Default false: the link alone proves the mailbox.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_login: bool,
}

/// Who may become a member of the organization.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipPolicy {
    /// Email domains members may have, e.g. `example.com`; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_email_domains: Vec<EmailDomain>,

    /// When true, a person may belong to this organization only if they belong to no
    /// other (as in Elastic Cloud). Default false.
    #[serde(default)]
    pub exclusive: bool,

    /// SSO auto-join: everyone the cluster authenticates in one of these
    /// identity-provider groups holds the entry's roles, with no Membership (bound to the
    /// RBAC Group `groupsPrefix` + the group). Removing an entry revokes at once. At most
    /// 16 entries of 8 roles (the API server bounds the cost of validating nested lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["group".into()]))]
    pub groups: Vec<GroupMembership>,
}

/// The roles everyone in one identity-provider group holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMembership {
    /// The group's name as the identity provider gives it, without the cluster's
    /// groups prefix (kube-org adds it). Never a `system:` group.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(
        validation = Rule::new("!self.startsWith('system:')").message("group cannot name a Kubernetes system group (system:...): those are the cluster's own, not an identity provider's"),
        validation = Rule::new(NO_SPACE_OR_CONTROL_CHARACTERS).message("group must have no spaces, line breaks or other control characters")
    )]
    pub group: String,

    /// The roles (at least one), with the same catalog and scope rules as a RoleBinding.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(validation = Rule::new("self.all(r, !has(r.expiresAfter))").message("expiresAfter belongs to an Invitation's roles (it counts from acceptance); a group's roles last while the person is in the group"))]
    pub roles: Vec<RoleAssignment>,
}

/// What kube-org made of one `spec.membership.groups` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// The group as written in the entry.
    pub group: String,
    /// The RBAC Group bound (the groups prefix + the group); absent when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `True` when every role of the entry is bound everywhere it applies.
    pub ready: String,
    /// `Bound`, or why not (`SystemGroupNotAllowed`, `ResourcesMissing`, a role problem
    /// such as `UnknownRole`).
    pub reason: String,
    pub message: String,
    /// The resource namespaces bound for the group now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

/// An email domain such as `example.com`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct EmailDomain(#[schemars(schema_with = "email_domain_schema")] pub String);

fn email_domain_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "maxLength": 253,
        "x-kubernetes-validations": [{
            "rule": "self.matches('^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\\\\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)+$')",
            "message": "must be an email domain such as example.com (no @)",
        }],
    })
}

/// What kube-org observed of the organization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// `Ready` and specific conditions, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The home namespace in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_namespace: Option<String>,

    /// How many members the organization has, owners included.
    #[serde(default)]
    pub members: i32,

    /// How many owners the organization has.
    #[serde(default)]
    pub owners: i32,

    /// How many invitations are waiting for an answer.
    #[serde(default)]
    pub pending_invitations: i32,

    /// How many resources (labelled namespaces) the organization has, per resource type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, i32>,

    /// Each `spec.membership.groups` entry: the RBAC Group bound and where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["group".into()]))]
    pub groups: Vec<GroupStatus>,
}

impl Organization {
    /// The home namespace: `spec.homeNamespace`, or `org-<name>`.
    pub fn home_namespace(&self) -> String {
        self.spec
            .home_namespace
            .clone()
            .unwrap_or_else(|| format!("org-{}", self.metadata.name.as_deref().unwrap_or_default()))
    }

    /// The invitation lifetime the organization sets, or the default.
    pub fn invitation_ttl(&self) -> GoDuration {
        self.spec
            .invitations
            .ttl
            .clone()
            .unwrap_or_else(|| GoDuration::from(DEFAULT_INVITATION_TTL))
    }
}
