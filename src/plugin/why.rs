//! `kubectl org why EMAIL VERB RESOURCE -n NS`: the cluster's own answer (a
//! SubjectAccessReview for the member's user name) and the chain that produced it: the
//! kube-org object, the native binding kube-org made from it, and the rule of its role
//! that allows the request. What each kube-org object means to grant comes from kube-org's
//! own computation ([`desired_access`]), one object at a time; what is in force comes from
//! the cluster's bindings. The matching and the chain are plain functions; [`why`] only
//! fetches and prints.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding as NativeRoleBinding, RoleRef,
    Subject,
};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::access::desired::{AccessInput, desired_access};
use crate::access::identity::reported_user;
use crate::access::names::{LABEL_MANAGED_BY, LABEL_ORGANIZATION, MANAGER};
use crate::api::{Membership, Organization, RoleBinding};

use super::bindings::BindingView;
use super::cli::WhyArgs;
use super::cluster::OrgContext;
use super::error::PluginError;
use super::output::{Table, emit, serialize};
use super::rbac::{Request, allowing, parse_resource, resolve};

/// A kube-org object that grants something.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum Source {
    /// A kube-org RoleBinding (`rolebindings.kube-org.io`).
    RoleBinding(BindingView),
    /// The Membership itself: every member sees the organization and its resources.
    #[serde(rename_all = "camelCase")]
    Membership { name: String, organization: String },
}

impl Source {
    /// `rolebinding/bob-viewer`, `membership/bob`.
    pub fn object(&self) -> String {
        match self {
            Source::RoleBinding(b) => format!("rolebinding/{}", b.name),
            Source::Membership { name, .. } => format!("membership/{name}"),
        }
    }

    /// What it grants: `viewer on deployment/*`, `member of acme`.
    pub fn grants(&self) -> String {
        match self {
            Source::RoleBinding(b) => b.label(),
            Source::Membership { organization, .. } => format!("member of {organization}"),
        }
    }
}

/// A native binding kube-org makes: a RoleBinding in a namespace, or a
/// ClusterRoleBinding (no namespace).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub binding: String,
    pub cluster_role: String,
}

/// What one kube-org object means the member to hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    pub source: Source,
    pub grants: Vec<Grant>,
}

/// What each of the member's kube-org objects means to grant, as kube-org computes it
/// ([`desired_access`] for the member and that one object; `namespaces` are the
/// organization's labelled resource namespaces that matter to the question). The
/// Membership's own intent, the organization's visibility, comes first.
pub fn intents(
    org: &Organization,
    membership: &Membership,
    bindings: &[RoleBinding],
    namespaces: &[Namespace],
) -> Vec<Intent> {
    intents_at(
        org,
        membership,
        bindings,
        namespaces,
        k8s_openapi::jiff::Timestamp::now(),
    )
}

/// [`intents`] at `now` (an expired binding intends nothing).
pub fn intents_at(
    org: &Organization,
    membership: &Membership,
    bindings: &[RoleBinding],
    namespaces: &[Namespace],
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<Intent> {
    let email = membership.spec.email.normalized();
    let (unbindable, refused) = (BTreeSet::new(), BTreeMap::new());
    let compute = |bindings: Vec<&RoleBinding>| {
        desired_access(&AccessInput {
            org,
            memberships: vec![membership],
            bindings,
            namespaces: namespaces.iter().collect(),
            unbindable: &unbindable,
            refused: &refused,
            kept: &Default::default(),
            // Only which bindings, not the subjects' names, matter here.
            identity: &Default::default(),
            now,
        })
    };
    let visible = compute(vec![]).cluster_role_binding;
    let mut intents = vec![Intent {
        source: Source::Membership {
            name: membership.name_any(),
            organization: org.name_any(),
        },
        grants: vec![Grant {
            namespace: None,
            binding: visible.name_any(),
            cluster_role: visible.role_ref.name,
        }],
    }];
    let mut mine: Vec<&RoleBinding> = bindings
        .iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none() && b.spec.member.normalized() == email)
        .collect();
    mine.sort_by_key(|b| b.name_any());
    for binding in mine {
        let grants = compute(vec![binding])
            .role_bindings
            .into_iter()
            // The organization's auto-join groups are not this member's binding.
            .filter(|rb| !rb.users.is_empty())
            .map(|rb| Grant {
                namespace: rb.metadata.namespace,
                binding: rb.metadata.name.unwrap_or_default(),
                cluster_role: rb.cluster_role,
            })
            .collect();
        intents.push(Intent {
            source: Source::RoleBinding(BindingView::new(binding)),
            grants,
        });
    }
    intents
}

/// A native binding, as printed: `RoleBinding acme-prod/kube-org:acme:view`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl BindingRef {
    fn text(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    fn is(&self, grant: &Grant) -> bool {
        self.namespace == grant.namespace && self.name == grant.binding
    }
}

/// One native binding that names the user, and what it does for the request.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub binding: BindingRef,
    /// `ClusterRole view`, `Role reader`.
    pub role: String,
    /// The part of the role that allows the request; `None`: it does not (or the role
    /// was not found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The kube-org objects this binding is made from (empty: not from this
    /// organization's kube-org objects).
    pub kube_org: Vec<Source>,
    /// The organization whose kube-org made the binding, if kube-org made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_for: Option<String>,
}

/// What kube-org means to grant in the place asked about that no binding in force
/// gives the user (yet).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub source: Source,
    pub grant: Grant,
}

/// What the cluster holds that bears on the question.
pub struct Evidence<'a> {
    pub user: &'a str,
    pub org: &'a str,
    pub request: &'a Request,
    /// The native RoleBindings of the namespace asked about (none when cluster-wide).
    pub role_bindings: &'a [NativeRoleBinding],
    pub cluster_role_bindings: &'a [ClusterRoleBinding],
    pub cluster_roles: &'a [ClusterRole],
    /// The Roles of the namespace asked about.
    pub roles: &'a [Role],
    pub intents: &'a [Intent],
}

/// The chain: every binding in force that names the user, and what kube-org means to
/// grant there that no binding gives yet.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub links: Vec<Link>,
    pub pending: Vec<Pending>,
}

impl Explanation {
    /// The links whose role allows the request.
    pub fn granting(&self) -> impl Iterator<Item = &Link> {
        self.links.iter().filter(|l| l.rule.is_some())
    }

    /// Whether a kube-org object of the organization grants the request.
    pub fn from_kube_org(&self) -> bool {
        self.granting().any(|l| !l.kube_org.is_empty())
    }
}

fn names_user(subjects: &Option<Vec<Subject>>, user: &str) -> bool {
    subjects
        .iter()
        .flatten()
        .any(|s| s.kind == "User" && s.name == user)
}

/// The organization kube-org made an object for, from its labels.
fn managed_for(labels: &BTreeMap<String, String>) -> Option<String> {
    (labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGER))
        .then(|| labels.get(LABEL_ORGANIZATION).cloned())
        .flatten()
}

/// Builds the chain from what the cluster holds.
pub fn explain(evidence: &Evidence<'_>) -> Explanation {
    let rules = |role_ref: &RoleRef| -> Option<&Option<Vec<PolicyRule>>> {
        match role_ref.kind.as_str() {
            "ClusterRole" => evidence
                .cluster_roles
                .iter()
                .find(|r| r.name_any() == role_ref.name)
                .map(|r| &r.rules),
            _ => evidence
                .roles
                .iter()
                .find(|r| r.name_any() == role_ref.name)
                .map(|r| &r.rules),
        }
    };
    let link = |binding: BindingRef, role_ref: &RoleRef, labels: &BTreeMap<String, String>| {
        let rule = rules(role_ref)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|rule| allowing(rule, evidence.request));
        let managed_for = managed_for(labels);
        let kube_org = if managed_for.as_deref() == Some(evidence.org) {
            evidence
                .intents
                .iter()
                .filter(|i| {
                    i.grants
                        .iter()
                        .any(|g| binding.is(g) && g.cluster_role == role_ref.name)
                })
                .map(|i| i.source.clone())
                .collect()
        } else {
            vec![]
        };
        Link {
            role: format!("{} {}", role_ref.kind, role_ref.name),
            binding,
            rule,
            kube_org,
            managed_for,
        }
    };
    let namespaced = evidence.request.namespace.is_some();
    let mut links: Vec<Link> = evidence
        .role_bindings
        .iter()
        .filter(|_| namespaced)
        .filter(|rb| names_user(&rb.subjects, evidence.user))
        .map(|rb| {
            let binding = BindingRef {
                kind: "RoleBinding".into(),
                namespace: rb.namespace(),
                name: rb.name_any(),
            };
            link(binding, &rb.role_ref, rb.labels())
        })
        .chain(
            evidence
                .cluster_role_bindings
                .iter()
                .filter(|crb| names_user(&crb.subjects, evidence.user))
                .map(|crb| {
                    let binding = BindingRef {
                        kind: "ClusterRoleBinding".into(),
                        namespace: None,
                        name: crb.name_any(),
                    };
                    link(binding, &crb.role_ref, crb.labels())
                }),
        )
        .collect();
    links.sort_by(|a, b| a.binding.cmp(&b.binding));
    let pending = evidence
        .intents
        .iter()
        .flat_map(|i| i.grants.iter().map(move |g| (i, g)))
        .filter(|(_, g)| g.namespace.is_none() || g.namespace == evidence.request.namespace)
        .filter(|(_, g)| !links.iter().any(|l| l.binding.is(g)))
        .map(|(i, g)| Pending {
            source: i.source.clone(),
            grant: g.clone(),
        })
        .collect();
    Explanation { links, pending }
}

/// What `-o yaml|json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhyView {
    pub email: String,
    pub user: String,
    pub organization: String,
    pub request: Request,
    /// The cluster's answer.
    pub allowed: bool,
    /// The cluster's reason, when it gives one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Whether a kube-org object of the organization grants it.
    pub granted_by_kube_org: bool,
    #[serde(flatten)]
    pub explanation: Explanation,
}

fn chain_table<'a>(links: impl Iterator<Item = &'a Link>) -> Table {
    let mut table = Table::new(&[
        "KUBE-ORG OBJECT",
        "GRANTS",
        "NATIVE BINDING",
        "ROLE",
        "RULE",
    ]);
    for link in links {
        let rule = link.rule.clone().unwrap_or_else(|| "-".to_string());
        let sources: Vec<(String, String)> = if link.kube_org.is_empty() {
            let made_by = match &link.managed_for {
                Some(org) => format!("(kube-org of {org})"),
                None => "-".to_string(),
            };
            vec![(made_by, "-".to_string())]
        } else {
            link.kube_org
                .iter()
                .map(|s| (s.object(), s.grants()))
                .collect()
        };
        for (object, grants) in sources {
            table.row(vec![
                object,
                grants,
                link.binding.text(),
                link.role.clone(),
                rule.clone(),
            ]);
        }
    }
    table
}

/// The answer and the chain, for a person.
pub fn render(view: &WhyView) -> String {
    let who = if view.user == view.email {
        view.email.clone()
    } else {
        format!("{} (user {})", view.email, view.user)
    };
    let what = view.request.describe();
    let mut text = if view.allowed {
        format!("yes: {who} may {what}\n")
    } else {
        format!("no: {who} may not {what}\n")
    };
    if !view.reason.is_empty() {
        text.push_str(&format!("the cluster says: {}\n", view.reason));
    }
    let explanation = &view.explanation;
    let granting: Vec<&Link> = explanation.granting().collect();
    if view.granted_by_kube_org {
        text.push_str(&format!(
            "granted through kube-org organization {}:\n\n",
            view.organization
        ));
        // Every binding that allows it: kube-org's, and any other beside it.
        text.push_str(&chain_table(granting.into_iter()).render());
    } else if !granting.is_empty() {
        text.push_str("no kube-org object grants this; it comes from:\n\n");
        text.push_str(&chain_table(granting.into_iter()).render());
    } else if view.allowed {
        text.push_str(&format!(
            "no kube-org object grants this, and no RoleBinding or ClusterRoleBinding that names user {} does: the cluster allows it another way (a group, another authorizer)\n",
            view.user
        ));
    } else {
        text.push_str("no kube-org object grants this.\n");
        let held: Vec<&Link> = explanation
            .links
            .iter()
            .filter(|l| view.request.namespace.is_none() || l.binding.namespace.is_some())
            .collect();
        if !held.is_empty() {
            text.push_str(&format!(
                "what {who} holds there, none of which allows it:\n\n"
            ));
            text.push_str(&chain_table(held.into_iter()).render());
        }
    }
    for pending in &explanation.pending {
        let place = match &pending.grant.namespace {
            Some(ns) => format!("RoleBinding {ns}/{}", pending.grant.binding),
            None => format!("ClusterRoleBinding {}", pending.grant.binding),
        };
        text.push_str(&format!(
            "\nnote: {} ({}) means to bind ClusterRole {} through {place}, which does not name user {} yet: is the operator running?\n",
            pending.source.object(),
            pending.source.grants(),
            pending.grant.cluster_role,
            view.user
        ));
    }
    text
}

/// Asks the cluster whether `user` may do `request`.
async fn review(
    ctx: &OrgContext,
    user: &str,
    request: &Request,
) -> Result<SubjectAccessReviewStatus, PluginError> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(request.verb.clone()),
                group: Some(request.group.clone()),
                resource: Some(request.resource.clone()),
                subresource: request.subresource.clone(),
                name: request.name.clone(),
                namespace: request.namespace.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(ctx.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            PluginError::kube(
                format!("asking the cluster (SubjectAccessReview) for {user}"),
                e,
            )
        })
        .map(|r| r.status.unwrap_or_default())
}

/// The request `args` describe, its resource resolved by the API server's discovery.
async fn request(ctx: &OrgContext, args: &WhyArgs) -> Result<Request, PluginError> {
    let arg = parse_resource(&args.resource).map_err(PluginError::Usage)?;
    let discovery_error = |e| PluginError::kube("reading the API server's discovery", e);
    let mut discovered = ctx
        .client
        .list_core_api_versions_aggregated()
        .await
        .map_err(discovery_error)?
        .items;
    discovered.extend(
        ctx.client
            .list_api_groups_aggregated()
            .await
            .map_err(discovery_error)?
            .items,
    );
    let (group, resource) = resolve(&arg, &discovered).ok_or_else(|| {
        PluginError::Usage(format!(
            "the cluster serves no resource type {:?}: list them with `kubectl api-resources`",
            args.resource
        ))
    })?;
    Ok(Request {
        verb: args.verb.clone(),
        group,
        resource,
        subresource: args.subresource.clone(),
        name: arg.name,
        namespace: args.namespace.clone(),
    })
}

async fn list<K>(api: Api<K>, what: &str) -> Result<Vec<K>, PluginError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| PluginError::kube(format!("listing {what}"), e))
}

/// The roles the user's bindings refer to (one read each).
async fn referenced_roles(
    ctx: &OrgContext,
    refs: &BTreeSet<(String, String)>,
    namespace: Option<&str>,
) -> Result<(Vec<ClusterRole>, Vec<Role>), PluginError> {
    let (mut cluster_roles, mut roles) = (Vec::new(), Vec::new());
    for (kind, name) in refs {
        let read = |e| PluginError::kube(format!("reading {kind} {name}"), e);
        match (kind.as_str(), namespace) {
            ("ClusterRole", _) => cluster_roles.extend(
                Api::<ClusterRole>::all(ctx.client.clone())
                    .get_opt(name)
                    .await
                    .map_err(read)?,
            ),
            (_, Some(ns)) => roles.extend(
                Api::<Role>::namespaced(ctx.client.clone(), ns)
                    .get_opt(name)
                    .await
                    .map_err(read)?,
            ),
            _ => {}
        }
    }
    Ok((cluster_roles, roles))
}

/// The namespace asked about, if it is one of the organization's resources.
async fn resource_namespace(
    ctx: &OrgContext,
    namespace: Option<&str>,
) -> Result<Vec<Namespace>, PluginError> {
    let Some(name) = namespace else {
        return Ok(vec![]);
    };
    let found = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(name)
        .await
        .map_err(|e| PluginError::kube(format!("reading namespace {name}"), e))?;
    Ok(found
        .filter(|ns| ns.labels().get(LABEL_ORGANIZATION) == Some(&ctx.name))
        .into_iter()
        .collect())
}

/// `kubectl org why`.
pub async fn why(ctx: &OrgContext, args: &WhyArgs) -> Result<(), PluginError> {
    let membership = ctx.find_membership(&args.email).await?;
    let user = reported_user(&membership);
    let request = request(ctx, args).await?;
    let answer = review(ctx, &user, &request).await?;

    let role_bindings = match &request.namespace {
        Some(ns) => {
            list(
                Api::<NativeRoleBinding>::namespaced(ctx.client.clone(), ns),
                &format!("the RoleBindings of namespace {ns}"),
            )
            .await?
        }
        None => vec![],
    };
    let cluster_role_bindings = list(
        Api::<ClusterRoleBinding>::all(ctx.client.clone()),
        "the ClusterRoleBindings",
    )
    .await?;
    let refs: BTreeSet<(String, String)> = role_bindings
        .iter()
        .filter(|rb| names_user(&rb.subjects, &user))
        .map(|rb| &rb.role_ref)
        .chain(
            cluster_role_bindings
                .iter()
                .filter(|crb| names_user(&crb.subjects, &user))
                .map(|crb| &crb.role_ref),
        )
        .map(|r| (r.kind.clone(), r.name.clone()))
        .collect();
    let (cluster_roles, roles) = referenced_roles(ctx, &refs, request.namespace.as_deref()).await?;
    let namespaces = resource_namespace(ctx, request.namespace.as_deref()).await?;
    let intents = intents(
        &ctx.organization,
        &membership,
        &ctx.list_bindings().await?,
        &namespaces,
    );
    let explanation = explain(&Evidence {
        user: &user,
        org: &ctx.name,
        request: &request,
        role_bindings: &role_bindings,
        cluster_role_bindings: &cluster_role_bindings,
        cluster_roles: &cluster_roles,
        roles: &roles,
        intents: &intents,
    });
    let view = WhyView {
        email: membership.spec.email.normalized(),
        user,
        organization: ctx.name.clone(),
        request,
        allowed: answer.allowed,
        reason: [answer.reason, answer.evaluation_error]
            .into_iter()
            .flatten()
            .filter(|r| !r.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        granted_by_kube_org: answer.allowed && explanation.from_kube_org(),
        explanation,
    };
    match args.output.format {
        Some(format) => emit(&serialize(format, &view)?)?,
        None => emit(&render(&view))?,
    }
    if view.allowed {
        Ok(())
    } else {
        Err(PluginError::AnsweredNo)
    }
}

#[cfg(test)]
#[path = "why_tests.rs"]
mod tests;
