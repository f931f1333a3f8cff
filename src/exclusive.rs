//! Exclusive membership (`spec.membership.exclusive`), serialised per person across
//! processes and replicas with a claim object.
//!
//! Checking "is this person a member elsewhere?" and then creating a Membership is a
//! race: two organizations accepting the same person at the same moment both see no
//! other membership. The claim closes it. It is a `coordination.k8s.io/v1` Lease in the
//! operator's namespace, named from a hash of the lower-case email
//! ([`claim_name`]), created only if absent (the API server lets exactly one create
//! win) and replaced only with a resourceVersion precondition. Its `holderIdentity` is the
//! organization the person belongs to exclusively; it has an owner reference to that
//! Organization, so it goes when the Organization goes.
//!
//! The rule ([`decide`]):
//! - joining an exclusive organization takes the claim; refused when another
//!   organization holds it, or the person is a live member of any other organization;
//! - joining a non-exclusive organization takes nothing; refused while another
//!   organization holds the claim, or the person is a live member of an exclusive one.
//!
//! A claim whose holder has no Membership of the person for [`ABANDONED_AFTER`] (a join
//! that failed half-way and was never released) no longer blocks anyone.
//!
//! Use: call [`claim`] before creating a Membership. If it answered
//! [`Claimed::Taken`] and the Membership is then not created, call [`undo`]: it deletes
//! the claim only if nobody used it since (every [`claim`] that finds it held renews it),
//! so a concurrent join of the same person into the same organization keeps it. Call
//! [`release`] when a person stops being a member of the holding organization.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::access::names::{LABEL_MANAGED_BY, MANAGER};
use crate::api::Organization;
use crate::api::fields::normalize_email;

/// Label on claims: what they claim.
pub const LABEL_CLAIM: &str = "kube-org.io/claim";
/// [`LABEL_CLAIM`] value of exclusive-membership claims.
pub const CLAIM_EXCLUSIVE: &str = "exclusive-membership";
/// Annotation on a claim: the (lower-case) email it is for.
pub const ANNOTATION_EMAIL: &str = "kube-org.io/email";
/// How long a claim whose holder has no Membership of the person still counts.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(10 * 60);
/// How often a lost create/replace race is read again before giving up.
const ATTEMPTS: usize = 5;

/// The name of a person's claim: `kube-org-member-` and 20 hex digits of a SHA-256 of
/// the lower-case email.
pub fn claim_name(email: &str) -> String {
    let digest = Sha256::digest(normalize_email(email).as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("kube-org-member-{hex}")
}

/// A claim as it is now: who holds it and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub organization: String,
    pub since: Option<Timestamp>,
}

/// An organization the person is a live member of (a Membership not being deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberOf {
    pub organization: String,
    pub exclusive: bool,
}

/// What joining `organization` may do about the claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Take the claim (create it, or replace an abandoned one), then join.
    Claim,
    /// The joining organization holds it already: join.
    AlreadyHeld,
    /// A non-exclusive organization with nothing in the way: join, claim nothing.
    NotNeeded,
    /// The person cannot join; the message says why and what to do.
    Refuse(String),
}

/// The pure rule. `member_of` may include the joining organization (it is ignored).
pub fn decide(
    email: &str,
    claim: Option<&Holder>,
    joining: &str,
    exclusive: bool,
    member_of: &[MemberOf],
    now: Timestamp,
) -> Decision {
    let others: Vec<&MemberOf> = member_of
        .iter()
        .filter(|m| m.organization != joining)
        .collect();
    let abandoned = |holder: &Holder| {
        let member = member_of
            .iter()
            .any(|m| m.organization == holder.organization);
        let old = holder.since.is_none_or(|since| {
            since
                .saturating_add(SignedDuration::try_from(ABANDONED_AFTER).unwrap_or_default())
                .is_ok_and(|until| until <= now)
        });
        !member && old
    };
    let held_by_other = claim.filter(|h| h.organization != joining && !abandoned(h));
    let leave = |org: &str| format!("leave {org} first, then try again");
    if exclusive {
        if let Some(other) = others.first() {
            return Decision::Refuse(format!(
                "{email} is a member of organization {}, and organization {joining} admits only people who belong to no other organization; {}",
                other.organization,
                leave(&other.organization)
            ));
        }
    } else if let Some(other) = others.iter().find(|m| m.exclusive) {
        return Decision::Refuse(format!(
            "{email} is a member of organization {}, which does not let its members join another organization; {}",
            other.organization,
            leave(&other.organization)
        ));
    }
    if let Some(holder) = held_by_other {
        return Decision::Refuse(format!(
            "{email} belongs to (or is joining) organization {}, which has exclusive membership; {}",
            holder.organization,
            leave(&holder.organization)
        ));
    }
    match claim {
        Some(holder) if holder.organization == joining => Decision::AlreadyHeld,
        _ if exclusive => Decision::Claim,
        _ => Decision::NotNeeded,
    }
}

/// What the Organization reconciler does about one declared member's claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberClaim {
    /// The member grants (the organization holds the claim, or needs none).
    Granted,
    /// Take the claim first ([`claim`], with these organizations the person is in).
    Take,
    /// The Membership grants nothing; the message says why.
    Refused(String),
}

/// The rule for a Membership that already exists (declared directly, or created by an
/// acceptance): the holder of the claim keeps its member whatever appeared since; a
/// claim held by another organization refuses the member; an exclusive organization
/// without the claim takes it as [`decide`] allows. So of two organizations declaring
/// one person, the one holding the claim is the one where the person is a member.
pub fn member_claim(
    email: &str,
    claim: Option<&Holder>,
    organization: &str,
    exclusive: bool,
    member_of: &[MemberOf],
    now: Timestamp,
) -> MemberClaim {
    if claim.is_some_and(|h| h.organization == organization) {
        return MemberClaim::Granted;
    }
    match decide(email, claim, organization, exclusive, member_of, now) {
        Decision::Claim => MemberClaim::Take,
        Decision::AlreadyHeld | Decision::NotNeeded => MemberClaim::Granted,
        Decision::Refuse(message) => MemberClaim::Refused(message),
    }
}

/// Reads a claim's holder and email from a cached Lease.
pub fn cached_holder(lease: &Lease) -> Option<(String, Holder)> {
    let email = lease.annotations().get(ANNOTATION_EMAIL)?.clone();
    Some((email, holder(lease)?))
}

/// What [`claim`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This call took the claim: [`undo`] it if the Membership is not created.
    Taken(Taken),
    /// The organization held it already (the claim is renewed: an [`undo`] of an
    /// earlier take no longer deletes it).
    AlreadyHeld,
    /// Nothing to claim (a non-exclusive organization with nothing in the way).
    NotNeeded,
    /// The person cannot join now; the message says why.
    Refused(String),
}

/// The claim exactly as one [`claim`] call left it, for [`undo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    name: String,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn holder(lease: &Lease) -> Option<Holder> {
    let spec = lease.spec.as_ref()?;
    Some(Holder {
        organization: spec.holder_identity.clone()?,
        // Last used: a claim renewed recently is not abandoned.
        since: spec
            .renew_time
            .as_ref()
            .or(spec.acquire_time.as_ref())
            .map(|t| t.0),
    })
}

fn claim_object(namespace: &str, email: &str, org: &Organization, now: Timestamp) -> Lease {
    let owner = OwnerReference {
        api_version: Organization::api_version(&()).to_string(),
        kind: Organization::kind(&()).to_string(),
        name: org.name_any(),
        uid: org.uid().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    };
    Lease {
        metadata: ObjectMeta {
            name: Some(claim_name(email)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
                (LABEL_CLAIM.to_string(), CLAIM_EXCLUSIVE.to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_EMAIL.to_string(),
                normalize_email(email),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(org.name_any()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

fn conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Claims `email` for `org` in `namespace` (the operator's namespace) as [`decide`]
/// says, given the organizations the person is a live member of. Races with other
/// processes are decided by the API server: exactly one create wins.
pub async fn claim(
    client: &Client,
    namespace: &str,
    email: &str,
    org: &Organization,
    member_of: &[MemberOf],
) -> Result<Claimed, kube::Error> {
    let email = normalize_email(email);
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let name = claim_name(&email);
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let current = api.get_opt(&name).await?;
        let now = Timestamp::now();
        let decision = decide(
            &email,
            current.as_ref().and_then(holder).as_ref(),
            &org.name_any(),
            org.spec.membership.exclusive,
            member_of,
            now,
        );
        let result = match decision {
            Decision::Refuse(message) => return Ok(Claimed::Refused(message)),
            Decision::NotNeeded => return Ok(Claimed::NotNeeded),
            Decision::AlreadyHeld => {
                // Renew it (as it was read), so that an undo of the take that created
                // it, racing with this join, leaves it in place.
                let mut renewed = current.clone().unwrap_or_default();
                if let Some(spec) = renewed.spec.as_mut() {
                    spec.renew_time = Some(MicroTime(now));
                }
                match api.replace(&name, &PostParams::default(), &renewed).await {
                    Ok(_) => return Ok(Claimed::AlreadyHeld),
                    Err(error) => Err(error),
                }
            }
            Decision::Claim => {
                let mut wanted = claim_object(namespace, &email, org, now);
                match current {
                    None => api.create(&PostParams::default(), &wanted).await,
                    Some(current) => {
                        // An abandoned claim: replace it only as it was read.
                        wanted.metadata.resource_version = current.resource_version();
                        api.replace(&name, &PostParams::default(), &wanted).await
                    }
                }
            }
        };
        match result {
            Ok(lease) => {
                return Ok(Claimed::Taken(Taken {
                    name: name.clone(),
                    uid: lease.uid(),
                    resource_version: lease.resource_version(),
                }));
            }
            Err(error) if conflict(&error) => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Releases `email`'s claim if `org` holds it (deleted with a uid and resourceVersion
/// precondition, so a claim taken over meanwhile stays). Returns whether it was deleted;
/// a missing claim, one held by another organization or a lost race is not an error.
pub async fn release(
    client: &Client,
    namespace: &str,
    email: &str,
    org: &Organization,
) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let name = claim_name(email);
    let Some(current) = api.get_opt(&name).await? else {
        return Ok(false);
    };
    if holder(&current).map(|h| h.organization) != Some(org.name_any()) {
        return Ok(false);
    }
    delete_unchanged(&api, &name, current.uid(), current.resource_version()).await
}

/// Gives back a claim this process took ([`Claimed::Taken`]) for a join that did not
/// happen: deleted only if unchanged since (not renewed by another join, not taken
/// over). Returns whether it was deleted.
pub async fn undo(client: &Client, namespace: &str, taken: &Taken) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    delete_unchanged(
        &api,
        &taken.name,
        taken.uid.clone(),
        taken.resource_version.clone(),
    )
    .await
}

async fn delete_unchanged(
    api: &Api<Lease>,
    name: &str,
    uid: Option<String>,
    resource_version: Option<String>,
) -> Result<bool, kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "dave@example.com";

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn held(org: &str, since: i64) -> Holder {
        Holder {
            organization: org.into(),
            since: Some(at(since)),
        }
    }

    fn member(org: &str, exclusive: bool) -> MemberOf {
        MemberOf {
            organization: org.into(),
            exclusive,
        }
    }

    fn refused(decision: Decision) -> String {
        match decision {
            Decision::Refuse(message) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_holder_keeps_its_member_and_others_are_refused() {
        let now = at(1_000);
        let x = held("x", 900);
        // x holds the claim: its member stays, even once y declares the person too.
        assert_eq!(
            member_claim("p@e.com", Some(&x), "x", true, &[member("y", false)], now),
            MemberClaim::Granted
        );
        // y, exclusive or not, is refused.
        for exclusive in [true, false] {
            assert!(matches!(
                member_claim(
                    "p@e.com",
                    Some(&x),
                    "y",
                    exclusive,
                    &[member("x", true)],
                    now
                ),
                MemberClaim::Refused(_)
            ));
        }
        // Nobody holds it: an exclusive organization takes it, an open one needs none.
        assert_eq!(
            member_claim("p@e.com", None, "x", true, &[], now),
            MemberClaim::Take
        );
        assert_eq!(
            member_claim("p@e.com", None, "y", false, &[], now),
            MemberClaim::Granted
        );
    }

    #[test]
    fn claim_names_are_stable_valid_and_case_insensitive() {
        let name = claim_name("Dave@Example.com");
        assert_eq!(name, claim_name(EMAIL));
        assert_eq!(name.len(), "kube-org-member-".len() + 20);
        assert_ne!(name, claim_name("eve@example.com"));
    }

    #[test]
    fn joining_an_exclusive_organization_takes_a_free_claim() {
        assert_eq!(decide(EMAIL, None, "a", true, &[], at(0)), Decision::Claim);
        let mine = held("a", 0);
        assert_eq!(
            decide(EMAIL, Some(&mine), "a", true, &[member("a", true)], at(0)),
            Decision::AlreadyHeld
        );
    }

    #[test]
    fn a_claim_held_by_another_organization_refuses_everyone_else() {
        let theirs = held("b", 100);
        let message = refused(decide(EMAIL, Some(&theirs), "a", true, &[], at(101)));
        assert!(message.contains("organization b"), "{message}");
        assert!(message.contains("leave b first"), "{message}");
        // ... also a non-exclusive organization.
        let message = refused(decide(EMAIL, Some(&theirs), "a", false, &[], at(101)));
        assert!(message.contains("exclusive membership"), "{message}");
    }

    #[test]
    fn exclusive_organizations_refuse_members_of_any_other() {
        let message = refused(decide(EMAIL, None, "a", true, &[member("b", false)], at(0)));
        assert!(
            message.contains("admits only people who belong to no other organization"),
            "{message}"
        );
        // Being a member of the joining organization itself is no obstacle.
        assert_eq!(
            decide(EMAIL, None, "a", true, &[member("a", true)], at(0)),
            Decision::Claim
        );
    }

    #[test]
    fn non_exclusive_organizations_refuse_members_of_exclusive_ones_only() {
        assert_eq!(
            decide(EMAIL, None, "a", false, &[member("b", false)], at(0)),
            Decision::NotNeeded
        );
        let message = refused(decide(EMAIL, None, "a", false, &[member("b", true)], at(0)));
        assert!(
            message.contains("does not let its members join"),
            "{message}"
        );
    }

    #[test]
    fn an_abandoned_claim_blocks_no_one() {
        let stale = held("b", 0);
        let later = at(ABANDONED_AFTER.as_secs() as i64);
        assert_eq!(
            decide(EMAIL, Some(&stale), "a", true, &[], later),
            Decision::Claim
        );
        assert_eq!(
            decide(EMAIL, Some(&stale), "a", false, &[], later),
            Decision::NotNeeded
        );
        // Not yet abandoned: the holder may still be creating the Membership.
        assert!(matches!(
            decide(EMAIL, Some(&stale), "a", true, &[], at(1)),
            Decision::Refuse(_)
        ));
        // A holder the person is a member of never goes stale.
        assert!(matches!(
            decide(EMAIL, Some(&stale), "a", false, &[member("b", true)], later),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn the_claim_object_is_labelled_owned_and_held() {
        let mut org: Organization = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "acme", "uid": "u-1"},
            "spec": {"owners": ["o@example.com"], "membership": {"exclusive": true}},
        }))
        .unwrap();
        org.metadata.uid = Some("u-1".into());
        let lease = claim_object("kube-org-system", "Dave@example.com", &org, at(5));
        assert_eq!(lease.name_any(), claim_name(EMAIL));
        assert_eq!(
            lease.labels().get(LABEL_CLAIM).map(String::as_str),
            Some(CLAIM_EXCLUSIVE)
        );
        assert_eq!(
            lease.labels().get(LABEL_MANAGED_BY).map(String::as_str),
            Some(MANAGER)
        );
        assert_eq!(
            lease
                .annotations()
                .get(ANNOTATION_EMAIL)
                .map(String::as_str),
            Some(EMAIL)
        );
        assert_eq!(lease.owner_references()[0].uid, "u-1");
        assert_eq!(holder(&lease), Some(held("acme", 5)));
    }
}
