//! Benchmark: converge `BENCH_MEMBERS` members (default 1,000) x `BENCH_RESOURCES`
//! resource namespaces (default 100) from a cold start of the operator, and print every
//! figure of issue 10: the ceiling (the same native RoleBindings written directly by a
//! plain client, 16 at a time, in this sitting), time to the first native RoleBinding,
//! time until every native RoleBinding is correct, time until every status is written,
//! the API writes of the cold converge by resource and verb, the operator's peak RSS,
//! what each of its caches holds, three reaction times measured during the cold
//! converge, and the writes of an idle period and of a restart. Last, with the operator
//! stopped, the ceiling for statuses: the finalizers and statuses of the cold converge
//! written by a plain client onto copies of the custom objects, three streams of 16.
//!
//! Run with `make bench-access` (starts a local control plane) or `cargo bench --bench
//! access` against the cluster KUBECONFIG names. Environment:
//! - `BENCH_MEMBERS`, `BENCH_RESOURCES`: the size (`make bench-access-large`: 10,000 x 1,000);
//! - `BENCH_IDLE_SECONDS`: the idle period (default 60; 10 with `BENCH_QUICK=1`);
//! - `BENCH_PARALLEL`: concurrent creates during setup (default 16);
//! - `BENCH_RAW_STATUSES`: `1` or `0` to measure the ceiling for statuses or not
//!   (default: measured up to 2,000 members; at 10,000 its copies overfill this machine);
//! - `BENCH_POLL_MS`: the first pause between two SubjectAccessReview polls of a
//!   reaction (default 10);
//! - `KUBE_ORG_BIN`: the operator binary to measure, with the CRDs it prints (default: this
//!   tree's release build and CRDs);
//!
//! The last block it prints, after `== summary ==`, has one `figure: value unit` line per
//! figure, which `scripts/bench-compare.sh` takes medians of.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Operator, client, unique};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding as NativeRoleBinding;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use kube_org::access::names::MEMBERSHIP_FINALIZER;
use kube_org::api::{FIELD_MANAGER, Membership, Organization, RoleBinding};

const MEMBERS: usize = 1_000;
const RESOURCES: usize = 100;
const PARALLEL: usize = 16;
/// The all-scope viewer whose Membership is deleted during the converge.
const REMOVED: usize = 0;
/// An all-scope viewer who stays: the new resource namespace must be bound for them.
const WATCHER: usize = 3;
const OWNER: &str = "owner@example.com";
const OWNER_CLUSTER_ROLE: &str = "kube-org:owner";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn user(i: usize) -> String {
    format!("user{i}@example.com")
}

/// What the benchmark creates, from which it computes the expected native bindings.
struct Workload {
    org: String,
    home: String,
    members: usize,
    resources: Vec<String>,
    /// The resource namespace labelled in during the converge.
    late: String,
}

impl Workload {
    fn new(members: usize, resources: usize) -> Workload {
        assert!(
            members > WATCHER && resources > 1,
            "BENCH_MEMBERS must be at least 4 and BENCH_RESOURCES at least 2"
        );
        let org = unique("bench");
        Workload {
            home: format!("org-{org}"),
            resources: (0..resources).map(|i| format!("{org}-r{i}")).collect(),
            late: format!("{org}-late"),
            members,
            org,
        }
    }

    fn role(i: usize) -> &'static str {
        ["viewer", "editor", "admin"][i % 3]
    }

    /// Every third member views all resources; the others hold their role in three
    /// named ones.
    fn named(&self, i: usize) -> Option<Vec<&String>> {
        (!i.is_multiple_of(3)).then(|| {
            (0..3)
                .map(|k| &self.resources[(i * 7 + k * 13) % self.resources.len()])
                .collect()
        })
    }

    fn binding_name(&self, cluster_role: &str) -> String {
        format!("kube-org:{}:{cluster_role}", self.org)
    }

    /// The native RoleBindings of the end state — after the benchmark's own changes
    /// during the converge (one namespace labelled in, member `REMOVED` deleted) — as
    /// (namespace, name) -> (roleRef, sorted subjects). Computed from the catalog's
    /// documented mapping (viewer/editor/admin -> view/edit/admin; the owner is admin in
    /// every resource and `kube-org:owner` at home), not read from the operator.
    fn expected(&self) -> BTreeMap<(String, String), (String, Vec<String>)> {
        let mut grants: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let mut grant = |ns: &str, role: &str, user: String| {
            grants
                .entry((ns.to_string(), role.to_string()))
                .or_default()
                .insert(user);
        };
        grant(&self.home, OWNER_CLUSTER_ROLE, OWNER.to_string());
        let all: Vec<&String> = self.resources.iter().chain([&self.late]).collect();
        for ns in &all {
            grant(ns, "admin", OWNER.to_string());
        }
        let cluster_role = |i: usize| ["view", "edit", "admin"][i % 3];
        for i in (0..self.members).filter(|&i| i != REMOVED) {
            match self.named(i) {
                None => all
                    .iter()
                    .for_each(|ns| grant(ns, cluster_role(i), user(i))),
                Some(names) => names
                    .iter()
                    .for_each(|ns| grant(ns, cluster_role(i), user(i))),
            }
        }
        grants
            .into_iter()
            .map(|((ns, role), users)| {
                (
                    (ns, self.binding_name(&role)),
                    (role, users.into_iter().collect()),
                )
            })
            .collect()
    }
}

async fn create_all<K>(api: &Api<K>, objects: Vec<K>, parallel: usize)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    stream::iter(objects)
        .for_each_concurrent(parallel, |obj| async move {
            let mut tries = 0;
            while let Err(error) = api.create(&PostParams::default(), &obj).await {
                // A loaded API server may answer 429 or time out: retry a few times.
                tries += 1;
                assert!(tries < 5, "creating a benchmark object: {error}");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
        })
        .await;
}

fn resource_namespace(org: &str, name: &str) -> Namespace {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name,
        "labels": {"kube-org.io/organization": org, "kube-org.io/resource-type": "deployment"}}}))
    .expect("ns")
}

async fn setup(client: &Client, w: &Workload, parallel: usize) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // The home namespace is created here so the objects can exist before the operator
    // starts: the benchmark measures convergence from a cold start.
    let home_ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": w.home, "labels": {"kube-org.io/organization": w.org}}})).expect("ns");
    namespaces
        .create(&PostParams::default(), &home_ns)
        .await
        .expect("home namespace");
    let org_obj: Organization = serde_json::from_value(
        serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": w.org}, "spec": {"owners": [OWNER], "resourceTypes": ["deployment"]}}),
    )
    .expect("org");
    Api::<Organization>::all(client.clone())
        .create(&PostParams::default(), &org_obj)
        .await
        .expect("organization");

    stream::iter(w.resources.clone())
        .for_each_concurrent(parallel, |name| {
            let namespaces = namespaces.clone();
            let ns = resource_namespace(&w.org, &name);
            async move {
                namespaces
                    .patch(
                        &name,
                        &PatchParams::apply("kube-org-bench"),
                        &Patch::Apply(&ns),
                    )
                    .await
                    .expect("resource namespace");
            }
        })
        .await;

    let memberships: Vec<Membership> = (0..w.members)
        .map(|i| {
            serde_json::from_value(serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
                "metadata": {"name": format!("m{i}"), "namespace": w.home}, "spec": {"email": user(i)}}))
            .expect("membership")
        })
        .collect();
    create_all(
        &Api::namespaced(client.clone(), &w.home),
        memberships,
        parallel,
    )
    .await;

    let bindings: Vec<RoleBinding> = (0..w.members)
        .map(|i| {
            let scope = match w.named(i) {
                None => serde_json::json!({"resourceType": "deployment", "all": true}),
                Some(names) => {
                    serde_json::json!({"resourceType": "deployment", "resources": names})
                }
            };
            serde_json::from_value(
                serde_json::json!({"apiVersion": "kube-org.io/v1alpha1", "kind": "RoleBinding",
                "metadata": {"name": format!("b{i}"), "namespace": w.home},
                "spec": {"member": user(i), "role": Workload::role(i), "scope": scope}}),
            )
            .expect("binding")
        })
        .collect();
    create_all(
        &Api::namespaced(client.clone(), &w.home),
        bindings,
        parallel,
    )
    .await;
}

/// What the watch of the organization's native RoleBindings has seen.
#[derive(Default)]
struct Natives {
    /// (namespace, name) -> (uid, roleRef, sorted subjects).
    current: BTreeMap<(String, String), (String, String, Vec<String>)>,
    /// Keys whose current state differs from the expected one.
    wrong: BTreeSet<(String, String)>,
    first: Option<Instant>,
    /// When the state last became correct (`None` while it is not).
    correct_since: Option<Instant>,
    /// The same for the bindings the benchmark's own changes do not touch (all but the
    /// new namespace's and the deleted one, the removed member ignored): the cold
    /// converge alone.
    wrong_cold: BTreeSet<(String, String)>,
    cold_since: Option<Instant>,
    events: u64,
}

impl Natives {
    fn check(
        &mut self,
        key: &(String, String),
        expected: &BTreeMap<(String, String), (String, Vec<String>)>,
        cold: &Untouched,
    ) {
        let right = match (self.current.get(key), expected.get(key)) {
            (None, None) => true,
            (Some((_, role, subjects)), Some((want_role, want_subjects))) => {
                role == want_role && subjects == want_subjects
            }
            _ => false,
        };
        if right {
            self.wrong.remove(key);
        } else {
            self.wrong.insert(key.clone());
        }
        if !cold.touched.contains(&key.0) && *key != cold.deleted {
            let removed = format!("User:{}", user(REMOVED));
            let without = |subjects: &Vec<String>| -> Vec<String> {
                subjects
                    .iter()
                    .filter(|s| **s != removed)
                    .cloned()
                    .collect()
            };
            let right = match (self.current.get(key), expected.get(key)) {
                (None, None) => true,
                (Some((_, role, subjects)), Some((want_role, want_subjects))) => {
                    role == want_role && without(subjects) == without(want_subjects)
                }
                _ => false,
            };
            if right {
                self.wrong_cold.remove(key);
            } else {
                self.wrong_cold.insert(key.clone());
            }
        }
    }

    fn settle_correctness(&mut self, now: Instant) {
        match (self.wrong.is_empty(), self.correct_since) {
            (true, None) => self.correct_since = Some(now),
            (false, Some(_)) => self.correct_since = None,
            _ => {}
        }
        match (self.wrong_cold.is_empty(), self.cold_since) {
            (true, None) => self.cold_since = Some(now),
            (false, Some(_)) => self.cold_since = None,
            _ => {}
        }
    }
}

fn native_entry(rb: &NativeRoleBinding) -> ((String, String), (String, String, Vec<String>)) {
    let mut subjects: Vec<String> = rb
        .subjects
        .iter()
        .flatten()
        .map(|s| format!("{}:{}", s.kind, s.name))
        .collect();
    subjects.sort();
    (
        (rb.namespace().unwrap_or_default(), rb.name_any()),
        (
            rb.uid().unwrap_or_default(),
            rb.role_ref.name.clone(),
            subjects,
        ),
    )
}

/// What the benchmark's changes during the converge touch: the new namespace and the
/// deleted binding.
struct Untouched {
    touched: BTreeSet<String>,
    deleted: (String, String),
}

/// Watches the organization's native RoleBindings (by label) and keeps [`Natives`]
/// up to date.
fn watch_natives(
    client: &Client,
    w: &Workload,
    expected: BTreeMap<(String, String), (String, Vec<String>)>,
) -> Arc<Mutex<Natives>> {
    // Subjects as "User:<name>", as native_entry writes them.
    let expected: BTreeMap<_, _> = expected
        .into_iter()
        .map(|(key, (role, users))| {
            (
                key,
                (
                    role,
                    users.into_iter().map(|u| format!("User:{u}")).collect(),
                ),
            )
        })
        .collect();
    let cold = Untouched {
        touched: BTreeSet::from([w.late.clone()]),
        deleted: (w.resources[0].clone(), w.binding_name("view")),
    };
    let state = Arc::new(Mutex::new(Natives {
        wrong: expected.keys().cloned().collect(),
        wrong_cold: expected
            .keys()
            .filter(|key| !cold.touched.contains(&key.0) && **key != cold.deleted)
            .cloned()
            .collect(),
        ..Natives::default()
    }));
    let api: Api<NativeRoleBinding> = Api::all(client.clone());
    let config = watcher::Config::default().labels(&format!("kube-org.io/organization={}", w.org));
    let shared = state.clone();
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut relist: Option<BTreeMap<_, _>> = None;
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let now = Instant::now();
            let mut s = shared.lock().expect("natives");
            s.events += 1;
            match event {
                Event::Init => relist = Some(BTreeMap::new()),
                Event::InitApply(rb) => {
                    s.first.get_or_insert(now);
                    let (key, value) = native_entry(&rb);
                    relist.get_or_insert_with(BTreeMap::new).insert(key, value);
                }
                Event::InitDone => {
                    let fresh = relist.take().unwrap_or_default();
                    let keys: BTreeSet<_> = s.current.keys().chain(fresh.keys()).cloned().collect();
                    s.current = fresh;
                    for key in keys {
                        s.check(&key, &expected, &cold);
                    }
                }
                Event::Apply(rb) => {
                    s.first.get_or_insert(now);
                    let (key, value) = native_entry(&rb);
                    s.current.insert(key.clone(), value);
                    s.check(&key, &expected, &cold);
                }
                Event::Delete(rb) => {
                    let (key, _) = native_entry(&rb);
                    s.current.remove(&key);
                    s.check(&key, &expected, &cold);
                }
            }
            s.settle_correctness(now);
        }
    });
    state
}

/// What the watches of the organization, its Memberships and its kube-org RoleBindings
/// have seen.
#[derive(Default)]
struct Statuses {
    org_members: i32,
    /// Membership name -> whether it has a status.
    memberships: BTreeMap<String, bool>,
    /// RoleBinding name -> whether it has a status.
    bindings: BTreeMap<String, bool>,
}

impl Statuses {
    /// Every member counted on the Organization, and every Membership and RoleBinding
    /// with a status (after member `REMOVED` left: `members` Memberships with the
    /// owner's, and as many RoleBindings). Memberships used to be left out, so
    /// `all_statuses_written` was the RoleBindings' alone.
    fn written(&self, members: usize) -> bool {
        let all = |statuses: &BTreeMap<String, bool>| {
            statuses.len() >= members && statuses.values().all(|&has| has)
        };
        self.org_members as usize == members && all(&self.memberships) && all(&self.bindings)
    }
}

/// Keeps `pick(statuses)` (name -> has a status) up to date from a watch of `api`.
fn watch_has_status<K>(
    api: Api<K>,
    statuses: Arc<Mutex<Statuses>>,
    has_status: fn(&K) -> bool,
    pick: fn(&mut Statuses) -> &mut BTreeMap<String, bool>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let mut s = statuses.lock().expect("statuses");
            match event {
                Ok(Event::Apply(obj) | Event::InitApply(obj)) => {
                    pick(&mut s).insert(obj.name_any(), has_status(&obj));
                }
                Ok(Event::Delete(obj)) => {
                    pick(&mut s).remove(&obj.name_any());
                }
                _ => {}
            }
        }
    });
}

fn watch_statuses(client: &Client, w: &Workload) -> Arc<Mutex<Statuses>> {
    let state = Arc::new(Mutex::new(Statuses::default()));
    let orgs: Api<Organization> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={}", w.org));
    let shared = state.clone();
    tokio::spawn(async move {
        let mut events = watcher::watcher(orgs, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            if let Ok(Event::Apply(org) | Event::InitApply(org)) = event {
                shared.lock().expect("statuses").org_members =
                    org.status.map(|s| s.members).unwrap_or_default();
            }
        }
    });
    watch_has_status(
        Api::<RoleBinding>::namespaced(client.clone(), &w.home),
        state.clone(),
        |b| b.status.is_some(),
        |s| &mut s.bindings,
    );
    watch_has_status(
        Api::<Membership>::namespaced(client.clone(), &w.home),
        state.clone(),
        |m| m.status.is_some(),
        |s| &mut s.memberships,
    );
    state
}

/// How long the benchmark waits for one reaction (`BENCH_REACTION_TIMEOUT` seconds,
/// default 1,800: at 10,000 members a change may wait minutes behind the status storm).
fn reaction_timeout() -> Duration {
    Duration::from_secs(env_usize("BENCH_REACTION_TIMEOUT", 1800) as u64)
}

/// The pause between two polls `elapsed` into a wait: `BENCH_POLL_MS` (default 10 ms) at
/// first, at most 1% of the time waited so far (so a long wait does not load the API
/// server), at most 250 ms. (The polls are SubjectAccessReviews the API server answers
/// while it writes the converge: the knob measures what they cost the figures.)
fn poll_interval(elapsed: Duration) -> Duration {
    let first = Duration::from_millis(env_usize("BENCH_POLL_MS", 10).clamp(1, 250) as u64);
    (elapsed / 100).clamp(first, Duration::from_millis(250))
}

/// How long until the authorizer answers `allowed` for `user` doing `what` (polled with
/// SubjectAccessReviews).
async fn time_until(client: &Client, user: &str, what: common::Can<'_>, allowed: bool) -> Duration {
    let started = Instant::now();
    while common::can(client, user, what).await != allowed {
        assert!(
            started.elapsed() < reaction_timeout(),
            "no reaction within {:?}",
            reaction_timeout()
        );
        tokio::time::sleep(poll_interval(started.elapsed())).await;
    }
    started.elapsed()
}

/// Waits (polling the watch state, no API requests) until `check` holds.
async fn until_natives<T>(natives: &Mutex<Natives>, check: impl Fn(&Natives) -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check(&natives.lock().expect("natives")) {
            return value;
        }
        assert!(
            started.elapsed() < reaction_timeout(),
            "the watched native bindings did not reach the awaited state within {:?}",
            reaction_timeout()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A reaction time: when (from operator start) the change was made, and how long the
/// operator took.
struct Reaction {
    at: Duration,
    took: Duration,
}

/// A new resource namespace is labelled in: how long until an all-scope member may
/// list pods there.
async fn new_namespace_bound(client: Client, w: Arc<Workload>, t0: Instant) -> Reaction {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let at = t0.elapsed();
    let started = Instant::now();
    namespaces
        .create(&PostParams::default(), &resource_namespace(&w.org, &w.late))
        .await
        .expect("a new resource namespace");
    time_until(
        &client,
        &user(WATCHER),
        common::Can::new("list", "pods", Some(&w.late)),
        true,
    )
    .await;
    Reaction {
        at,
        took: started.elapsed(),
    }
}

/// How many writes the raw ceiling sends at once: as many as the operator does.
const RAW_PARALLEL: usize = 16;

/// Creates the expected native RoleBindings (those of namespaces that exist before the
/// operator starts) under other names, `RAW_PARALLEL` at a time, as a plain client
/// would: how many, and the time from the first request to the last answer. They are
/// deleted after.
async fn raw_writes(
    client: &Client,
    w: &Workload,
    expected: &BTreeMap<(String, String), (String, Vec<String>)>,
) -> (usize, Duration) {
    const LABEL: &str = "kube-org-bench/raw";
    let objects: Vec<NativeRoleBinding> = expected
        .iter()
        .filter(|((ns, _), _)| *ns != w.late)
        .map(|((ns, _), (role, users))| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("raw-{role}"), "namespace": ns,
                             "labels": {LABEL: "true"}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": role},
                "subjects": users.iter().map(|u| serde_json::json!({
                    "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u,
                })).collect::<Vec<_>>(),
            }))
            .expect("a native RoleBinding")
        })
        .collect();
    let started = Instant::now();
    stream::iter(&objects)
        .for_each_concurrent(RAW_PARALLEL, |rb| async move {
            let api: Api<NativeRoleBinding> =
                Api::namespaced(client.clone(), &rb.namespace().expect("namespaced"));
            api.create(&PostParams::default(), rb)
                .await
                .expect("creating a native RoleBinding directly");
        })
        .await;
    let took = started.elapsed();
    let namespaces: BTreeSet<String> = objects.iter().filter_map(|rb| rb.namespace()).collect();
    stream::iter(namespaces)
        .for_each_concurrent(RAW_PARALLEL, |ns| async move {
            Api::<NativeRoleBinding>::namespaced(client.clone(), &ns)
                .delete_collection(
                    &Default::default(),
                    &kube::api::ListParams::default().labels(LABEL),
                )
                .await
                .expect("deleting the directly written bindings");
        })
        .await;
    (objects.len(), took)
}

/// Up to how many members the ceiling for statuses is measured by default
/// (`BENCH_RAW_STATUSES=0|1` decides otherwise).
const RAW_STATUSES_MAX_MEMBERS: usize = 2_000;

/// Copies the objects of kind `ar` in namespace `from` into namespace `into`,
/// `RAW_PARALLEL` at a time: name and spec, and the labels and annotations that are
/// not kube-org's — no status, no finalizers, no owner references, nothing pointing
/// at the organization, so nothing acts on the copies. Returns each copy with the
/// original's status, verbatim (one being deleted or without a status is left out:
/// kube-org writes it none), and whether the original held kube-org's finalizer.
async fn copy_objects(client: &Client, ar: &ApiResource, from: &str, into: &str) -> Vec<Copied> {
    let originals = Api::<DynamicObject>::namespaced_with(client.clone(), from, ar)
        .list(&Default::default())
        .await
        .expect("listing the objects to copy");
    let not_kube_orgs = |map: &Option<BTreeMap<String, String>>| {
        let kept: BTreeMap<String, String> = map
            .iter()
            .flatten()
            .filter(|(k, v)| {
                let managed = *k == "app.kubernetes.io/managed-by" && *v == "kube-org";
                !(k.starts_with("kube-org.io/") || managed)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!kept.is_empty()).then_some(kept)
    };
    let mut statuses = Vec::new();
    let mut copies = Vec::new();
    for original in originals {
        let Some(status) = original
            .data
            .get("status")
            .filter(|_| original.metadata.deletion_timestamp.is_none())
        else {
            continue;
        };
        let name = original.name_any();
        let mut copy = DynamicObject::new(&name, ar)
            .within(into)
            .data(serde_json::json!({"spec": original.data["spec"]}));
        copy.metadata.labels = not_kube_orgs(&original.metadata.labels);
        copy.metadata.annotations = not_kube_orgs(&original.metadata.annotations);
        let held = original
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == MEMBERSHIP_FINALIZER);
        statuses.push(Copied {
            name,
            status: status.clone(),
            held,
        });
        copies.push(copy);
    }
    create_all(
        &Api::namespaced_with(client.clone(), into, ar),
        copies,
        RAW_PARALLEL,
    )
    .await;
    statuses
}

/// A copy made by [`copy_objects`].
struct Copied {
    name: String,
    status: serde_json::Value,
    /// The original held kube-org's finalizer (owners' Memberships).
    held: bool,
}

/// Writes `status` on `name` by server-side apply on the status subresource, as
/// kube-org does (field manager `kube-org`, forced).
async fn write_status<K>(api: &Api<K>, name: &str, status: &serde_json::Value)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .expect("writing a status directly");
}

/// The ceiling for statuses: the writes kube-org's cold converge makes on its own
/// objects — a finalizer on each Membership that holds one (the owners'), the status of every Membership and every
/// kube-org RoleBinding, three streams of `RAW_PARALLEL` at once, as kube-org runs
/// them — made by a plain client on copies of the home namespace's objects (with the
/// statuses kube-org wrote) in a namespace of no organization. Run with the operator
/// stopped, after every other measurement; the copies and their namespace are deleted
/// after. Returns how many writes, and the time from the first request to the last
/// answer.
async fn raw_status_writes(client: &Client, w: &Workload) -> (usize, Duration) {
    let ns = unique("bench-raw-statuses");
    assert!(
        common::create_namespace(client, &ns).await,
        "namespace {ns} exists already"
    );
    let (membership_kind, binding_kind) = (
        ApiResource::erase::<Membership>(&()),
        ApiResource::erase::<RoleBinding>(&()),
    );
    let (memberships, bindings) = tokio::join!(
        copy_objects(client, &membership_kind, &w.home, &ns),
        copy_objects(client, &binding_kind, &w.home, &ns),
    );
    let membership_api: Api<Membership> = Api::namespaced(client.clone(), &ns);
    let binding_api: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    // One patch serves every held Membership: the same finalizer added to each.
    let add_finalizer: Patch<()> = Patch::Json(
        serde_json::from_value(serde_json::json!(
            [{"op": "add", "path": "/metadata/finalizers", "value": [MEMBERSHIP_FINALIZER]}]
        ))
        .expect("a JSON Patch"),
    );
    let held: Vec<usize> = (0..memberships.len())
        .filter(|&i| memberships[i].held)
        .collect();

    // A held Membership's status follows its finalizer (as kube-org writes them: a
    // status written first would make kube-org's guarded finalizer patch fail); the
    // others' go at once.
    let (finalized_tx, finalized_rx) = futures::channel::mpsc::unbounded::<usize>();
    for i in (0..memberships.len()).filter(|&i| !memberships[i].held) {
        let _ = finalized_tx.unbounded_send(i);
    }
    let (api, patch, copies, held_ones) = (&membership_api, &add_finalizer, &memberships, &held);
    let started = Instant::now();
    futures::join!(
        async move {
            stream::iter(held_ones)
                .map(|&i| {
                    let tx = finalized_tx.clone();
                    async move {
                        api.patch(&copies[i].name, &PatchParams::default(), patch)
                            .await
                            .expect("adding a finalizer directly");
                        let _ = tx.unbounded_send(i);
                    }
                })
                .buffer_unordered(RAW_PARALLEL)
                .collect::<()>()
                .await;
        },
        finalized_rx
            .map(|i| {
                let copy = &memberships[i];
                write_status(&membership_api, &copy.name, &copy.status)
            })
            .buffer_unordered(RAW_PARALLEL)
            .collect::<()>(),
        stream::iter(&bindings)
            .map(|copy| write_status(&binding_api, &copy.name, &copy.status))
            .buffer_unordered(RAW_PARALLEL)
            .collect::<()>(),
    );
    let took = started.elapsed();

    let release = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
    stream::iter(held.iter().map(|&i| &memberships[i].name))
        .for_each_concurrent(RAW_PARALLEL, |name| {
            let (api, release) = (&membership_api, &release);
            async move {
                api.patch(name, &PatchParams::default(), release)
                    .await
                    .expect("removing a finalizer written directly");
            }
        })
        .await;
    common::delete_namespace(client, &ns).await;
    (held.len() + memberships.len() + bindings.len(), took)
}

/// A managed binding is deleted behind kube-org's back (as soon as it exists): how long
/// until it exists again (a new uid, seen by the watch).
async fn deleted_binding_restored(
    client: Client,
    w: Arc<Workload>,
    natives: Arc<Mutex<Natives>>,
    t0: Instant,
) -> Reaction {
    let key = (w.resources[0].clone(), w.binding_name("view"));
    let uid = until_natives(&natives, |s| s.current.get(&key).map(|v| v.0.clone())).await;
    let api: Api<NativeRoleBinding> = Api::namespaced(client.clone(), &key.0);
    let at = t0.elapsed();
    let started = Instant::now();
    api.delete(&key.1, &Default::default())
        .await
        .expect("deleting a managed binding");
    until_natives(&natives, |s| {
        s.current
            .get(&key)
            .is_some_and(|v| v.0 != uid)
            .then_some(())
    })
    .await;
    Reaction {
        at,
        took: started.elapsed(),
    }
}

/// A member is removed (as soon as they have access): how long until the authorizer
/// refuses them. Asked in the last resource namespace, not the first, whose binding
/// [`deleted_binding_restored`] deletes (that deletion alone would refuse them).
async fn member_revoked(client: Client, w: Arc<Workload>, t0: Instant) -> Reaction {
    let last = w.resources.last().expect("resource namespaces");
    let what = common::Can::new("list", "pods", Some(last));
    time_until(&client, &user(REMOVED), what, true).await;
    let memberships: Api<Membership> = Api::namespaced(client.clone(), &w.home);
    let at = t0.elapsed();
    let started = Instant::now();
    memberships
        .delete(&format!("m{REMOVED}"), &Default::default())
        .await
        .expect("removing a member");
    time_until(&client, &user(REMOVED), what, false).await;
    Reaction {
        at,
        took: started.elapsed(),
    }
}

/// Each watch cache's objects and their size as JSON, as the operator measures them.
async fn cache_costs(operator: &Operator) -> BTreeMap<String, (u64, u64)> {
    let objects = operator
        .labelled_metric("kube_org_cache_objects", &["cache"])
        .await;
    let bytes = operator
        .labelled_metric("kube_org_cache_json_bytes", &["cache"])
        .await;
    objects
        .into_iter()
        .map(|(cache, n)| {
            let size = bytes.get(&cache).copied().unwrap_or_default();
            (cache, (n, size))
        })
        .collect()
}

/// A field of `/proc/<pid>/status` in KiB (e.g. `VmHWM`, the peak resident set).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_default()
}

/// Waits until the operator has made no write for `quiet`; returns its writes and when
/// the last one was seen (polled every 100 ms).
async fn settle(operator: &Operator, quiet: Duration, timeout: Duration) -> (u64, Instant) {
    let started = Instant::now();
    let mut last = operator.writes().await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = operator.writes().await;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return (now, since);
        }
        assert!(
            started.elapsed() < timeout,
            "the operator kept writing for {timeout:?} (a hot loop?); log:\n{}",
            operator.log_tail()
        );
    }
}

#[tokio::main]
async fn main() {
    let members = env_usize("BENCH_MEMBERS", MEMBERS);
    let resources = env_usize("BENCH_RESOURCES", RESOURCES);
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let idle =
        Duration::from_secs(env_usize("BENCH_IDLE_SECONDS", if quick { 10 } else { 60 }) as u64);
    let parallel = env_usize("BENCH_PARALLEL", PARALLEL).max(1);
    let binary = std::env::var_os("KUBE_ORG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kube-org")));
    println!("operator: {}", binary.display());
    let client = client().await;
    let w = Arc::new(Workload::new(members, resources));
    let started = Instant::now();
    setup(&client, &w, parallel).await;
    println!(
        "setup: {members} members, {resources} resource namespaces, {members} bindings created in {:.1}s ({parallel} at a time)",
        started.elapsed().as_secs_f64()
    );

    // The ceiling, in this sitting: the same native bindings written by a plain client.
    let expected = w.expected();
    let (raw_count, raw) = raw_writes(&client, &w, &expected).await;
    println!(
        "writing the {raw_count} native RoleBindings directly, {RAW_PARALLEL} at a time: {:.3}s",
        raw.as_secs_f64()
    );

    // Watches first (their initial lists are empty of native bindings), then the
    // operator: every time below counts from its start.
    let expected_count = expected.len();
    let natives = watch_natives(&client, &w, expected);
    let statuses = watch_statuses(&client, &w);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let t0 = Instant::now();
    let mut operator = Operator::spawn_bin(&binary, &[]);
    let pid = operator.pid();
    let first = until_natives(&natives, |s| s.first).await - t0;
    println!("first native RoleBinding after {:.3}s", first.as_secs_f64());

    // The reactions, started during the cold converge.
    let reactions = tokio::spawn({
        let (client, w, natives) = (client.clone(), w.clone(), natives.clone());
        async move {
            tokio::join!(
                new_namespace_bound(client.clone(), w.clone(), t0),
                deleted_binding_restored(client.clone(), w.clone(), natives, t0),
                member_revoked(client, w, t0),
            )
        }
    });
    operator.ready().await;
    let (bound, restored, revoked) = reactions.await.expect("the reactions");
    for (what, r) in [
        ("new resource namespace bound", &bound),
        ("deleted managed binding restored", &restored),
        ("removed member revoked", &revoked),
    ] {
        println!(
            "{what} in {} ms (changed {:.3}s after operator start)",
            r.took.as_millis(),
            r.at.as_secs_f64()
        );
    }

    let statuses_at = {
        let started = Instant::now();
        loop {
            if statuses.lock().expect("statuses").written(members) {
                break t0.elapsed();
            }
            // Sampled while it runs: an operator killed for lack of memory leaves no
            // /proc entry to read afterwards.
            let peak = proc_status_kib(pid, "VmHWM");
            if let Some(status) = operator.exited() {
                panic!(
                    "the operator exited ({status}) {:.1}s after start, before every status was written; its peak RSS was at least {:.1} MiB (killed for memory? see dmesg); log:\n{}",
                    t0.elapsed().as_secs_f64(),
                    peak as f64 / 1024.0,
                    operator.log_tail()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(3600),
                "statuses not written within an hour; log:\n{}",
                operator.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (writes, last_write) =
        settle(&operator, Duration::from_secs(3), Duration::from_secs(3600)).await;
    let by_kind = operator.writes_by_kind().await;
    let peak_rss = proc_status_kib(pid, "VmHWM");
    let rss = proc_status_kib(pid, "VmRSS");
    let (correct_at, cold_at, native_count, native_events, wrong) = {
        let s = natives.lock().expect("natives");
        (
            s.correct_since.map(|at| at - t0),
            s.cold_since.map(|at| at - t0),
            s.current.len(),
            s.events,
            s.wrong.iter().take(3).cloned().collect::<Vec<_>>(),
        )
    };
    let correct_at = correct_at.unwrap_or_else(|| {
        panic!(
            "the native RoleBindings are not the expected {expected_count} (e.g. {wrong:?} differ); log:\n{}",
            operator.log_tail()
        )
    });
    let cold_at = cold_at.expect("the untouched bindings are correct when all are");
    println!(
        "every native RoleBinding correct after {:.3}s ({native_count} bindings, {native_events} watch events); those the changes during the converge do not touch after {:.3}s",
        correct_at.as_secs_f64(),
        cold_at.as_secs_f64()
    );
    println!(
        "every status written after {:.3}s; last write of the converge {:.3}s",
        statuses_at.as_secs_f64(),
        (last_write - t0).as_secs_f64()
    );
    println!("API write requests on the cold converge: {writes}");
    for (kind, n) in &by_kind {
        println!("  {kind}: {n}");
    }
    println!(
        "operator RSS after convergence: peak {:.1} MiB, now {:.1} MiB",
        peak_rss as f64 / 1024.0,
        rss as f64 / 1024.0
    );

    // Empty for an operator older than these metrics (`scripts/bench-compare.sh`).
    let caches = cache_costs(&operator).await;
    println!("what each cache holds after convergence (objects, size as JSON as kept):");
    for (cache, (objects, bytes)) in &caches {
        println!(
            "  {cache}: {objects} objects, {:.1} MiB",
            *bytes as f64 / 1048576.0
        );
    }

    tokio::time::sleep(idle).await;
    let idle_writes = operator.writes().await - writes;
    println!("API writes during {}s idle: {idle_writes}", idle.as_secs());
    // Which, when any: a write after the converge is either late work or a loop.
    for (kind, n) in operator.writes_by_kind().await {
        let before = by_kind.get(&kind).copied().unwrap_or_default();
        if n > before {
            println!("  {kind}: {}", n - before);
        }
    }

    operator.stop();
    let restarted = Operator::start_bin(&binary, &[]).await;
    let (restart_writes, _) =
        settle(&restarted, Duration::from_secs(5), Duration::from_secs(600)).await;
    let restart_peak = proc_status_kib(restarted.pid(), "VmHWM");
    println!("API writes on restart with nothing changed: {restart_writes}");
    restarted.stop();

    // The ceiling for statuses, last and with no operator running: nothing it does
    // disturbs the figures above, and the statuses copied are those kube-org wrote.
    // Off by default above `RAW_STATUSES_MAX_MEMBERS`: at 10,000 members the copies
    // (their statuses list up to 1,000 namespaces each) took the local API server from
    // 15 to 18 GB, past what this machine has.
    let measure = usize::from(members <= RAW_STATUSES_MAX_MEMBERS);
    let raw_statuses = if env_usize("BENCH_RAW_STATUSES", measure) != 0 {
        let (count, took) = raw_status_writes(&client, &w).await;
        println!(
            "writing the {count} finalizers and statuses of the custom objects directly, three streams of {RAW_PARALLEL} at a time: {:.3}s",
            took.as_secs_f64()
        );
        Some((count, took))
    } else {
        println!("the ceiling for statuses: not measured (BENCH_RAW_STATUSES=1 to measure it)");
        None
    };
    let _ = Api::<Organization>::all(client.clone())
        .delete(&w.org, &Default::default())
        .await;

    let mut summary = vec![
        ("members", members as f64, "members"),
        ("resources", resources as f64, "namespaces"),
        ("raw_native_rolebindings", raw.as_secs_f64(), "s"),
        ("first_native_rolebinding", first.as_secs_f64(), "s"),
        (
            "untouched_native_rolebindings_correct",
            cold_at.as_secs_f64(),
            "s",
        ),
        // Issue 10's target for the untouched bindings is 1.5x the ceiling; this ratio,
        // taken within one run, divides out part of a shared machine's drift (this
        // sitting still saw 1.37-2.23 at 1,000 members: compare medians).
        (
            "untouched_over_raw",
            cold_at.as_secs_f64() / raw.as_secs_f64(),
            "x",
        ),
        (
            "all_native_rolebindings_correct",
            correct_at.as_secs_f64(),
            "s",
        ),
        ("all_statuses_written", statuses_at.as_secs_f64(), "s"),
        ("last_converge_write", (last_write - t0).as_secs_f64(), "s"),
        ("native_rolebindings", native_count as f64, "bindings"),
        ("api_writes", writes as f64, "requests"),
    ];
    if let Some((count, took)) = raw_statuses {
        summary.extend([
            ("raw_statuses", took.as_secs_f64(), "s"),
            ("raw_statuses_writes", count as f64, "requests"),
        ]);
    }
    let kinds: Vec<(String, f64)> = by_kind
        .iter()
        .map(|(kind, n)| (format!("api_writes.{kind}"), *n as f64))
        .collect();
    summary.extend(kinds.iter().map(|(k, n)| (k.as_str(), *n, "requests")));
    let cache_sizes: Vec<(String, f64)> = caches
        .iter()
        .map(|(cache, (_, bytes))| (format!("cache.{cache}"), *bytes as f64 / 1048576.0))
        .collect();
    summary.extend(cache_sizes.iter().map(|(k, n)| (k.as_str(), *n, "MiB")));
    summary.extend([
        ("peak_rss", peak_rss as f64 / 1024.0, "MiB"),
        ("restart_peak_rss", restart_peak as f64 / 1024.0, "MiB"),
        (
            "new_namespace_bound",
            bound.took.as_secs_f64() * 1000.0,
            "ms",
        ),
        (
            "deleted_binding_restored",
            restored.took.as_secs_f64() * 1000.0,
            "ms",
        ),
        ("member_revoked", revoked.took.as_secs_f64() * 1000.0, "ms"),
        ("idle_writes", idle_writes as f64, "requests"),
        ("idle_seconds", idle.as_secs() as f64, "s"),
        ("restart_writes", restart_writes as f64, "requests"),
    ]);
    println!("== summary ==");
    for (figure, value, unit) in summary {
        if value.fract() == 0.0 {
            println!("{figure}: {value} {unit}");
        } else {
            println!("{figure}: {value:.3} {unit}");
        }
    }
}
