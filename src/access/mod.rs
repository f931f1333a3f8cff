//! Access: what native RBAC an organization needs, computed as a pure function of the
//! cached Organization, Memberships, RoleBindings and labelled Namespaces
//! ([`desired`]), and the roles that computation resolves ([`roles`]).

pub mod desired;
pub mod home;
pub mod identity;
pub mod leave;
pub mod names;
pub mod native;
pub mod policy;
pub mod roles;

pub use desired::{AccessInput, BindingOutcome, DesiredAccess, MemberOutcome, desired_access};

#[cfg(test)]
mod desired_tests;
