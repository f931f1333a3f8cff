//! kube-org: organizations, email invitations and scoped roles for Kubernetes,
//! enforced by the cluster's own RBAC.

pub mod access;
pub mod api;
pub mod cache;
pub mod catalog;
pub mod crdgen;
pub mod events;
pub mod exclusive;
pub mod index;
pub mod invitations;
pub mod leader;
pub mod metadata_reply;
pub mod metrics;
pub mod organizations;
pub mod plugin;
pub mod run;
pub mod shutdown;
pub mod watch_set;
pub mod wire;

#[cfg(test)]
mod fuzz_tests;
