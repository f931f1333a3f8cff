//! Applying desired native objects: write only what differs from the cache, additions
//! before removals, prune by label.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, RoleBinding as NativeRoleBinding, Subject,
};

use crate::access::native::{CachedRoleBinding, Change, DesiredRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use super::unseen::{UnseenWrites, Written};
use crate::api::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::wire::WireForm;

/// Where a sync writes, counts its writes and remembers them until the caches show
/// them ([`super::unseen`]: the next pass of `group` waits for that).
pub struct Writer<'a> {
    pub client: &'a Client,
    pub metrics: &'a Metrics,
    pub unseen: &'a UnseenWrites,
    /// The organization the writes are for.
    pub group: &'a str,
}

impl Writer<'_> {
    /// Remembers a write of `meta`'s object, decided from the cached copy at
    /// resourceVersion `read` (none: it was not cached), that made `made`.
    fn remember(
        &self,
        resource: &'static str,
        meta: &ObjectMeta,
        read: Option<String>,
        made: Option<String>,
    ) {
        let (namespace, name) = meta_key(meta);
        self.unseen.record(
            self.group,
            Written {
                resource,
                namespace: &namespace,
                name: &name,
                read,
                made,
            },
        );
    }
}

/// A kind of native object kube-org manages: the desired form (`Self`), what is written
/// (`Object`) and what the cache keeps (`Cached`). For native RoleBindings the three
/// differ (compact desired form, digests in the cache); for the one ClusterRole and
/// ClusterRoleBinding per organization they are the API object itself
/// ([`WholeObject`]).
pub trait Managed {
    type Object: Resource<DynamicType = ()>
        + Clone
        + Serialize
        + WireForm
        + DeserializeOwned
        + std::fmt::Debug;
    type Cached: Resource<DynamicType = ()>;
    /// The metric label of the resource.
    const RESOURCE: &'static str;
    /// The API for objects of this kind in `namespace` (ignored when cluster-scoped).
    fn api(client: &Client, namespace: Option<&str>) -> Api<Self::Object>;
    fn meta(&self) -> &ObjectMeta;
    /// What replacing `cached` by `self` does to its content (metadata aside).
    fn compare(&self, cached: &Self::Cached) -> Change;
    /// The object to write.
    fn object(&self) -> Self::Object;
}

impl Managed for DesiredRoleBinding {
    type Object = NativeRoleBinding;
    type Cached = CachedRoleBinding;
    const RESOURCE: &'static str = "rolebindings.rbac";
    fn api(client: &Client, namespace: Option<&str>) -> Api<NativeRoleBinding> {
        Api::namespaced(client.clone(), namespace.unwrap_or_default())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn compare(&self, cached: &CachedRoleBinding) -> Change {
        DesiredRoleBinding::compare(self, cached)
    }
    fn object(&self) -> NativeRoleBinding {
        DesiredRoleBinding::object(self)
    }
}

/// A cluster-scoped kind kube-org writes, caches and compares as the API object itself.
pub trait WholeObject:
    Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
    + Clone
    + Serialize
    + WireForm
    + DeserializeOwned
    + std::fmt::Debug
{
    const RESOURCE: &'static str;
    /// The content's elements (rules, subjects): what is granted.
    type Element: PartialEq;
    fn elements(&self) -> &[Self::Element];
    /// Content beside the elements that must be equal too (a binding's roleRef).
    fn same_rest(&self, other: &Self) -> bool;
}

impl WholeObject for ClusterRole {
    const RESOURCE: &'static str = "clusterroles";
    type Element = k8s_openapi::api::rbac::v1::PolicyRule;
    fn elements(&self) -> &[Self::Element] {
        self.rules.as_deref().unwrap_or_default()
    }
    fn same_rest(&self, _: &Self) -> bool {
        true
    }
}

impl WholeObject for ClusterRoleBinding {
    const RESOURCE: &'static str = "clusterrolebindings";
    type Element = Subject;
    fn elements(&self) -> &[Subject] {
        self.subjects.as_deref().unwrap_or_default()
    }
    fn same_rest(&self, other: &Self) -> bool {
        self.role_ref == other.role_ref
    }
}

impl<K: WholeObject> Managed for K {
    type Object = K;
    type Cached = K;
    const RESOURCE: &'static str = <K as WholeObject>::RESOURCE;
    fn api(client: &Client, _: Option<&str>) -> Api<K> {
        Api::all(client.clone())
    }
    fn meta(&self) -> &ObjectMeta {
        Resource::meta(self)
    }
    fn compare(&self, current: &K) -> Change {
        let (new, old) = (self.elements(), current.elements());
        if self.same_rest(current) && new == old {
            Change::Same
        } else if old.iter().all(|e| new.contains(e)) {
            Change::Gains
        } else {
            Change::Loses
        }
    }
    fn object(&self) -> K {
        self.clone()
    }
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

fn meta_key(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
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
    delete_returning(api, metrics, resource, name)
        .await
        .map(|_| ())
}

/// Deletes one object and returns it when it is only marked for deletion (held by
/// finalizers); already gone is fine.
async fn delete_returning<K>(
    api: &Api<K>,
    metrics: &Metrics,
    resource: &str,
    name: &str,
) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    metrics.write(resource, "delete");
    match api.delete(name, &DeleteParams::default()).await {
        Ok(answer) => Ok(answer.left()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// One object a sync could not make right, and why (the object is named so that the
/// status can say where).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncFailure {
    pub namespace: Option<String>,
    pub name: String,
    pub error: String,
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} in namespace {ns}: {}", self.name, self.error),
            None => write!(f, "{}: {}", self.name, self.error),
        }
    }
}

/// What a sync did. Failures are per object: one failing target never stops the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub applied: usize,
    pub deleted: usize,
    pub failures: Vec<SyncFailure>,
    /// Some writes were not started: a newer change was waiting (see [`sync`]'s `cut`).
    pub cut_short: bool,
    /// The first few objects written or deleted ("<resource> <namespace>/<name>"), for
    /// the log: when an operator writes where nothing should have changed, they say where.
    pub examples: Vec<String>,
}

impl SyncReport {
    /// Adds another sync's report to this one.
    pub fn add(&mut self, other: SyncReport) {
        self.applied += other.applied;
        self.deleted += other.deleted;
        self.failures.extend(other.failures);
        self.cut_short |= other.cut_short;
        for example in other.examples {
            note(&mut self.examples, example);
        }
    }
}

/// How many objects [`SyncReport::examples`] names at most.
const EXAMPLES: usize = 5;

/// Keeps `example` unless `examples` has [`EXAMPLES`] already.
fn note(examples: &mut Vec<String>, example: String) {
    if examples.len() < EXAMPLES {
        examples.push(example);
    }
}

/// "<resource> <namespace>/<name>" (no namespace: "<resource> <name>").
fn example(resource: &str, meta: &ObjectMeta) -> String {
    let (namespace, name) = meta_key(meta);
    if namespace.is_empty() {
        format!("{resource} {name}")
    } else {
        format!("{resource} {namespace}/{name}")
    }
}

/// Makes the managed objects of one kind equal `desired`: first objects that only gain
/// (new objects, then subjects added), then objects that lose something, then deletes of
/// what is no longer desired — so changing overlapping grants never opens a gap.
///
/// Tenants may squat kube-org's names, change immutable fields or hold objects with
/// finalizers. kube-org owns its names: an object whose immutable part differs is
/// deleted and created again, and a managed object held in deletion by someone else's
/// finalizer is released. Whatever still fails is reported per object, and every other
/// write and removal happens anyway.
///
/// `cut` is asked before each write of the first three phases starts: once it says yes,
/// no more of them start (those under way finish) and the report says `cut_short`; the
/// caller plans again from the newer state and writes the rest then. Deletes always
/// run: they revoke.
pub async fn sync<'a, M, C>(
    writer: &'a Writer<'a>,
    desired: &'a [M],
    actual: &'a [C],
    cut: &'a (dyn Fn() -> bool + Sync),
) -> SyncReport
where
    M: Managed,
    C: std::ops::Deref<Target = M::Cached>,
{
    let actual_by_key: BTreeMap<(String, String), &M::Cached> =
        actual.iter().map(|obj| (key(&**obj), &**obj)).collect();
    let mut missing = Vec::new();
    let mut gaining = Vec::new();
    let mut losing = Vec::new();
    for obj in desired {
        let current = actual_by_key.get(&meta_key(obj.meta())).copied();
        let Some(current) = current else {
            missing.push(obj);
            continue;
        };
        match obj.compare(current) {
            Change::Loses => losing.push(obj),
            Change::Same
                if same_metadata(obj.meta(), current.meta()) && !held_in_deletion(current) => {}
            Change::Same | Change::Gains => gaining.push(obj),
        }
    }
    let wanted: BTreeSet<(String, String)> = desired.iter().map(|d| meta_key(d.meta())).collect();
    let stale: Vec<&M::Cached> = actual
        .iter()
        .map(|obj| &**obj)
        .filter(|obj| {
            !wanted.contains(&key(*obj))
                && (obj.meta().deletion_timestamp.is_none() || held_in_deletion(*obj))
        })
        .collect();
    let mut report = SyncReport {
        applied: 0,
        deleted: stale.len(),
        failures: vec![],
        cut_short: false,
        examples: vec![],
    };
    for obj in &stale {
        let deleted = format!("{} (deleted)", example(M::RESOURCE, obj.meta()));
        note(&mut report.examples, deleted);
    }
    // Phases in order; writes within a phase are independent, and a failed write
    // stops nothing. Objects are built only when their write starts. Missing objects
    // come first (a deleted binding restored, a new namespace bound): nothing of what
    // they grant is there meanwhile, and a create is cheap.
    for phase in [missing, gaining, losing] {
        let actual_by_key = &actual_by_key;
        let (applied, cut_short, examples) = (
            &mut report.applied,
            &mut report.cut_short,
            &mut report.examples,
        );
        // By index: a closure taking a reference is taken to accept any lifetime, and
        // rustc then cannot prove the futures it makes Send (the controller's tasks
        // must be).
        let writes = (0..phase.len()).map_while(|i| {
            if *cut_short || cut() {
                *cut_short = true;
                return None;
            }
            *applied += 1;
            let obj: &'a M = phase[i];
            if examples.len() < EXAMPLES {
                note(examples, example(M::RESOURCE, obj.meta()));
            }
            Some(async move {
                let current = actual_by_key.get(&meta_key(obj.meta())).copied();
                match apply_one(writer, obj, current).await {
                    Ok(made) => {
                        let read = current.and_then(|c| c.meta().resource_version.clone());
                        writer.remember(M::RESOURCE, obj.meta(), read, made);
                        None
                    }
                    Err(e) => Some(failure_at(obj.meta(), e)),
                }
            })
        });
        let failures = all_settled(writes).await;
        report.failures.extend(failures);
    }
    let deletes = (0..stale.len()).map(|i| {
        let obj: &'a M::Cached = stale[i];
        async move {
            match delete_one::<M>(writer, obj).await {
                Ok(()) => {
                    let read = obj.meta().resource_version.clone();
                    writer.remember(M::RESOURCE, obj.meta(), read, None);
                    None
                }
                Err(e) => Some(failure_at(obj.meta(), e)),
            }
        }
    });
    report.failures.extend(all_settled(deletes).await);
    report
}

fn failure_at(meta: &ObjectMeta, error: Error) -> SyncFailure {
    SyncFailure {
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
        error: error.to_string(),
    }
}

/// Runs independent writes with bounded concurrency and keeps every failure. `writes`
/// is consumed lazily: a write's future exists only while it runs.
async fn all_settled<F>(writes: impl IntoIterator<Item = F>) -> Vec<SyncFailure>
where
    F: std::future::Future<Output = Option<SyncFailure>>,
{
    use futures::StreamExt;
    let results: Vec<Option<SyncFailure>> = futures::stream::iter(writes)
        .buffer_unordered(super::WRITE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// Whether a managed object is being deleted but held by finalizers (kube-org puts
/// none on native objects, so they are someone else's).
fn held_in_deletion<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some() && !obj.finalizers().is_empty()
}

/// Applies one object and returns the resourceVersion it made. When the API server
/// refuses the change as invalid (a squatter created the name with another roleRef,
/// which is immutable), the object is deleted and created again; an object held in
/// deletion is released first.
async fn apply_one<M: Managed>(
    writer: &Writer<'_>,
    desired: &M,
    current: Option<&M::Cached>,
) -> Result<Option<String>, Error> {
    let (client, metrics) = (writer.client, writer.metrics);
    let (namespace, name) = meta_key(desired.meta());
    let api = M::api(client, Some(namespace.as_str()).filter(|ns| !ns.is_empty()));
    if current.is_some_and(held_in_deletion) {
        release(&api, metrics, M::RESOURCE, &name).await?;
    }
    let obj = desired.object();
    let written = match current {
        None => create_or_replace(&api, metrics, M::RESOURCE, &obj).await,
        Some(_) => replace_or_create(&api, metrics, M::RESOURCE, &obj).await,
    };
    match written {
        Ok(made) => Ok(made),
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 422 => {
            tracing::warn!(
                %name,
                %namespace,
                message = %status.message,
                "a managed object's immutable fields differ (squatted?): re-creating it"
            );
            remove(&api, metrics, M::RESOURCE, &name).await?;
            let made = apply(&api, metrics, M::RESOURCE, &obj).await?;
            Ok(made.resource_version())
        }
        Err(error) => Err(error),
    }
}

/// A create's or replace's parameters: kube-org's field manager.
fn as_kube_org() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Creates an object the cache does not have (a create costs the API server less than
/// an apply: about 3x for a RoleBinding of 1,000 subjects); one that exists after all
/// (the cache is behind, or a squatter made it) is replaced instead: as cheap, and
/// when it is already what kube-org wrote, a write that changes nothing (an apply
/// would add its field manager's entry and make a new version). Returns the
/// resourceVersion made.
async fn create_or_replace<K>(
    api: &Api<K>,
    metrics: &Metrics,
    resource: &str,
    obj: &K,
) -> Result<Option<String>, Error>
where
    K: Resource + Clone + Serialize + WireForm + DeserializeOwned + std::fmt::Debug,
{
    metrics.write(resource, "create");
    match crate::metadata_reply::create(api, &as_kube_org(), obj).await {
        Ok(made) => Ok(made.metadata.resource_version),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            match overwrite(api, metrics, resource, obj).await {
                // Deleted again meanwhile: the next pass creates it.
                Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => Ok(None),
                other => other,
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Replaces an object the cache has, unconditionally (no resourceVersion: kube-org owns
/// the name and writes the whole object). A replace costs the API server about what a
/// create does, a fraction of a server-side apply for a RoleBinding of hundreds of
/// subjects. One deleted meanwhile is created.
async fn replace_or_create<K>(
    api: &Api<K>,
    metrics: &Metrics,
    resource: &str,
    obj: &K,
) -> Result<Option<String>, Error>
where
    K: Resource + Clone + Serialize + WireForm + DeserializeOwned + std::fmt::Debug,
{
    match overwrite(api, metrics, resource, obj).await {
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => {
            create_or_replace(api, metrics, resource, obj).await
        }
        other => other,
    }
}

/// Replaces an object, or applies it without the `update` verb (RBAC of an older
/// release). Returns the resourceVersion made; a missing object is the caller's.
async fn overwrite<K>(
    api: &Api<K>,
    metrics: &Metrics,
    resource: &str,
    obj: &K,
) -> Result<Option<String>, Error>
where
    K: Resource + Clone + Serialize + WireForm + DeserializeOwned + std::fmt::Debug,
{
    metrics.write(resource, "update");
    match crate::metadata_reply::replace(api, &obj.name_any(), &as_kube_org(), obj).await {
        Ok(made) => Ok(made.metadata.resource_version),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            Ok(apply(api, metrics, resource, obj).await?.resource_version())
        }
        Err(error) => Err(error.into()),
    }
}

async fn delete_one<M: Managed>(writer: &Writer<'_>, obj: &M::Cached) -> Result<(), Error> {
    let metrics = writer.metrics;
    let api = M::api(writer.client, obj.meta().namespace.as_deref());
    if obj.meta().deletion_timestamp.is_some() {
        return release(&api, metrics, M::RESOURCE, &obj.name_any()).await;
    }
    remove(&api, metrics, M::RESOURCE, &obj.name_any()).await
}

/// Deletes a managed object and releases it if someone's finalizer holds it: a binding
/// held in deletion would keep granting. Gone already is fine.
async fn remove<K>(api: &Api<K>, metrics: &Metrics, resource: &str, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match delete_returning(api, metrics, resource, name).await? {
        Some(remaining) if !remaining.finalizers().is_empty() => {
            release(api, metrics, resource, name).await
        }
        _ => Ok(()),
    }
}

/// Removes every finalizer from a managed object being deleted: kube-org puts none on
/// native objects and owns their names. Gone already is fine.
async fn release<K>(
    api: &Api<K>,
    metrics: &Metrics,
    resource: &str,
    name: &str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    metrics.write(resource, "patch");
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    match api
        .patch_metadata(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use k8s_openapi::api::rbac::v1::PolicyRule;

    use super::*;

    /// Method and path of each request.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A stand-in API server: a create is refused as existing (409), a replace made
    /// resourceVersion 8, a delete succeeds.
    fn api_server() -> (Client, Seen) {
        let seen = Seen::default();
        let log = seen.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let method = request.method().to_string();
            log.lock()
                .unwrap()
                .push((method.clone(), request.uri().path().to_string()));
            let (code, body) = match method.as_str() {
                "POST" => (
                    409,
                    r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists","code":409,"message":"exists"}"#,
                ),
                "PUT" => (
                    200,
                    r#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"x","resourceVersion":"8"}}"#,
                ),
                _ => (
                    200,
                    r#"{"kind":"Status","apiVersion":"v1","status":"Success","code":200}"#,
                ),
            };
            let mut reply = http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(body.as_bytes()),
            ));
            *reply.status_mut() = http::StatusCode::from_u16(code).unwrap();
            std::future::ready(Ok::<_, std::convert::Infallible>(reply))
        });
        (Client::new(service, "default"), seen)
    }

    fn role(name: &str, verb: &str, version: Option<&str>) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: version.map(str::to_string),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: vec![verb.into()],
                ..Default::default()
            }]),
            ..Default::default()
        })
    }

    /// The resourceVersion the cache holds for each ClusterRole name.
    fn cache(list: &[(&str, &str)]) -> impl Fn(&'static str, &str, &str) -> Option<String> {
        let list: Vec<(String, String)> = list
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        move |_, _, name| list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    #[tokio::test]
    async fn every_write_is_remembered_until_the_cache_shows_it() {
        let (client, seen) = api_server();
        let (metrics, unseen) = (Metrics::default(), UnseenWrites::default());
        let writer = Writer {
            client: &client,
            metrics: &metrics,
            unseen: &unseen,
            group: "acme",
        };
        let desired = [
            (*role("changed", "list", None)).clone(),
            (*role("missing", "get", None)).clone(),
        ];
        let actual = [
            role("changed", "get", Some("5")),
            role("stale", "get", Some("6")),
        ];
        let report = sync(&writer, &desired, &actual, &|| false).await;
        assert_eq!((report.applied, report.deleted), (2, 1));
        assert!(report.failures.is_empty(), "{:?}", report.failures);

        // The missing one: created, refused as existing (the cache was behind), then
        // replaced, never applied (an apply would make a new version of an object that
        // already is kube-org's).
        let path = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
        let requests = seen.lock().unwrap().clone();
        let count = |method: &str, uri: &str| {
            requests
                .iter()
                .filter(|(m, u)| m == method && u == uri)
                .count()
        };
        assert_eq!(count("POST", path), 1);
        assert_eq!(count("PUT", &format!("{path}/missing")), 1);
        assert_eq!(count("PUT", &format!("{path}/changed")), 1);
        assert_eq!(count("DELETE", &format!("{path}/stale")), 1);
        assert!(requests.iter().all(|(m, _)| m != "PATCH"), "{requests:?}");

        // The cache as it was read: the replace and the delete are not seen yet (a
        // create is: nothing to tell it from an object deleted since).
        let before = cache(&[("changed", "5"), ("stale", "6")]);
        assert_eq!(unseen.forget_seen("acme", &before), 2);
        assert_eq!(unseen.forget_seen("other", &before), 0);
        let after = cache(&[("changed", "8"), ("missing", "8")]);
        assert_eq!(unseen.forget_seen("acme", &after), 0);
    }
}
