//! The public API of kube-org: four kinds in group `kube-org.io`, version `v1alpha1`.
//!
//! Field names follow `DESIGN.md`; every field's doc comment becomes the description
//! `kubectl explain` shows. Whatever the schema can express is validated at admission
//! (OpenAPI + CEL, see [`fields`]); the rest is reported by the controllers as conditions.

// kube-derive repeats `type_ = ...` across printcolumn(...) groups, which clippy reads as
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod cached_list;
pub mod condition;
pub mod fields;
pub mod invitation;
pub mod membership;
pub mod organization;
pub mod rolebinding;
pub mod scope;

pub use condition::Condition;
pub use fields::{Email, GoDuration};
pub use invitation::{
    Invitation, InvitationPhase, InvitationSpec, InvitationStatus, InvitationToken,
};
pub use membership::{Membership, MembershipSpec, MembershipStatus, SignedInSubject};
pub use organization::{Organization, OrganizationSpec, OrganizationStatus};
pub use rolebinding::{RoleBinding, RoleBindingSpec, RoleBindingStatus};
pub use scope::{Access, RoleAssignment, Scope};

/// The API group of every kube-org kind.
pub const GROUP: &str = "kube-org.io";
/// The API version of every kube-org kind.
pub const VERSION: &str = "v1alpha1";
/// The category `kubectl get kube-org` lists.
pub const CATEGORY: &str = "kube-org";
/// The field manager kube-org uses for server-side apply.
pub const FIELD_MANAGER: &str = "kube-org";
