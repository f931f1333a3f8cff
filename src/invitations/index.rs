//! The accept endpoint's caches, fed by watches on every replica (followers serve the
//! endpoint too): Invitations indexed by their token's lookup id, and Memberships (for
//! exclusive membership across organizations). A request reads them; it never LISTs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::token;
use crate::api::{Invitation, Membership};
use crate::cache::Filled;
use crate::watch_set::WatchSet;
use k8s_openapi::api::core::v1::Namespace;

/// How long a request waits for the caches' first complete list before giving up.
const FILL_WAIT: Duration = Duration::from_secs(10);
/// How long a lookup that misses waits for the watch to deliver a just-written link.
const MISS_WAIT: Duration = Duration::from_millis(500);
const MISS_STEP: Duration = Duration::from_millis(100);

/// The caches are not filled yet (the process just started or cannot watch).
#[derive(Debug, thiserror::Error)]
#[error("the invitation caches are not filled yet")]
pub struct NotReady;

/// Lookup id -> Invitation, and Invitation -> its lookup id (to drop the old id when a
/// link is replaced, used or expires).
#[derive(Default)]
struct Index {
    by_lookup: HashMap<String, ObjectRef<Invitation>>,
    by_object: HashMap<ObjectRef<Invitation>, String>,
}

impl Index {
    fn apply(&mut self, invitation: &Invitation) {
        let object = ObjectRef::from_obj(invitation);
        self.remove(&object);
        if let Some(id) = token::current_lookup_id(invitation) {
            self.by_lookup.insert(id.to_string(), object.clone());
            self.by_object.insert(object, id.to_string());
        }
    }

    fn remove(&mut self, object: &ObjectRef<Invitation>) {
        if let Some(id) = self.by_object.remove(object) {
            self.by_lookup.remove(&id);
        }
    }
}

/// The caches the accept endpoint answers from.
#[derive(Clone)]
pub struct AcceptCache {
    invitations: Store<Invitation>,
    index: Arc<Mutex<Index>>,
    memberships: Store<Membership>,
    /// Labelled namespaces (what an accepted person can reach, for the answer).
    namespaces: Store<Namespace>,
    filled: Vec<Filled>,
}

impl AcceptCache {
    /// Indexes the process's shared Invitation watch (a task on the current runtime).
    pub fn start(watches: &WatchSet) -> AcceptCache {
        let invitations = watches.invitations.store();
        let index = Arc::new(Mutex::new(Index::default()));
        let fed = index.clone();
        let store = invitations.clone();
        tokio::spawn(watches.invitations.subscribe().for_each(move |touched| {
            // The cache is updated before its subscribers hear of an object: what the
            // cache holds now is the truth (an object it lacks was deleted).
            let object = ObjectRef::from_obj(touched.as_ref());
            let mut index = fed.lock().unwrap_or_else(|p| p.into_inner());
            match store.get(&object) {
                Some(current) => index.apply(&current),
                None => index.remove(&object),
            }
            futures::future::ready(())
        }));
        AcceptCache {
            invitations,
            index,
            memberships: watches.memberships.store(),
            namespaces: watches.namespaces.store(),
            filled: vec![watches.invitations.filled(), watches.memberships.filled()],
        }
    }

    async fn ready(&self) -> Result<(), NotReady> {
        tokio::time::timeout(FILL_WAIT, crate::cache::wait_all_filled(&self.filled))
            .await
            .map_err(|_| NotReady)
    }

    fn lookup(&self, token: &str) -> Option<Arc<Invitation>> {
        let id = token::lookup_id(token);
        let object = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_lookup
            .get(&id)
            .cloned()?;
        let invitation = self.invitations.get(&object)?;
        let record = invitation.status.as_ref()?.token.as_ref()?;
        (record.lookup_id == id && token::matches(record, token)).then_some(invitation)
    }

    /// The cached Invitation whose current link `token` is (verified in constant time).
    /// A miss waits a moment for the watch, in case the link was issued just now.
    pub async fn find(&self, token: &str) -> Result<Option<Arc<Invitation>>, NotReady> {
        self.ready().await?;
        let deadline = tokio::time::Instant::now() + MISS_WAIT;
        loop {
            if let Some(found) = self.lookup(token) {
                return Ok(Some(found));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(MISS_STEP).await;
        }
    }

    /// The cached namespaces labelled with `organization`.
    pub fn namespaces_of(&self, organization: &str) -> Vec<Arc<Namespace>> {
        self.namespaces.state_filter(|ns| {
            ns.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::access::names::LABEL_ORGANIZATION))
                .is_some_and(|o| o == organization)
        })
    }

    /// The cached Memberships for `email` (lower case), in every namespace.
    pub fn memberships_of(&self, email: &str) -> Vec<Arc<Membership>> {
        self.memberships
            .state_filter(|m| m.spec.email.normalized() == email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invitations::fixtures;

    #[test]
    fn the_index_follows_the_current_link() {
        let mut invitation = fixtures::invitation("dave", "dave@example.com", vec![]);
        let first = fixtures::token();
        invitation.status = Some(crate::api::InvitationStatus {
            token: Some(first.clone()),
            ..Default::default()
        });
        let mut index = Index::default();
        index.apply(&invitation);
        assert!(index.by_lookup.contains_key(&first.lookup_id));

        let second = fixtures::token();
        invitation.status.as_mut().unwrap().token = Some(second.clone());
        index.apply(&invitation);
        assert!(!index.by_lookup.contains_key(&first.lookup_id), "resent");
        assert!(index.by_lookup.contains_key(&second.lookup_id));

        invitation.status.as_mut().unwrap().token = None;
        index.apply(&invitation);
        assert!(
            index.by_lookup.is_empty() && index.by_object.is_empty(),
            "used"
        );

        invitation.status.as_mut().unwrap().token = Some(first.clone());
        index.apply(&invitation);
        index.remove(&ObjectRef::from_obj(&invitation));
        assert!(index.by_lookup.is_empty(), "deleted");
    }
}
