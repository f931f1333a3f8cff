//! The effectful shell around the pure access core: watches, caches, and one reconcile
//! per Organization that applies what [`crate::access::desired_access`] computes.

pub mod apply;
pub mod leaving;
pub mod plan;
pub mod priority;
pub mod reconcile;
pub mod status;
pub mod status_queue;
pub mod triggers;
pub mod unseen;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, info, warn};

use crate::access::names::{LABEL_MANAGED_BY, LABEL_ORGANIZATION, MANAGER};
use crate::access::native::CachedRoleBinding;
use crate::api::{Invitation, Membership, Organization, RoleBinding};
use crate::cache::{Filled, all_filled};
use crate::index::{self, Index, Key};
use crate::metrics::Metrics;
use crate::shutdown::{RECONCILE_GRACE, run_until_stopped, stopped};
use crate::watch_set::Watched;

/// Everything a reconcile reads or writes through.
pub struct Context {
    pub client: Client,
    pub events: crate::events::Events,
    pub metrics: Metrics,
    pub stores: Stores,
    /// Custom ClusterRoles recently found bindable, so reconciles do not ask again.
    pub bindable: Bindable,
    /// The operator's namespace, where exclusive-membership claims live.
    pub claims_namespace: String,
    /// Statuses decided by reconciles, written by the status workers.
    pub statuses: status_queue::StatusQueue,
    /// Native RBAC writes go first; status writes wait for them.
    pub access_first: priority::AccessFirst,
    /// Urgent changes per organization, counted by the triggers.
    pub urgent: Arc<triggers::Urgent>,
    /// Status writes the caches do not show yet, by home namespace: a status pass
    /// waits for them.
    pub unseen_statuses: unseen::UnseenWrites,
    /// Native RBAC writes the caches do not show yet, by organization: a reconcile
    /// waits for them.
    pub unseen_access: unseen::UnseenWrites,
    /// Per organization, the uids of the RoleBindings its last plan evaluated for a
    /// present member ([`crate::access::policy::orphaned_bindings`]).
    pub bound:
        std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>,
    /// The operator's `spec.identity` defaults (`--username-prefix`, `--groups-prefix`).
    pub identity: crate::access::identity::IdentityDefaults,
}

impl Context {
    /// Whether organization `org`'s last plan evaluated the RoleBinding with this uid
    /// for a present member ([`Context::bound`]).
    pub fn bound_for_present_member(&self, org: &str, uid: &str) -> bool {
        let bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        bound.get(org).is_some_and(|uids| uids.contains(uid))
    }
}

/// ClusterRoles kube-org was allowed to bind, remembered for [`Bindable::TTL`]: a
/// reconcile of an organization with custom roles then asks the API server nothing.
/// Refusals are not remembered, so a new grant is seen at the next check.
#[derive(Default)]
pub struct Bindable(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl Bindable {
    /// How long a positive answer is trusted (a revoked grant shows as a refused write
    /// meanwhile, retried).
    pub const TTL: Duration = Duration::from_secs(600);

    pub fn is_known(&self, cluster_role: &str) -> bool {
        let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known
            .get(cluster_role)
            .is_some_and(|until| *until > std::time::Instant::now())
    }

    pub fn remember(&self, cluster_role: &str) {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(
            cluster_role.to_string(),
            std::time::Instant::now() + Self::TTL,
        );
    }
}

/// The caches the reconcile computes from (watch-fed; no API reads on the hot path).
#[derive(Clone)]
pub struct Stores {
    pub organizations: Store<Organization>,
    pub memberships: Store<Membership>,
    pub bindings: Store<RoleBinding>,
    pub invitations: Store<Invitation>,
    pub namespaces: Store<Namespace>,
    pub native_bindings: Store<CachedRoleBinding>,
    pub cluster_roles: Store<ClusterRole>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    /// Exclusive-membership claims (Leases in the operator's namespace).
    pub claims: Store<Lease>,
    /// Whether each cache above has had its first complete list.
    pub filled: Vec<Filled>,
    /// Whether the Invitation cache is filled: only the Organization's status (its
    /// count of pending invitations) reads it, so access is not kept waiting for it.
    pub invitations_filled: Filled,
    /// The caches above by key: a reconcile reads its organization's objects there.
    pub index: Indexes,
}

/// The caches of [`Stores`] by key ([`crate::index`]).
#[derive(Clone)]
pub struct Indexes {
    /// By home namespace.
    pub organizations: Arc<Index<Organization>>,
    /// By namespace.
    pub memberships: Arc<Index<Membership>>,
    /// By namespace.
    pub bindings: Arc<Index<RoleBinding>>,
    /// By namespace.
    pub invitations: Arc<Index<Invitation>>,
    /// By organization label.
    pub namespaces: Arc<Index<Namespace>>,
    /// By managing organization and by namespace.
    pub native_bindings: Arc<Index<CachedRoleBinding>>,
    /// By managing organization.
    pub cluster_roles: Arc<Index<ClusterRole>>,
    /// By managing organization.
    pub cluster_role_bindings: Arc<Index<ClusterRoleBinding>>,
}

impl Stores {
    /// What each cache holds (every watch cache of the process: the invitation
    /// controller and the accept endpoint read the shared ones listed here too).
    pub fn costs(&self) -> Vec<crate::metrics::CacheCost> {
        use crate::cache::cost;
        vec![
            cost("organizations", &self.organizations),
            cost("memberships", &self.memberships),
            cost("rolebindings", &self.bindings),
            cost("invitations", &self.invitations),
            cost("namespaces", &self.namespaces),
            cost("native_rolebindings", &self.native_bindings),
            cost("clusterroles", &self.cluster_roles),
            cost("clusterrolebindings", &self.cluster_role_bindings),
            cost("claims", &self.claims),
        ]
    }
}

/// Errors of a reconcile; `metric_label` feeds the error metric.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(error) => crate::metrics::kube_error_reason(error),
            Error::Finalizer(_) => "Finalizer",
        }
    }
}

/// How many independent writes a reconcile sends at once.
pub const WRITE_CONCURRENCY: usize = 16;

/// The organizations whose home namespace is `namespace`.
fn orgs_homed_in(
    orgs: &Index<Organization>,
    namespace: Option<String>,
) -> Vec<ObjectRef<Organization>> {
    let Some(namespace) = namespace else {
        return vec![];
    };
    orgs.get(&Key::Home(namespace))
        .iter()
        .map(|org| ObjectRef::from_obj(org.as_ref()))
        .collect()
}

fn org_of_label<K: Resource>(obj: &K) -> Option<ObjectRef<Organization>> {
    obj.labels()
        .get(LABEL_ORGANIZATION)
        .map(|name| ObjectRef::new(name))
}

/// Runs the access controller until `shutdown` resolves.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    watches: crate::watch_set::WatchSet,
    metrics: Metrics,
    selector: Option<String>,
    concurrency: u16,
    claims_namespace: String,
    identity: crate::access::identity::IdentityDefaults,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let managed = watcher::Config::default().labels(&format!(
        "{LABEL_MANAGED_BY}={MANAGER},{LABEL_ORGANIZATION}"
    ));
    // Shared with the rest of the process: Memberships, Invitations, Namespaces (and
    // Organizations unless this operator handles a shard of them).
    let memberships = watches.memberships.clone();
    let invitations = watches.invitations.clone();
    let namespaces = watches.namespaces.clone();
    let organizations = match &selector {
        None => watches.organizations.clone(),
        Some(selector) => Watched::start_indexed(
            Api::<Organization>::all(client.clone()),
            watcher::Config::default().labels(selector),
            index::by_home,
        ),
    };
    // This controller's own.
    let bindings = Watched::<RoleBinding>::start_indexed(
        Api::all(client.clone()),
        watcher::Config::default().any_semantic(),
        index::by_namespace,
    );
    let native_bindings = Watched::<CachedRoleBinding>::start_indexed(
        Api::all(client.clone()),
        managed
            .clone()
            .page_size(crate::cache::NATIVE_BINDINGS_PAGE),
        index::by_manager_and_namespace,
    );
    let cluster_roles = Watched::<ClusterRole>::start_indexed(
        Api::all(client.clone()),
        managed.clone(),
        index::by_manager,
    );
    let cluster_role_bindings = Watched::<ClusterRoleBinding>::start_indexed(
        Api::all(client.clone()),
        managed,
        index::by_manager,
    );
    let claims = Watched::<Lease>::start(
        Api::namespaced(client.clone(), &claims_namespace),
        watcher::Config::default().labels(&format!(
            "{}={}",
            crate::exclusive::LABEL_CLAIM,
            crate::exclusive::CLAIM_EXCLUSIVE
        )),
    );
    let controller =
        Controller::for_shared_stream(organizations.subscribe(), organizations.store())
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let stores = Stores {
        organizations: organizations.store(),
        memberships: memberships.store(),
        bindings: bindings.store(),
        invitations: invitations.store(),
        namespaces: namespaces.store(),
        native_bindings: native_bindings.store(),
        cluster_roles: cluster_roles.store(),
        cluster_role_bindings: cluster_role_bindings.store(),
        claims: claims.store(),
        filled: vec![
            claims.filled(),
            organizations.filled(),
            memberships.filled(),
            bindings.filled(),
            namespaces.filled(),
            native_bindings.filled(),
            cluster_roles.filled(),
            cluster_role_bindings.filled(),
        ],
        invitations_filled: invitations.filled(),
        index: Indexes {
            organizations: organizations.index(),
            memberships: memberships.index(),
            bindings: bindings.index(),
            invitations: invitations.index(),
            namespaces: namespaces.index(),
            native_bindings: native_bindings.index(),
            cluster_roles: cluster_roles.index(),
            cluster_role_bindings: cluster_role_bindings.index(),
        },
    };
    let urgent = Arc::new(triggers::Urgent::new(organizations.store()));
    let organizations = organizations.index();
    let native_bindings_store = native_bindings.store();
    let context = Arc::new(Context {
        bindable: Bindable::default(),
        claims_namespace,
        statuses: status_queue::StatusQueue::default(),
        access_first: priority::AccessFirst::default(),
        urgent,
        unseen_statuses: Default::default(),
        unseen_access: Default::default(),
        bound: Default::default(),
        identity,
        events: crate::events::Events::new(client.clone(), metrics.clone()),
        client,
        metrics,
        stores,
    });

    let (o1, o2, o3, o4, o5) = (
        organizations.clone(),
        organizations.clone(),
        organizations.clone(),
        organizations.clone(),
        organizations.clone(),
    );
    let members_by_email = context.stores.memberships.clone();
    let natives_by_ns = context.stores.index.native_bindings.clone();
    // Status writes wake nobody; changes that may change access are urgent.
    let membership_changes = triggers::Changes::new(memberships.store(), reconcile::is_refused)
        .adding_own_finalizer(crate::access::names::MEMBERSHIP_FINALIZER);
    let (plans, homes) = (context.clone(), organizations.clone());
    let binding_changes = triggers::Changes::new(
        bindings.store(),
        crate::access::policy::evaluated_for_present_member,
    )
    .status_known_when(move |b: &RoleBinding| {
        let Some(uid) = b.metadata.uid.as_deref() else {
            return false;
        };
        orgs_homed_in(&homes, b.namespace())
            .iter()
            .any(|org| plans.bound_for_present_member(&org.name, uid))
    });
    let (u1, u2, u3, u4) = (
        context.urgent.clone(),
        context.urgent.clone(),
        context.urgent.clone(),
        context.urgent.clone(),
    );
    let controller = controller
        .watches_shared_stream(memberships.subscribe(), move |m: Arc<Membership>| {
            membership_changes.wake(m.as_ref(), &u1, || orgs_homed_in(&o1, m.namespace()))
        })
        .watches_shared_stream(bindings.subscribe(), move |b: Arc<RoleBinding>| {
            binding_changes.wake(b.as_ref(), &u2, || orgs_homed_in(&o2, b.namespace()))
        })
        .watches_shared_stream(invitations.subscribe(), move |i: Arc<Invitation>| {
            orgs_homed_in(&o3, i.namespace())
        })
        .watches_shared_stream(namespaces.subscribe(), move |ns: Arc<Namespace>| {
            // A namespace's current organization, the organization it is home to, and
            // (when it was unlabelled) whoever still has bindings in it.
            let mut orgs: Vec<ObjectRef<Organization>> =
                org_of_label(ns.as_ref()).into_iter().collect();
            orgs.extend(orgs_homed_in(&o4, Some(ns.name_any())));
            orgs.extend(
                natives_by_ns
                    .get(&Key::Namespace(ns.name_any()))
                    .iter()
                    .filter_map(|rb| org_of_label(rb.as_ref())),
            );
            orgs.sort_by(|a, b| a.name.cmp(&b.name));
            orgs.dedup();
            u3.mark(orgs)
        })
        .watches_shared_stream(
            native_bindings.subscribe(),
            move |rb: Arc<CachedRoleBinding>| {
                let orgs: Vec<_> = org_of_label(rb.as_ref()).into_iter().collect();
                // A managed binding deleted (by a tenant) is repaired first.
                if native_bindings_store
                    .get(&ObjectRef::from_obj(rb.as_ref()))
                    .is_none()
                {
                    u4.mark(orgs)
                } else {
                    orgs
                }
            },
        )
        .watches_shared_stream(cluster_roles.subscribe(), |cr: Arc<ClusterRole>| {
            org_of_label(cr.as_ref())
        })
        .watches_shared_stream(claims.subscribe(), move |claim: Arc<Lease>| {
            // Every organization the person is declared in: a claim taken or given
            // back changes who may grant them.
            let Some((email, _)) = crate::exclusive::cached_holder(claim.as_ref()) else {
                return vec![];
            };
            let mut orgs: Vec<ObjectRef<Organization>> = members_by_email
                .state()
                .iter()
                .filter(|m| m.spec.email.normalized() == email)
                .flat_map(|m| orgs_homed_in(&o5, m.namespace()))
                .collect();
            orgs.sort_by(|a, b| a.name.cmp(&b.name));
            orgs.dedup();
            orgs
        })
        .watches_shared_stream(
            cluster_role_bindings.subscribe(),
            |crb: Arc<ClusterRoleBinding>| org_of_label(crb.as_ref()),
        )
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(reconcile, error_policy, context.clone())
        .for_each(|result| async move {
            match result {
                // Triggers for an organization deleted meanwhile: nothing to do.
                Err(kube::runtime::controller::Error::ObjectNotFound(_)) | Ok(_) => {}
                Err(error) => warn!(%error, "reconcile failed"),
            }
        });
    context.metrics.measure_caches_with(Some({
        let stores = context.stores.clone();
        Arc::new(move || stores.costs())
    }));
    let workers: Vec<_> = (0..status_queue::WORKERS)
        .map(|_| tokio::spawn(status_queue::work(context.clone(), stop.clone())))
        .collect();
    let caches_filled =
        || all_filled(&context.stores.filled) && context.stores.invitations_filled.is_filled();
    run_until_stopped(
        "organization",
        controller,
        stop,
        caches_filled,
        RECONCILE_GRACE,
    )
    .await;
    for worker in workers {
        worker.abort();
    }
    context.metrics.measure_caches_with(None);
    info!("access controller stopped");
}

async fn reconcile(org: Arc<Organization>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Every log line of the reconcile names the organization (whatever RUST_LOG does
    // to kube's own span).
    let span = tracing::info_span!("reconcile", organization = %org.name_any());
    ctx.metrics
        .reconcile(CONTROLLER, reconcile::reconcile(&org, &ctx))
        .instrument(span)
        .await
}

/// The `controller` label of this controller's metrics.
pub(crate) const CONTROLLER: &str = "organization";

fn error_policy(org: Arc<Organization>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(organization = %org.name_any(), %error, "reconcile failed; retrying");
    ctx.metrics
        .reconcile_failed(CONTROLLER, error.metric_label());
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::Bindable;

    #[test]
    fn only_cluster_roles_found_bindable_are_remembered() {
        let bindable = Bindable::default();
        assert!(!bindable.is_known("auditor"));
        bindable.remember("auditor");
        assert!(bindable.is_known("auditor"));
        assert!(!bindable.is_known("other"));
    }
}
