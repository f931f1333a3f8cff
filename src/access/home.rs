//! Which Organization a home namespace belongs to.
//!
//! Two Organizations may name the same `spec.homeNamespace`; only one of them is its
//! organization, and the other is never consulted (not by the access controller, not by
//! invitations, not at acceptance). The rule, in one place: the organization of a home
//! namespace is the Organization whose [`Organization::home_namespace`] is that namespace
//! **and** whose name is the namespace's `kube-org.io/organization` label (set by kube-org
//! when it creates the namespace, or by a cluster admin who marks an existing namespace
//! for adoption). Anything else has no organization.

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;

use super::names::LABEL_ORGANIZATION;
use super::policy::PolicyRefusal;
use crate::api::Organization;

/// The organization of the home namespace `namespace`, if any: the one Organization
/// that names it as its home and that its `kube-org.io/organization` label names.
pub fn organization_of_home<'a>(
    namespace: &Namespace,
    organizations: impl IntoIterator<Item = &'a Organization>,
) -> Option<&'a Organization> {
    let name = namespace.metadata.name.as_deref()?;
    let marked = namespace.labels().get(LABEL_ORGANIZATION)?;
    organizations
        .into_iter()
        .find(|org| org.metadata.name.as_ref() == Some(marked) && org.home_namespace() == name)
}

/// Why the home namespace `name` has no organization, for a `Ready=False` message of
/// something that lives there. `namespace` is `None` when it does not exist or is not
/// labelled (a cache of labelled namespaces cannot tell the two apart).
pub fn no_organization_message<'a>(
    name: &str,
    namespace: Option<&Namespace>,
    organizations: impl IntoIterator<Item = &'a Organization>,
) -> String {
    let claimants: Vec<String> = organizations
        .into_iter()
        .filter(|org| org.home_namespace() == name)
        .map(ResourceExt::name_any)
        .collect();
    let marked = namespace.and_then(|ns| ns.labels().get(LABEL_ORGANIZATION));
    match (claimants.as_slice(), marked) {
        ([], _) => format!("no Organization has {name} as its home namespace"),
        (orgs, None) if namespace.is_none() => format!(
            "home namespace {name} does not exist or is not marked for organization {} (label {LABEL_ORGANIZATION})",
            orgs.join(" or ")
        ),
        (orgs, None) => format!(
            "home namespace {name} is not marked for organization {} (label {LABEL_ORGANIZATION})",
            orgs.join(" or ")
        ),
        (orgs, Some(marked)) => format!(
            "home namespace {name} is claimed by organization {marked} (label {LABEL_ORGANIZATION}), not by {}",
            orgs.join(" or ")
        ),
    }
}

/// Whether `org` may use the existing namespace `ns` as its home: only when it is
/// marked for it. A namespace marked for another organization is that one's (the
/// second of two Organizations naming one home is refused).
pub fn home_refusal(org: &Organization, ns: &Namespace) -> Option<PolicyRefusal> {
    let home = ns.name_any();
    let name = org.name_any();
    match ns.labels().get(LABEL_ORGANIZATION) {
        Some(owner) if owner == &name => None,
        Some(other) => Some(PolicyRefusal {
            reason: "HomeNamespaceTaken",
            message: format!(
                "home namespace {home} belongs to organization {other}; choose another spec.homeNamespace"
            ),
        }),
        None => Some(PolicyRefusal {
            reason: "HomeNamespaceNotMarked",
            message: format!(
                "namespace {home} already exists and is not marked for this organization; a cluster admin who means it to be the home of {name} marks it with `kubectl label namespace {home} {LABEL_ORGANIZATION}={name}`, or choose another spec.homeNamespace"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(name: &str, home: Option<&str>) -> Organization {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"owners": ["o@example.com"], "homeNamespace": home},
        }))
        .unwrap()
    }

    fn namespace(name: &str, marked: Option<&str>) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        if let Some(org) = marked {
            ns.labels_mut()
                .insert(LABEL_ORGANIZATION.into(), org.into());
        }
        ns
    }

    #[test]
    fn an_organization_uses_an_existing_home_only_when_it_is_marked_for_it() {
        let acme = org("acme", None);
        assert_eq!(
            home_refusal(&acme, &namespace("org-acme", Some("acme"))),
            None
        );
        let unmarked = home_refusal(&acme, &namespace("org-acme", None)).unwrap();
        assert_eq!(unmarked.reason, "HomeNamespaceNotMarked");
        assert!(
            unmarked
                .message
                .contains("kubectl label namespace org-acme kube-org.io/organization=acme"),
            "{}",
            unmarked.message
        );
        let taken = home_refusal(&acme, &namespace("org-acme", Some("other"))).unwrap();
        assert_eq!(taken.reason, "HomeNamespaceTaken");
        assert!(taken.message.contains("other"), "{}", taken.message);
    }

    #[test]
    fn the_marked_organization_naming_the_namespace_is_its_organization() {
        let orgs = [org("a", Some("shared")), org("b", Some("shared"))];
        let found = organization_of_home(&namespace("shared", Some("b")), &orgs);
        assert_eq!(found.map(ResourceExt::name_any).as_deref(), Some("b"));
        let found = organization_of_home(&namespace("shared", Some("a")), &orgs);
        assert_eq!(found.map(ResourceExt::name_any).as_deref(), Some("a"));
        // The default home namespace works the same way.
        let orgs = [org("acme", None)];
        assert!(organization_of_home(&namespace("org-acme", Some("acme")), &orgs).is_some());
    }

    #[test]
    fn unmarked_or_marked_for_another_means_no_organization() {
        let orgs = [org("a", Some("shared")), org("c", Some("elsewhere"))];
        assert!(organization_of_home(&namespace("shared", None), &orgs).is_none());
        // The label names an organization, but not one homed here.
        assert!(organization_of_home(&namespace("shared", Some("c")), &orgs).is_none());
        assert!(organization_of_home(&namespace("shared", Some("ghost")), &orgs).is_none());
        // An organization named by the label but homed elsewhere does not count.
        assert!(organization_of_home(&namespace("org-c", Some("c")), &orgs).is_none());
        assert!(organization_of_home(&namespace("shared", Some("a")), &[]).is_none());
    }

    #[test]
    fn the_message_says_why() {
        let orgs = [org("a", Some("shared")), org("b", Some("shared"))];
        let message = no_organization_message("shared", Some(&namespace("shared", None)), &orgs);
        assert!(
            message.contains("not marked for organization a or b"),
            "{message}"
        );
        let message =
            no_organization_message("shared", Some(&namespace("shared", Some("z"))), &orgs);
        assert!(message.contains("claimed by organization z"), "{message}");
        let message = no_organization_message("other", None, &orgs);
        assert!(message.contains("no Organization has other"), "{message}");
        let message = no_organization_message("shared", None, &orgs);
        assert!(
            message.contains("does not exist or is not marked for organization a or b"),
            "{message}"
        );
    }
}
