//! The RBAC questions `kubectl org why` asks, as plain functions: what a question is
//! (verb, resource, namespace), how `TYPE[.GROUP][/NAME]` is resolved against the API
//! server's discovery (as `kubectl auth can-i` does), and whether a rule of a Role or
//! ClusterRole allows a request (Kubernetes' own RBAC matching).

use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::core::discovery::v2::APIGroupDiscovery;
use serde::Serialize;

/// One request, as a SubjectAccessReview's resource attributes describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `None`: every namespace (or a cluster-scoped resource).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Request {
    /// The resource as RBAC rules name it: `pods`, `pods/log`.
    pub fn combined_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }

    /// `list pods in namespace acme-prod`, `get deployments.apps/web (scale) in every
    /// namespace`.
    pub fn describe(&self) -> String {
        let mut what = qualified(&self.resource, &self.group);
        if let Some(name) = &self.name {
            what = format!("{what}/{name}");
        }
        if let Some(sub) = &self.subresource {
            what = format!("{what} (subresource {sub})");
        }
        let place = match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "cluster-wide".to_string(),
        };
        format!("{} {what} {place}", self.verb)
    }
}

/// `pods`, `deployments.apps`.
fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// `TYPE[.GROUP][/NAME]` as typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceArg {
    pub type_: String,
    pub group: Option<String>,
    pub name: Option<String>,
}

/// Splits `deployments.apps/web` into type, group and name.
pub fn parse_resource(arg: &str) -> Result<ResourceArg, String> {
    let (what, name) = match arg.split_once('/') {
        Some((what, name)) if !name.is_empty() && !name.contains('/') => {
            (what, Some(name.to_string()))
        }
        Some(_) => {
            return Err(format!(
                "{arg:?} is not TYPE[.GROUP][/NAME]; a subresource goes in --subresource, e.g. `get pods --subresource log`"
            ));
        }
        None => (arg, None),
    };
    let (type_, group) = match what.split_once('.') {
        Some((type_, group)) => (type_, Some(group.to_string())),
        None => (what, None),
    };
    if type_.is_empty() || group.as_deref() == Some("") {
        return Err(format!(
            "{arg:?} is not TYPE[.GROUP][/NAME], e.g. pods or deployments.apps/web"
        ));
    }
    Ok(ResourceArg {
        type_: type_.to_lowercase(),
        group,
        name,
    })
}

/// The group and plural resource `arg` means, from aggregated discovery (the core
/// group first, then the others in the order the API server lists them): the plural,
/// singular or a short name, restricted to `arg`'s group when it names one. `None` when
/// the cluster serves nothing by that name.
pub fn resolve(arg: &ResourceArg, discovered: &[APIGroupDiscovery]) -> Option<(String, String)> {
    let mut groups: Vec<&APIGroupDiscovery> = discovered.iter().collect();
    groups.sort_by_key(|g| !group_name(g).is_empty());
    let candidates = groups
        .into_iter()
        .filter(|g| {
            arg.group
                .as_deref()
                .is_none_or(|wanted| wanted == group_name(g))
        })
        .flat_map(|g| {
            g.versions
                .iter()
                .flat_map(|v| &v.resources)
                .map(move |r| (group_name(g), r))
        });
    let mut by_alias = None;
    for (group, resource) in candidates {
        let Some(plural) = resource.resource.as_deref() else {
            continue;
        };
        if plural == arg.type_ {
            return Some((group.to_string(), plural.to_string()));
        }
        let alias = resource.singular_resource.as_deref() == Some(arg.type_.as_str())
            || resource.short_names.contains(&arg.type_);
        if alias && by_alias.is_none() {
            by_alias = Some((group.to_string(), plural.to_string()));
        }
    }
    by_alias
}

fn group_name(group: &APIGroupDiscovery) -> &str {
    group
        .metadata
        .as_ref()
        .and_then(|m| m.name.as_deref())
        .unwrap_or("")
}

/// Whether `rule` allows `request`, as Kubernetes RBAC decides it: the verb, the group,
/// the resource (`*`, `resource/subresource` or `*/subresource`) and, when the rule
/// names resources, the object's name. When it does, the part of the rule that allows
/// it, for a person: `get,list,watch pods`, `* *.*`, `get configmaps named settings`.
pub fn allowing(rule: &PolicyRule, request: &Request) -> Option<String> {
    let combined = request.combined_resource();
    let verb_ok = rule.verbs.iter().any(|v| v == "*" || *v == request.verb);
    let group = rule
        .api_groups
        .iter()
        .flatten()
        .find(|g| *g == "*" || **g == request.group)?;
    let resource = rule.resources.iter().flatten().find(|r| {
        *r == "*"
            || **r == combined
            || request
                .subresource
                .as_ref()
                .is_some_and(|sub| r.strip_prefix("*/") == Some(sub.as_str()))
    })?;
    let names = rule.resource_names.as_deref().unwrap_or_default();
    let name_ok = names.is_empty()
        || request
            .name
            .as_ref()
            .is_some_and(|name| names.contains(name));
    if !(verb_ok && name_ok) {
        return None;
    }
    let mut text = format!("{} {}", rule.verbs.join(","), qualified(resource, group));
    if !names.is_empty() {
        text.push_str(&format!(" named {}", names.join(",")));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(verb: &str, group: &str, resource: &str) -> Request {
        Request {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: None,
            name: None,
            namespace: Some("acme-prod".into()),
        }
    }

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(strings(groups)),
            resources: Some(strings(resources)),
            verbs: strings(verbs),
            ..Default::default()
        }
    }

    fn discovery() -> Vec<APIGroupDiscovery> {
        serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
                {"resource": "deployments", "singularResource": "deployment", "shortNames": ["deploy"],
                 "scope": "Namespaced", "verbs": ["get"]},
            ]}]},
            {"metadata": {"name": "example.com"}, "versions": [{"version": "v1", "resources": [
                {"resource": "pods", "singularResource": "pod", "scope": "Namespaced", "verbs": ["get"]},
            ]}]},
            {"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                {"resource": "pods", "singularResource": "pod", "shortNames": ["po"],
                 "scope": "Namespaced", "verbs": ["get"]},
            ]}]},
        ]))
        .expect("discovery")
    }

    #[test]
    fn resource_arguments_read_like_kubectl_auth_can_i() {
        assert_eq!(
            parse_resource("deployments.apps/web"),
            Ok(ResourceArg {
                type_: "deployments".into(),
                group: Some("apps".into()),
                name: Some("web".into()),
            })
        );
        assert_eq!(
            parse_resource("Pods").map(|r| (r.type_, r.group, r.name)),
            Ok(("pods".into(), None, None))
        );
        for bad in ["", "pods/", "pods/a/log", ".apps", "pods."] {
            assert!(parse_resource(bad).is_err(), "{bad}");
        }
        assert!(
            parse_resource("pods/a/log")
                .unwrap_err()
                .contains("--subresource")
        );
    }

    #[test]
    fn names_resolve_like_kubectl_core_first() {
        let found = |arg: &str| resolve(&parse_resource(arg).expect("parses"), &discovery());
        let pods = Some((String::new(), "pods".to_string()));
        assert_eq!(found("pods"), pods);
        assert_eq!(found("pod"), pods);
        assert_eq!(found("po"), pods);
        assert_eq!(
            found("pods.example.com"),
            Some(("example.com".into(), "pods".into()))
        );
        let deployments = Some(("apps".to_string(), "deployments".to_string()));
        assert_eq!(found("deploy"), deployments);
        assert_eq!(found("deployment.apps"), deployments);
        assert_eq!(found("deployments.batch"), None);
        assert_eq!(found("widgets"), None);
    }

    fn rule_allows(rule: &PolicyRule, request: &Request) -> bool {
        allowing(rule, request).is_some()
    }

    #[test]
    fn rules_match_as_rbac_matches_them() {
        let pods = request("list", "", "pods");
        assert!(rule_allows(
            &rule(&[""], &["pods"], &["get", "list"]),
            &pods
        ));
        assert!(rule_allows(&rule(&["*"], &["*"], &["*"]), &pods));
        assert!(!rule_allows(&rule(&["apps"], &["pods"], &["list"]), &pods));
        assert!(!rule_allows(&rule(&[""], &["pods"], &["get"]), &pods));
        assert!(!rule_allows(&rule(&[""], &["pods/log"], &["list"]), &pods));
        assert!(!rule_allows(&rule(&[], &["pods"], &["list"]), &pods));

        let log = Request {
            subresource: Some("log".into()),
            ..request("get", "", "pods")
        };
        assert!(rule_allows(&rule(&[""], &["pods/log"], &["get"]), &log));
        assert!(rule_allows(&rule(&[""], &["*/log"], &["get"]), &log));
        assert!(!rule_allows(&rule(&[""], &["pods"], &["get"]), &log));
        assert!(!rule_allows(&rule(&[""], &["*/exec"], &["get"]), &log));

        let mut named = rule(&[""], &["configmaps"], &["get"]);
        named.resource_names = Some(vec!["settings".into()]);
        let get = request("get", "", "configmaps");
        assert!(
            !rule_allows(&named, &get),
            "a name-limited rule needs a name"
        );
        let settings = Request {
            name: Some("settings".into()),
            ..get.clone()
        };
        assert!(rule_allows(&named, &settings));
        let other = Request {
            name: Some("other".into()),
            ..get
        };
        assert!(!rule_allows(&named, &other));
    }

    #[test]
    fn requests_and_rules_read_as_words() {
        assert_eq!(
            request("list", "", "pods").describe(),
            "list pods in namespace acme-prod"
        );
        let scale = Request {
            name: Some("web".into()),
            subresource: Some("scale".into()),
            namespace: None,
            ..request("update", "apps", "deployments")
        };
        assert_eq!(
            scale.describe(),
            "update deployments.apps/web (subresource scale) cluster-wide"
        );
        assert_eq!(scale.combined_resource(), "deployments/scale");
        // Only the part that allows the request.
        let view = rule(
            &["", "apps"],
            &["configmaps", "pods", "pods/log"],
            &["get", "list"],
        );
        assert_eq!(
            allowing(&view, &request("list", "", "pods")).as_deref(),
            Some("get,list pods")
        );
        assert_eq!(
            allowing(&rule(&["*"], &["*"], &["*"]), &scale).as_deref(),
            Some("* *.*")
        );
        let mut named = rule(&[""], &["configmaps"], &["get"]);
        named.resource_names = Some(vec!["a".into(), "b".into()]);
        let a = Request {
            name: Some("a".into()),
            ..request("get", "", "configmaps")
        };
        assert_eq!(
            allowing(&named, &a).as_deref(),
            Some("get configmaps named a,b")
        );
    }
}
