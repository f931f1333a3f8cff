//! Invitations against the real control plane and a real SMTP server (Mailpit): the
//! email and its link, acceptance exactly once, expiry on the second, resend, cancel,
//! refusals, an SMTP outage, the accept endpoint's answers, headers and rate limit.
//!
//! Each test has its own Organization and home namespace, so tests run in parallel.
//! Tests that need an operator of their own (another SMTP server, a rate limit) label
//! their Invitations with a shard that only their operator handles.

mod common;
#[path = "invitations/http.rs"]
mod http;
#[path = "invitations/mailpit.rs"]
mod mailpit;

use std::time::{Duration, Instant};

use common::{Operator, eventually, unique};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_org::api::{Invitation, InvitationPhase, Membership, Organization, RoleBinding};
use mailpit::{Mail, Mailpit, OwnMailpit};
use serde_json::json;
use tokio::sync::OnceCell;

/// Invitations with this label are left to a test's own operator.
const SHARD: &str = common::Shard::LABEL;
/// Operators a test starts for invitations leave access to the shared operator: they
/// handle no Organization (none carries this label).
const ACCESS_ELSEWHERE: &str = "kube-org.io/test-shard=none";
/// The operator-wide accept base URL of the shared operator (organizations in these
/// tests set their own acceptURL unless they test this default).
const DEFAULT_BASE: &str = "http://accept.invalid";

/// The operator shared by this binary's tests, sending through the shared Mailpit.
async fn operator() -> &'static Operator {
    static OPERATOR: OnceCell<Operator> = OnceCell::const_new();
    OPERATOR
        .get_or_init(|| async {
            let smtp = std::env::var("KUBE_ORG_MAILPIT_SMTP")
                .expect("KUBE_ORG_MAILPIT_SMTP is not set: run the tests with `make test`");
            Operator::start(&args(&[
                "--smtp-url",
                &format!("smtp://{smtp}"),
                "--smtp-from",
                "kube-org@example.com",
                "--accept-base-url",
                DEFAULT_BASE,
                "--accept-rate-limit",
                "100000",
                "--accept-rate-limit-global",
                "100000",
                "--invitations-selector",
                &format!("!{SHARD}"),
            ]))
            .await
        })
        .await
}

/// The shared operator and a new organization whose links point at it.
async fn shared_org(spec: serde_json::Value) -> (&'static Operator, Org) {
    let client = common::client().await;
    let operator = operator().await;
    (
        operator,
        Org::create(&client, Some(&operator.base_url), spec).await,
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// An organization of one test, with its home namespace.
struct Org {
    client: Client,
    name: String,
    home: String,
}

impl Org {
    /// Creates it; `spec` is merged into a minimal spec whose acceptURL is `accept_url`.
    async fn create(client: &Client, accept_url: Option<&str>, spec: serde_json::Value) -> Org {
        let name = unique("inv");
        let home = format!("org-{name}");
        // A cluster admin marks the home namespace for the organization (the access
        // controller would create it so marked); invitations and acceptance consult
        // only the Organization the label names.
        mark_home(client, &home, &name).await;
        let mut full = json!({
            "displayName": format!("Team {name}"),
            "owners": ["owner@example.com"],
            "resourceTypes": ["deployment", "elasticsearch"],
        });
        if let Some(url) = accept_url {
            full["invitations"] = json!({ "acceptURL": url });
        }
        merge(&mut full, spec);
        let org: Organization = serde_json::from_value(json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
            "metadata": {"name": name}, "spec": full
        }))
        .expect("an Organization");
        Api::<Organization>::all(client.clone())
            .create(&PostParams::default(), &org)
            .await
            .unwrap_or_else(|e| panic!("creating Organization {name}: {e}"));
        Org {
            client: client.clone(),
            name,
            home,
        }
    }

    fn invitations(&self) -> Api<Invitation> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    fn memberships(&self) -> Api<Membership> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    fn bindings(&self) -> Api<RoleBinding> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    /// The Memberships of `email` (the organization's owners have their own).
    async fn members_of(&self, email: &str) -> Vec<Membership> {
        let list = self.memberships().list(&ListParams::default()).await;
        let items = list.expect("listing Memberships").items;
        items
            .into_iter()
            .filter(|m| m.spec.email.normalized() == email.to_lowercase())
            .collect()
    }

    /// The kube-org RoleBindings of `email`.
    async fn bindings_of(&self, email: &str) -> Vec<RoleBinding> {
        let list = self.bindings().list(&ListParams::default()).await;
        let items = list.expect("listing RoleBindings").items;
        items
            .into_iter()
            .filter(|b| b.spec.member.normalized() == email.to_lowercase())
            .collect()
    }

    /// Creates an Invitation; `extra` is merged into the object (spec, metadata).
    async fn invite(&self, name: &str, email: &str, extra: serde_json::Value) -> Invitation {
        let mut object = json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
            "metadata": {"name": name, "namespace": self.home},
            "spec": {
                "email": email,
                "roles": [{"role": "viewer", "scope": {"resourceType": "deployment", "all": true}}]
            }
        });
        merge(&mut object, extra);
        let invitation: Invitation = serde_json::from_value(object).expect("an Invitation");
        self.invitations()
            .create(&PostParams::default(), &invitation)
            .await
            .unwrap_or_else(|e| panic!("creating Invitation {name}: {e}"))
    }

    /// Waits until the Invitation satisfies `check`; a timeout says what its status was.
    async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Invitation) -> bool,
    ) -> Invitation {
        let api = self.invitations();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let current = api.get_opt(name).await.ok().flatten();
            match &current {
                Some(invitation) if check(invitation) => return invitation.clone(),
                _ if Instant::now() >= deadline => panic!(
                    "timed out after 30s waiting for: Invitation {name}: {what}; its status: {:?}",
                    current.map(|i| i.status)
                ),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Invites `email` and waits for the delivered Invitation and the email it sent.
    async fn invite_and_mail(
        &self,
        name: &str,
        email: &str,
        extra: serde_json::Value,
    ) -> (Invitation, Mail) {
        let mailpit = Mailpit::shared();
        let before = mailpit.ids_to(email).await.len();
        self.invite(name, email, extra).await;
        let sent = self.wait_delivered(name).await;
        (sent, last_mail(&mailpit, email, before + 1).await)
    }

    async fn wait_delivered(&self, name: &str) -> Invitation {
        self.wait(name, "Delivered=True", |i| {
            condition(i, "Delivered").0 == "True"
        })
        .await
    }

    async fn wait_ready_reason(&self, name: &str, reason: &str) -> Invitation {
        self.wait(name, &format!("Ready reason {reason}"), |i| {
            condition(i, "Ready").1 == reason
        })
        .await
    }

    async fn delete(self) {
        let _ = Api::<Organization>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await;
        common::delete_namespace(&self.client, &self.home).await;
    }
}

/// Creates namespace `home` (or updates it) labelled `kube-org.io/organization=<org>`.
async fn mark_home(client: &Client, home: &str, org: &str) {
    let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": home, "labels": {"kube-org.io/organization": org}},
    }))
    .expect("a namespace");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            home,
            &PatchParams::apply("kube-org-tests"),
            &Patch::Apply(&ns),
        )
        .await
        .unwrap_or_else(|e| panic!("marking namespace {home} for {org}: {e}"));
}

fn merge(target: &mut serde_json::Value, extra: serde_json::Value) {
    match (target, extra) {
        (serde_json::Value::Object(target), serde_json::Value::Object(extra)) => {
            for (key, value) in extra {
                merge(target.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (target, extra) => *target = extra,
    }
}

/// (status, reason, message) of a condition, empty when absent.
fn condition(invitation: &Invitation, type_: &str) -> (String, String, String) {
    invitation
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

fn phase(invitation: &Invitation) -> Option<InvitationPhase> {
    invitation.status.as_ref().and_then(|s| s.phase)
}

fn email(prefix: &str) -> String {
    format!("{}@example.com", unique(prefix))
}

fn accept_url(operator: &Operator) -> String {
    format!("{}/invitations/accept", operator.base_url)
}

/// The one answer for unknown, used, expired and cancelled links, as JSON.
async fn assert_neutral(operator: &Operator, token: &str, what: &str) {
    let answer = http::post_json(&accept_url(operator), token).await;
    assert_eq!(answer.status, 404, "{what}: {}", answer.body);
    assert_eq!(answer.json()["status"], "invalid-link", "{what}");
}

async fn last_mail(mailpit: &Mailpit, to: &str, count: usize) -> Mail {
    mailpit
        .wait_for(to, count)
        .await
        .pop()
        .expect("at least one mail")
}

#[tokio::test]
async fn invite_email_link_and_confirm_make_a_member() {
    let (operator, org) = shared_org(json!({})).await;
    let dave = email("dave");
    let roles = json!([
        {"role": "viewer", "scope": {"resourceType": "deployment", "all": true}},
        {"role": "billing-admin", "scope": {"organization": {}}}
    ]);

    // The email arrives, names the organization, the roles with their descriptions,
    // the expiry and the link.
    let (sent, mail) = org
        .invite_and_mail("dave", &dave, json!({"spec": {"roles": roles}}))
        .await;
    let status = sent.status.clone().expect("status");
    assert_eq!(status.phase, Some(InvitationPhase::Pending));
    assert_eq!(status.delivery_attempts, 1);
    let expires_at = status.expires_at.clone().expect("expiresAt").0;
    let sent_at = status.sent_at.clone().expect("sentAt").0;
    // expiresAt is rounded up to the second from the moment the token was minted,
    // sentAt down to the second once the email left.
    let ttl = expires_at.duration_since(sent_at).as_secs();
    assert!(
        (72 * 3600 - 10..=72 * 3600 + 1).contains(&ttl),
        "default ttl 72h, got {ttl}s"
    );
    assert_eq!(
        mail.subject,
        format!("You are invited to join Team {}", org.name)
    );
    assert_eq!(mail.from, "kube-org@example.com");
    let viewer = kube_org::catalog::named("viewer").next().unwrap();
    let billing = kube_org::catalog::named("billing-admin").next().unwrap();
    for wanted in [
        format!("Team {}", org.name),
        viewer.description.to_string(),
        billing.description.to_string(),
        expires_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    ] {
        assert!(
            mail.text.contains(&wanted),
            "{wanted:?} not in:\n{}",
            mail.text
        );
    }
    assert!(
        mail.html.contains(&format!("Team {}", org.name)),
        "{}",
        mail.html
    );
    let link = mail.link();
    assert!(link.starts_with(&accept_url(operator)), "{link}");
    assert!(mail.html.contains(&link), "the HTML part has the same link");

    // The token is stored only as hashes, in the Invitation's status; no Secret.
    let record = status.token.clone().expect("status.token");
    assert_eq!(
        record.lookup_id,
        kube_org::invitations::token::lookup_id(&mail.token())
    );
    assert!(kube_org::invitations::token::matches(
        &record,
        &mail.token()
    ));
    assert!(
        !serde_json::to_string(&sent)
            .unwrap()
            .contains(&mail.token())
    );
    let secrets: Api<Secret> = Api::namespaced(org.client.clone(), &org.home);
    assert!(
        secrets
            .list(&ListParams::default())
            .await
            .expect("listing Secrets")
            .items
            .is_empty(),
        "no token Secret"
    );

    // The page: a confirm button, no side effect, privacy headers.
    let page = http::get(&link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<form method=\"post\""), "{}", page.body);
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(
        phase(&org.invitations().get("dave").await.unwrap()),
        Some(InvitationPhase::Pending),
        "GET changes nothing"
    );

    // Confirm (the form).
    let confirmed = http::post_form(&accept_url(operator), &mail.token()).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    assert!(confirmed.body.contains(&format!("Team {}", org.name)));
    assert_eq!(confirmed.header("cache-control"), Some("no-store"));

    // Membership: named after the email, its source the Invitation, no owner reference.
    let members = org.members_of(&dave).await;
    assert_eq!(members.len(), 1, "{members:?}");
    let member = &members[0];
    assert_eq!(member.spec.email.0, dave);
    assert_eq!(
        member.name_any(),
        kube_org::access::names::person_object_name("member", &dave)
    );
    assert_eq!(
        member
            .annotations()
            .get("kube-org.io/source")
            .map(String::as_str),
        Some("Invitation/dave")
    );
    assert!(member.owner_references().is_empty());

    // The Invitation is Accepted, its token burned.
    let accepted = org
        .wait("dave", "Accepted with Ready=True", |i| {
            phase(i) == Some(InvitationPhase::Accepted) && condition(i, "Ready").0 == "True"
        })
        .await;
    let status = accepted.status.expect("status");
    assert_eq!(
        status.membership.as_deref(),
        Some(member.name_any().as_str())
    );
    assert!(status.accepted_at.is_some());
    assert_eq!(status.token, None, "the token's hashes are gone");

    // The link was single use.
    assert_neutral(operator, &mail.token(), "a used link").await;

    // Deleting the accepted Invitation (GitOps pruning) leaves the member.
    org.invitations()
        .delete("dave", &DeleteParams::background())
        .await
        .unwrap();
    eventually("Invitation gone", Duration::from_secs(20), || async {
        org.invitations()
            .get_opt("dave")
            .await
            .ok()
            .and_then(|i| i.is_none().then_some(()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        org.memberships()
            .get_opt(&member.name_any())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(org.bindings_of(&dave).await.len(), 2);

    // Metrics show the work.
    let metrics = http::get(&format!("{}/metrics", operator.metrics_url)).await;
    assert_eq!(metrics.status, 200);
    for wanted in [
        "\nkube_org_invitation_emails_sent_total ",
        "\nkube_org_invitation_expiry_lateness_seconds_bucket",
        "\nkube_org_invitations{phase=\"Pending\"} ",
        "\nkube_org_invitation_accepts_total{outcome=\"joined\"} ",
        "\nkube_org_reconciles_total{controller=\"invitation\"} ",
        "\nkube_org_reconcile_duration_seconds_count{controller=\"invitation\"} ",
        "\nkube_org_api_writes_total{resource=\"invitations/status\",verb=\"replace\"} ",
        "\nkube_org_leader 1",
    ] {
        assert!(
            metrics.body.contains(wanted),
            "{wanted} not in:\n{}",
            metrics.body
        );
    }
    org.delete().await;
}

/// The roles an accepted invitation offered become kube-org RoleBindings, one per
/// role, named deterministically, and the access controller turns them into access the
/// cluster's authorizer grants (asserted with SubjectAccessReview).
#[tokio::test]
async fn accepted_invitation_grants_the_roles() {
    let (operator, org) = shared_org(json!({})).await;
    let erin = email("erin");
    let prod = unique("prod");
    let roles = json!([
        {"role": "editor", "scope": {"resourceType": "deployment", "resources": [prod]}},
        {"role": "viewer", "scope": {"resourceType": "elasticsearch", "all": true}, "access": "console"}
    ]);
    let (invitation, mail) = org
        .invite_and_mail("erin", &erin, json!({"spec": {"roles": roles}}))
        .await;
    let token = mail.token();
    let answer = http::post_json(&accept_url(operator), &token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["status"], "accepted");

    let bindings = org.bindings_of(&erin).await;
    assert_eq!(bindings.len(), 2, "{bindings:?}");
    for offered in &invitation.spec.roles {
        let name = kube_org::invitations::join::binding_name(&erin, offered);
        let binding = bindings
            .iter()
            .find(|b| b.name_any() == name)
            .unwrap_or_else(|| panic!("no RoleBinding {name} in {bindings:?}"));
        assert_eq!(binding.spec.member.0, erin);
        assert_eq!(binding.spec.role, offered.role);
        assert_eq!(binding.spec.scope, offered.scope);
        assert_eq!(binding.spec.access, offered.access);
        assert!(binding.owner_references().is_empty());
    }
    let namespace: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({"metadata": {
        "name": prod,
        "labels": {"kube-org.io/organization": org.name, "kube-org.io/resource-type": "deployment"},
    }}))
    .expect("a namespace");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(org.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("labelling a resource namespace");
    let edit = common::Can::new("update", "deployments.apps", Some(&prod));
    common::eventually_can(&org.client, &erin, edit, true, Duration::from_secs(10)).await;
    let admin_only = common::Can::new(
        "create",
        "rolebindings.rbac.authorization.k8s.io",
        Some(&prod),
    );
    assert!(
        !common::can(&org.client, &erin, admin_only).await,
        "editor, not admin"
    );
    org.delete().await;
}

#[tokio::test]
async fn a_short_ttl_expires_on_the_second_and_the_link_dies() {
    let (operator, org) = shared_org(json!({})).await;
    let fay = email("fay");
    let (sent, mail) = org
        .invite_and_mail("fay", &fay, json!({"spec": {"ttl": "3s"}}))
        .await;
    let expires_at = sent.status.and_then(|s| s.expires_at).expect("expiresAt").0;
    let token = mail.token();

    // Watch it flip: within a second of expiresAt, not before.
    let api = org.invitations();
    let mut seen_at = None;
    let give_up = Instant::now() + Duration::from_secs(15);
    while Instant::now() < give_up {
        let invitation = api.get("fay").await.unwrap();
        let now = Timestamp::now();
        if phase(&invitation) == Some(InvitationPhase::Expired) {
            seen_at = Some(now);
            assert_eq!(condition(&invitation, "Ready").1, "Expired");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen_at = seen_at.expect("the invitation never expired");
    let late = seen_at.duration_since(expires_at).as_secs_f64();
    assert!(late >= 0.0, "expired {late}s before expiresAt");
    assert!(late < 1.0, "expired {late}s after expiresAt");

    assert_neutral(operator, &token, "an expired link").await;
    org.delete().await;
}

#[tokio::test]
async fn resend_gives_a_working_link_and_kills_the_old_one() {
    let (operator, org) = shared_org(json!({})).await;
    let gus = email("gus");
    let old = org.invite_and_mail("gus", &gus, json!({})).await.1.token();
    let mailpit = Mailpit::shared();

    org.invitations()
        .patch(
            "gus",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resend": 1}})),
        )
        .await
        .unwrap();
    org.wait("gus", "re-sent", |i| {
        i.status.as_ref().is_some_and(|s| s.issued_for_resend == 1)
            && condition(i, "Delivered").0 == "True"
    })
    .await;
    let new = last_mail(&mailpit, &gus, 2).await.token();
    assert_ne!(old, new);

    assert_neutral(operator, &old, "the link before the resend").await;
    let answer = http::post_json(&accept_url(operator), &new).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    org.delete().await;
}

#[tokio::test]
async fn deleting_a_pending_invitation_kills_its_link() {
    let (operator, org) = shared_org(json!({})).await;
    let hal = email("hal");
    let token = org.invite_and_mail("hal", &hal, json!({})).await.1.token();
    org.invitations()
        .delete("hal", &DeleteParams::background())
        .await
        .unwrap();
    // At once: the accept endpoint reads the Invitation again before accepting.
    assert_neutral(operator, &token, "the link of a deleted invitation").await;
    assert!(org.members_of(&hal).await.is_empty());
    org.delete().await;
}

#[tokio::test]
async fn unknown_used_and_expired_links_get_one_neutral_answer() {
    let (operator, org) = shared_org(json!({})).await;
    let (ivy, jan) = (email("ivy"), email("jan"));
    let used = org.invite_and_mail("ivy", &ivy, json!({})).await.1.token();
    let expired = org
        .invite_and_mail("jan", &jan, json!({"spec": {"ttl": "1s"}}))
        .await
        .1
        .token();
    assert_eq!(
        http::post_json(&accept_url(operator), &used).await.status,
        200
    );
    org.wait("jan", "Expired", |i| {
        phase(i) == Some(InvitationPhase::Expired)
    })
    .await;

    let unknown = "0123456789abcdef".repeat(4);
    let mut answers = Vec::new();
    for token in [
        unknown.as_str(),
        used.as_str(),
        expired.as_str(),
        "not-a-token",
    ] {
        let json = http::post_json(&accept_url(operator), token).await;
        let form = http::post_form(&accept_url(operator), token).await;
        answers.push((json.status, json.body, form.status, form.body));
    }
    assert_eq!(answers[0].0, 404);
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "answers differ: {answers:#?}"
    );
    org.delete().await;
}

#[tokio::test]
async fn refusals_say_why_as_conditions() {
    let (_, org) =
        shared_org(json!({"membership": {"allowedEmailDomains": ["example.com"]}})).await;

    org.invite("outsider", "kim@elsewhere.test", json!({}))
        .await;
    let refused = org.wait_ready_reason("outsider", "DomainNotAllowed").await;
    assert_eq!(phase(&refused), None);
    assert!(condition(&refused, "Ready").2.contains("example.com"));

    let lou = email("lou");
    let member: Membership = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
        "metadata": {"name": "lou", "namespace": org.home}, "spec": {"email": lou}
    }))
    .unwrap();
    org.memberships()
        .create(&PostParams::default(), &member)
        .await
        .unwrap();
    org.invite("lou", &lou, json!({})).await;
    org.wait_ready_reason("lou", "AlreadyMember").await;

    let max = email("max");
    org.invite("max-first", &max, json!({})).await;
    org.wait_delivered("max-first").await;
    org.invite("max-second", &max.to_uppercase(), json!({}))
        .await;
    let duplicate = org
        .wait_ready_reason("max-second", "DuplicateInvitation")
        .await;
    assert!(condition(&duplicate, "Ready").2.contains("max-first"));
    // The older one stays valid.
    assert_eq!(
        condition(&org.invitations().get("max-first").await.unwrap(), "Ready").1,
        "LinkSent"
    );
    // Cancelling the first lets the second go out.
    org.invitations()
        .delete("max-first", &DeleteParams::default())
        .await
        .unwrap();
    org.wait_delivered("max-second").await;

    org.invite(
        "wizard",
        &email("ned"),
        json!({"spec": {"roles": [{"role": "wizard", "scope": {"resourceType": "deployment", "all": true}}]}}),
    )
    .await;
    org.wait_ready_reason("wizard", "UnknownRole").await;

    org.invite(
        "misplaced",
        &email("oda"),
        json!({"spec": {"roles": [{"role": "organization-owner", "scope": {"resourceType": "deployment", "all": true}}]}}),
    )
    .await;
    org.wait_ready_reason("misplaced", "NeedsOrganizationScope")
        .await;

    // The refusal is also an Event.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(org.client.clone(), &org.home);
    eventually(
        "a DomainNotAllowed Event",
        Duration::from_secs(10),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("DomainNotAllowed"))
                .then_some(())
        },
    )
    .await;

    // None of the refused ones got an email.
    let mailpit = Mailpit::shared();
    assert!(mailpit.ids_to("kim@elsewhere.test").await.is_empty());
    assert!(mailpit.ids_to(&lou).await.is_empty());
    // One email per invitation to max: the second only after the first was cancelled.
    assert_eq!(mailpit.wait_for(&max, 2).await.len(), 2);
    org.delete().await;
}

#[tokio::test]
async fn without_an_accept_url_the_operator_flag_gives_the_link() {
    let client = common::client().await;
    operator().await;
    let org = Org::create(
        &client,
        None,
        json!({"invitations": {"from": "team@example.com"}}),
    )
    .await;
    let pia = email("pia");
    let (_, mail) = org.invite_and_mail("pia", &pia, json!({})).await;
    assert!(
        mail.link()
            .starts_with(&format!("{DEFAULT_BASE}/invitations/accept?token="))
    );
    assert_eq!(mail.from, "team@example.com");
    org.delete().await;
}

#[tokio::test]
async fn auto_resend_sends_a_new_link_after_expiry() {
    let (_, org) = shared_org(json!({"invitations": {"autoResend": 1}})).await;
    let quinn = email("quinn");
    org.invite("quinn", &quinn, json!({"spec": {"ttl": "2s"}}))
        .await;
    let mailpit = Mailpit::shared();
    let first = last_mail(&mailpit, &quinn, 1).await.token();
    let resent = org
        .wait("quinn", "re-sent automatically", |i| {
            i.status.as_ref().is_some_and(|s| s.auto_resends == 1)
                && condition(i, "Delivered").0 == "True"
        })
        .await;
    assert_eq!(phase(&resent), Some(InvitationPhase::Pending));
    let second = last_mail(&mailpit, &quinn, 2).await.token();
    assert_ne!(first, second);
    org.wait("quinn", "Expired after the one automatic resend", |i| {
        phase(i) == Some(InvitationPhase::Expired)
    })
    .await;
    assert_eq!(mailpit.ids_to(&quinn).await.len(), 2);
    org.delete().await;
}

#[tokio::test]
async fn an_exclusive_organization_refuses_a_member_of_another() {
    let client = common::client().await;
    let operator = operator().await;
    let open = Org::create(&client, Some(&operator.base_url), json!({})).await;
    let strict = Org::create(
        &client,
        Some(&operator.base_url),
        json!({"membership": {"exclusive": true}}),
    )
    .await;
    let rae = email("rae");
    let token = open.invite_and_mail("rae", &rae, json!({})).await.1.token();
    assert_eq!(
        http::post_json(&accept_url(operator), &token).await.status,
        200
    );

    let token = strict
        .invite_and_mail("rae", &rae, json!({}))
        .await
        .1
        .token();
    let answer = http::post_json(&accept_url(operator), &token).await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    let message = answer.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(&format!("member of organization {}", open.name)),
        "{message}"
    );
    assert!(strict.members_of(&rae).await.is_empty());
    // The link still works once the person has left the other organization.
    open.memberships()
        .delete(
            &kube_org::invitations::join::membership_name(&rae),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    eventually(
        "the other membership gone",
        Duration::from_secs(20),
        || async {
            let answer = http::post_json(&accept_url(operator), &token).await;
            (answer.status == 200).then_some(())
        },
    )
    .await;
    open.delete().await;
    strict.delete().await;
}

#[tokio::test]
async fn two_concurrent_accepts_make_exactly_one_membership() {
    let (operator, org) = shared_org(json!({})).await;
    let sam = email("sam");
    let token = org.invite_and_mail("sam", &sam, json!({})).await.1.token();
    let url = accept_url(operator);
    let (a, b, c) = tokio::join!(
        http::post_json(&url, &token),
        http::post_form(&url, &token),
        http::post_json(&url, &token)
    );
    let mut statuses = vec![a.status, b.status, c.status];
    statuses.sort();
    assert_eq!(statuses, vec![200, 404, 404], "{a:?}\n{b:?}\n{c:?}");
    assert_eq!(org.members_of(&sam).await.len(), 1);
    assert_eq!(org.bindings_of(&sam).await.len(), 1);
    org.delete().await;
}

#[tokio::test]
async fn smtp_down_then_delivered_once_it_is_back() {
    let client = common::client().await;
    let mut smtp = OwnMailpit::start().await;
    let shard = unique("smtp-down");
    let operator = Operator::start(&args(&[
        "--organizations-selector",
        ACCESS_ELSEWHERE,
        "--smtp-url",
        &smtp.smtp_url(),
        "--smtp-from",
        "kube-org@example.com",
        "--invitations-selector",
        &format!("{SHARD}={shard}"),
    ]))
    .await;
    let org = Org::create(&client, Some(&operator.base_url), json!({})).await;
    smtp.stop();
    let tom = email("tom");
    org.invite("tom", &tom, json!({"metadata": {"labels": {SHARD: shard}}}))
        .await;

    let failed = org
        .wait("tom", "Delivered=False with the SMTP error", |i| {
            condition(i, "Delivered").1 == "SMTPError"
        })
        .await;
    assert_eq!(phase(&failed), Some(InvitationPhase::Pending));
    let (_, _, message) = condition(&failed, "Delivered");
    assert!(message.contains(&smtp.smtp_url()), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");

    smtp.resume().await;
    let delivered = org.wait_delivered("tom").await;
    assert!(delivered.status.unwrap().delivery_attempts >= 2);
    let mails = smtp.api().wait_for(&tom, 1).await;
    let answer = http::post_json(&accept_url(&operator), &mails[0].token()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    operator.stop();
    org.delete().await;
}

#[tokio::test]
async fn the_accept_endpoint_limits_each_client() {
    let operator = Operator::start(&args(&[
        "--organizations-selector",
        ACCESS_ELSEWHERE,
        "--accept-rate-limit",
        "3",
        "--invitations-selector",
        &format!("{SHARD}={}", unique("nothing")),
    ]))
    .await;
    let url = format!("{}?token={}", accept_url(&operator), "ab".repeat(32));
    for _ in 0..3 {
        assert_eq!(http::get(&url).await.status, 200);
    }
    let limited = http::get(&url).await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(limited.header("cache-control"), Some("no-store"));

    // Oversized bodies are refused before any lookup.
    let big = format!("token={}", "a".repeat(10_000));
    let operator_b = Operator::start(&args(&[
        "--organizations-selector",
        ACCESS_ELSEWHERE,
        "--invitations-selector",
        &format!("{SHARD}=none"),
    ]))
    .await;
    let answer = http::request(
        "POST",
        &accept_url(&operator_b),
        Some("application/x-www-form-urlencoded"),
        big.as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 413);
    operator.stop();
    operator_b.stop();
}

/// Two exclusive organizations invite one person; both links are confirmed at the same
/// moment through the endpoint. The claim serialises them: exactly one joins, the other
/// is told why. Five rounds, a new person each.
#[tokio::test]
async fn concurrent_accepts_into_two_exclusive_organizations_admit_one() {
    let client = common::client().await;
    let operator = operator().await;
    let exclusive = json!({"membership": {"exclusive": true}});
    let a = Org::create(&client, Some(&operator.base_url), exclusive.clone()).await;
    let b = Org::create(&client, Some(&operator.base_url), exclusive).await;
    let url = accept_url(operator);
    for round in 0..5 {
        let person = email(&format!("uma{round}"));
        let name = format!("uma-{round}");
        let (_, mail_a) = a.invite_and_mail(&name, &person, json!({})).await;
        let before = Mailpit::shared().ids_to(&person).await.len();
        b.invite(&name, &person, json!({})).await;
        b.wait_delivered(&name).await;
        let mail_b = last_mail(&Mailpit::shared(), &person, before + 1).await;
        let (token_a, token_b) = (mail_a.token(), mail_b.token());
        assert_ne!(token_a, token_b);

        let (answer_a, answer_b) = tokio::join!(
            http::post_json(&url, &token_a),
            http::post_json(&url, &token_b)
        );
        let (winner, loser, answer) = match (answer_a.status, answer_b.status) {
            (200, 409) => (&a, &b, &answer_b),
            (409, 200) => (&b, &a, &answer_a),
            other => panic!(
                "round {round}: expected one 200 and one 409, got {other:?}:\n{answer_a:?}\n{answer_b:?}"
            ),
        };
        assert_eq!(answer.json()["status"], "refused");
        let message = answer.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains(&format!("organization {}", winner.name)) && message.contains(&person),
            "round {round}: the refusal names the organization that has {person}: {message}"
        );
        assert_eq!(winner.members_of(&person).await.len(), 1, "round {round}");
        assert!(loser.members_of(&person).await.is_empty(), "round {round}");
        // The loser's invitation is still pending: its link works once the person leaves.
        assert_eq!(
            phase(&loser.invitations().get(&name).await.unwrap()),
            Some(InvitationPhase::Pending)
        );
        // The claim is a Lease in the operator's namespace, held by the winner.
        let claim = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
            client.clone(),
            "kube-org-system",
        )
        .get(&kube_org::exclusive::claim_name(&person))
        .await
        .expect("the claim");
        assert_eq!(
            claim.spec.and_then(|s| s.holder_identity).as_deref(),
            Some(winner.name.as_str())
        );
        assert_eq!(
            claim.metadata.owner_references.unwrap()[0].name,
            winner.name
        );
    }
    a.delete().await;
    b.delete().await;
}

/// Two Organizations name one home namespace: only the one its label names is consulted
/// (its acceptURL, its name on the page); a namespace marked for another organization
/// refuses invitations and kills their links.
#[tokio::test]
async fn twin_organizations_only_the_marked_one_decides_invitations() {
    let client = common::client().await;
    let operator = operator().await;
    let first = Org::create(&client, Some(&operator.base_url), json!({})).await;
    let twin_name = unique("twin");
    let twin: Organization = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": twin_name},
        "spec": {
            "displayName": "The twin",
            "owners": ["owner@example.com"],
            "homeNamespace": first.home,
            "invitations": {"acceptURL": "http://twin.invalid"},
        }
    }))
    .unwrap();
    let orgs = Api::<Organization>::all(client.clone());
    orgs.create(&PostParams::default(), &twin).await.unwrap();

    let vic = email("vic");
    let (_, mail) = first.invite_and_mail("vic", &vic, json!({})).await;
    assert!(
        mail.link().starts_with(&accept_url(operator)),
        "the link goes to the marked organization's acceptURL: {}",
        mail.link()
    );
    assert!(mail.subject.contains(&format!("Team {}", first.name)));
    let answer = http::post_json(&accept_url(operator), &mail.token()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["organization"],
        format!("Team {}", first.name)
    );

    // Marked for another organization: refused, and a link already sent dies.
    let wes = email("wes");
    let (_, mail) = first.invite_and_mail("wes", &wes, json!({})).await;
    mark_home(&client, &first.home, "someone-else").await;
    let refused = first.wait_ready_reason("wes", "OrganizationNotFound").await;
    let message = condition(&refused, "Ready").2;
    assert!(
        message.contains("claimed by organization someone-else"),
        "{message}"
    );
    assert_neutral(operator, &mail.token(), "a link into an unmarked namespace").await;
    assert!(first.members_of(&wes).await.is_empty());

    let _ = orgs.delete(&twin_name, &DeleteParams::background()).await;
    first.delete().await;
}

/// The claim API the reconcilers share, as the operator's ServiceAccount (so the Role in
/// manifests/rbac.yaml is what allows it): taken once, held, refused to others, released
/// only by its holder, and exactly one of many concurrent claims wins.
#[tokio::test]
async fn exclusive_claims_are_taken_once_and_released_by_their_holder() {
    use kube_org::exclusive::{Claimed, claim, release, undo};

    let client = common::client().await;
    let operator = operator().await;
    let exclusive = json!({"membership": {"exclusive": true}});
    let a = Org::create(&client, Some(&operator.base_url), exclusive.clone()).await;
    let b = Org::create(&client, Some(&operator.base_url), exclusive).await;
    let orgs = Api::<Organization>::all(client.clone());
    let (org_a, org_b) = (
        orgs.get(&a.name).await.unwrap(),
        orgs.get(&b.name).await.unwrap(),
    );
    let mut config = kube::Config::infer().await.expect("a kubeconfig");
    config.auth_info.impersonate = Some(common::OPERATOR_USER.to_string());
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".to_string(),
        "system:serviceaccounts:kube-org-system".to_string(),
        "system:authenticated".to_string(),
    ]);
    let operator_client = Client::try_from(config).expect("a client");
    let ns = "kube-org-system";

    let zoe = email("zoe");
    let take = |org| claim(&operator_client, ns, &zoe, org, &[]);
    let Claimed::Taken(first) = take(&org_a).await.unwrap() else {
        panic!("a free claim is taken");
    };
    assert_eq!(take(&org_a).await.unwrap(), Claimed::AlreadyHeld);
    // The second join renewed it: undoing the first take leaves it.
    assert!(!undo(&operator_client, ns, &first).await.unwrap());
    let Claimed::Refused(message) = take(&org_b).await.unwrap() else {
        panic!("b must be refused while a holds the claim");
    };
    assert!(message.contains(&a.name), "{message}");
    assert!(!release(&operator_client, ns, &zoe, &org_b).await.unwrap());
    assert!(release(&operator_client, ns, &zoe, &org_a).await.unwrap());
    assert!(!release(&operator_client, ns, &zoe, &org_a).await.unwrap());
    let Claimed::Taken(taken) = take(&org_b).await.unwrap() else {
        panic!("a released claim is free");
    };
    assert!(
        undo(&operator_client, ns, &taken).await.unwrap(),
        "unused: given back"
    );
    assert!(matches!(take(&org_a).await.unwrap(), Claimed::Taken(_)));

    let yan = email("yan");
    let attempts = (0..8).map(|i| {
        let org = if i % 2 == 0 { &org_a } else { &org_b };
        claim(&operator_client, ns, &yan, org, &[])
    });
    let results = futures::future::join_all(attempts).await;
    let taken = results
        .iter()
        .filter(|r| matches!(r, Ok(Claimed::Taken(_))))
        .count();
    assert_eq!(taken, 1, "{results:?}");
    assert!(
        results.iter().all(|r| r.is_ok()),
        "no claim gives up: {results:?}"
    );
    a.delete().await;
    b.delete().await;
}

/// An invitation whose email cannot be built (an invitee address or a sender no mail
/// server takes) says so on itself, `InvalidMessage`, and stops nothing else: the
/// invitations next to it are delivered, and fixing the Organization sends it.
#[tokio::test]
async fn an_unbuildable_email_is_reported_on_its_invitation_and_stops_nothing_else() {
    let (_, org) = shared_org(json!({})).await;
    org.invite("bad-address", "bad(addr@example.com", json!({}))
        .await;
    let good = email("next-to-bad");
    let (_, mail) = org.invite_and_mail("good", &good, json!({})).await;
    assert!(mail.link().contains("token="));
    let bad = org.wait_ready_reason("bad-address", "InvalidMessage").await;
    let (status, reason, message) = condition(&bad, "Delivered");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidMessage")
    );
    assert!(message.contains("bad(addr@example.com"), "{message}");
    assert_eq!(phase(&bad), Some(InvitationPhase::Pending));

    // A sender no mail server takes: every invitation of that organization says so,
    // other organizations are served, and fixing the sender sends it.
    let (_, broken) = shared_org(json!({"invitations": {"from": "kube(org@example.com"}})).await;
    let waiting = email("bad-sender");
    broken.invite("bad-sender", &waiting, json!({})).await;
    let refused = broken
        .wait_ready_reason("bad-sender", "InvalidMessage")
        .await;
    assert!(
        condition(&refused, "Ready")
            .2
            .contains("kube(org@example.com")
    );
    let (_, other) = shared_org(json!({})).await;
    other
        .invite_and_mail("unaffected", &email("unaffected"), json!({}))
        .await;
    Api::<Organization>::all(broken.client.clone())
        .patch(
            &broken.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"invitations": {"from": "kube-org@example.com"}}})),
        )
        .await
        .expect("fixing the sender");
    broken.wait_delivered("bad-sender").await;
    org.delete().await;
    broken.delete().await;
    other.delete().await;
}

/// A client that is not behind a trusted proxy cannot pick its own bucket by sending
/// `X-Forwarded-For`; behind a trusted proxy each forwarded client has its own.
#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_still_limited() {
    let untrusted = Operator::start(&args(&[
        "--organizations-selector",
        ACCESS_ELSEWHERE,
        "--accept-rate-limit",
        "3",
        // Trusts a proxy network the test is not in: 127.0.0.1 is an ordinary client.
        "--trusted-proxies",
        "192.0.2.0/24,2001:db8::/32",
        "--invitations-selector",
        &format!("{SHARD}={}", unique("nothing")),
    ]))
    .await;
    let url = format!("{}?token={}", accept_url(&untrusted), "ab".repeat(32));
    let mut statuses = Vec::new();
    for i in 0..5 {
        let spoofed = format!("198.51.100.{i}");
        statuses.push(
            http::get_with(&url, &[("X-Forwarded-For", &spoofed)])
                .await
                .status,
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);

    let behind_proxy = Operator::start(&args(&[
        "--organizations-selector",
        ACCESS_ELSEWHERE,
        "--accept-rate-limit",
        "2",
        "--trusted-proxies",
        "127.0.0.0/8",
        "--invitations-selector",
        &format!("{SHARD}={}", unique("nothing")),
    ]))
    .await;
    let url = format!("{}?token={}", accept_url(&behind_proxy), "ab".repeat(32));
    let url = &url;
    let forwarded = |client: &'static str| async move {
        // The client forged the first entry; the trusted proxy appended the real one.
        let header = format!("203.0.113.250, {client}");
        http::get_with(url, &[("X-Forwarded-For", &header)])
            .await
            .status
    };
    assert_eq!(forwarded("198.51.100.1").await, 200);
    assert_eq!(forwarded("198.51.100.1").await, 200);
    assert_eq!(forwarded("198.51.100.1").await, 429, "the same client");
    assert_eq!(forwarded("198.51.100.2").await, 200, "another client");
    untrusted.stop();
    behind_proxy.stop();
}

/// `kubectl get inv` shows when a pending invitation expires as a time a person can
/// read (kubectl renders a future `date` column as `<invalid>`).
#[tokio::test]
async fn kubectl_get_shows_when_a_pending_invitation_expires() {
    let client = common::client().await;
    let operator = operator().await;
    let org = Org::create(&client, Some(&operator.base_url), json!({})).await;
    let yara = email("yara");
    let (sent, _) = org.invite_and_mail("yara", &yara, json!({})).await;
    let expires = sent
        .status
        .and_then(|s| s.expires_at)
        .expect("a pending invitation says when it expires");
    let output = std::process::Command::new("kubectl")
        .args(["get", "inv", "yara", "-n", &org.home])
        .output()
        .expect("running kubectl");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(table.contains("EXPIRES"), "{table}");
    assert!(!table.contains("<invalid>"), "{table}");
    let shown = expires.0.to_string();
    assert!(table.contains(&shown), "{shown} not in:\n{table}");
    org.delete().await;
}
