//! Identity, as the person meets it (no impersonation anywhere here): an invitation
//! email read from Mailpit, its link opened, the person signed in at the real OpenID
//! Connect provider of the test environment (its login form driven over HTTP), the
//! acceptance confirmed; then the person's own ID token — a kubectl and a kube client
//! that carry only that token — reaches the granted namespace and nothing else.
//!
//! The apiserver maps username = "oidc:" + email (`tests/controlplane/launcher/oidc.go`),
//! so organizations here set `spec.identity.usernamePrefix: "oidc:"` (or show what
//! happens when they do not). This binary runs one operator of its own, configured with
//! the provider (`--oidc-*`) and the cluster (`--cluster-server-url`, `--cluster-ca-file`).

mod common;
#[path = "invitations/http.rs"]
mod http;
#[path = "invitations/mailpit.rs"]
#[allow(dead_code)] // the invitation tests use the rest
mod mailpit;

use std::time::Duration;

use base64::Engine;
use common::oidc::{Provider, client_with, kubectl_with, unescape_html};
use common::{Operator, can, create_organization, eventually, unique, wait_for_namespace};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding as NativeRoleBinding;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_org::api::{Invitation, InvitationPhase, Membership};
use mailpit::{Mail, Mailpit};
use serde_json::json;
use tokio::sync::OnceCell;

/// How long the operator may take to react (bounds a hung test).
const REACT: Duration = Duration::from_secs(20);
/// The Secret the operator reads the client secret from (the one manifests/rbac.yaml
/// lets it read).
const OIDC_SECRET: &str = "kube-org-oidc";

/// The cluster under test as the launcher's kubeconfig describes it: the server URL and
/// a PEM file of its CA.
fn cluster() -> (String, std::path::PathBuf) {
    let cluster = common::oidc::current_cluster()
        .cluster
        .expect("the cluster's connection");
    let pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("certificate-authority-data is base64"),
        (None, Some(path)) => std::fs::read(path).expect("reading certificate-authority"),
        (None, None) => panic!("the kubeconfig's cluster has no CA"),
    };
    let dir = std::env::var_os("KUBE_ORG_CONTROLPLANE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("{}.ca.pem", unique("cluster")));
    std::fs::write(&path, pem).expect("writing the cluster CA");
    (cluster.server.expect("a server URL"), path)
}

/// This binary's operator: access, invitations (the shared Mailpit) and sign-in at the
/// test provider, its redirect URL on its own accept endpoint.
async fn operator() -> &'static Operator {
    static OPERATOR: OnceCell<Operator> = OnceCell::const_new();
    OPERATOR
        .get_or_init(|| async {
            let client = common::client().await;
            let provider = Provider::from_env();
            let secret: Secret = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": OIDC_SECRET, "namespace": "kube-org-system"},
                "stringData": {"client-secret": provider.client_secret},
            }))
            .expect("a Secret");
            Api::<Secret>::namespaced(client, "kube-org-system")
                .patch(
                    OIDC_SECRET,
                    &PatchParams::apply("kube-org-tests").force(),
                    &Patch::Apply(&secret),
                )
                .await
                .expect("writing the OIDC client Secret");
            let (server, ca) = cluster();
            Operator::start_with(|base| {
                let mut args = common::shared_mail_args();
                args.extend(
                    [
                        "--accept-rate-limit",
                        "100000",
                        "--accept-rate-limit-global",
                        "100000",
                        "--oidc-issuer-url",
                        &provider.issuer,
                        "--oidc-client-id",
                        &provider.client_id,
                        "--oidc-secret",
                        &format!("kube-org-system/{OIDC_SECRET}"),
                        "--oidc-ca-file",
                        &provider.ca,
                        "--oidc-redirect-url",
                        &format!("{base}/invitations/callback"),
                        "--cluster-server-url",
                        &server,
                        "--cluster-ca-file",
                        &ca.to_string_lossy(),
                        "--oidc-kubectl-client-id",
                        &provider.public_client_id,
                    ]
                    .map(str::to_string),
                );
                args
            })
            .await
        })
        .await
}

/// An organization of one test, served by this binary's operator.
struct Org {
    client: Client,
    name: String,
    home: String,
    base_url: String,
}

impl Org {
    /// An organization whose links point at the operator; `spec` is merged in.
    async fn create(spec: serde_json::Value) -> Org {
        let client = common::client().await;
        let operator = operator().await;
        let name = unique("id");
        let mut full = json!({
            "displayName": format!("Team {name}"),
            "owners": [format!("owner-{name}@example.com")],
            "resourceTypes": ["deployment"],
            "invitations": {"acceptURL": operator.base_url},
        });
        for (key, value) in spec.as_object().expect("spec fields") {
            if let (Some(into), Some(extra)) = (full[key].as_object_mut(), value.as_object()) {
                into.extend(extra.clone());
            } else {
                full[key] = value.clone();
            }
        }
        let home = create_organization(&client, &name, json!({}), full).await;
        wait_for_namespace(&client, &home, REACT).await;
        Org {
            client,
            name,
            home,
            base_url: operator.base_url.clone(),
        }
    }

    /// An organization that binds `oidc:` + the email (as the test apiserver names
    /// people) and asks invitees to sign in, with one resource namespace.
    async fn requiring_login() -> (Org, String) {
        let org = Org::create(json!({
            "identity": {"usernamePrefix": "oidc:"},
            "invitations": {"requireLogin": true},
        }))
        .await;
        let granted = org.resource().await;
        (org, granted)
    }

    /// A resource namespace of the organization.
    async fn resource(&self) -> String {
        let name = unique("res");
        let ns: Namespace = serde_json::from_value(json!({"metadata": {
            "name": name,
            "labels": {"kube-org.io/organization": self.name, "kube-org.io/resource-type": "deployment"},
        }}))
        .expect("a Namespace");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating a resource namespace");
        name
    }

    /// Invites `email` as a viewer of the resource `namespace`; returns the email.
    async fn invite(&self, email: &str, namespace: &str) -> Mail {
        let invitation: Invitation = serde_json::from_value(json!({
            "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
            "metadata": {"name": unique("inv"), "namespace": self.home},
            "spec": {"email": email, "roles": [
                {"role": "viewer", "scope": {"resourceType": "deployment", "resources": [namespace]}},
            ]},
        }))
        .expect("an Invitation");
        Api::<Invitation>::namespaced(self.client.clone(), &self.home)
            .create(&PostParams::default(), &invitation)
            .await
            .expect("creating the Invitation");
        self.mail_to(email).await
    }

    /// The invitation email of this organization to `email`, read from Mailpit.
    async fn mail_to(&self, email: &str) -> Mail {
        let mailpit = Mailpit::shared();
        eventually(
            &format!("the invitation of {} to {email}", self.name),
            Duration::from_secs(30),
            || async {
                for id in mailpit.ids_to(email).await.into_iter().rev() {
                    let mail = mailpit.message(&id).await;
                    if mail.text.contains(&self.name) || mail.subject.contains(&self.name) {
                        return Some(mail);
                    }
                }
                None
            },
        )
        .await
    }

    fn memberships(&self) -> Api<Membership> {
        Api::namespaced(self.client.clone(), &self.home)
    }

    async fn members_of(&self, email: &str) -> Vec<Membership> {
        let list = self.memberships().list(&ListParams::default()).await;
        list.expect("listing Memberships")
            .items
            .into_iter()
            .filter(|m| m.spec.email.normalized() == email.to_lowercase())
            .collect()
    }

    async fn invitation_phase(&self, email: &str) -> Option<InvitationPhase> {
        let list = Api::<Invitation>::namespaced(self.client.clone(), &self.home)
            .list(&ListParams::default())
            .await
            .expect("listing Invitations");
        list.items
            .into_iter()
            .find(|i| i.spec.email.normalized() == email.to_lowercase())
            .and_then(|i| i.status.and_then(|s| s.phase))
    }
}

/// What the browser ends on after confirming and signing in.
struct Accepted {
    status: u16,
    page: String,
}

/// The person's browser: opens the link from `mail`, confirms, is sent to the provider,
/// signs in there as `email`/`password`, and comes back to kube-org's callback with the
/// cookie kube-org set.
async fn accept_signing_in_as(org: &Org, mail: &Mail, email: &str, password: &str) -> Accepted {
    let provider = Provider::from_env();
    let link = mail.link();
    assert!(
        link.starts_with(&org.base_url),
        "the link points at the operator: {link}"
    );
    let page = http::get(&link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<form"), "{}", page.body);
    let confirmed = http::post_form(
        &format!("{}/invitations/accept", org.base_url),
        &mail.token(),
    )
    .await;
    assert_eq!(
        confirmed.status, 303,
        "confirming sends the browser to sign in: {}",
        confirmed.body
    );
    let location = confirmed
        .header("location")
        .expect("a Location")
        .to_string();
    assert!(
        location.starts_with(&provider.issuer),
        "to the provider: {location}"
    );
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );
    let cookie = confirmed
        .header("set-cookie")
        .expect("the sign-in's cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let callback = format!("{}/invitations/callback", org.base_url);
    let back = provider
        .sign_in_at(&location, email, password, &callback)
        .await
        .unwrap_or_else(|e| panic!("signing in as {email}: {e}"));
    let answer = http::get_with(back.as_str(), &[("Cookie", &cookie)]).await;
    assert!(
        answer
            .header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "the sign-in's cookie is cleared"
    );
    Accepted {
        status: answer.status,
        page: answer.body,
    }
}

/// `kubectl get pods -n NAMESPACE` with only `token`: Ok(stdout) or Err(stderr).
async fn get_pods(token: &str, namespace: &str) -> Result<String, String> {
    let output = kubectl_with(token, &["get", "pods", "-n", namespace]).await;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn an_invitee_signs_in_accepts_and_reaches_the_granted_namespace_with_their_own_token() {
    let (org, granted) = Org::requiring_login().await;
    let other = org.resource().await;
    let provider = Provider::from_env();
    let alice = provider.user("alice@example.com").clone();

    let mail = org.invite(&alice.email, &granted).await;
    let accepted = accept_signing_in_as(&org, &mail, &alice.email, &alice.password).await;
    assert_eq!(accepted.status, 200, "{}", accepted.page);
    let page = unescape_html(&accepted.page);
    assert!(page.contains("you are a member now"), "{page}");
    assert!(
        page.contains("oidc:alice@example.com"),
        "the name the cluster knows: {page}"
    );
    assert!(
        page.contains(&format!("<code>{granted}</code>: view")),
        "where she can go: {page}"
    );
    assert!(!page.contains(&other), "only where she can go: {page}");

    // The offered kubeconfig: kubelogin at the issuer with the public client, and the
    // cluster's server and CA — which work, with her token in place of kubelogin.
    let tag = page.find("<pre id=\"kubeconfig\"").expect("a kubeconfig");
    let start = tag + page[tag..].find('>').expect("the tag's end") + 1;
    let end = start + page[start..].find("</pre>").expect("its end");
    let offered: serde_json::Value =
        serde_yaml::from_str(&page[start..end]).expect("the kubeconfig is YAML");
    let args = offered["users"][0]["user"]["exec"]["args"].to_string();
    assert!(args.contains("get-token"), "{args}");
    assert!(
        args.contains(&format!("--oidc-issuer-url={}", provider.issuer)),
        "{args}"
    );
    assert!(
        args.contains(&format!("--oidc-client-id={}", provider.public_client_id)),
        "{args}"
    );
    assert_eq!(
        offered["contexts"][0]["context"]["namespace"],
        granted.as_str()
    );

    // The Membership records who signed in and the name bound.
    let member = eventually("alice's Membership with status.user", REACT, || async {
        org.members_of(&alice.email).await.into_iter().find(|m| {
            m.status
                .as_ref()
                .is_some_and(|s| s.user.is_some() && s.subject.is_some())
        })
    })
    .await;
    let status = member.status.expect("a status");
    let subject = status.subject.expect("status.subject");
    assert_eq!(subject.issuer, provider.issuer);
    assert_eq!(subject.subject, alice.subject);
    assert_eq!(subject.username, "oidc:alice@example.com");
    assert_eq!(status.user.as_deref(), Some("oidc:alice@example.com"));
    assert_eq!(
        org.invitation_phase(&alice.email).await,
        Some(InvitationPhase::Accepted)
    );

    // Her own token (a fresh sign-in at the provider, no impersonation).
    let token = provider.id_token(&alice.email).await;
    let pods = eventually(
        "alice's kubectl lists pods where she was granted",
        REACT,
        || async { get_pods(&token, &granted).await.ok() },
    )
    .await;
    assert!(!pods.contains("Forbidden"), "{pods}");
    let refused = get_pods(&token, &other).await.expect_err("not elsewhere");
    assert!(refused.contains("Forbidden"), "{refused}");
    let client = client_with(&token).await;
    Api::<Pod>::namespaced(client.clone(), &granted)
        .list(&ListParams::default())
        .await
        .expect("her kube client lists pods where she was granted");
    let elsewhere = Api::<Pod>::namespaced(client, &other)
        .list(&ListParams::default())
        .await
        .expect_err("and not elsewhere");
    assert!(
        matches!(&elsewhere, kube::Error::Api(s) if s.code == 403),
        "{elsewhere}"
    );

    // The offered kubeconfig's cluster, with her token for the user.
    let mut with_token = offered.clone();
    with_token["users"][0]["user"] = json!({"token": token});
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique("offered")));
    std::fs::write(&path, serde_yaml::to_string(&with_token).expect("YAML")).expect("writing");
    let output = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "pods"])
        .output()
        .await
        .expect("running kubectl");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "the offered kubeconfig reaches the cluster in her namespace: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The unprefixed name holds nothing: the grant is to the name the cluster uses.
    let admin = common::client().await;
    let pods_in = common::Can::new("list", "pods", Some(&granted));
    assert!(can(&admin, "oidc:alice@example.com", pods_in).await);
    assert!(!can(&admin, "alice@example.com", pods_in).await);
}

#[tokio::test]
async fn an_invitee_who_signs_in_as_someone_else_is_refused_and_nothing_is_created() {
    let (org, granted) = Org::requiring_login().await;
    let provider = Provider::from_env();
    let (alice, bob) = (
        provider.user("alice@example.com").clone(),
        provider.user("bob@example.com").clone(),
    );
    let mail = org.invite(&bob.email, &granted).await;
    let refused = accept_signing_in_as(&org, &mail, &alice.email, &alice.password).await;
    assert_eq!(refused.status, 403, "{}", refused.page);
    let page = unescape_html(&refused.page);
    assert!(
        page.contains("You signed in as alice@example.com")
            && page.contains("this invitation is for bob@example.com"),
        "names both addresses: {page}"
    );
    assert!(page.contains("Nothing was created"), "{page}");
    assert!(org.members_of(&bob.email).await.is_empty());
    assert!(org.members_of(&alice.email).await.is_empty());
    assert_eq!(
        org.invitation_phase(&bob.email).await,
        Some(InvitationPhase::Pending),
        "the link still works for bob"
    );

    // The owners see the attempt on the Invitation.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(org.client.clone(), &org.home);
    let event = eventually("a SignInRefused Event", REACT, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SignInRefused"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .note
            .as_deref()
            .is_some_and(|n| n.contains("alice@example.com")),
        "{event:?}"
    );

    // Bob himself, with the same link.
    let accepted = accept_signing_in_as(&org, &mail, &bob.email, &bob.password).await;
    assert_eq!(accepted.status, 200, "{}", accepted.page);
    assert_eq!(org.members_of(&bob.email).await.len(), 1);
}

#[tokio::test]
async fn an_email_the_provider_has_not_verified_is_refused() {
    let (org, granted) = Org::requiring_login().await;
    let provider = Provider::from_env();
    let unverified = provider.user("unverified@example.com").clone();
    assert!(!unverified.email_verified);
    let mail = org.invite(&unverified.email, &granted).await;
    let refused = accept_signing_in_as(&org, &mail, &unverified.email, &unverified.password).await;
    assert_eq!(refused.status, 403, "{}", refused.page);
    let page = unescape_html(&refused.page);
    assert!(page.contains("has not verified"), "{page}");
    assert!(org.members_of(&unverified.email).await.is_empty());
    assert_eq!(
        org.invitation_phase(&unverified.email).await,
        Some(InvitationPhase::Pending)
    );
}

#[tokio::test]
async fn a_mixed_case_address_is_bound_as_the_cluster_spells_it() {
    // The provider gives Dora@Example.com; the apiserver keeps that case, so the
    // lower-case default would bind a name nobody logs in as. Signing in tells kube-org
    // the cluster's spelling, and the Membership binds it (spec.user).
    let (org, granted) = Org::requiring_login().await;
    let provider = Provider::from_env();
    let dora = provider.user("dora@example.com").clone();
    let mail = org.invite("dora@example.com", &granted).await;
    let accepted = accept_signing_in_as(&org, &mail, &dora.email, &dora.password).await;
    assert_eq!(accepted.status, 200, "{}", accepted.page);
    let member = eventually("dora's Membership", REACT, || async {
        org.members_of("dora@example.com")
            .await
            .into_iter()
            .find(|m| m.status.as_ref().is_some_and(|s| s.user.is_some()))
    })
    .await;
    assert_eq!(member.spec.user.as_deref(), Some("oidc:Dora@Example.com"));
    let status = member.status.expect("a status");
    assert_eq!(status.user.as_deref(), Some("oidc:Dora@Example.com"));
    assert_eq!(
        status.subject.expect("status.subject").username,
        "oidc:Dora@Example.com"
    );
    let token = provider.id_token(&dora.email).await;
    eventually("dora's kubectl lists pods", REACT, || async {
        get_pods(&token, &granted).await.ok()
    })
    .await;
}

#[tokio::test]
async fn the_username_prefix_decides_whom_the_real_token_reaches_and_changing_it_rebinds_in_place()
{
    // A declared member, no sign-in: without a prefix kube-org binds bob@example.com,
    // which the cluster never calls anyone.
    let org = Org::create(json!({})).await;
    let granted = org.resource().await;
    let provider = Provider::from_env();
    let bob = provider.user("bob@example.com").clone();
    let membership: Membership = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Membership",
        "metadata": {"name": "bob", "namespace": org.home},
        "spec": {"email": bob.email},
    }))
    .expect("a Membership");
    org.memberships()
        .create(&PostParams::default(), &membership)
        .await
        .expect("creating bob's Membership");
    let binding: kube_org::api::RoleBinding = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "RoleBinding",
        "metadata": {"name": "bob-viewer", "namespace": org.home},
        "spec": {"member": bob.email, "role": "viewer",
                 "scope": {"resourceType": "deployment", "resources": [granted]}},
    }))
    .expect("a RoleBinding");
    Api::<kube_org::api::RoleBinding>::namespaced(org.client.clone(), &org.home)
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating bob's RoleBinding");
    let admin = common::client().await;
    let pods_in = common::Can::new("list", "pods", Some(&granted));
    common::eventually_can(&admin, "bob@example.com", pods_in, true, REACT).await;
    let token = provider.id_token(&bob.email).await;
    let refused = get_pods(&token, &granted)
        .await
        .expect_err("the real token gets nothing");
    assert!(refused.contains("Forbidden"), "{refused}");
    let natives: Api<NativeRoleBinding> = Api::namespaced(admin.clone(), &granted);
    let view = format!("kube-org:{}:view", org.name);
    let before = natives.get(&view).await.expect("the native binding");

    // The cluster admin says how the cluster names people.
    Api::<kube_org::api::Organization>::all(admin.clone())
        .patch(
            &org.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"identity": {"usernamePrefix": "oidc:"}}})),
        )
        .await
        .expect("setting the prefix");
    eventually("bob's own kubectl lists pods", REACT, || async {
        get_pods(&token, &granted).await.ok()
    })
    .await;
    assert!(!can(&admin, "bob@example.com", pods_in).await);
    let after = natives.get(&view).await.expect("the native binding");
    assert_eq!(
        before.uid(),
        after.uid(),
        "re-bound in place: the binding was updated, never deleted and created again"
    );
    let member = eventually("bob's status.user", REACT, || async {
        org.memberships().get("bob").await.ok().filter(|m| {
            m.status.as_ref().and_then(|s| s.user.as_deref()) == Some("oidc:bob@example.com")
        })
    })
    .await;
    assert!(
        member.status.and_then(|s| s.subject).is_none(),
        "nobody signed in"
    );
}

#[tokio::test]
async fn everyone_in_an_auto_join_group_has_access_without_a_membership_until_the_entry_goes() {
    let org = Org::create(json!({
        "identity": {"usernamePrefix": "oidc:", "groupsPrefix": "oidc:"},
    }))
    .await;
    let granted = org.resource().await;
    let other = org.resource().await;
    let admin = common::client().await;
    let organizations = Api::<kube_org::api::Organization>::all(admin.clone());
    organizations
        .patch(
            &org.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"membership": {"groups": [{
                "group": "developers",
                "roles": [{"role": "viewer", "scope": {"resourceType": "deployment", "resources": [granted]}}],
            }]}}})),
        )
        .await
        .expect("adding the auto-join entry");
    let provider = Provider::from_env();
    let (alice, bob) = (
        provider.user("alice@example.com").clone(),
        provider.user("bob@example.com").clone(),
    );
    assert!(alice.groups.contains(&"developers".to_string()));
    assert!(!bob.groups.contains(&"developers".to_string()));

    // Alice is in the group at the provider: her own token reaches the namespace,
    // though she has no Membership.
    let alice_token = provider.id_token(&alice.email).await;
    eventually("alice, in developers, lists pods", REACT, || async {
        get_pods(&alice_token, &granted).await.ok()
    })
    .await;
    assert!(org.members_of(&alice.email).await.is_empty());
    let refused = get_pods(&alice_token, &other)
        .await
        .expect_err("only there");
    assert!(refused.contains("Forbidden"), "{refused}");
    let bob_token = provider.id_token(&bob.email).await;
    let refused = get_pods(&bob_token, &granted)
        .await
        .expect_err("bob is not in the group");
    assert!(refused.contains("Forbidden"), "{refused}");

    // The entry's status on the Organization.
    let status = eventually("the group's status", REACT, || async {
        organizations
            .get(&org.name)
            .await
            .ok()
            .and_then(|o| o.status)
            .and_then(|s| s.groups.into_iter().find(|g| g.group == "developers"))
    })
    .await;
    assert_eq!(status.subject.as_deref(), Some("oidc:developers"));
    assert_eq!(
        (status.ready.as_str(), status.reason.as_str()),
        ("True", "Bound")
    );
    assert_eq!(status.resources, std::slice::from_ref(&granted));

    // Removing the entry revokes at once.
    organizations
        .patch(
            &org.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"membership": {"groups": null}}})),
        )
        .await
        .expect("removing the entry");
    eventually("alice loses access with the entry", REACT, || async {
        get_pods(&alice_token, &granted)
            .await
            .err()
            .filter(|e| e.contains("Forbidden"))
    })
    .await;
}

#[tokio::test]
async fn without_sign_in_the_json_answer_says_where_to_go_and_offers_a_kubeconfig() {
    let org = Org::create(json!({"identity": {"usernamePrefix": "oidc:"}})).await;
    let granted = org.resource().await;
    let email = format!("{}@example.com", unique("carol"));
    let mail = org.invite(&email, &granted).await;
    let answer = http::post_json(
        &format!("{}/invitations/accept", org.base_url),
        &mail.token(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["status"], "accepted");
    assert_eq!(json["user"], format!("oidc:{email}"));
    assert_eq!(
        json["access"],
        json!([{"namespace": granted, "clusterRoles": ["view"]}])
    );
    assert_eq!(json["roles"][0]["role"], "viewer");
    let kubeconfig: serde_json::Value =
        serde_yaml::from_str(json["kubeconfig"].as_str().expect("a kubeconfig")).expect("YAML");
    assert_eq!(
        kubeconfig["contexts"][0]["context"]["namespace"],
        granted.as_str()
    );
    let member = org.members_of(&email).await;
    assert!(
        member[0]
            .status
            .as_ref()
            .and_then(|s| s.subject.as_ref())
            .is_none(),
        "nobody signed in"
    );
}

#[tokio::test]
async fn a_callback_without_this_browsers_sign_in_accepts_nothing() {
    let (org, granted) = Org::requiring_login().await;
    let email = "bob@example.com";
    let mail = org.invite(email, &granted).await;
    let callback = format!("{}/invitations/callback", org.base_url);

    // No cookie: another browser (or an attacker's link) cannot finish a sign-in.
    let answer = http::get(&format!("{callback}?code=forged&state=forged")).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains("started in another browser"),
        "{}",
        answer.body
    );

    // This browser's cookie, another state (a sign-in someone else started).
    let confirmed = http::post_form(
        &format!("{}/invitations/accept", org.base_url),
        &mail.token(),
    )
    .await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    let cookie = confirmed
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("the sign-in's cookie")
        .to_string();
    let answer = http::get_with(
        &format!("{callback}?code=forged&state=forged"),
        &[("Cookie", &cookie)],
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    // The provider refusing (the person cancelled) creates nothing either.
    let location = confirmed.header("location").expect("a Location");
    let sent_state = url::Url::parse(location)
        .expect("a URL")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state");
    let answer = http::get_with(
        &format!("{callback}?error=access_denied&error_description=cancelled&state={sent_state}"),
        &[("Cookie", &cookie)],
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("access_denied"), "{}", answer.body);
    assert!(org.members_of(email).await.is_empty());
    assert_eq!(
        org.invitation_phase(email).await,
        Some(InvitationPhase::Pending)
    );
}
