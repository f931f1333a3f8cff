//! Property tests: the pure cores never panic, whatever the API objects hold.
//!
//! Objects are built from JSON with arbitrary strings and shapes, including what
//! admission refuses (an object may predate a CEL rule, or come from an older CRD):
//! control characters, line breaks, Unicode separators, empty and huge values,
//! impossible scopes, negative counters. Each property runs a few hundred cases so that
//! `cargo test --lib` stays fast; `PROPTEST_CASES=10000` runs more.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::access::desired::{AccessInput, desired_access};
use crate::access::roles::RoleTable;
use crate::api::{Access, Invitation, Membership, Organization, RoleBinding, Scope};
use crate::invitations::email::{Invite, accept_link, one_line};
use crate::invitations::lifecycle::{self, Defaults, Facts};

const CASES: u32 = 256;

/// Strings that matter to kube-org, and arbitrary ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", "acme", "viewer", "admin", "editor", "organization-owner", "billing-admin",
            "auditor", "deployment", "elasticsearch", "security", "acme-prod", "acme-dev",
            "org-acme", "alice@example.com", "Bob@Example.COM", "system:admin", "*", "/", ",",
            "deployment/*", "deployment/acme-prod,acme-dev", "organization", "72h", "-1h",
            "0s", "99999999999h", "https://org.example.com", "view", "edit", "kube-org:owner",
            "Acme\r\nBcc: x@example.com", "\u{2028}", "\0",
        ])
        .prop_map(String::from),
        2 => any::<String>().prop_map(|s| s.chars().take(48).collect()),
        2 => r"[a-z0-9\-\r\n\t\x00@./:,*?=éß☃\x{2028}\x{85}\x{7f} ]{0,24}",
    ]
}

fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        (text(), text()).prop_map(|(user, domain)| format!("{user}@{domain}.com")),
        (text(), text()).prop_map(|(user, domain)| format!("{user}@{domain}")),
    ]
}

fn time() -> impl Strategy<Value = String> {
    (0i64..4_000_000_000).prop_map(|s| {
        Timestamp::from_second(s)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_string()
    })
}

fn scope() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        prop::option::of(text()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::vec(text(), 0..4)),
    )
        .prop_map(|(organization, resource_type, all, resources)| {
            let mut scope = Map::new();
            if organization {
                scope.insert("organization".into(), json!({}));
            }
            if let Some(kind) = resource_type {
                scope.insert("resourceType".into(), json!(kind));
            }
            if let Some(all) = all {
                scope.insert("all".into(), json!(all));
            }
            if let Some(resources) = resources {
                scope.insert("resources".into(), json!(resources));
            }
            Value::Object(scope)
        })
}

fn access() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["full", "console"])
}

fn role_assignment() -> impl Strategy<Value = Value> {
    (text(), scope(), access())
        .prop_map(|(role, scope, access)| json!({"role": role, "scope": scope, "access": access}))
}

fn custom_role() -> impl Strategy<Value = Value> {
    (
        text(),
        prop::sample::select(vec!["organization", "resource"]),
        prop::collection::vec(text(), 0..3),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(name, level, types, cluster_role, description)| {
            json!({"name": name, "level": level, "resourceTypes": types,
                   "clusterRole": cluster_role, "description": description})
        })
}

fn organization() -> impl Strategy<Value = Organization> {
    (
        (
            text(),
            prop::option::of(text()),
            prop::collection::vec(email(), 0..4),
            prop::option::of(text()),
            prop::collection::vec(text(), 0..3),
            prop::collection::vec(custom_role(), 0..3),
        ),
        (
            prop::option::of(text()),
            prop::option::of(email()),
            prop::option::of(text()),
            prop_oneof![-3i32..12, Just(i32::MAX), Just(i32::MIN)],
            prop::collection::vec(text(), 0..3),
            any::<bool>(),
        ),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::collection::vec(
                (text(), prop::collection::vec(role_assignment(), 0..3)),
                0..3,
            ),
        ),
    )
        .prop_filter_map(
            "an Organization",
            |(
                (name, display_name, owners, home, types, roles),
                (ttl, from, accept_url, auto_resend, domains, exclusive),
                (username_prefix, groups_prefix, groups),
            )| {
                let groups: Vec<Value> = groups
                    .into_iter()
                    .map(|(group, roles)| json!({"group": group, "roles": roles}))
                    .collect();
                serde_json::from_value(json!({
                    "metadata": {"name": name, "uid": "uid-org"},
                    "spec": {
                        "displayName": display_name,
                        "owners": owners,
                        "homeNamespace": home,
                        "resourceTypes": types,
                        "roles": roles,
                        "invitations": {"ttl": ttl, "from": from, "acceptURL": accept_url,
                                        "autoResend": auto_resend},
                        "membership": {"allowedEmailDomains": domains, "exclusive": exclusive,
                                       "groups": groups},
                        "identity": {"usernamePrefix": username_prefix,
                                     "groupsPrefix": groups_prefix},
                    },
                }))
                .ok()
            },
        )
}

fn condition() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["Delivered", "Ready", "Other"]),
        prop::sample::select(vec!["True", "False", "Unknown"]),
        text(),
        text(),
        time(),
    )
        .prop_map(|(type_, status, reason, message, at)| {
            json!({"type": type_, "status": status, "reason": reason, "message": message,
                   "lastTransitionTime": at})
        })
}

fn invitation_status() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(vec!["Pending", "Accepted", "Expired"])),
        prop::collection::vec(condition(), 0..3),
        (
            prop::option::of(time()),
            prop::option::of(time()),
            prop::option::of(time()),
        ),
        prop::option::of(text()),
        (
            prop_oneof![-3i32..10, Just(i32::MAX), Just(i32::MIN)],
            prop_oneof![-2i64..5, Just(i64::MAX), Just(i64::MIN)],
            prop_oneof![-2i32..12, Just(i32::MAX), Just(i32::MIN)],
        ),
    )
        .prop_map(
            |(
                phase,
                conditions,
                (sent, expires, accepted),
                membership,
                (attempts, issued, auto),
            )| {
                json!({"phase": phase, "conditions": conditions, "sentAt": sent,
                       "expiresAt": expires, "acceptedAt": accepted, "membership": membership,
                       "deliveryAttempts": attempts, "issuedForResend": issued,
                       "autoResends": auto})
            },
        )
}

fn invitation() -> impl Strategy<Value = Invitation> {
    (
        text(),
        prop::sample::select(vec!["org-acme", "elsewhere", ""]),
        email(),
        prop::collection::vec(role_assignment(), 0..4),
        prop::option::of(text()),
        prop_oneof![-2i64..5, Just(i64::MAX), Just(i64::MIN)],
        prop::option::of(invitation_status()),
        (any::<bool>(), 0i64..4),
    )
        .prop_filter_map(
            "an Invitation",
            |(name, namespace, email, roles, ttl, resend, status, (deleting, generation))| {
                let mut metadata = json!({"name": name, "namespace": namespace,
                                          "uid": format!("uid-{name}"), "generation": generation});
                if deleting {
                    metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                }
                serde_json::from_value(json!({
                    "metadata": metadata,
                    "spec": {"email": email, "roles": roles, "ttl": ttl, "resend": resend},
                    "status": status,
                }))
                .ok()
            },
        )
}

fn membership() -> impl Strategy<Value = Membership> {
    (text(), email(), prop::option::of(text()), any::<bool>()).prop_filter_map(
        "a Membership",
        |(name, email, user, deleting)| {
            let mut metadata = json!({"name": name, "namespace": "org-acme"});
            if deleting {
                metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            serde_json::from_value(
                json!({"metadata": metadata, "spec": {"email": email, "user": user}}),
            )
            .ok()
        },
    )
}

fn binding() -> impl Strategy<Value = RoleBinding> {
    (text(), email(), text(), scope(), access()).prop_filter_map(
        "a RoleBinding",
        |(name, member, role, scope, access)| {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "org-acme"},
                "spec": {"member": member, "role": role, "scope": scope, "access": access},
            }))
            .ok()
        },
    )
}

fn namespace() -> impl Strategy<Value = Namespace> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        any::<bool>(),
    )
        .prop_filter_map("a Namespace", |(name, org, kind, deleting)| {
            let mut labels = Map::new();
            if let Some(org) = org {
                labels.insert("kube-org.io/organization".into(), json!(org));
            }
            if let Some(kind) = kind {
                labels.insert("kube-org.io/resource-type".into(), json!(kind));
            }
            let mut metadata = json!({"name": name, "labels": labels});
            if deleting {
                metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            serde_json::from_value(json!({"metadata": metadata})).ok()
        })
}

fn parse_scope_value(scope: Value) -> Option<Scope> {
    serde_json::from_value(scope).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// The email builder answers Ok or a typed error for any organization, invitation,
    /// sender and link; what it builds has single-line headers.
    #[test]
    fn the_email_builder_never_panics(
        org in organization(),
        invitation in invitation(),
        from in email(),
        base in text(),
        token in text(),
        expires in 0i64..4_000_000_000,
    ) {
        let link = accept_link(&base, &token);
        let invite = Invite {
            organization: &org,
            invitation: &invitation,
            from: &from,
            link: &link,
            expires_at: Timestamp::from_second(expires).unwrap_or(Timestamp::UNIX_EPOCH),
        };
        let subject = invite.subject();
        prop_assert!(!subject.contains(['\r', '\n']), "{subject:?}");
        let _ = invite.text();
        let _ = invite.html();
        if let Ok(message) = invite.message() {
            let formatted = String::from_utf8_lossy(&message.formatted()).into_owned();
            let (headers, _) = formatted.split_once("\r\n\r\n").unwrap_or((&formatted, ""));
            for line in headers.split("\r\n") {
                // Every header line is a header or a folded continuation: no injected one.
                prop_assert!(
                    line.starts_with([' ', '\t']) || line.contains(':'),
                    "header line {line:?} in:\n{headers}"
                );
                prop_assert!(!line.to_ascii_lowercase().starts_with("bcc:"), "{headers}");
            }
        }
    }

    /// A display name becomes one line of bounded length.
    #[test]
    fn one_line_is_one_line(name in text(), max in 0usize..64) {
        let line = one_line(&name, max);
        prop_assert!(line.chars().count() <= max);
        prop_assert!(!crate::api::fields::has_control_characters(&line));
        prop_assert!(!line.starts_with(' ') && !line.ends_with(' '));
    }

    /// The invitation state machine decides something for any facts.
    #[test]
    fn the_invitation_lifecycle_never_panics(
        invitation in invitation(),
        org in prop::option::of(organization()),
        memberships in prop::collection::vec(membership(), 0..3),
        others in prop::collection::vec(invitation(), 0..3),
        from in prop::option::of(email()),
        base in prop::option::of(text()),
        smtp in any::<bool>(),
        now in 0i64..4_000_000_000,
        error in text(),
    ) {
        let defaults = Defaults { from, accept_base_url: base, smtp_configured: smtp };
        let now = Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH);
        let decision = lifecycle::decide(&Facts {
            invitation: &invitation,
            organization: org.as_ref(),
            no_organization: org.is_none().then(|| error.clone()),
            memberships: memberships.iter().collect(),
            invitations: others.iter().chain(std::iter::once(&invitation)).collect(),
            defaults: &defaults,
            now,
        });
        if let lifecycle::Decision::Send(plan) = &decision {
            let token = crate::api::invitation::InvitationToken {
                lookup_id: error.clone(),
                verifier: error.clone(),
            };
            let _ = lifecycle::sending_status(&invitation, plan, token, now);
            let _ = lifecycle::retry_delay(plan.attempt);
        }
        let _ = lifecycle::delivered_status(&invitation, now);
        let _ = lifecycle::failed_status(&invitation, &error, std::time::Duration::from_secs(1), now);
        let invalid = lifecycle::invalid_message_status(&invitation, &error, now);
        // Reporting the same failure twice changes nothing (no write loop).
        let mut again = invitation.clone();
        again.status = Some(invalid.clone());
        prop_assert_eq!(lifecycle::invalid_message_status(&again, &error, now), invalid);
        if let Some(org) = &org {
            let _ = lifecycle::check_roles(&invitation, org);
            let _ = lifecycle::ttl(&invitation, org);
            let _ = crate::invitations::email::offered_roles(org, &invitation);
        }
    }

    /// Desired access is computed for any organization, members, bindings and
    /// namespaces.
    #[test]
    fn desired_access_never_panics(
        org in organization(),
        memberships in prop::collection::vec(membership(), 0..4),
        bindings in prop::collection::vec(binding(), 0..5),
        namespaces in prop::collection::vec(namespace(), 0..4),
        unbindable in prop::collection::btree_set(text(), 0..2),
        refused_names in prop::collection::btree_set(text(), 0..2),
    ) {
        let unbindable: BTreeSet<String> = unbindable;
        let refused = refused_names
            .into_iter()
            .map(|name| (name, crate::access::policy::PolicyRefusal {
                reason: "ExclusiveMembership",
                message: String::new(),
            }))
            .collect();
        let input = AccessInput {
            org: &org,
            memberships: memberships.iter().collect(),
            bindings: bindings.iter().collect(),
            namespaces: namespaces.iter().collect(),
            unbindable: &unbindable,
            refused: &refused,
            kept: &Default::default(),
            identity: &Default::default(),
            now: Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
        };
        let first = desired_access(&input);
        // Deterministic: the same input gives the same output.
        prop_assert_eq!(first, desired_access(&input));
    }

    /// Scopes resolve or say they are impossible; the plugin's scope syntax parses or
    /// refuses with a message, and what it accepts round-trips through the summary.
    #[test]
    fn scopes_never_panic(value in scope(), written in text(), roles in prop::collection::vec(text(), 0..3), org in organization()) {
        if let Some(scope) = parse_scope_value(value) {
            let _ = scope.target();
            let _ = scope.summary();
        }
        match crate::plugin::scope::parse_scope(&written) {
            Ok(scope) => {
                let summary = scope.summary();
                prop_assert_ne!(summary.as_str(), "invalid");
                let reparsed = crate::plugin::scope::parse_scope(&summary).ok().and_then(|s| s.target());
                prop_assert_eq!(reparsed, scope.target());
                let table = RoleTable::new(&org);
                let _ = crate::plugin::scope::assignments(&roles, &[scope], &[Access::Full], &table, "acme");
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// What a browser or a provider sends to the sign-in (a cookie, an ID token) is
    /// refused or read, never a panic; a token built of arbitrary parts never verifies.
    #[test]
    fn sign_in_input_never_panics(
        header in text(),
        payload in text(),
        signature in text(),
        cookie in text(),
        now in any::<i64>(),
    ) {
        use base64::Engine;
        use crate::invitations::login::{Jwks, Pending, verify_id_token};
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwks = Jwks { keys: vec![] };
        for jwt in [
            format!("{header}.{payload}.{signature}"),
            format!("{}.{}.{}", b64(&header), b64(&payload), b64(&signature)),
            format!("{}.{}.{signature}", b64(r#"{"alg":"RS256"}"#), b64(&payload)),
        ] {
            prop_assert!(verify_id_token(&jwt, &jwks, &header, &payload, &cookie, now).is_err());
        }
        let _ = Pending::decode(&cookie);
        let _ = Pending::from_cookies(std::iter::once(cookie.as_str()));
        if let Some(pending) = Pending::decode(&cookie) {
            let _ = pending.answers(&header, now);
        }
    }
}
