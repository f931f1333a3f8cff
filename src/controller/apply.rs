//! Applying desired native objects: write only what differs from the cache, additions
//! before removals, prune by label.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, RoleBinding as NativeRoleBinding, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Error, concurrently};
use crate::api::FIELD_MANAGER;
use crate::metrics::Metrics;

/// Whether the parts of `actual` kube-org manages equal `desired` (labels kube-org sets,
/// owner references, and the object's content), so there is nothing to write.
pub trait Managed: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug {
    /// The metric label of the resource.
    const RESOURCE: &'static str;
    /// The API for objects of this kind in `namespace` (ignored when cluster-scoped).
    fn api(client: &Client, namespace: Option<&str>) -> Api<Self>;
    /// Content equality (ignoring metadata).
    fn same_content(&self, other: &Self) -> bool;
}

impl Managed for NativeRoleBinding {
    const RESOURCE: &'static str = "rolebindings.rbac";
    fn api(client: &Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client.clone(), namespace.unwrap_or_default())
    }
    fn same_content(&self, other: &Self) -> bool {
        self.role_ref == other.role_ref && subjects(self) == subjects(other)
    }
}

impl Managed for ClusterRole {
    const RESOURCE: &'static str = "clusterroles";
    fn api(client: &Client, _: Option<&str>) -> Api<Self> {
        Api::all(client.clone())
    }
    fn same_content(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Managed for ClusterRoleBinding {
    const RESOURCE: &'static str = "clusterrolebindings";
    fn api(client: &Client, _: Option<&str>) -> Api<Self> {
        Api::all(client.clone())
    }
    fn same_content(&self, other: &Self) -> bool {
        self.role_ref == other.role_ref
            && self.subjects.clone().unwrap_or_default()
                == other.subjects.clone().unwrap_or_default()
    }
}

fn subjects(rb: &NativeRoleBinding) -> &[Subject] {
    rb.subjects.as_deref().unwrap_or_default()
}

fn same_metadata(desired: &ObjectMeta, actual: &ObjectMeta) -> bool {
    let labels = actual.labels.clone().unwrap_or_default();
    let labels_kept = desired
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_kept && desired.owner_references == actual.owner_references
}

/// Whether `actual` already is what `desired` asks for.
pub fn up_to_date<K: Managed>(desired: &K, actual: Option<&K>) -> bool {
    actual.is_some_and(|actual| {
        same_metadata(desired.meta(), actual.meta()) && desired.same_content(actual)
    })
}

/// The key of an object in a cache: (namespace, name).
pub fn key<K: Resource>(obj: &K) -> (String, String) {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Server-side applies one object (kube-org's field manager, forced: kube-org owns what
/// it manages and repairs edits).
pub async fn apply<K>(api: &Api<K>, metrics: &Metrics, resource: &str, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    metrics.write(resource, "apply");
    Ok(api
        .patch(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Deletes one object; already gone is fine.
pub async fn delete<K>(
    api: &Api<K>,
    metrics: &Metrics,
    resource: &str,
    name: &str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    metrics.write(resource, "delete");
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub applied: usize,
    pub deleted: usize,
}

/// Makes the managed objects of one kind equal `desired`: first objects that only gain
/// (new objects, subjects added), then objects that lose something, then deletes of
/// what is no longer desired — so changing overlapping grants never opens a gap.
pub async fn sync<K>(
    client: &Client,
    metrics: &Metrics,
    desired: &[K],
    actual: &[K],
) -> Result<SyncReport, Error>
where
    K: Managed + Gains,
{
    let actual_by_key: BTreeMap<(String, String), &K> =
        actual.iter().map(|obj| (key(obj), obj)).collect();
    let mut gaining = Vec::new();
    let mut losing = Vec::new();
    for obj in desired {
        let current = actual_by_key.get(&key(obj)).copied();
        if up_to_date(obj, current) {
            continue;
        }
        match current {
            Some(current) if !obj.only_gains_over(current) => losing.push(obj),
            _ => gaining.push(obj),
        }
    }
    let wanted: BTreeSet<(String, String)> = desired.iter().map(key).collect();
    let stale: Vec<&K> = actual
        .iter()
        .filter(|obj| !wanted.contains(&key(*obj)) && obj.meta().deletion_timestamp.is_none())
        .collect();
    let report = SyncReport {
        applied: gaining.len() + losing.len(),
        deleted: stale.len(),
    };
    // Phases in order; writes within a phase are independent.
    for phase in [gaining, losing] {
        let mut writes = Vec::new();
        for obj in phase {
            writes.push(apply_one(client, metrics, obj));
        }
        concurrently(writes).await?;
    }
    let mut deletes = Vec::new();
    for obj in stale {
        deletes.push(delete_one(client, metrics, obj));
    }
    concurrently(deletes).await?;
    Ok(report)
}

async fn apply_one<K: Managed>(client: &Client, metrics: &Metrics, obj: &K) -> Result<(), Error> {
    let api = K::api(client, obj.namespace().as_deref());
    apply(&api, metrics, K::RESOURCE, obj).await.map(|_| ())
}

async fn delete_one<K: Managed>(client: &Client, metrics: &Metrics, obj: &K) -> Result<(), Error> {
    let api = K::api(client, obj.namespace().as_deref());
    delete(&api, metrics, K::RESOURCE, &obj.name_any()).await
}

/// Whether replacing `current` by `self` removes nothing anyone holds.
pub trait Gains {
    fn only_gains_over(&self, current: &Self) -> bool;
}

impl Gains for NativeRoleBinding {
    fn only_gains_over(&self, current: &Self) -> bool {
        subjects(current).iter().all(|s| subjects(self).contains(s))
    }
}

impl Gains for ClusterRoleBinding {
    fn only_gains_over(&self, current: &Self) -> bool {
        let new = self.subjects.as_deref().unwrap_or_default();
        current.subjects.iter().flatten().all(|s| new.contains(s))
    }
}

impl Gains for ClusterRole {
    fn only_gains_over(&self, current: &Self) -> bool {
        let new = self.rules.as_deref().unwrap_or_default();
        current.rules.iter().flatten().all(|r| new.contains(r))
    }
}
