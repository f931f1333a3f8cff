//! `kubectl org remove` and `leave`: delete a Membership, then watch kube-org either let
//! the member go (the Membership disappears, their access is revoked and their
//! RoleBindings deleted) or hold it with its finalizer and say why in the Ready
//! condition: the last owner, or an owner listed in `spec.owners`
//! ([`crate::access::leave`]). Leaving is removing one's own
//! Membership: kube-org has no other way out, so it takes the permission to delete it.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use crate::access::identity::reported_user;
use crate::access::leave::LeaveRefusal;
use crate::access::policy::evaluated_for_absent_member;
use crate::api::condition::READY;
use crate::api::{Membership, RoleBinding};

use super::cli::{LeaveArgs, RemoveArgs, WaitArg};
use super::cluster::OrgContext;
use super::error::{PluginError, is_forbidden};
use super::output::emit;

/// How often the Membership is read while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Where a Membership being deleted stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// kube-org released it: the member is gone.
    Gone,
    /// kube-org holds it, for this reason (its own words).
    Refused { reason: String, message: String },
    /// Not decided yet.
    Waiting,
}

/// The reasons kube-org gives a Membership it does not let go ([`LeaveRefusal::reason`]).
fn refusal_reasons() -> [&'static str; 3] {
    let (email, org) = (String::new(), String::new());
    [
        LeaveRefusal::ListedInOwners {
            email: email.clone(),
            org: org.clone(),
        },
        LeaveRefusal::LastOwner {
            email: email.clone(),
            org: org.clone(),
            others: 0,
            resources: 0,
        },
        LeaveRefusal::ResourcesRemain {
            email,
            org,
            resources: 0,
        },
    ]
    .map(|r| r.reason())
}

/// Where the removal stands, from the Membership as read now (`None`: it is gone).
/// Only a leave refusal counts: a Membership refused for another reason before (an
/// email domain, say) is not held for that.
pub fn removal_state(membership: Option<&Membership>) -> Removal {
    let Some(membership) = membership else {
        return Removal::Gone;
    };
    if membership.metadata.deletion_timestamp.is_none() {
        return Removal::Waiting;
    }
    membership
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .filter(|c| c.status == "False" && refusal_reasons().contains(&c.reason.as_str()))
        .map_or(Removal::Waiting, |c| Removal::Refused {
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
}

/// The Memberships of the person the cluster knows as `user`: those kube-org binds to
/// that user name (`status.user`; before kube-org reports it, `spec.user` or the email
/// in lower case).
pub fn memberships_of_user<'a>(memberships: &'a [Membership], user: &str) -> Vec<&'a Membership> {
    memberships
        .iter()
        .filter(|m| reported_user(m) == user)
        .collect()
}

/// `kubectl org remove EMAIL`.
pub async fn remove(ctx: &OrgContext, args: &RemoveArgs) -> Result<(), PluginError> {
    let membership = ctx.find_membership(&args.email).await?;
    let email = membership.spec.email.normalized();
    let name = membership.name_any();
    delete(ctx, &name).await?;
    wait(ctx, &membership, &args.wait, false).await?;
    emit(&format!(
        "membership.kube-org.io/{name} deleted: {email} is no longer a member of {}; their access is revoked\n",
        ctx.name
    ))
}

/// `kubectl org leave`: the signed-in person removes their own Membership.
pub async fn leave(ctx: &OrgContext, args: &LeaveArgs) -> Result<(), PluginError> {
    let user = whoami(ctx).await?;
    let may_not = |what: String, email: &str| PluginError::MayNotLeave {
        user: user.clone(),
        org: ctx.name.clone(),
        what,
        email: email.to_string(),
    };
    let memberships = match ctx.list_memberships().await {
        Err(error) if is_forbidden(&error) => {
            return Err(may_not("read the Memberships".into(), &user));
        }
        other => other?,
    };
    let membership = match memberships_of_user(&memberships, &user).as_slice() {
        [] => {
            return Err(PluginError::NotSignedInMember {
                user,
                org: ctx.name.clone(),
            });
        }
        [one, ..] => (*one).clone(),
    };
    let email = membership.spec.email.normalized();
    let name = membership.name_any();
    match delete(ctx, &name).await {
        Err(error) if is_forbidden(&error) => {
            return Err(may_not(format!("delete your Membership {name}"), &email));
        }
        other => other?,
    }
    wait(ctx, &membership, &args.wait, true).await?;
    emit(&format!(
        "membership.kube-org.io/{name} deleted: you ({email}) left organization {}; your access is revoked\n",
        ctx.name
    ))
}

/// The user name the cluster knows the caller by (what `kubectl auth whoami` shows).
pub async fn whoami(ctx: &OrgContext) -> Result<String, PluginError> {
    let api: Api<SelfSubjectReview> = Api::all(ctx.client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| PluginError::kube("asking the cluster who you are (SelfSubjectReview)", e))?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            PluginError::Usage(
                "the cluster does not know who you are (no user name in the SelfSubjectReview): sign in with a kubeconfig that names a user".into(),
            )
        })
}

async fn delete(ctx: &OrgContext, name: &str) -> Result<(), PluginError> {
    match ctx
        .memberships()
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(ctx.error(&format!("deleting membership {name}"), error)),
    }
}

/// Waits until kube-org lets the member go, says why not, or the time is up. The one
/// leaving may lose the right to read their Membership on the way out: that is kube-org
/// revoking their access, which it does only when they may go.
async fn wait(
    ctx: &OrgContext,
    membership: &Membership,
    wait: &WaitArg,
    leaving: bool,
) -> Result<(), PluginError> {
    let name = membership.name_any();
    let timeout = wait.timeout.to_std().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    // The member's RoleBindings not yet deleted, once the Membership is gone.
    let mut left = None;
    loop {
        let now = match ctx.memberships().get_opt(&name).await {
            Ok(now) => now,
            Err(kube::Error::Api(status)) if leaving && status.code == 403 => None,
            Err(error) => return Err(ctx.error(&format!("reading membership {name}"), error)),
        };
        // Another Membership of the same name (created since) is not the one deleted.
        let now = now.filter(|m| m.uid() == membership.uid());
        let state = match removal_state(now.as_ref()) {
            // Only owners' Memberships carry kube-org's finalizer: anyone else's goes at
            // once, and kube-org revokes the access after. It deletes the member's
            // RoleBindings once it has: until then, not done.
            Removal::Gone if bindings_left(ctx, membership, leaving, &mut left).await? => {
                Removal::Waiting
            }
            state => state,
        };
        match state {
            Removal::Gone => return Ok(()),
            Removal::Refused { message, .. } => {
                return Err(PluginError::LeaveRefused {
                    email: membership.spec.email.normalized(),
                    name,
                    message,
                });
            }
            Removal::Waiting if tokio::time::Instant::now() >= deadline => {
                return Err(PluginError::RemovalPending {
                    name,
                    home: ctx.home.clone(),
                    timeout: wait.timeout.to_string(),
                });
            }
            Removal::Waiting => tokio::time::sleep(POLL).await,
        }
    }
}

/// Whether RoleBindings naming the member of `membership` are still there: listed once
/// (the first time the Membership is found gone), then each read by name (a list of a
/// large organization's RoleBindings every poll would cost more than the wait). One
/// whose status says it was evaluated for an absent member grants nothing and stays
/// (GitOps may apply it again at once, or a namespace admin write one): it is not
/// waited for. The one leaving who may no longer read them has lost their access:
/// kube-org is done.
async fn bindings_left(
    ctx: &OrgContext,
    membership: &Membership,
    leaving: bool,
    left: &mut Option<Vec<String>>,
) -> Result<bool, PluginError> {
    let email = membership.spec.email.normalized();
    let naming =
        |b: &RoleBinding| b.spec.member.normalized() == email && !evaluated_for_absent_member(b);
    let revoked = |error: &kube::Error| {
        leaving && matches!(error, kube::Error::Api(status) if status.code == 403)
    };
    let names = match left.take() {
        None => match ctx.bindings().list(&Default::default()).await {
            Ok(list) => list
                .items
                .iter()
                .filter(|b| naming(b))
                .map(ResourceExt::name_any)
                .collect(),
            Err(error) if revoked(&error) => return Ok(false),
            Err(error) => return Err(ctx.error("listing RoleBindings", error)),
        },
        Some(names) => {
            let mut still = Vec::new();
            for name in names {
                match ctx.bindings().get_opt(&name).await {
                    Ok(Some(b)) if naming(&b) => still.push(name),
                    Ok(_) => {}
                    Err(error) if revoked(&error) => return Ok(false),
                    Err(error) => {
                        return Err(ctx.error(&format!("reading RoleBinding {name}"), error));
                    }
                }
            }
            still
        }
    };
    let waiting = !names.is_empty();
    *left = Some(names);
    Ok(waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(email: &str, user: Option<&str>, status: serde_json::Value) -> Membership {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
            "metadata": {"name": email.replace(['@', '.'], "-"), "namespace": "org-acme"},
            "spec": {"email": email, "user": user},
            "status": status,
        }))
        .expect("a membership")
    }

    fn ready(status: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({"conditions": [{
            "type": "Ready", "status": status, "reason": reason, "message": format!("said {reason}"),
            "lastTransitionTime": "2023-11-14T22:13:20Z",
        }]})
    }

    fn deleting(mut m: Membership) -> Membership {
        m.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        m
    }

    #[test]
    fn a_removal_is_gone_refused_in_kube_orgs_words_or_undecided() {
        assert_eq!(removal_state(None), Removal::Gone);
        let held = deleting(membership(
            "bob@example.com",
            None,
            ready("False", "LastOwner"),
        ));
        assert_eq!(
            removal_state(Some(&held)),
            Removal::Refused {
                reason: "LastOwner".into(),
                message: "said LastOwner".into()
            }
        );
        for reason in ["ResourcesRemain", "ListedInOwners"] {
            let held = deleting(membership("bob@example.com", None, ready("False", reason)));
            assert!(matches!(
                removal_state(Some(&held)),
                Removal::Refused { .. }
            ));
        }
        // Refused for another reason before the deletion: not a refusal to let go.
        let other = deleting(membership(
            "bob@example.com",
            None,
            ready("False", "DomainNotAllowed"),
        ));
        assert_eq!(removal_state(Some(&other)), Removal::Waiting);
        let bound = deleting(membership("bob@example.com", None, ready("True", "Bound")));
        assert_eq!(removal_state(Some(&bound)), Removal::Waiting);
        // Not even marked for deletion yet.
        let fresh = membership("bob@example.com", None, ready("False", "LastOwner"));
        assert_eq!(removal_state(Some(&fresh)), Removal::Waiting);
    }

    #[test]
    fn the_signed_in_user_is_found_by_user_name_or_email() {
        let all = vec![
            membership("Bob@Example.com", None, serde_json::Value::Null),
            membership(
                "carol@example.com",
                Some("oidc:carol"),
                serde_json::Value::Null,
            ),
            membership("dave@example.com", Some("dave"), serde_json::Value::Null),
        ];
        let emails = |user: &str| -> Vec<String> {
            memberships_of_user(&all, user)
                .iter()
                .map(|m| m.spec.email.normalized())
                .collect()
        };
        assert_eq!(emails("bob@example.com"), ["bob@example.com"]);
        // User names are compared as RBAC compares them: exactly.
        assert!(emails("BOB@example.com").is_empty());
        assert_eq!(emails("oidc:carol"), ["carol@example.com"]);
        // spec.user names the person; their email alone is someone else's name.
        assert!(emails("carol@example.com").is_empty());
        assert!(emails("erin@example.com").is_empty());
    }
}
