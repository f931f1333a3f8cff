//! The invitation state machine, without a cluster.

use super::*;
use crate::api::{Access, Scope};
use crate::invitations::fixtures::{self, organization, role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

fn org(json: serde_json::Value) -> Organization {
    let mut spec = serde_json::json!({"displayName": "Acme", "homeNamespace": "org-acme"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), json.as_object()) {
        spec.extend(extra.clone());
    }
    organization("acme", spec)
}

fn invitation(name: &str, email: &str, created: i64) -> Invitation {
    let mut invitation = fixtures::invitation(
        name,
        email,
        vec![role("viewer", Scope::all_of("deployment"), Access::Full)],
    );
    invitation.spec.ttl = Some("1h".into());
    invitation.metadata.creation_timestamp = Some(Time(at(created)));
    invitation
}

fn member(email: &str) -> Membership {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("m-{email}"), "namespace": "org-acme"},
        "spec": {"email": email}
    }))
    .unwrap()
}

fn defaults() -> Defaults {
    Defaults {
        from: Some("noreply@example.com".into()),
        accept_base_url: Some("https://accept.example.com".into()),
        smtp_configured: true,
    }
}

struct World {
    org: Option<Organization>,
    memberships: Vec<Membership>,
    others: Vec<Invitation>,
    defaults: Defaults,
}

impl World {
    fn new() -> Self {
        World {
            org: Some(org(serde_json::json!({}))),
            memberships: vec![],
            others: vec![],
            defaults: defaults(),
        }
    }

    fn decide(&self, invitation: &Invitation, now: Timestamp) -> Decision {
        let mut invitations: Vec<&Invitation> = self.others.iter().collect();
        invitations.push(invitation);
        decide(&Facts {
            invitation,
            organization: self.org.as_ref(),
            no_organization: None,
            memberships: self.memberships.iter().collect(),
            invitations,
            defaults: &self.defaults,
            now,
        })
    }
}

fn send_plan(decision: Decision) -> SendPlan {
    match decision {
        Decision::Send(plan) => plan,
        other => panic!("expected Send, got {other:?}"),
    }
}

/// The status, whether it keeps a working link (`status.token`), the wake-up and event.
fn settled(decision: Decision) -> (InvitationStatus, bool, Option<Timestamp>, Option<Note>) {
    match decision {
        Decision::Settle {
            status,
            wake_at,
            event,
        } => {
            let link = status.token.is_some();
            (status, link, wake_at, event)
        }
        other => panic!("expected Settle, got {other:?}"),
    }
}

fn condition<'a>(status: &'a InvitationStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

/// Runs the shell's happy path by hand: send at `now`, delivered at `now`.
fn delivered_at(invitation: &Invitation, world: &World, now: Timestamp) -> Invitation {
    let plan = send_plan(world.decide(invitation, now));
    let mut sent = invitation.clone();
    sent.status = Some(sending_status(&sent, &plan, fixtures::token(), now));
    sent.status = Some(delivered_status(&sent, now));
    sent
}

#[test]
fn a_new_invitation_is_sent_with_an_expiry_from_its_ttl() {
    let world = World::new();
    let plan = send_plan(world.decide(&invitation("dave", "dave@example.com", 0), at(100)));
    assert_eq!(
        plan.generation,
        LinkGeneration {
            resend: 0,
            auto_resends: 0
        }
    );
    assert_eq!(plan.attempt, 1);
    assert_eq!(plan.expires_at, at(100 + 3600));
    assert_eq!(plan.from, "noreply@example.com");
    assert_eq!(plan.accept_base_url, "https://accept.example.com");
}

#[test]
fn the_organization_overrides_sender_link_and_ttl() {
    let mut world = World::new();
    world.org = Some(org(serde_json::json!({"invitations": {
        "ttl": "30m", "from": "team@acme.example", "acceptURL": "https://join.acme.example"
    }})));
    let mut inv = invitation("dave", "dave@example.com", 0);
    inv.spec.ttl = None;
    let plan = send_plan(world.decide(&inv, at(0)));
    assert_eq!(plan.expires_at, at(1800));
    assert_eq!(plan.from, "team@acme.example");
    assert_eq!(plan.accept_base_url, "https://join.acme.example");
}

#[test]
fn expiry_is_whole_seconds_rounded_up() {
    let now = Timestamp::from_millisecond(1_000_250).unwrap();
    assert_eq!(expiry(now, Duration::from_secs(3)), at(1004));
    assert_eq!(expiry(at(10), Duration::from_secs(3)), at(13));
}

#[test]
fn a_delivered_invitation_waits_for_its_deadline_without_writing() {
    let world = World::new();
    let sent = delivered_at(&invitation("dave", "dave@example.com", 0), &world, at(100));
    let status = sent.status.clone().unwrap();
    assert_eq!(status.phase, Some(InvitationPhase::Pending));
    assert_eq!(status.sent_at, Some(Time(at(100))));
    assert_eq!(status.delivery_attempts, 1);
    assert_eq!(condition(&status, DELIVERED).status, "True");
    assert_eq!(condition(&status, READY).reason, "LinkSent");

    let (again, link, wake_at, event) = settled(world.decide(&sent, at(200)));
    assert_eq!(
        Some(&again),
        sent.status.as_ref(),
        "no status write when nothing changed"
    );
    assert!(link, "the link keeps working");
    assert_eq!(
        wake_at,
        Some(at(3700)),
        "scheduled for the deadline, not polled"
    );
    assert_eq!(event, None);
}

#[test]
fn at_the_deadline_it_expires_and_the_token_is_burned() {
    let world = World::new();
    let sent = delivered_at(&invitation("dave", "dave@example.com", 0), &world, at(100));
    let (status, link, wake_at, event) = settled(world.decide(&sent, at(3700)));
    assert_eq!(status.phase, Some(InvitationPhase::Expired));
    assert_eq!(condition(&status, READY).reason, "Expired");
    assert_eq!(condition(&status, READY).status, "False");
    assert!(!link, "the token's hashes are removed");
    assert_eq!(wake_at, None);
    assert_eq!(event.unwrap().reason, "Expired");

    let mut expired = sent.clone();
    expired.status = Some(status.clone());
    let (later, link, _, event) = settled(world.decide(&expired, at(9999)));
    assert_eq!(later, status, "expired stays expired, quietly");
    assert!(!link && event.is_none());
}

#[test]
fn raising_resend_issues_a_new_link_on_pending_and_expired_invitations() {
    let world = World::new();
    let sent = delivered_at(&invitation("dave", "dave@example.com", 0), &world, at(100));
    let mut raised = sent.clone();
    raised.spec.resend = 1;
    let plan = send_plan(world.decide(&raised, at(200)));
    assert_eq!(plan.generation.resend, 1);
    assert_eq!(plan.attempt, 1);
    assert_eq!(plan.expires_at, at(3800));

    let (expired_status, ..) = settled(world.decide(&sent, at(5000)));
    let mut expired = sent.clone();
    expired.status = Some(expired_status);
    expired.spec.resend = 1;
    let plan = send_plan(world.decide(&expired, at(5000)));
    assert_eq!(plan.generation.resend, 1);
    let status = sending_status(&expired, &plan, fixtures::token(), at(5000));
    assert_eq!(status.phase, Some(InvitationPhase::Pending));
    assert_eq!(status.issued_for_resend, 1);
    assert_eq!(status.sent_at, None, "the new link is not sent yet");
}

#[test]
fn auto_resend_reissues_expired_links_that_many_times() {
    let mut world = World::new();
    world.org = Some(org(serde_json::json!({"invitations": {"autoResend": 1}})));
    let sent = delivered_at(&invitation("dave", "dave@example.com", 0), &world, at(0));
    let plan = send_plan(world.decide(&sent, at(3600)));
    assert_eq!(
        plan.generation,
        LinkGeneration {
            resend: 0,
            auto_resends: 1
        }
    );
    let mut again = sent.clone();
    again.status = Some(sending_status(&again, &plan, fixtures::token(), at(3600)));
    again.status = Some(delivered_status(&again, at(3600)));
    assert_eq!(again.status.as_ref().unwrap().auto_resends, 1);
    let (status, ..) = settled(world.decide(&again, at(7200)));
    assert_eq!(status.phase, Some(InvitationPhase::Expired), "only once");
}

#[test]
fn a_failed_delivery_stays_pending_and_is_retried_with_growing_delays() {
    let world = World::new();
    let inv = invitation("dave", "dave@example.com", 0);
    let plan = send_plan(world.decide(&inv, at(0)));
    let mut failed = inv.clone();
    failed.status = Some(sending_status(&failed, &plan, fixtures::token(), at(0)));
    failed.status = Some(failed_status(
        &failed,
        "SMTP server smtp://127.0.0.1:1: Connection refused",
        retry_delay(1),
        at(0),
    ));
    let status = failed.status.clone().unwrap();
    assert_eq!(status.phase, Some(InvitationPhase::Pending));
    let delivered = condition(&status, DELIVERED);
    assert_eq!(
        (delivered.status.as_str(), delivered.reason.as_str()),
        ("False", "SMTPError")
    );
    assert!(delivered.message.contains("Connection refused"));

    let retry = send_plan(world.decide(&failed, at(1)));
    assert_eq!(retry.attempt, 2);
    assert_eq!(retry.generation, plan.generation);
    assert_eq!(retry_delay(1), Duration::from_secs(1));
    assert_eq!(retry_delay(3), Duration::from_secs(4));
    assert_eq!(retry_delay(100), Duration::from_secs(300));

    // A crash after "sending" was recorded leads to one more attempt, not silence.
    let mut crashed = inv.clone();
    crashed.status = Some(sending_status(&crashed, &plan, fixtures::token(), at(0)));
    assert_eq!(send_plan(world.decide(&crashed, at(5))).attempt, 2);
}

#[test]
fn missing_settings_wait_with_a_reason_instead_of_sending() {
    let mut world = World::new();
    world.defaults = Defaults::default();
    let inv = invitation("dave", "dave@example.com", 0);
    let (status, ..) = settled(world.decide(&inv, at(0)));
    assert_eq!(condition(&status, DELIVERED).reason, "NotConfigured");
    assert!(condition(&status, DELIVERED).message.contains("--smtp-url"));

    world.defaults.smtp_configured = true;
    let (status, ..) = settled(world.decide(&inv, at(0)));
    assert!(
        condition(&status, DELIVERED)
            .message
            .contains("--smtp-from")
    );
}

fn refusal_reason(world: &World, inv: &Invitation) -> (String, String) {
    let (status, link, _, event) = settled(world.decide(inv, at(0)));
    assert_eq!(status.phase, None);
    assert!(!link, "a refused invitation has no working link");
    assert!(event.unwrap().warning);
    let ready = condition(&status, READY);
    assert_eq!(ready.status, "False");
    (ready.reason.clone(), ready.message.clone())
}

#[test]
fn an_organizations_own_viewer_is_refused_in_a_resource_scope() {
    let mut world = World::new();
    let org = crate::access::roles::fixtures::organization_viewer();
    world.org = Some(org.clone());
    // The invitation offers viewer on deployment/*: access would refuse the binding.
    let offered = invitation("dave", "dave@example.com", 0);
    let (reason, message) = refusal_reason(&world, &offered);
    let problem = RoleTable::new(&org)
        .resolve(&offered.spec.roles[0])
        .expect_err("access refuses it");
    assert_eq!(reason, problem.reason());
    assert_eq!(reason, "NeedsOrganizationScope");
    assert!(message.contains("organization-level"), "{message}");
}

#[test]
fn refusals_name_their_reason() {
    let mut world = World::new();
    world.org = Some(org(
        serde_json::json!({"membership": {"allowedEmailDomains": ["example.com"]}}),
    ));
    let (reason, message) = refusal_reason(&world, &invitation("eve", "eve@evil.test", 0));
    assert_eq!(reason, "DomainNotAllowed");
    assert!(message.contains("example.com"), "{message}");

    world.memberships.push(member("Carol@Example.com"));
    let (reason, _) = refusal_reason(&world, &invitation("carol", "carol@example.com", 0));
    assert_eq!(reason, "AlreadyMember");

    let mut unknown = invitation("x", "x@example.com", 0);
    unknown.spec.roles[0].role = "wizard".into();
    assert_eq!(refusal_reason(&world, &unknown).0, "UnknownRole");

    let mut org_role_on_resources = invitation("y", "y@example.com", 0);
    org_role_on_resources.spec.roles[0].role = "billing-admin".into();
    assert_eq!(
        refusal_reason(&world, &org_role_on_resources).0,
        "NeedsOrganizationScope"
    );

    let mut unused_type = invitation("z", "z@example.com", 0);
    unused_type.spec.roles[0].scope = Scope::all_of("security");
    assert_eq!(
        refusal_reason(&world, &unused_type).0,
        "UnknownResourceType"
    );

    let mut impossible = invitation("w", "w@example.com", 0);
    impossible.spec.roles[0].scope = Scope::default();
    assert_eq!(refusal_reason(&world, &impossible).0, "InvalidScope");

    world.org = None;
    assert_eq!(
        refusal_reason(&world, &invitation("v", "v@example.com", 0)).0,
        "OrganizationNotFound"
    );
}

#[test]
fn of_two_live_invitations_for_one_person_the_older_wins() {
    let mut world = World::new();
    let older = invitation("first", "dave@example.com", 10);
    let newer = invitation("second", "DAVE@example.com", 20);
    world.others.push(older.clone());
    let (reason, message) = refusal_reason(&world, &newer);
    assert_eq!(reason, "DuplicateInvitation");
    assert!(message.contains("Invitation first"), "{message}");

    world.others = vec![newer.clone()];
    assert!(matches!(world.decide(&older, at(0)), Decision::Send(_)));

    // An accepted, expired or broken older invitation does not block a new one.
    let mut accepted = older.clone();
    accepted.status = Some(InvitationStatus {
        phase: Some(InvitationPhase::Accepted),
        ..Default::default()
    });
    let mut expired = older.clone();
    expired.status = Some(InvitationStatus {
        phase: Some(InvitationPhase::Expired),
        expires_at: Some(Time(at(5))),
        ..Default::default()
    });
    let mut broken = older.clone();
    broken.spec.roles[0].role = "wizard".into();
    for other in [accepted, expired, broken] {
        world.others = vec![other];
        assert!(matches!(world.decide(&newer, at(0)), Decision::Send(_)));
    }
}

#[test]
fn a_refusal_that_lifts_sends_a_fresh_link() {
    let mut world = World::new();
    world.memberships.push(member("dave@example.com"));
    let mut inv = invitation("dave", "dave@example.com", 0);
    let (status, ..) = settled(world.decide(&inv, at(0)));
    inv.status = Some(status);
    let (same, link, _, event) = settled(world.decide(&inv, at(1)));
    assert_eq!(Some(&same), inv.status.as_ref());
    assert!(!link && event.is_none(), "no repeated writes or events");

    world.memberships.clear();
    let plan = send_plan(world.decide(&inv, at(2)));
    assert_eq!(plan.attempt, 1);
}

#[test]
fn acceptance_is_terminal_and_an_interrupted_one_is_finished() {
    let world = World::new();
    let sent = delivered_at(&invitation("dave", "dave@example.com", 0), &world, at(0));
    let mut joining = sent.clone();
    joining.status = Some(joining_status(&sent, "member-dave", at(50)));
    let status = joining.status.clone().unwrap();
    assert_eq!(status.phase, Some(InvitationPhase::Accepted));
    assert_eq!(status.accepted_at, Some(Time(at(50))));
    assert_eq!(status.membership.as_deref(), Some("member-dave"));
    assert_eq!(world.decide(&joining, at(60)), Decision::FinishAcceptance);

    let mut joined = joining.clone();
    joined.status = Some(joined_status(&joining, at(61)));
    let status = joined.status.clone().unwrap();
    assert_eq!(condition(&status, READY).reason, REASON_ACCEPTED);
    assert_eq!(condition(&status, READY).status, "True");
    assert_eq!(status.accepted_at, Some(Time(at(50))));
    assert_eq!(condition(&status, DELIVERED).status, "True");

    // Past the deadline, with the person now a member: still just Accepted.
    let mut world = World::new();
    world.memberships.push(member("dave@example.com"));
    let (same, ..) = settled(world.decide(&joined, at(99_999)));
    assert_eq!(Some(&same), joined.status.as_ref());
}

#[test]
fn an_edited_accepted_or_expired_invitation_records_the_generation_once() {
    let world = World::new();
    let mut sent = delivered_at(&invitation("dave", "dave@example.com", 0), &world, at(0));
    sent.metadata.generation = Some(1);
    let mut expired = sent.clone();
    expired.status = Some(settled(world.decide(&sent, at(99_999))).0);
    let mut accepted = sent.clone();
    accepted.status = Some(joined_status(&sent, at(5)));
    for mut inv in [expired, accepted] {
        // Edited (but resend not raised): only observedGeneration follows, for kstatus.
        inv.metadata.generation = Some(2);
        let (status, ..) = settled(world.decide(&inv, at(100_000)));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.conditions, inv.status.as_ref().unwrap().conditions);
        inv.status = Some(status.clone());
        let (again, ..) = settled(world.decide(&inv, at(100_001)));
        assert_eq!(again, status, "then quiet");
    }
}

#[test]
fn a_deleted_invitation_is_left_to_the_garbage_collector() {
    let world = World::new();
    let mut inv = invitation("dave", "dave@example.com", 0);
    inv.metadata.deletion_timestamp = Some(Time(at(1)));
    assert_eq!(world.decide(&inv, at(2)), Decision::Nothing);
}

#[test]
fn a_refusal_kills_a_sent_link() {
    let mut world = World::new();
    let sent = delivered_at(&invitation("dave", "dave@example.com", 0), &world, at(100));
    assert!(sent.status.as_ref().unwrap().token.is_some());
    world.memberships.push(member("dave@example.com"));
    let (status, link, _, _) = settled(world.decide(&sent, at(200)));
    assert_eq!(condition(&status, READY).reason, "AlreadyMember");
    assert!(!link, "the refused invitation's link stops working");
}

#[test]
fn without_its_organization_the_invitation_says_why() {
    let mut world = World::new();
    world.org = None;
    let inv = invitation("dave", "dave@example.com", 0);
    let decision = decide(&Facts {
        invitation: &inv,
        organization: None,
        no_organization: Some("home namespace org-acme is not marked for organization acme".into()),
        memberships: vec![],
        invitations: vec![],
        defaults: &world.defaults,
        now: at(0),
    });
    let (status, ..) = settled(decision);
    let ready = condition(&status, READY);
    assert_eq!(ready.reason, "OrganizationNotFound");
    assert!(
        ready.message.contains("not marked for organization acme"),
        "{}",
        ready.message
    );
}

#[test]
fn an_email_that_cannot_be_built_is_reported_once_and_stays_pending() {
    let world = World::new();
    let inv = invitation("dave", "dave@example.com", 0);
    let mut refused = inv.clone();
    let error = "\"bad(addr@example.com\" is not a usable email address: invalid user";
    refused.status = Some(invalid_message_status(&refused, error, at(0)));
    let status = refused.status.clone().unwrap();
    assert_eq!(status.phase, Some(InvitationPhase::Pending));
    assert_eq!(status.delivery_attempts, 0, "no link was issued");
    for type_ in [DELIVERED, READY] {
        let c = condition(&status, type_);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", REASON_INVALID_MESSAGE)
        );
        assert!(c.message.contains("bad(addr@example.com"), "{}", c.message);
    }
    // Seen again later: the same status, so nothing is written.
    assert_eq!(invalid_message_status(&refused, error, at(60)), status);
    // The decision is still to send: a change of the objects tries again.
    assert_eq!(send_plan(world.decide(&refused, at(1))).attempt, 1);
}
