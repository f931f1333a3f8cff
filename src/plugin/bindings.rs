//! `kubectl org grant` and `revoke`: a member's kube-org RoleBindings. `grant` checks the
//! role as `invite` does ([`assignments`]) and names the binding as accepting an
//! invitation names it ([`binding_name`]), so the same role in the same scope is one
//! object whichever way it came.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde::Serialize;

use crate::access::names::LABEL_OWNER;
use crate::access::roles::RoleTable;
use crate::api::fields::{Rfc3339, normalize_email};
use crate::api::{Access, RoleAssignment, RoleBinding, RoleBindingSpec, Scope};
use crate::invitations::join::binding_name;

use super::cli::{GrantArgs, MemberRoleArgs};
use super::cluster::{FIELD_MANAGER, OrgContext};
use super::error::PluginError;
use super::output::{Format, emit, joined, role_label, serialize};
use super::scope::assignments;

/// One kube-org RoleBinding as `-o yaml|json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingView {
    pub name: String,
    pub email: String,
    pub role: String,
    pub scope: String,
    pub access: Access,
    /// When the role ends (`spec.expiresAt`), for a time-bound one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl BindingView {
    pub fn new(binding: &RoleBinding) -> Self {
        BindingView {
            name: binding.name_any(),
            email: binding.spec.member.normalized(),
            role: binding.spec.role.clone(),
            scope: binding.spec.scope.summary(),
            access: binding.spec.access,
            expires_at: binding.spec.expires_at.as_ref().map(|t| t.0.clone()),
        }
    }

    /// `viewer on deployment/*`, with ` (console)` for console access.
    pub fn label(&self) -> String {
        role_label(&self.role, &self.scope, self.access)
    }

    /// [`BindingView::label`] with ` until TIME` for a time-bound role.
    pub fn label_with_end(&self) -> String {
        match &self.expires_at {
            Some(at) => format!("{} until {at}", self.label()),
            None => self.label(),
        }
    }
}

/// What `grant -o yaml|json` prints: the binding, whether this run created it, and
/// whether it moved the end of one that existed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    #[serde(flatten)]
    pub binding: BindingView,
    pub created: bool,
    pub extended: bool,
}

/// When a grant asked for with `--for`/`--until` ends, in whole seconds; refused when
/// that is not after `now`.
pub fn requested_end(
    for_: Option<&crate::api::GoDuration>,
    until: Option<&Rfc3339>,
    now: Timestamp,
) -> Result<Option<Timestamp>, PluginError> {
    let end = match (for_, until) {
        (Some(duration), _) => {
            let std = duration
                .to_std()
                .map_err(|e| PluginError::Usage(format!("--for: {e}")))?;
            let signed = k8s_openapi::jiff::SignedDuration::try_from(std)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .ok_or_else(|| PluginError::Usage(format!("--for {duration}: too long")))?;
            Timestamp::from_second(signed.as_second()).unwrap_or(signed)
        }
        (None, Some(until)) => until
            .parse()
            .map_err(|e| PluginError::Usage(format!("--until: {e}")))?,
        (None, None) => return Ok(None),
    };
    if end <= now {
        let flag = if for_.is_some() { "--for" } else { "--until" };
        return Err(PluginError::Usage(format!(
            "{flag}: {end} is not in the future (now: {}); give a later time, or --for DURATION",
            Timestamp::from_second(now.as_second()).unwrap_or(now)
        )));
    }
    Ok(Some(end))
}

/// What granting a role the member holds already does to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndChange {
    /// Nothing: it lasts at least as long as asked.
    Keep,
    /// Its `spec.expiresAt` becomes this (`None`: the role stops expiring).
    Set(Option<Timestamp>),
}

/// Grant never shortens a role: a role without end stays so, one ending earlier than
/// asked (or expired, or with an end that does not parse) is moved to the end asked.
pub fn end_change(existing: Option<&Rfc3339>, wanted: Option<Timestamp>) -> EndChange {
    let Some(existing) = existing else {
        return EndChange::Keep;
    };
    match (existing.parse(), wanted) {
        (Ok(held), Some(wanted)) if held >= wanted => EndChange::Keep,
        _ => EndChange::Set(wanted),
    }
}

/// The RoleBinding that gives `email` the role `wanted`, in namespace `home`.
pub fn build_binding(email: &str, home: &str, wanted: &RoleAssignment) -> RoleBinding {
    let email = normalize_email(email);
    let mut binding = RoleBinding::new(
        &binding_name(&email, wanted),
        RoleBindingSpec {
            member: email.as_str().into(),
            role: wanted.role.clone(),
            scope: wanted.scope.clone(),
            access: wanted.access,
            expires_at: None,
        },
    );
    binding.metadata.namespace = Some(home.to_string());
    binding
}

/// Whether `binding` gives `email` the role `role` (in `scope`, when given). Scopes
/// compare by meaning: `deployment/a,b` is `deployment/b,a`.
fn matches(binding: &RoleBinding, email: &str, role: &str, scope: Option<&Scope>) -> bool {
    binding.metadata.deletion_timestamp.is_none()
        && binding.spec.member.normalized() == normalize_email(email)
        && binding.spec.role == role
        && scope.is_none_or(|s| s.target().is_some() && s.target() == binding.spec.scope.target())
}

/// What the member holds already of a role in a scope.
#[derive(Debug)]
pub enum Held<'a> {
    Nothing,
    /// The same role, scope and access: granting changes nothing.
    Same(&'a RoleBinding),
    /// The same role and scope with the other access.
    OtherAccess(&'a RoleBinding),
}

/// What `email` holds already of `wanted`, among the organization's bindings.
pub fn held<'a>(bindings: &'a [RoleBinding], email: &str, wanted: &RoleAssignment) -> Held<'a> {
    let found: Vec<&RoleBinding> = bindings
        .iter()
        .filter(|b| matches(b, email, &wanted.role, Some(&wanted.scope)))
        .collect();
    match found.iter().find(|b| b.spec.access == wanted.access) {
        Some(same) => Held::Same(same),
        None => found
            .first()
            .map_or(Held::Nothing, |b| Held::OtherAccess(b)),
    }
}

/// The flags that ask for `wanted` again, for a hint: `--role viewer --scope 'deployment/*'`.
pub fn role_flags(wanted: &RoleAssignment) -> String {
    let mut flags = format!(
        "--role {} --scope '{}'",
        wanted.role,
        wanted.scope.summary()
    );
    if wanted.access == Access::Console {
        flags.push_str(" --access console");
    }
    flags
}

/// `kubectl org grant`.
pub async fn grant(ctx: &OrgContext, args: &GrantArgs) -> Result<(), PluginError> {
    let table = RoleTable::new(&ctx.organization);
    let access: Vec<Access> = args.access.into_iter().map(Access::from).collect();
    let member = &args.member;
    let wanted = assignments(
        std::slice::from_ref(&member.role),
        member.scope.as_slice(),
        &access,
        &table,
        &ctx.name,
    )?
    .remove(0);
    let email = normalize_email(&member.email);
    if !ctx
        .list_memberships()
        .await?
        .iter()
        .any(|m| m.spec.email.normalized() == email)
    {
        return Err(PluginError::NotAMember {
            email,
            org: ctx.name.clone(),
            role_flags: role_flags(&wanted),
        });
    }
    let end = requested_end(args.for_.as_ref(), args.until.as_ref(), Timestamp::now())?;
    let bindings = ctx.list_bindings().await?;
    let (binding, created, extended) = match held(&bindings, &email, &wanted) {
        Held::Same(existing) => match end_change(existing.spec.expires_at.as_ref(), end) {
            EndChange::Keep => (existing.clone(), false, false),
            EndChange::Set(end) => (set_end(ctx, existing, end).await?, false, true),
        },
        Held::OtherAccess(existing) => {
            let view = BindingView::new(existing);
            return Err(PluginError::GrantConflict {
                held: view.label(),
                revoke: format!(
                    "kubectl org revoke {email} --org {} --role {} --scope '{}'",
                    ctx.name, view.role, view.scope
                ),
                name: view.name,
                email,
            });
        }
        Held::Nothing => {
            let mut binding = build_binding(&email, &ctx.home, &wanted);
            binding.spec.expires_at = end.map(Rfc3339::at);
            (create(ctx, binding).await?, true, false)
        }
    };
    let view = GrantView {
        binding: BindingView::new(&binding),
        created,
        extended,
    };
    let name = &view.binding.name;
    match member.output.format {
        Some(format) => emit(&serialize(format, &view)?),
        None if created => emit(&format!(
            "rolebinding.kube-org.io/{name} created: {} for {email}\n",
            view.binding.label_with_end()
        )),
        None if extended => emit(&format!(
            "rolebinding.kube-org.io/{name} {}: {email} holds {}\n",
            if view.binding.expires_at.is_some() {
                "extended"
            } else {
                "made permanent"
            },
            view.binding.label_with_end()
        )),
        None => emit(&format!(
            "rolebinding.kube-org.io/{name} unchanged: {email} holds {} already\n",
            view.binding.label_with_end()
        )),
    }
}

/// Moves a binding's end (`None`: no end).
async fn set_end(
    ctx: &OrgContext,
    binding: &RoleBinding,
    end: Option<Timestamp>,
) -> Result<RoleBinding, PluginError> {
    let name = binding.name_any();
    let patch = serde_json::json!({"spec": {"expiresAt": end.map(|t| Rfc3339::at(t).0)}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    ctx.bindings()
        .patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|error| ctx.error(&format!("updating rolebinding {name}"), error))
}

/// Creates the binding; one created meanwhile with the same name is the same grant.
async fn create(ctx: &OrgContext, binding: RoleBinding) -> Result<RoleBinding, PluginError> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let name = binding.name_any();
    match ctx.bindings().create(&params, &binding).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(binding),
        Err(error) => Err(ctx.error(&format!("creating rolebinding {name}"), error)),
    }
}

/// The bindings `revoke` deletes, and those it leaves because they come from
/// `spec.owners` (kube-org would recreate them).
pub fn revocable<'a>(
    bindings: &'a [RoleBinding],
    email: &str,
    role: &str,
    scope: Option<&Scope>,
) -> (Vec<&'a RoleBinding>, Vec<&'a RoleBinding>) {
    let mut found: Vec<&RoleBinding> = bindings
        .iter()
        .filter(|b| matches(b, email, role, scope))
        .collect();
    found.sort_by_key(|b| b.name_any());
    found
        .into_iter()
        .partition(|b| !b.labels().contains_key(LABEL_OWNER))
}

/// What a member holds, in one line, for a message.
pub fn holds(bindings: &[RoleBinding], email: &str) -> String {
    let mut held: Vec<String> = bindings
        .iter()
        .filter(|b| {
            b.metadata.deletion_timestamp.is_none()
                && b.spec.member.normalized() == normalize_email(email)
        })
        .map(|b| BindingView::new(b).label())
        .collect();
    held.sort();
    joined(held, ", ")
}

/// `kubectl org revoke`.
pub async fn revoke(ctx: &OrgContext, args: &MemberRoleArgs) -> Result<(), PluginError> {
    let email = normalize_email(&args.email);
    let role = &args.role;
    let bindings = ctx.list_bindings().await?;
    let (doomed, from_owners) = revocable(&bindings, &email, role, args.scope.as_ref());
    if doomed.is_empty() {
        if let Some(owner) = from_owners.first() {
            return Err(PluginError::OwnerFromSpec {
                email,
                org: ctx.name.clone(),
                name: owner.name_any(),
            });
        }
        let wanted = match &args.scope {
            Some(scope) => format!("{role} on {}", scope.summary()),
            None => format!("{role} binding"),
        };
        return Err(PluginError::NothingToRevoke {
            holds: holds(&bindings, &email),
            email,
            org: ctx.name.clone(),
            wanted,
        });
    }
    let mut deleted = Vec::new();
    for binding in doomed {
        let name = binding.name_any();
        match ctx.bindings().delete(&name, &DeleteParams::default()).await {
            Ok(_) => deleted.push(BindingView::new(binding)),
            // Gone meanwhile: revoked all the same.
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                deleted.push(BindingView::new(binding))
            }
            Err(error) => return Err(ctx.error(&format!("deleting rolebinding {name}"), error)),
        }
    }
    report_revoked(args.output.format, &email, &deleted)?;
    if let Some(owner) = from_owners.first() {
        super::output::note(&format!(
            "note: rolebinding.kube-org.io/{} stays: it comes from spec.owners of Organization {}",
            owner.name_any(),
            ctx.name
        ));
    }
    Ok(())
}

fn report_revoked(
    format: Option<Format>,
    email: &str,
    deleted: &[BindingView],
) -> Result<(), PluginError> {
    if let Some(format) = format {
        return emit(&serialize(format, &deleted)?);
    }
    let text: String = deleted
        .iter()
        .map(|b| {
            format!(
                "rolebinding.kube-org.io/{} deleted: {email} no longer holds {}\n",
                b.name,
                b.label()
            )
        })
        .collect();
    emit(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, member: &str, role: &str, scope: Scope, access: Access) -> RoleBinding {
        let mut b = build_binding(
            member,
            "org-acme",
            &RoleAssignment {
                role: role.into(),
                scope,
                access,
                expires_after: None,
            },
        );
        b.metadata.name = Some(name.to_string());
        b
    }

    fn assignment(role: &str, scope: Scope, access: Access) -> RoleAssignment {
        RoleAssignment {
            role: role.into(),
            scope,
            access,
            expires_after: None,
        }
    }

    #[test]
    fn a_grant_is_named_as_acceptance_names_it() {
        let wanted = assignment("viewer", Scope::all_of("deployment"), Access::Full);
        let b = build_binding("Bob@Example.com", "org-acme", &wanted);
        assert_eq!(
            b.metadata.name,
            Some(binding_name("bob@example.com", &wanted))
        );
        assert!(b.name_any().starts_with("viewer-bob-example-com-"));
        assert_eq!(b.metadata.namespace.as_deref(), Some("org-acme"));
        assert_eq!(b.spec.member.0, "bob@example.com");
        let json = serde_json::to_value(&b).expect("serializes");
        assert_eq!(json["apiVersion"], "kube-org.io/v1alpha1");
        assert_eq!(json["kind"], "RoleBinding");
        // Another scope or access is another object.
        let console = assignment("viewer", Scope::all_of("deployment"), Access::Console);
        assert_ne!(
            build_binding("bob@example.com", "org-acme", &console).name_any(),
            b.name_any()
        );
    }

    /// `held`, as the variant and the binding's name.
    fn held_name(bindings: &[RoleBinding], email: &str, wanted: &RoleAssignment) -> String {
        match held(bindings, email, wanted) {
            Held::Nothing => "nothing".into(),
            Held::Same(b) => format!("same {}", b.name_any()),
            Held::OtherAccess(b) => format!("other access {}", b.name_any()),
        }
    }

    #[test]
    fn held_compares_scopes_by_meaning_and_tells_access_apart() {
        let bindings = vec![
            binding(
                "a",
                "BOB@example.com",
                "viewer",
                Scope::named("deployment", &["b", "a"]),
                Access::Full,
            ),
            binding(
                "c",
                "bob@example.com",
                "admin",
                Scope::all_of("deployment"),
                Access::Console,
            ),
        ];
        let same = assignment(
            "viewer",
            Scope::named("deployment", &["a", "b"]),
            Access::Full,
        );
        assert_eq!(held_name(&bindings, "bob@example.com", &same), "same a");
        let full_admin = assignment("admin", Scope::all_of("deployment"), Access::Full);
        assert_eq!(
            held_name(&bindings, "bob@example.com", &full_admin),
            "other access c"
        );
        assert_eq!(held_name(&bindings, "carol@example.com", &same), "nothing");
        let elsewhere = assignment("viewer", Scope::all_of("deployment"), Access::Full);
        assert_eq!(
            held_name(&bindings, "bob@example.com", &elsewhere),
            "nothing"
        );
    }

    #[test]
    fn held_prefers_the_binding_with_the_access_asked_for() {
        let bindings = vec![
            binding(
                "console",
                "bob@example.com",
                "viewer",
                Scope::all_of("deployment"),
                Access::Console,
            ),
            binding(
                "full",
                "bob@example.com",
                "viewer",
                Scope::all_of("deployment"),
                Access::Full,
            ),
        ];
        let full = assignment("viewer", Scope::all_of("deployment"), Access::Full);
        assert_eq!(held_name(&bindings, "bob@example.com", &full), "same full");
    }

    #[test]
    fn revoke_matches_a_role_in_one_scope_or_every_scope_and_spares_owners() {
        let mut from_owners = binding(
            "owner-bob",
            "bob@example.com",
            "organization-owner",
            Scope::organization(),
            Access::Full,
        );
        from_owners
            .labels_mut()
            .insert(LABEL_OWNER.to_string(), "true".to_string());
        let bindings = vec![
            binding(
                "v2",
                "bob@example.com",
                "viewer",
                Scope::named("deployment", &["prod"]),
                Access::Full,
            ),
            binding(
                "v1",
                "bob@example.com",
                "viewer",
                Scope::all_of("deployment"),
                Access::Console,
            ),
            binding(
                "other",
                "carol@example.com",
                "viewer",
                Scope::all_of("deployment"),
                Access::Full,
            ),
            from_owners,
        ];
        let names = |found: Vec<&RoleBinding>| -> Vec<String> {
            found.iter().map(|b| b.name_any()).collect()
        };
        let (all, _) = revocable(&bindings, "Bob@example.com", "viewer", None);
        assert_eq!(names(all), ["v1", "v2"]);
        let (one, _) = revocable(
            &bindings,
            "bob@example.com",
            "viewer",
            Some(&Scope::all_of("deployment")),
        );
        assert_eq!(names(one), ["v1"]);
        let (none, owners) = revocable(&bindings, "bob@example.com", "organization-owner", None);
        assert!(none.is_empty());
        assert_eq!(names(owners), ["owner-bob"]);
        assert_eq!(
            holds(&bindings, "bob@example.com"),
            "organization-owner on organization, viewer on deployment/* (console), viewer on deployment/prod"
        );
        assert_eq!(holds(&bindings, "dave@example.com"), "-");
    }

    #[test]
    fn hints_repeat_the_flags() {
        assert_eq!(
            role_flags(&assignment(
                "viewer",
                Scope::all_of("deployment"),
                Access::Console
            )),
            "--role viewer --scope 'deployment/*' --access console"
        );
        assert_eq!(
            role_flags(&assignment(
                "billing-admin",
                Scope::organization(),
                Access::Full
            )),
            "--role billing-admin --scope 'organization'"
        );
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_grant_ends_for_a_while_or_at_a_time_never_in_the_past() {
        let now = t("2026-12-05T12:00:00.4Z");
        let eight_hours = crate::api::GoDuration::from("8h");
        assert_eq!(
            requested_end(Some(&eight_hours), None, now).unwrap(),
            Some(t("2026-12-05T20:00:00Z"))
        );
        let until = Rfc3339::from("2026-12-31T09:00:00+09:00");
        assert_eq!(
            requested_end(None, Some(&until), now).unwrap(),
            Some(t("2026-12-31T00:00:00Z"))
        );
        assert_eq!(requested_end(None, None, now).unwrap(), None);
        let past = Rfc3339::from("2026-12-05T11:59:59Z");
        let error = requested_end(None, Some(&past), now).expect_err("past");
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().contains("is not in the future"),
            "{error}"
        );
    }

    #[test]
    fn granting_again_never_shortens_a_role() {
        let end = |s: &str| Some(Rfc3339::from(s));
        // No end stays no end, whatever is asked.
        assert_eq!(
            end_change(None, Some(t("2026-12-06T00:00:00Z"))),
            EndChange::Keep
        );
        assert_eq!(end_change(None, None), EndChange::Keep);
        // An earlier (or passed) end moves to the one asked; a later one stays.
        let held = end("2026-12-05T20:00:00Z");
        assert_eq!(
            end_change(held.as_ref(), Some(t("2026-12-06T00:00:00Z"))),
            EndChange::Set(Some(t("2026-12-06T00:00:00Z")))
        );
        assert_eq!(
            end_change(held.as_ref(), Some(t("2026-12-05T18:00:00Z"))),
            EndChange::Keep
        );
        // Asked without an end: the role stops expiring.
        assert_eq!(end_change(held.as_ref(), None), EndChange::Set(None));
        let b = BindingView {
            expires_at: Some("2026-12-05T20:00:00Z".into()),
            ..BindingView::new(&binding(
                "b",
                "bob@example.com",
                "viewer",
                Scope::all_of("deployment"),
                Access::Full,
            ))
        };
        assert_eq!(
            b.label_with_end(),
            "viewer on deployment/* until 2026-12-05T20:00:00Z"
        );
    }
}
