//! `--role`, `--scope` and `--access` into the roles an Invitation offers: the short scope
//! syntax of `kubectl org` (the same one status and `kubectl get` print), how the flags
//! pair up, and a check of each role against the organization before anything is created.

use crate::access::roles::{RoleProblem, RoleTable};
use crate::api::fields::is_dns_label;
use crate::api::{Access, RoleAssignment, Scope};

use super::error::PluginError;

/// A `--scope` value that is not `organization`, `TYPE/*` or `TYPE/name1,name2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{reason}; a scope is `organization`, `TYPE/*` or `TYPE/name1,name2`, e.g. deployment/* or deployment/prod,staging"
)]
pub struct ScopeSyntaxError {
    reason: String,
}

fn syntax(reason: String) -> ScopeSyntaxError {
    ScopeSyntaxError { reason }
}

/// Parses the short scope syntax: `organization`, `TYPE/*`, `TYPE/name1,name2`.
pub fn parse_scope(value: &str) -> Result<Scope, ScopeSyntaxError> {
    let value = value.trim();
    if value == "organization" {
        return Ok(Scope::organization());
    }
    let Some((kind, names)) = value.split_once('/') else {
        return Err(syntax(format!("{value:?} names no resource type")));
    };
    if !is_dns_label(kind) {
        return Err(syntax(format!(
            "resource type {kind:?} is not a lower-case DNS label"
        )));
    }
    if names == "*" {
        return Ok(Scope::all_of(kind));
    }
    let names: Vec<&str> = names.split(',').map(str::trim).collect();
    if let Some(bad) = names.iter().find(|name| !is_dns_label(name)) {
        return Err(syntax(format!(
            "resource {bad:?} is not a namespace name (a lower-case DNS label)"
        )));
    }
    Ok(Scope::named(kind, &names))
}

/// Spreads the values of a repeatable flag over `count` roles: none (each role gets
/// `None`), one (every role gets it) or exactly one per role, in order.
fn spread<T: Clone>(values: &[T], count: usize, flag: &str) -> Result<Vec<Option<T>>, PluginError> {
    match values.len() {
        0 => Ok(vec![None; count]),
        1 => Ok(vec![Some(values[0].clone()); count]),
        n if n == count => Ok(values.iter().cloned().map(Some).collect()),
        n => Err(PluginError::Usage(format!(
            "{n} {flag} values for {count} --role values: give {flag} once for every role, or once per --role in the same order"
        ))),
    }
}

/// The roles to offer, from the flags, each resolved against the organization's roles
/// ([`RoleTable::resolve`], as kube-org will resolve them). A role without `--scope`
/// applies to the organization when it is an organization-level role; a resource role
/// needs a scope.
pub fn assignments(
    roles: &[String],
    scopes: &[Scope],
    access: &[Access],
    table: &RoleTable<'_>,
    org: &str,
) -> Result<Vec<RoleAssignment>, PluginError> {
    let scopes = spread(scopes, roles.len(), "--scope")?;
    let access = spread(access, roles.len(), "--access")?;
    roles
        .iter()
        .zip(scopes)
        .zip(access)
        .map(|((role, scope), access)| {
            let unscoped = scope.is_none();
            let assignment = RoleAssignment {
                role: role.clone(),
                scope: scope.unwrap_or_else(Scope::organization),
                access: access.unwrap_or_default(),
                expires_after: None,
            };
            match table.resolve(&assignment) {
                Ok(_) => Ok(assignment),
                Err(RoleProblem::NeedsResourceScope(_)) if unscoped => Err(PluginError::Usage(
                    format!(
                        "role {role} applies inside resources: say where with --scope TYPE/* or --scope TYPE/name1,name2"
                    ),
                )),
                Err(problem) => Err(PluginError::Role(problem, org.to_string())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Organization;

    fn org(spec: serde_json::Value) -> Organization {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
            "metadata": {"name": "acme"}, "spec": spec,
        }))
        .expect("an organization")
    }

    fn acme() -> Organization {
        org(serde_json::json!({
            "owners": ["alice@example.com"],
            "resourceTypes": ["deployment", "security"],
            "roles": [{"name": "auditor", "clusterRole": "view"}],
        }))
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn parses_the_three_shapes() {
        assert_eq!(parse_scope("organization"), Ok(Scope::organization()));
        assert_eq!(parse_scope("deployment/*"), Ok(Scope::all_of("deployment")));
        assert_eq!(
            parse_scope("deployment/prod, staging"),
            Ok(Scope::named("deployment", &["prod", "staging"]))
        );
        assert_eq!(
            parse_scope("security/soc").unwrap().summary(),
            "security/soc"
        );
    }

    #[test]
    fn refuses_what_admission_would_refuse() {
        for bad in [
            "prod",
            "org",
            "Deployment/*",
            "deployment/",
            "deployment/a,,b",
            "deployment/Prod",
            "/x",
            "deployment/a/b",
        ] {
            let error = parse_scope(bad).expect_err(bad);
            assert!(
                error.to_string().contains("TYPE/name1,name2"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn one_scope_serves_every_role_and_several_pair_in_order() {
        let org = acme();
        let table = RoleTable::new(&org);
        let one = assignments(
            &strings(&["viewer", "auditor"]),
            &[Scope::all_of("deployment")],
            &[],
            &table,
            "acme",
        )
        .expect("valid");
        assert!(one.iter().all(|a| a.scope == Scope::all_of("deployment")));
        assert!(one.iter().all(|a| a.access == Access::Full));

        let paired = assignments(
            &strings(&["tier-1-analyst", "billing-admin"]),
            &[Scope::named("security", &["soc"]), Scope::organization()],
            &[Access::Console, Access::Full],
            &table,
            "acme",
        )
        .expect("valid");
        assert_eq!(paired[0].role, "tier-1-analyst");
        assert_eq!(paired[0].scope, Scope::named("security", &["soc"]));
        assert_eq!(paired[0].access, Access::Console);
        assert_eq!(paired[1].scope, Scope::organization());
        assert_eq!(paired[1].access, Access::Full);
    }

    #[test]
    fn organization_roles_default_to_the_organization_scope() {
        let org = acme();
        let table = RoleTable::new(&org);
        let roles =
            assignments(&strings(&["billing-admin"]), &[], &[], &table, "acme").expect("valid");
        assert_eq!(roles[0].scope, Scope::organization());
        let error = assignments(&strings(&["viewer"]), &[], &[], &table, "acme")
            .expect_err("a resource role needs a scope");
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--scope TYPE/*"), "{error}");
    }

    #[test]
    fn counts_that_do_not_pair_are_usage_errors() {
        let org = acme();
        let table = RoleTable::new(&org);
        let error = assignments(
            &strings(&["viewer", "admin", "auditor"]),
            &[Scope::all_of("deployment"), Scope::all_of("deployment")],
            &[],
            &table,
            "acme",
        )
        .expect_err("2 scopes for 3 roles");
        assert_eq!(error.exit_code(), 2);
        assert!(
            error
                .to_string()
                .starts_with("2 --scope values for 3 --role values")
        );
    }

    #[test]
    fn roles_are_checked_against_the_organization() {
        let org = acme();
        let table = RoleTable::new(&org);
        let check = |role: &str, scope: Scope| {
            assignments(&strings(&[role]), &[scope], &[], &table, "acme")
                .expect_err(role)
                .to_string()
        };
        assert!(
            check("no-such-role", Scope::all_of("deployment"))
                .contains("kubectl org roles --org acme")
        );
        assert!(check("viewer", Scope::all_of("elasticsearch")).contains("spec.resourceTypes"));
        assert!(check("billing-admin", Scope::all_of("deployment")).contains("organization-level"));
        assert!(check("viewer", Scope::organization()).contains("applies inside resources"));
        assert!(check("developer", Scope::all_of("deployment")).contains("does not apply"));
    }

    #[test]
    fn an_organizations_own_viewer_is_refused_in_a_resource_scope() {
        let org = crate::access::roles::fixtures::organization_viewer();
        let table = RoleTable::new(&org);
        let error = assignments(
            &strings(&["viewer"]),
            &[Scope::all_of("deployment")],
            &[],
            &table,
            "acme",
        )
        .expect_err("the catalog viewer is replaced");
        assert!(
            matches!(&error, PluginError::Role(RoleProblem::NeedsOrganizationScope(role), _) if role == "viewer"),
            "{error}"
        );
        // Without --scope it is the organization's role, on the organization.
        let roles = assignments(&strings(&["viewer"]), &[], &[], &table, "acme").expect("valid");
        assert_eq!(roles[0].scope, Scope::organization());
    }
}
