//! Time-bound roles against the real control plane: `RoleBinding.spec.expiresAt`
//! revokes on the second (asked of the cluster's authorizer with SubjectAccessReview),
//! says so in status and an Event, grants again when moved later; an Invitation's
//! `roles[].expiresAfter` counts from acceptance; admission refuses malformed times;
//! `kubectl org grant --for/--until`.

mod common;
#[path = "invitations/http.rs"]
mod http;
#[allow(dead_code)] // this binary reads the shared Mailpit only
#[path = "invitations/mailpit.rs"]
mod mailpit;

use std::time::Duration;

use common::org::{REACT, TestOrg, all};
use common::{Can, can, eventually, eventually_can, eventually_event, operator, unique};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kube_org::api::{Invitation, Organization, RoleBinding};
use serde_json::json;

/// The longest a revocation may lag `expiresAt`, as the authorizer answers.
const LATE: Duration = Duration::from_secs(1);

/// A whole second at least `seconds` from now.
fn seconds_from_now(seconds: i64) -> Timestamp {
    let now = Timestamp::now().as_second();
    Timestamp::from_second(now + seconds + 1).expect("a time")
}

fn ready(binding: &RoleBinding) -> Option<(String, String, String)> {
    let status = binding.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Creates a viewer-of-every-deployment binding for `member` ending at `expires_at`.
async fn create_timed(
    org: &TestOrg,
    name: &str,
    member: &str,
    expires_at: &str,
) -> Result<RoleBinding, kube::Error> {
    let b: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": org.home},
        "spec": {"member": member, "role": "viewer", "scope": all("deployment"), "expiresAt": expires_at},
    }))
    .expect("rolebinding");
    org.bindings().create(&PostParams::default(), &b).await
}

async fn timed_binding(org: &TestOrg, name: &str, member: &str, expires_at: &str) {
    create_timed(org, name, member, expires_at)
        .await
        .expect("creating a time-bound rolebinding");
}

async fn wait_reason(org: &TestOrg, name: &str, reason: &str) -> RoleBinding {
    let api = org.bindings();
    eventually(&format!("RoleBinding {name}: {reason}"), REACT, || async {
        let b = api.get(name).await.ok()?;
        (ready(&b)?.1 == reason).then_some(b)
    })
    .await
}

/// A binding expiring in ~3 s: allowed until then, denied within a second after (as the
/// authorizer answers), `Ready=False Expired` with `status.expiredAt` and an Event, no
/// further writes; moving `expiresAt` later grants again.
#[tokio::test]
async fn a_binding_grants_until_expires_at_and_nothing_from_that_second_on() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let res = org.resource("deployment").await;
    org.member("bob@example.com").await;
    let expires_at = seconds_from_now(3);
    timed_binding(
        &org,
        "bob-viewer",
        "bob@example.com",
        &expires_at.to_string(),
    )
    .await;
    let read = Can::new("get", "pods", Some(&res));
    eventually_can(&org.client, "bob@example.com", read, true, REACT).await;
    let bound = wait_reason(&org, "bob-viewer", "Bound").await;
    let (_, _, message) = ready(&bound).expect("Ready");
    assert!(
        message.ends_with(&format!("; until {expires_at}")),
        "{message}"
    );

    // Still granted just before the second...
    let almost = expires_at - SignedDuration::from_millis(300);
    let wait = almost.duration_since(Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    assert!(
        can(&org.client, "bob@example.com", read).await,
        "revoked before expiresAt"
    );
    // ... and not within a second after it.
    let late = loop {
        let allowed = can(&org.client, "bob@example.com", read).await;
        let now = Timestamp::now();
        if !allowed {
            break now.duration_since(expires_at);
        }
        assert!(
            now < expires_at + SignedDuration::try_from(LATE).unwrap(),
            "still allowed {LATE:?} after expiresAt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("revoked {late:?} after expiresAt");
    assert!(late < SignedDuration::try_from(LATE).unwrap(), "{late:?}");

    let expired = wait_reason(&org, "bob-viewer", "Expired").await;
    let (status, _, message) = ready(&expired).expect("Ready");
    assert_eq!(status, "False");
    assert!(
        message.starts_with(&format!(
            "expired at {expires_at}: bob@example.com no longer holds viewer on deployment/*"
        )),
        "{message}"
    );
    let binding_status = expired.status.clone().expect("status");
    assert_eq!(binding_status.expired_at.map(|t| t.0), Some(expires_at));
    assert!(binding_status.resources.is_empty());
    let expired_event = eventually_event(
        &org.client,
        &org.home,
        "Expired",
        "bob-viewer",
        REACT,
        |_| true,
    )
    .await;
    assert_eq!(expired_event.type_.as_deref(), Some("Normal"));
    // Expired is a resting state: no status rewrites, no requeue loop writing it again.
    let version = expired.resource_version();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = org.bindings().get("bob-viewer").await.expect("binding");
    assert_eq!(again.resource_version(), version, "{:?}", again.status);
    assert!(!can(&org.client, "bob@example.com", read).await);

    // Later again: granted again.
    let later = seconds_from_now(3600);
    org.bindings()
        .patch(
            "bob-viewer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"expiresAt": later.to_string()}})),
        )
        .await
        .expect("moving expiresAt later");
    eventually_can(&org.client, "bob@example.com", read, true, REACT).await;
    let bound = wait_reason(&org, "bob-viewer", "Bound").await;
    assert_eq!(bound.status.expect("status").expired_at, None);
    org.delete().await;
}

/// Several members expiring at different seconds: each loses access on its own second
/// (the reconcile is scheduled for the next one each time), the others keep theirs.
#[tokio::test]
async fn staggered_expiries_each_revoke_on_their_second() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let res = org.resource("deployment").await;
    let read = Can::new("get", "pods", Some(&res));
    let first = seconds_from_now(2);
    let people = ["p0@example.com", "p1@example.com", "p2@example.com"];
    for (i, person) in people.iter().enumerate() {
        org.member(person).await;
        let at = first + SignedDuration::from_secs(2 * i as i64);
        timed_binding(&org, &format!("p{i}"), person, &at.to_string()).await;
    }
    org.member("forever@example.com").await;
    org.bind(
        "forever",
        "forever@example.com",
        "viewer",
        all("deployment"),
        "full",
    )
    .await;
    for person in people.iter().chain(["forever@example.com"].iter()) {
        eventually_can(&org.client, person, read, true, REACT).await;
    }
    for (i, person) in people.iter().enumerate() {
        let at = first + SignedDuration::from_secs(2 * i as i64);
        let deadline = at + SignedDuration::try_from(LATE).unwrap();
        loop {
            let allowed = can(&org.client, person, read).await;
            let now = Timestamp::now();
            if !allowed {
                assert!(now >= at, "{person} revoked before {at}");
                break;
            }
            assert!(
                now < deadline,
                "{person} still allowed at {now}, expired {at}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for later in &people[i + 1..] {
            assert!(can(&org.client, later, read).await, "{later} revoked early");
        }
    }
    assert!(can(&org.client, "forever@example.com", read).await);
    org.delete().await;
}

/// Admission says what to write for a malformed time or duration, and refuses
/// `expiresAfter` on an SSO group's roles.
#[tokio::test]
async fn admission_refuses_malformed_times_with_readable_messages() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let shape = "must be an RFC 3339 time such as 2026-12-31T00:00:00Z";
    for (bad, says) in [
        ("tomorrow", shape),
        ("2026-12-31", shape),
        ("2026-12-31T00:00:00", shape),
        ("2026-12-31 00:00:00Z", shape),
        // The right shape, no such day: refused all the same.
        (
            "2026-02-30T00:00:00Z",
            "must be a date and time that exists",
        ),
    ] {
        let error = create_timed(&org, &unique("bad"), "bob@example.com", bad)
            .await
            .expect_err(bad);
        let message = common::error_message(&error);
        println!("{bad}: {message}");
        assert!(
            message.contains("spec.expiresAt") && message.contains(says),
            "{bad}: {message}"
        );
    }

    let invitation: Invitation = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
        "metadata": {"name": "soon", "namespace": org.home},
        "spec": {"email": "dave@example.com", "roles": [
            {"role": "viewer", "scope": all("deployment"), "expiresAfter": "a while"}
        ]},
    }))
    .expect("invitation");
    let error = Api::<Invitation>::namespaced(org.client.clone(), &org.home)
        .create(&PostParams::default(), &invitation)
        .await
        .expect_err("a duration that is none");
    let message = common::error_message(&error);
    assert!(
        message.contains("spec.roles[0].expiresAfter")
            && message.contains("must be a positive duration such as 72h"),
        "{message}"
    );

    let grouped: Organization = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Organization",
        "metadata": {"name": unique("grouped")},
        "spec": {"owners": ["alice@example.com"], "membership": {"groups": [
            {"group": "developers", "roles": [
                {"role": "viewer", "scope": all("deployment"), "expiresAfter": "8h"}
            ]}
        ]}},
    }))
    .expect("organization");
    let error = Api::<Organization>::all(org.client.clone())
        .create(&PostParams::default(), &grouped)
        .await
        .expect_err("expiresAfter on a group's roles");
    let message = common::error_message(&error);
    assert!(
        message.contains("expiresAfter belongs to an Invitation's roles"),
        "{message}"
    );
    org.delete().await;
}

/// An invitation offering a role with `expiresAfter`: the RoleBinding created on
/// acceptance expires that long after `acceptedAt`.
#[tokio::test]
async fn an_accepted_time_bound_role_expires_that_long_after_acceptance() {
    let operator = operator().await;
    let org = TestOrg::with_spec(
        &["alice@example.com"],
        json!({"invitations": {"acceptURL": operator.base_url}}),
    )
    .await;
    let dave = format!("{}@example.com", unique("dave"));
    let mailpit = mailpit::Mailpit::shared();
    let before = mailpit.ids_to(&dave).await.len();
    let invitation: Invitation = serde_json::from_value(json!({
        "apiVersion": "kube-org.io/v1alpha1", "kind": "Invitation",
        "metadata": {"name": "dave", "namespace": org.home},
        "spec": {"email": dave, "roles": [
            {"role": "viewer", "scope": all("deployment"), "expiresAfter": "2h30m"},
            {"role": "billing-admin", "scope": {"organization": {}}}
        ]},
    }))
    .expect("invitation");
    let invitations: Api<Invitation> = Api::namespaced(org.client.clone(), &org.home);
    invitations
        .create(&PostParams::default(), &invitation)
        .await
        .expect("creating the invitation");
    let mail = mailpit
        .wait_for(&dave, before + 1)
        .await
        .pop()
        .expect("the invitation email");
    let answer = http::post_json(
        &format!("{}/invitations/accept", operator.base_url),
        &mail.token(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let accepted = invitations.get("dave").await.expect("the invitation");
    let accepted_at = accepted
        .status
        .and_then(|s| s.accepted_at)
        .expect("acceptedAt")
        .0;
    let bindings: Vec<RoleBinding> = org
        .bindings()
        .list(&Default::default())
        .await
        .expect("bindings")
        .items
        .into_iter()
        .filter(|b| b.spec.member.normalized() == dave)
        .collect();
    let viewer = bindings
        .iter()
        .find(|b| b.spec.role == "viewer")
        .expect("the viewer binding");
    let expected = accepted_at + SignedDuration::from_secs(2 * 3600 + 1800);
    assert_eq!(
        viewer.spec.expires_at.as_ref().map(|t| t.0.clone()),
        Some(expected.to_string())
    );
    let billing = bindings
        .iter()
        .find(|b| b.spec.role == "billing-admin")
        .expect("the billing-admin binding");
    assert_eq!(billing.spec.expires_at, None);
    let res = org.resource("deployment").await;
    eventually_can(
        &org.client,
        &dave,
        Can::new("get", "pods", Some(&res)),
        true,
        REACT,
    )
    .await;
    let bound = wait_reason(&org, &viewer.name_any(), "Bound").await;
    assert!(
        ready(&bound)
            .expect("Ready")
            .2
            .ends_with(&format!("until {expected}")),
        "{:?}",
        ready(&bound)
    );
    org.delete().await;
}

/// Runs `kubectl-org` with `args`: exit code, stdout, stderr.
async fn kubectl_org(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-org"))
        .args(args)
        .env_remove("KUBE_ORG_ORGANIZATION")
        .output()
        .await
        .expect("running kubectl-org");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `kubectl org grant --for 8h` makes a time-bound binding the cluster enforces;
/// granting again moves a later end, never an earlier one; `--until` in the past is
/// refused before anything is written; `members` shows the end.
#[tokio::test]
async fn plugin_grant_for_and_until() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let res = org.resource("deployment").await;
    org.member("bob@example.com").await;
    let grant = |extra: &'static [&'static str]| {
        let org = org.name.clone();
        async move {
            let mut args = vec![
                "grant",
                "bob@example.com",
                "--org",
                &org,
                "--role",
                "viewer",
                "--scope",
                "deployment/*",
            ];
            args.extend_from_slice(extra);
            kubectl_org(&args).await
        }
    };
    let before = Timestamp::now();
    let (code, stdout, stderr) = grant(&["--for", "8h"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(" created: viewer on deployment/* until "),
        "{stdout}"
    );
    let bindings = org
        .bindings()
        .list(&Default::default())
        .await
        .expect("list")
        .items;
    let bob: Vec<&RoleBinding> = bindings
        .iter()
        .filter(|b| b.spec.member.0 == "bob@example.com")
        .collect();
    assert_eq!(bob.len(), 1);
    let name = bob[0].name_any();
    let end: Timestamp = bob[0]
        .spec
        .expires_at
        .as_ref()
        .expect("expiresAt")
        .parse()
        .expect("a time");
    let eight_hours = SignedDuration::from_hours(8);
    assert!(
        end >= before + eight_hours - SignedDuration::from_secs(1)
            && end <= Timestamp::now() + eight_hours,
        "{end}"
    );
    eventually_can(
        &org.client,
        "bob@example.com",
        Can::new("get", "pods", Some(&res)),
        true,
        REACT,
    )
    .await;

    // Shorter: unchanged. Longer: extended.
    let (code, stdout, _) = grant(&["--for", "1h"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains(" unchanged: "), "{stdout}");
    let (code, stdout, _) = grant(&["--until", "2099-01-01T00:00:00Z"]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!(
            "rolebinding.kube-org.io/{name} extended: bob@example.com holds viewer on deployment/* until 2099-01-01T00:00:00Z"
        )),
        "{stdout}"
    );
    // The past, and both flags: usage errors, nothing written.
    let (code, _, stderr) = grant(&["--until", "2020-01-01T00:00:00Z"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not in the future"), "{stderr}");
    let (code, _, stderr) = grant(&["--for", "1h", "--until", "2099-01-01T00:00:00Z"]).await;
    assert_eq!(code, 2, "{stderr}");
    let unchanged = org.bindings().get(&name).await.expect("binding");
    assert_eq!(
        unchanged.spec.expires_at.map(|t| t.0),
        Some("2099-01-01T00:00:00Z".to_string())
    );

    eventually("members shows the end", REACT, || async {
        let (code, stdout, _) = kubectl_org(&["members", "--org", &org.name]).await;
        (code == 0 && stdout.contains("viewer on deployment/* until 2099-01-01T00:00:00Z"))
            .then_some(())
    })
    .await;
    // Without --for/--until: the role stops expiring.
    let (code, stdout, _) = grant(&[]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains(" made permanent: "), "{stdout}");
    let permanent = org.bindings().get(&name).await.expect("binding");
    assert_eq!(permanent.spec.expires_at, None);
    // An end decades away did not upset the operator's timers: it still reconciles.
    eventually("the binding's status drops its end", REACT, || async {
        let b = org.bindings().get(&name).await.ok()?;
        let (status, _, message) = ready(&b)?;
        (status == "True" && !message.contains(" until ")).then_some(())
    })
    .await;
    org.delete().await;
}
