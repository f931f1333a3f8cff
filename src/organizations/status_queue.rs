//! Statuses are written after access, on a path of their own.
//!
//! A reconcile decides the statuses of an organization's RoleBindings and Memberships
//! (a [`StatusPlan`]) and hands them here instead of writing them itself: at 1,000
//! members that is 2,000 writes, and while a reconcile writes them, the next reconcile
//! of the same organization — the one that repairs a deleted binding or revokes a
//! removed member — would wait. Status workers write the latest plan of each
//! organization; a newer plan replaces one not yet written, and one organization is
//! written by one worker at a time. Each write compares with the cache as it is then,
//! so a plan overtaken by events writes only what still differs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use tokio::sync::Notify;

use crate::access::DesiredAccess;
use crate::access::leave::LeaveRefusal;
use crate::api::Organization;

/// The statuses one reconcile decided for one organization.
pub struct StatusPlan {
    pub org: Arc<Organization>,
    /// Shared: a reconcile hands over the RoleBindings' statuses before its Membership
    /// finalizers, and the same plan with the Memberships' after.
    pub desired: Arc<DesiredAccess>,
    pub refusals: BTreeMap<String, LeaveRefusal>,
    /// Whether Membership statuses are written too: not while the reconcile is still
    /// adding Membership finalizers (patches guarded by resourceVersion, which a status
    /// write would make fail and repeat). RoleBinding statuses are written anyway.
    pub memberships: bool,
}

#[derive(Default)]
struct Queue {
    /// The latest plan not yet taken, per organization.
    pending: BTreeMap<String, Arc<StatusPlan>>,
    /// Organizations with a pending plan, oldest first.
    order: VecDeque<String>,
    /// Organizations a worker is writing now.
    writing: BTreeSet<String>,
}

/// The latest status plan per organization, for the workers.
#[derive(Default)]
pub struct StatusQueue {
    queue: Mutex<Queue>,
    ready: Notify,
}

impl StatusQueue {
    /// Hands over `plan`, replacing a pending plan of the same organization.
    pub fn push(&self, plan: StatusPlan) {
        self.offer(Arc::new(plan), true);
    }

    fn offer(&self, plan: Arc<StatusPlan>, replace: bool) {
        let name = plan.org.name_any();
        let mut queue = self.lock();
        if let Some(pending) = queue.pending.get_mut(&name) {
            if replace {
                *pending = plan;
            }
            return;
        }
        queue.pending.insert(name.clone(), plan);
        if !queue.writing.contains(&name) {
            queue.order.push_back(name);
            drop(queue);
            self.ready.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next plan to write, of an organization no other worker is writing.
    fn take(&self) -> Option<Arc<StatusPlan>> {
        let mut queue = self.lock();
        let name = queue.order.pop_front()?;
        let plan = queue.pending.remove(&name)?;
        queue.writing.insert(name);
        Some(plan)
    }

    /// Marks `name` written; a plan that arrived meanwhile is queued.
    fn done(&self, name: &str) {
        let mut queue = self.lock();
        queue.writing.remove(name);
        if queue.pending.contains_key(name) {
            queue.order.push_back(name.to_string());
            drop(queue);
            self.ready.notify_one();
        }
    }

    async fn next(&self) -> Arc<StatusPlan> {
        loop {
            let notified = self.ready.notified();
            if let Some(plan) = self.take() {
                return plan;
            }
            notified.await;
        }
    }
}

/// How many organizations have their statuses written at once.
pub const WORKERS: usize = 2;
/// How soon a plan whose writes failed is tried again (unless a newer one came).
const RETRY: Duration = Duration::from_secs(2);

/// Runs one status worker until `stop` turns true.
pub async fn work(ctx: Arc<super::Context>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let plan = tokio::select! {
            plan = ctx.statuses.next() => plan,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let name = plan.org.name_any();
        if let Err(error) = super::status::write_statuses(&plan, &ctx).await {
            tracing::warn!(organization = %name, %error, "writing statuses failed; retrying");
            let retry = ctx.clone();
            let failed = plan.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETRY).await;
                retry.statuses.offer(failed, false);
            });
        }
        ctx.statuses.done(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(org: &str, members: usize) -> StatusPlan {
        let org: Organization = serde_json::from_value(serde_json::json!({
            "metadata": {"name": org}, "spec": {"owners": ["a@example.com"]},
        }))
        .unwrap();
        let mut desired = crate::access::desired::nothing_for(&org);
        for i in 0..members {
            desired.members.insert(format!("m{i}"), Default::default());
        }
        StatusPlan {
            org: Arc::new(org),
            desired: Arc::new(desired),
            refusals: BTreeMap::new(),
            memberships: true,
        }
    }

    #[test]
    fn the_latest_plan_of_an_organization_wins_and_one_worker_writes_it() {
        let queue = StatusQueue::default();
        queue.push(plan("a", 1));
        queue.push(plan("b", 1));
        queue.push(plan("a", 2));
        let first = queue.take().unwrap();
        assert_eq!(first.org.name_any(), "a");
        assert_eq!(
            first.desired.members.len(),
            2,
            "the newer plan replaced the older"
        );
        // A plan for "a" while "a" is being written waits for it.
        queue.push(plan("a", 3));
        let second = queue.take().unwrap();
        assert_eq!(second.org.name_any(), "b");
        assert!(queue.take().is_none(), "a is being written");
        queue.done("a");
        let third = queue.take().unwrap();
        assert_eq!(third.desired.members.len(), 3);
        // A retry does not replace a newer plan.
        queue.push(plan("c", 5));
        queue.offer(Arc::new(plan("c", 4)), false);
        assert_eq!(queue.take().unwrap().desired.members.len(), 5);
    }
}
