//! The `kubectl org` plugin, run as a process against the real control plane with the
//! harness's KUBECONFIG: every command, its output and its exit code.

mod common;
#[path = "invitations/http.rs"]
mod http;
#[allow(dead_code)] // this binary reads the shared Mailpit only
#[path = "invitations/mailpit.rs"]
mod mailpit;

use common::org::{REACT, TestOrg, all, named, org_scope, org_where_bob_has};
use common::{Can, can, client, eventually, eventually_can, free_port, operator, unique};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use kube_org::api::{Access, GoDuration, Invitation, RoleAssignment, Scope};
use kube_org::invitations::join::binding_name;
use kube_org::plugin::invite::invitation_name;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one run of the plugin did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kubectl-org ARGS` with `stdin` as standard input and the harness's
/// environment, minus the plugin's own variables (so a developer's shell cannot change
/// what is tested).
async fn kubectl_org(args: &[&str], stdin: &str) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-org"))
        .args(args)
        .env_remove("KUBE_ORG_ORGANIZATION")
        .env_remove("KUBE_ORG_ACCEPT_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running kubectl-org");
    let mut input = child.stdin.take().expect("a pipe");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("writing stdin");
    drop(input);
    let output = child
        .wait_with_output()
        .await
        .expect("kubectl-org's output");
    Run {
        code: output.status.code().expect("kubectl-org exited"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `kubectl org LINE` (words split at white space), expects exit code `code`.
async fn expect(code: i32, line: &str) -> Run {
    expect_fed(code, line, "").await
}

/// [`expect`] with `stdin` as standard input.
async fn expect_fed(code: i32, line: &str, stdin: &str) -> Run {
    let args: Vec<&str> = line.split_whitespace().collect();
    let run = kubectl_org(&args, stdin).await;
    assert_eq!(
        run.code, code,
        "kubectl org {line} exited {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
    run
}

/// Runs `kubectl org LINE -o json`, expects success, parses standard output.
async fn json(line: &str) -> Value {
    let run = expect(0, &format!("{line} -o json")).await;
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

async fn invitations(org: &TestOrg) -> Vec<Invitation> {
    let api: Api<Invitation> = Api::namespaced(org.client.clone(), &org.home);
    let mut items = api
        .list(&ListParams::default())
        .await
        .expect("invitations")
        .items;
    items.sort_by(|a, b| a.spec.email.cmp(&b.spec.email));
    items
}

#[tokio::test]
async fn invite_creates_one_invitation_per_email_with_the_roles_asked_for() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let run = expect(0, &format!("invite bob@example.com Carol@Example.com --org {} --role viewer --scope deployment/* --role developer --scope elasticsearch/search-a,search-b --access full --access console --ttl 24h", org.name))
    .await;
    for email in ["bob@example.com", "carol@example.com"] {
        let line = format!(
            "invitation.kube-org.io/{} created for {email}",
            invitation_name(email)
        );
        assert!(run.stdout.contains(&line), "{line} in:\n{}", run.stdout);
    }

    let created = invitations(&org).await;
    let emails: Vec<&str> = created.iter().map(|i| i.spec.email.0.as_str()).collect();
    assert_eq!(emails, ["bob@example.com", "carol@example.com"]);
    for invitation in &created {
        assert_eq!(
            invitation.metadata.name,
            Some(invitation_name(&invitation.spec.email.0))
        );
        assert_eq!(invitation.spec.ttl, Some(GoDuration::from("24h")));
        assert_eq!(
            invitation.spec.roles,
            [
                RoleAssignment {
                    role: "viewer".into(),
                    scope: Scope::all_of("deployment"),
                    access: Access::Full,
                    expires_after: None,
                },
                RoleAssignment {
                    role: "developer".into(),
                    scope: Scope::named("elasticsearch", &["search-a", "search-b"]),
                    access: Access::Console,
                    expires_after: None,
                },
            ]
        );
    }

    // An email already invited fails alone; the others are still invited; exit 1.
    let again = expect(
        1,
        &format!(
            "invite BOB@example.com dave@example.com --org {} --role billing-admin",
            org.name
        ),
    )
    .await;
    assert!(
        again.stderr.contains("bob@example.com is already invited")
            && again.stderr.contains("kubectl org resend bob@example.com"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("1 of 2 invitations were not created"));
    assert!(
        again.stdout.contains("created for dave@example.com"),
        "{}",
        again.stdout
    );
    let dave = invitations(&org).await.pop().expect("dave's invitation");
    assert_eq!(dave.spec.email.0, "dave@example.com");
    assert_eq!(dave.spec.roles[0].scope, Scope::organization());

    // A role the organization does not have creates nothing.
    let unknown = expect(
        1,
        &format!(
            "invite erin@example.com --org {} --role no-such-role --scope deployment/*",
            org.name
        ),
    )
    .await;
    let hint = format!("kubectl org roles --org {}", org.name);
    assert!(unknown.stderr.contains(&hint), "{}", unknown.stderr);
    assert_eq!(invitations(&org).await.len(), 3);
    org.delete().await;
}

#[tokio::test]
async fn invitations_lists_them_as_a_table_yaml_and_json() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    expect(0, &format!("invite bob@example.com carol@example.com --org {} --role viewer --scope deployment/prod", org.name))
    .await;
    let table = expect(0, &format!("invitations --org {}", org.name))
        .await
        .stdout;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "EMAIL", "ROLES", "PHASE", "EXPIRES", "DELIVERED"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].starts_with(&invitation_name("bob@example.com")),
        "{table}"
    );
    let bob: Vec<&str> = rows[0].split_whitespace().take(5).collect();
    assert_eq!(
        bob[1..],
        ["bob@example.com", "viewer", "on", "deployment/prod"],
        "{table}"
    );
    assert!(rows[1].contains("carol@example.com"), "{table}");

    let listed = json(&format!("invitations --org {}", org.name)).await;
    let emails: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|i| i["email"].as_str().expect("an email"))
        .collect();
    assert_eq!(emails, ["bob@example.com", "carol@example.com"]);
    assert_eq!(listed[0]["roles"][0]["scope"], "deployment/prod");
    assert_eq!(listed[0]["resend"], 0);

    // The same data as YAML. The operator may update a status between two listings, so
    // compare a YAML listing with a JSON one taken right after it, until both agree.
    eventually(
        "-o yaml and -o json list the same invitations",
        REACT,
        || async {
            let yaml = expect(0, &format!("invitations --org {} -o yaml", org.name))
                .await
                .stdout;
            let parsed: Value = serde_yaml::from_str(&yaml).expect("YAML");
            let listed = json(&format!("invitations --org {}", org.name)).await;
            (parsed == listed).then_some(())
        },
    )
    .await;
    org.delete().await;
}

#[tokio::test]
async fn resend_raises_the_counter_and_cancel_deletes() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let api: Api<Invitation> = Api::namespaced(org.client.clone(), &org.home);
    let name = invitation_name("bob@example.com");
    expect(
        0,
        &format!(
            "invite bob@example.com --org {} --role viewer --scope deployment/*",
            org.name
        ),
    )
    .await;

    let by_email = expect(0, &format!("resend Bob@Example.com --org {}", org.name)).await;
    assert!(
        by_email
            .stdout
            .contains(&format!("invitation.kube-org.io/{name} resend raised to 1")),
        "{}",
        by_email.stdout
    );
    assert_eq!(api.get(&name).await.expect("the invitation").spec.resend, 1);
    expect(0, &format!("resend {name} --org {}", org.name)).await;
    assert_eq!(api.get(&name).await.expect("the invitation").spec.resend, 2);

    let cancel = expect(0, &format!("cancel bob@example.com --org {}", org.name)).await;
    assert!(
        cancel
            .stdout
            .contains(&format!("invitation.kube-org.io/{name} deleted")),
        "{}",
        cancel.stdout
    );
    eventually("the invitation gone", REACT, || async {
        api.get_opt(&name)
            .await
            .expect("reading")
            .is_none()
            .then_some(())
    })
    .await;

    for command in ["cancel", "resend"] {
        let missing = expect(1, &format!("{command} bob@example.com --org {}", org.name)).await;
        let message = format!("no invitation bob@example.com in organization {}", org.name);
        assert!(missing.stderr.contains(&message), "{}", missing.stderr);
    }
    org.delete().await;
}

#[tokio::test]
async fn members_and_access_show_roles_scopes_and_namespaces() {
    // bob views every deployment, through the binding bob-viewer.
    let (org, res) = org_where_bob_has("viewer", |_| all("deployment"), "full").await;

    // Each member with the role kube-org reports, and Ready.
    let holds = |members: &Value, email: &str, role: &str, scope: &str| {
        members.as_array().is_some_and(|all| {
            all.iter().any(|m| {
                m["email"] == email
                    && m["ready"] == "True"
                    && m["roles"].as_array().is_some_and(|roles| {
                        roles
                            .iter()
                            .any(|r| r["role"] == role && r["scope"] == scope)
                    })
            })
        })
    };
    let members = eventually("bob and alice Ready with their roles", REACT, || async {
        let members = json(&format!("members --org {}", org.name)).await;
        (holds(&members, "bob@example.com", "viewer", "deployment/*")
            && holds(
                &members,
                "alice@example.com",
                "organization-owner",
                "organization",
            ))
        .then_some(members)
    })
    .await;
    let bob = members
        .as_array()
        .and_then(|m| m.iter().find(|m| m["email"] == "bob@example.com"))
        .expect("bob");
    assert_eq!(bob["roles"][0]["binding"], "bob-viewer");
    assert_eq!(bob["source"], "Declared");

    let table = expect(0, &format!("members --org {}", org.name))
        .await
        .stdout;
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("a header")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["EMAIL", "USER", "SOURCE", "ROLES", "READY"]);
    let bob = table
        .lines()
        .find(|l| l.starts_with("bob@example.com"))
        .expect("bob's row");
    assert!(bob.contains("viewer on deployment/*"), "{table}");
    assert!(bob.ends_with("True"), "{table}");
    // The name bound (status.user): no prefix is configured for this operator.
    assert_eq!(
        bob.split_whitespace().nth(1),
        Some("bob@example.com"),
        "{table}"
    );

    let access = eventually("bob's access in `access -o json`", REACT, || async {
        let access = json(&format!("access bob@example.com --org {}", org.name)).await;
        let entries = access["access"].as_array()?;
        entries
            .iter()
            .any(|a| a["namespace"] == res.as_str())
            .then_some(access)
    })
    .await;
    assert_eq!(access["email"], "bob@example.com");
    assert_eq!(
        access["access"],
        serde_json::json!([{"namespace": res, "clusterRoles": ["view"]}])
    );
    let table = expect(0, &format!("access bob@example.com --org {}", org.name))
        .await
        .stdout;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAMESPACE", "CLUSTERROLES"],
            vec![res.as_str(), "view"]
        ]
    );

    let nobody = expect(1, &format!("access carol@example.com --org {}", org.name)).await;
    let message = format!(
        "no Membership for carol@example.com in organization {}",
        org.name
    );
    assert!(nobody.stderr.contains(&message), "{}", nobody.stderr);
    org.delete().await;
}

#[tokio::test]
async fn roles_lists_the_catalog_and_an_organizations_own_roles() {
    let catalog = expect(0, "roles").await.stdout;
    let analyst: Vec<&str> = catalog
        .lines()
        .find(|l| l.starts_with("tier-1-analyst "))
        .expect("a security role")
        .split_whitespace()
        .take(5)
        .collect();
    assert_eq!(
        analyst,
        ["tier-1-analyst", "resource", "security", "view", "builtin"]
    );
    let all_roles = json("roles").await;
    assert!(all_roles.as_array().expect("an array").iter().any(
        |r| r["name"] == "soc-manager" && r["resourceTypes"] == serde_json::json!(["security"])
    ));

    let org = TestOrg::with_spec(
        &["alice@example.com"],
        serde_json::json!({"roles": [
            {"name": "auditor", "clusterRole": "view", "description": "Reads everything, changes nothing."},
            {"name": "viewer", "resourceTypes": ["deployment"], "clusterRole": "edit"},
        ]}),
    )
    .await;
    let own = json(&format!("roles --org {}", org.name)).await;
    let find = |name: &str, source: &str| {
        own.as_array()
            .expect("an array")
            .iter()
            .find(|r| r["name"] == name && r["source"] == source)
            .cloned()
    };
    let auditor = find("auditor", "custom").expect("the custom role");
    assert_eq!(auditor["clusterRole"], "view");
    assert_eq!(auditor["description"], "Reads everything, changes nothing.");
    assert_eq!(
        find("viewer", "override").expect("the override")["clusterRole"],
        "edit"
    );
    assert!(find("viewer", "overridden").is_some(), "{own:#}");
    // Where each is usable, as kube-org resolves them: the catalog viewer nowhere.
    assert_eq!(
        find("viewer", "override").expect("the override")["usableIn"],
        serde_json::json!(["deployment"])
    );
    assert_eq!(
        find("viewer", "overridden").expect("the catalog's")["usableIn"],
        serde_json::json!([])
    );
    assert!(
        find("tier-1-analyst", "builtin").is_none(),
        "security is not one of its types"
    );
    let table = expect(0, &format!("roles --org {}", org.name)).await.stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("auditor ") && l.contains("custom")),
        "{table}"
    );
    org.delete().await;
}

/// A one-shot HTTP server on 127.0.0.1: answers the first request with `status`, a
/// content type and `body`; yields the request it received.
async fn fake_endpoint(
    status: &'static str,
    content_type: &'static str,
    body: &'static str,
) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let served = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("a connection");
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = stream.read(&mut buffer).await.expect("reading the request");
            request.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&request).to_lowercase();
            let Some((head, rest)) = text.split_once("\r\n\r\n") else {
                assert!(read > 0, "the connection closed mid-request");
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("a length"));
            if rest.len() >= length || read == 0 {
                break;
            }
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(response.as_bytes())
            .await
            .expect("answering");
        String::from_utf8_lossy(&request).into_owned()
    });
    (base, served)
}

#[tokio::test]
async fn accept_posts_the_token_and_explains_every_failure() {
    // The link from the email carries the endpoint and the token; `-` reads it from
    // standard input.
    let (base, served) = fake_endpoint(
        "200 OK",
        "application/json",
        r#"{"status":"accepted","message":"Welcome to acme: you are a member now."}"#,
    )
    .await;
    let link = format!("{base}/invitations/accept?token=t0k3n");
    let ok = expect_fed(0, "accept -", &format!("{link}\n")).await;
    assert_eq!(ok.stdout, "Welcome to acme: you are a member now.\n");
    let request = served.await.expect("the server");
    assert!(
        request.starts_with("POST /invitations/accept HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_lowercase()
            .contains("content-type: application/json"),
        "{request}"
    );
    assert!(request.ends_with(r#"{"token":"t0k3n"}"#), "{request}");

    // kube-org's answer to an unknown, used or expired token.
    let (base, _served) = fake_endpoint(
        "404 Not Found",
        "application/json",
        r#"{"status":"invalid-link","message":"This invitation link cannot be used."}"#,
    )
    .await;
    let refused = expect(1, &format!("accept t0k3n --url {base}")).await;
    assert!(
        refused.stderr.contains(
            "the invitation was not accepted (404): This invitation link cannot be used."
        ),
        "{}",
        refused.stderr
    );

    // Something that is not the accept endpoint.
    let (base, _served) = fake_endpoint("404 Not Found", "text/plain", "404 page not found").await;
    let wrong = expect(1, &format!("accept t0k3n --url {base}")).await;
    assert!(
        wrong
            .stderr
            .contains(&format!("{base}/invitations/accept answered 404"))
            && wrong.stderr.contains("check --url"),
        "{}",
        wrong.stderr
    );

    // Nothing listening.
    let nothing = format!("http://127.0.0.1:{}", free_port());
    let unreachable = expect(1, &format!("accept t0k3n --url {nothing}")).await;
    assert!(
        unreachable.stderr.contains(&format!(
            "could not reach the accept endpoint {nothing}/invitations/accept"
        )),
        "{}",
        unreachable.stderr
    );

    // The operator gives a made-up token its one answer for unusable links.
    let operator = operator().await;
    let bogus = expect(
        1,
        &format!("accept not-a-real-token --url {}", operator.base_url),
    )
    .await;
    assert!(
        bogus
            .stderr
            .contains("the invitation was not accepted (404): This invitation link cannot be used"),
        "{}",
        bogus.stderr
    );

    // No address at all is a usage error.
    let usage = expect(2, "accept t0k3n").await;
    assert!(
        usage.stderr.contains("KUBE_ORG_ACCEPT_URL"),
        "{}",
        usage.stderr
    );
}

#[tokio::test]
async fn invite_then_accept_the_emailed_link_makes_a_member() {
    let base = operator().await.base_url.clone();
    let org = TestOrg::with_spec(
        &["alice@example.com"],
        serde_json::json!({"invitations": {"acceptURL": base}}),
    )
    .await;
    let email = format!("{}@example.com", unique("frank"));
    let name = invitation_name(&email);
    expect(
        0,
        &format!(
            "invite {email} --org {} --role viewer --scope deployment/*",
            org.name
        ),
    )
    .await;
    let mail = mailpit::Mailpit::shared()
        .wait_for(&email, 1)
        .await
        .pop()
        .expect("the invitation email");

    let accepted = expect(0, &format!("accept {}", mail.link())).await;
    assert_eq!(
        accepted.stdout,
        format!("Welcome to {}: you are a member now.\n", org.name)
    );
    let invitations = eventually("the invitation Accepted", REACT, || async {
        let listed = json(&format!("invitations --org {}", org.name)).await;
        (listed[0]["phase"] == "Accepted").then_some(listed)
    })
    .await;
    assert_eq!(invitations[0]["name"], name.as_str());
    let member = eventually(
        "the new member with the role invited for",
        REACT,
        || async {
            let members = json(&format!("members --org {}", org.name)).await;
            members
                .as_array()?
                .iter()
                .find(|m| {
                    m["email"] == email.as_str()
                        && m["roles"][0]["role"] == "viewer"
                        && m["roles"][0]["scope"] == "deployment/*"
                })
                .cloned()
        },
    )
    .await;
    assert_eq!(member["source"], format!("Invitation/{name}"));

    // The link works once.
    let again = expect(1, &format!("accept {}", mail.link())).await;
    assert!(
        again
            .stderr
            .contains("the invitation was not accepted (404)"),
        "{}",
        again.stderr
    );
    org.delete().await;
}

#[tokio::test]
async fn exit_codes_tell_scripts_what_went_wrong() {
    client().await;
    let missing = unique("no-such-org");
    for command in [
        "members",
        "invitations",
        "access bob@example.com",
        "roles",
        "invite bob@example.com --role billing-admin",
        "grant bob@example.com --role billing-admin",
        "revoke bob@example.com --role viewer",
        "remove bob@example.com",
        "leave",
        "why bob@example.com get pods -n default",
    ] {
        let run = expect(1, &format!("{command} --org {missing}")).await;
        let message = format!(
            "error: organization {missing} not found: list organizations with `kubectl get organizations.kube-org.io`"
        );
        assert_eq!(run.stderr.trim(), message, "{command}");
        assert!(run.stdout.is_empty());
    }

    let bad_scope = expect(
        2,
        "invite bob@example.com --org acme --role viewer --scope prod",
    )
    .await;
    assert!(
        bad_scope
            .stderr
            .contains("invalid value 'prod' for '--scope <SCOPE>'")
            && bad_scope.stderr.contains("TYPE/name1,name2"),
        "{}",
        bad_scope.stderr
    );
    let no_org = expect(2, "members").await;
    assert!(no_org.stderr.contains("--org <ORG>"), "{}", no_org.stderr);
    expect(2, "invite bob@example.com --org acme").await;
    expect(2, "no-such-command").await;
    expect(0, "--help").await;
}

/// A kubeconfig like the harness's whose users act as `user` (impersonation, as
/// `kubectl --as` does): the plugin then signs in as that person. The file holds the
/// harness's credentials: it is written beside the harness's own kubeconfig when the
/// launcher says where that is, and removed when dropped.
struct KubeconfigAs(std::path::PathBuf);

impl KubeconfigAs {
    fn new(user: &str) -> Self {
        let mut config = kube::config::Kubeconfig::read().expect("the harness's kubeconfig");
        for named in &mut config.auth_infos {
            if let Some(auth) = named.auth_info.as_mut() {
                auth.impersonate = Some(user.to_string());
            }
        }
        let dir = std::env::var_os("KUBE_ORG_CONTROLPLANE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let path = dir.join(format!("{}.kubeconfig", unique("as")));
        std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML")).expect("writing");
        KubeconfigAs(path)
    }

    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for KubeconfigAs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The kube-org RoleBindings of `email`, by name.
async fn bindings_of(org: &TestOrg, email: &str) -> Vec<String> {
    let mut names: Vec<String> = org
        .bindings()
        .list(&ListParams::default())
        .await
        .expect("rolebindings")
        .items
        .into_iter()
        .filter(|b| b.spec.member.0 == email && b.metadata.deletion_timestamp.is_none())
        .map(|b| b.name_any())
        .collect();
    names.sort();
    names
}

fn viewer_of_all_deployments() -> RoleAssignment {
    RoleAssignment {
        role: "viewer".into(),
        scope: Scope::all_of("deployment"),
        access: Access::Full,
        expires_after: None,
    }
}

#[tokio::test]
async fn grant_creates_a_binding_the_cluster_honours_and_refuses_before_writing() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    let res = org.resource("deployment").await;
    org.member("bob@example.com").await;
    let name = binding_name("bob@example.com", &viewer_of_all_deployments());
    let list_pods = Can::new("list", "pods", Some(&res));
    assert!(!can(&org.client, "bob@example.com", list_pods).await);

    let granted = expect(
        0,
        &format!(
            "grant bob@example.com --org {} --role viewer --scope deployment/*",
            org.name
        ),
    )
    .await;
    assert_eq!(
        granted.stdout,
        format!(
            "rolebinding.kube-org.io/{name} created: viewer on deployment/* for bob@example.com\n"
        )
    );
    eventually_can(&org.client, "bob@example.com", list_pods, true, REACT).await;

    // The same grant again changes nothing and says so.
    let again = expect(
        0,
        &format!(
            "grant Bob@Example.com --org {} --role viewer --scope deployment/*",
            org.name
        ),
    )
    .await;
    assert_eq!(
        again.stdout,
        format!(
            "rolebinding.kube-org.io/{name} unchanged: bob@example.com holds viewer on deployment/* already\n"
        )
    );
    let listed = json(&format!(
        "grant bob@example.com --org {} --role viewer --scope deployment/*",
        org.name
    ))
    .await;
    assert_eq!(listed["name"], name.as_str());
    assert_eq!(listed["created"], false);
    assert_eq!(listed["scope"], "deployment/*");

    // The same role and scope with the other access: revoke first.
    let other_access = expect(
        1,
        &format!(
            "grant bob@example.com --org {} --role viewer --scope deployment/* --access console",
            org.name
        ),
    )
    .await;
    assert!(
        other_access
            .stderr
            .contains("bob@example.com holds viewer on deployment/* already")
            && other_access.stderr.contains(&format!(
                "`kubectl org revoke bob@example.com --org {} --role viewer --scope 'deployment/*'`",
                org.name
            )),
        "{}",
        other_access.stderr
    );

    // Refused before anything is written, as invite refuses.
    let unknown = expect(
        1,
        &format!(
            "grant bob@example.com --org {} --role no-such-role --scope deployment/*",
            org.name
        ),
    )
    .await;
    assert!(
        unknown
            .stderr
            .contains(&format!("kubectl org roles --org {}", org.name)),
        "{}",
        unknown.stderr
    );
    let other_type = expect(
        1,
        &format!(
            "grant bob@example.com --org {} --role viewer --scope security/*",
            org.name
        ),
    )
    .await;
    assert!(
        other_type.stderr.contains("spec.resourceTypes"),
        "{}",
        other_type.stderr
    );
    let unscoped = expect(
        2,
        &format!("grant bob@example.com --org {} --role viewer", org.name),
    )
    .await;
    assert!(
        unscoped.stderr.contains("--scope TYPE/*"),
        "{}",
        unscoped.stderr
    );
    assert_eq!(bindings_of(&org, "bob@example.com").await, [name]);

    // Someone who is not a member is invited, not granted.
    let stranger = expect(
        1,
        &format!(
            "grant carol@example.com --org {} --role viewer --scope deployment/*",
            org.name
        ),
    )
    .await;
    assert_eq!(
        stranger.stderr.trim(),
        format!(
            "error: carol@example.com is not a member of organization {org}: invite them instead: `kubectl org invite carol@example.com --org {org} --role viewer --scope 'deployment/*'`",
            org = org.name
        )
    );
    assert!(bindings_of(&org, "carol@example.com").await.is_empty());
    org.delete().await;
}

#[tokio::test]
async fn revoke_deletes_the_matching_bindings_and_says_which() {
    // bob views his deployment through bob-viewer (named), and every deployment
    // through a grant.
    let (org, res) = org_where_bob_has("viewer", |r| named("deployment", &[r]), "full").await;
    expect(
        0,
        &format!(
            "grant bob@example.com --org {} --role viewer --scope deployment/*",
            org.name
        ),
    )
    .await;
    let granted = binding_name("bob@example.com", &viewer_of_all_deployments());
    let list_pods = Can::new("list", "pods", Some(&res));
    eventually_can(&org.client, "bob@example.com", list_pods, true, REACT).await;

    // One scope: only that binding goes; the other still grants.
    let one = expect(
        0,
        &format!(
            "revoke bob@example.com --org {} --role viewer --scope deployment/*",
            org.name
        ),
    )
    .await;
    assert_eq!(
        one.stdout,
        format!(
            "rolebinding.kube-org.io/{granted} deleted: bob@example.com no longer holds viewer on deployment/*\n"
        )
    );
    assert_eq!(bindings_of(&org, "bob@example.com").await, ["bob-viewer"]);
    // Give kube-org time to act on the deletion, then ask.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(can(&org.client, "bob@example.com", list_pods).await);

    // Every scope of the role; -o json lists what was deleted.
    let all_scopes = json(&format!(
        "revoke bob@example.com --org {} --role viewer",
        org.name
    ))
    .await;
    assert_eq!(
        all_scopes,
        serde_json::json!([{"name": "bob-viewer", "email": "bob@example.com", "role": "viewer",
                            "scope": format!("deployment/{res}"), "access": "full"}])
    );
    eventually_can(&org.client, "bob@example.com", list_pods, false, REACT).await;

    // Nothing left to revoke.
    let nothing = expect(
        1,
        &format!("revoke bob@example.com --org {} --role viewer", org.name),
    )
    .await;
    assert_eq!(
        nothing.stderr.trim(),
        format!(
            "error: bob@example.com holds no viewer binding in organization {org} (holds: -): nothing was revoked; see the roles with `kubectl org members --org {org}`",
            org = org.name
        )
    );
    assert!(nothing.stdout.is_empty());

    // An owner named in spec.owners is changed there, not here.
    let owner = expect(
        1,
        &format!(
            "revoke alice@example.com --org {} --role organization-owner",
            org.name
        ),
    )
    .await;
    assert!(
        owner
            .stderr
            .contains("comes from spec.owners of Organization")
            && owner
                .stderr
                .contains(&format!("kubectl edit organization {}", org.name)),
        "{}",
        owner.stderr
    );
    assert_eq!(bindings_of(&org, "alice@example.com").await.len(), 1);
    org.delete().await;
}

#[tokio::test]
async fn remove_deletes_the_membership_or_reports_kube_orgs_refusal() {
    let (org, res) = org_where_bob_has("viewer", |_| all("deployment"), "full").await;
    let list_pods = Can::new("list", "pods", Some(&res));
    eventually_can(&org.client, "bob@example.com", list_pods, true, REACT).await;

    let removed = expect(0, &format!("remove Bob@Example.com --org {}", org.name)).await;
    assert_eq!(
        removed.stdout,
        format!(
            "membership.kube-org.io/bob-example-com deleted: bob@example.com is no longer a member of {}; their access is revoked\n",
            org.name
        )
    );
    // Done means done: bob's Membership carries no finalizer (he is no owner), so it
    // went at once, and the plugin waited for kube-org to revoke and delete.
    assert!(
        !can(&org.client, "bob@example.com", list_pods).await,
        "the plugin said revoked while bob may still list pods"
    );
    assert!(bindings_of(&org, "bob@example.com").await.is_empty());

    // alice is the last owner while a resource remains: kube-org holds her Membership
    // and says why; she keeps her access.
    eventually_can(&org.client, "alice@example.com", list_pods, true, REACT).await;
    let refused = expect(1, &format!("remove alice@example.com --org {}", org.name)).await;
    assert!(
        refused.stderr.starts_with("error: kube-org keeps Membership owner-alice-example-com-")
            && refused.stderr.contains(&format!(
                "alice@example.com is the last owner of {} while 0 other member(s) and 1 resource(s) remain: make someone else an owner first. It stays marked for deletion",
                org.name
            ))
            && refused.stderr.contains("alice@example.com keeps their access"),
        "{}",
        refused.stderr
    );
    assert!(can(&org.client, "alice@example.com", list_pods).await);

    let nobody = expect(1, &format!("remove carol@example.com --org {}", org.name)).await;
    assert!(
        nobody
            .stderr
            .contains("no Membership for carol@example.com in organization"),
        "{}",
        nobody.stderr
    );
    org.delete().await;
}

/// GitOps puts a removed member's binding back at once (it is still in git): kube-org
/// keeps it, evaluated for an absent member, granting nothing. `remove` is done when the
/// access is revoked; it does not wait for a binding that will never go.
#[tokio::test]
async fn remove_is_done_while_gitops_puts_the_members_binding_back() {
    let (org, res) = org_where_bob_has("viewer", |_| all("deployment"), "full").await;
    let list_pods = Can::new("list", "pods", Some(&res));
    eventually_can(&org.client, "bob@example.com", list_pods, true, REACT).await;
    let bindings = org.bindings();
    let spec = bindings
        .get("bob-viewer")
        .await
        .expect("bob's binding")
        .spec;

    // Self-healing GitOps: re-creates the binding whenever it is missing.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let gitops = tokio::spawn({
        let bindings = bindings.clone();
        async move {
            let mut restored = 0;
            while !*stopped.borrow_and_update() {
                if bindings
                    .get_opt("bob-viewer")
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    let again = kube_org::api::RoleBinding::new("bob-viewer", spec.clone());
                    if bindings
                        .create(&PostParams::default(), &again)
                        .await
                        .is_ok()
                    {
                        restored += 1;
                    }
                }
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(10), stopped.changed())
                        .await;
            }
            restored
        }
    });

    let removed = expect(
        0,
        &format!("remove bob@example.com --org {} --timeout 20s", org.name),
    )
    .await;
    assert!(
        removed.stdout.ends_with("their access is revoked\n"),
        "{}",
        removed.stdout
    );
    assert!(
        !can(&org.client, "bob@example.com", list_pods).await,
        "the plugin said revoked while bob may still list pods"
    );
    let _ = stop.send(true);
    let restored = gitops.await.expect("the GitOps loop");
    assert!(restored >= 1, "kube-org never deleted bob's binding");
    let kept = eventually(
        "the binding put back says MemberNotFound",
        REACT,
        || async {
            let b = bindings.get("bob-viewer").await.ok()?;
            kube_org::access::policy::evaluated_for_absent_member(&b).then_some(b)
        },
    )
    .await;
    assert_eq!(kept.spec.member.0, "bob@example.com");
    assert!(!can(&org.client, "bob@example.com", list_pods).await);
    org.delete().await;
}

#[tokio::test]
async fn leave_removes_the_signed_in_member_when_they_may() {
    let org = TestOrg::new(&["alice@example.com"]).await;
    // bob is an owner through a binding: owners may delete Memberships.
    org.member("bob@example.com").await;
    org.bind(
        "bob-owner",
        "bob@example.com",
        "organization-owner",
        org_scope(),
        "full",
    )
    .await;
    // carol is an ordinary member.
    org.member("carol@example.com").await;
    org.bind(
        "carol-viewer",
        "carol@example.com",
        "viewer",
        all("deployment"),
        "full",
    )
    .await;
    let delete_memberships = org.in_home("delete", "memberships.kube-org.io");
    eventually_can(
        &org.client,
        "bob@example.com",
        delete_memberships,
        true,
        REACT,
    )
    .await;
    eventually_can(&org.client, "carol@example.com", org.get_org(), true, REACT).await;

    let bob = KubeconfigAs::new("bob@example.com");
    let left = expect(
        0,
        &format!("leave --org {} --kubeconfig {}", org.name, bob.path()),
    )
    .await;
    assert_eq!(
        left.stdout,
        format!(
            "membership.kube-org.io/bob-example-com deleted: you (bob@example.com) left organization {}; your access is revoked\n",
            org.name
        )
    );
    eventually_can(
        &org.client,
        "bob@example.com",
        delete_memberships,
        false,
        REACT,
    )
    .await;
    eventually_can(&org.client, "bob@example.com", org.get_org(), false, REACT).await;

    // kube-org gives ordinary members no right to delete their Membership: an owner
    // removes them.
    let carol = KubeconfigAs::new("carol@example.com");
    let refused = expect(
        1,
        &format!("leave --org {} --kubeconfig {}", org.name, carol.path()),
    )
    .await;
    assert_eq!(
        refused.stderr.trim(),
        format!(
            "error: you (user carol@example.com) may not read the Memberships in organization {org}: in kube-org, owners remove members; ask an owner to run `kubectl org remove carol@example.com --org {org}`",
            org = org.name
        )
    );
    assert!(can(&org.client, "carol@example.com", org.get_org()).await);

    // The harness's own user is no member.
    let admin = expect(1, &format!("leave --org {}", org.name)).await;
    assert!(
        admin.stderr.contains("you are signed in as ")
            && admin.stderr.contains(&format!(
                "no Membership of organization {} is for that user",
                org.name
            )),
        "{}",
        admin.stderr
    );
    org.delete().await;
}

#[tokio::test]
async fn why_gives_the_clusters_answer_and_the_chain_behind_it() {
    let (org, res) = org_where_bob_has("viewer", |_| all("deployment"), "full").await;
    eventually_can(
        &org.client,
        "bob@example.com",
        Can::new("list", "pods", Some(&res)),
        true,
        REACT,
    )
    .await;

    // Granted through kube-org: the kube-org binding, the native binding, the rule.
    let yes = expect(
        0,
        &format!("why bob@example.com list pods -n {res} --org {}", org.name),
    )
    .await;
    let lines: Vec<&str> = yes.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("yes: bob@example.com may list pods in namespace {res}")
    );
    assert!(
        lines[1].starts_with("the cluster says: RBAC: allowed by RoleBinding"),
        "{}",
        yes.stdout
    );
    assert_eq!(
        lines[2],
        format!("granted through kube-org organization {}:", org.name)
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with("rolebinding/bob-viewer"))
        .unwrap_or_else(|| panic!("the chain in:\n{}", yes.stdout));
    let native = format!("{res}/kube-org:{}:view", org.name);
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "rolebinding/bob-viewer",
            "viewer",
            "on",
            "deployment/*",
            "RoleBinding",
            &native,
            "ClusterRole",
            "view",
            "get,list,watch",
            "pods"
        ],
        "{}",
        yes.stdout
    );
    // Short names and groups resolve as kubectl resolves them.
    let deploy = json(&format!(
        "why bob@example.com get deploy -n {res} --org {}",
        org.name
    ))
    .await;
    assert_eq!(deploy["allowed"], true);
    assert_eq!(deploy["grantedByKubeOrg"], true);
    assert_eq!(deploy["request"]["group"], "apps");
    assert_eq!(deploy["request"]["resource"], "deployments");

    // Not allowed: exit 1, the answer on standard output, what bob holds there.
    let no = expect(
        1,
        &format!(
            "why bob@example.com delete pods -n {res} --org {}",
            org.name
        ),
    )
    .await;
    assert!(
        no.stdout.starts_with(&format!(
            "no: bob@example.com may not delete pods in namespace {res}\nno kube-org object grants this.\n"
        )),
        "{}",
        no.stdout
    );
    assert!(
        no.stdout
            .lines()
            .any(|l| l.starts_with("rolebinding/bob-viewer") && l.ends_with(" -")),
        "{}",
        no.stdout
    );
    assert!(no.stderr.is_empty(), "{}", no.stderr);

    // Granted by a native binding kube-org knows nothing about.
    let extra: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "extra-edit", "namespace": res},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob@example.com"}],
    }))
    .expect("a RoleBinding");
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(org.client.clone(), &res)
        .create(&PostParams::default(), &extra)
        .await
        .expect("creating a native RoleBinding");
    let delete_pods = Can::new("delete", "pods", Some(&res));
    eventually_can(&org.client, "bob@example.com", delete_pods, true, REACT).await;
    let native = expect(
        0,
        &format!(
            "why bob@example.com delete pods -n {res} --org {}",
            org.name
        ),
    )
    .await;
    assert!(
        native
            .stdout
            .contains("no kube-org object grants this; it comes from:"),
        "{}",
        native.stdout
    );
    let row = native
        .stdout
        .lines()
        .find(|l| l.starts_with("- "))
        .unwrap_or_else(|| panic!("the native binding in:\n{}", native.stdout));
    assert!(
        row.contains(&format!("RoleBinding {res}/extra-edit")) && row.contains("ClusterRole edit"),
        "{}",
        native.stdout
    );

    // Questions that cannot be asked.
    let unknown = expect(
        2,
        &format!(
            "why bob@example.com get widgets -n {res} --org {}",
            org.name
        ),
    )
    .await;
    assert!(
        unknown
            .stderr
            .contains("the cluster serves no resource type \"widgets\""),
        "{}",
        unknown.stderr
    );
    let nowhere = expect(
        2,
        &format!("why bob@example.com get pods --org {}", org.name),
    )
    .await;
    assert!(nowhere.stderr.contains("--namespace"), "{}", nowhere.stderr);
    let stranger = expect(
        1,
        &format!("why carol@example.com get pods -n {res} --org {}", org.name),
    )
    .await;
    assert!(
        stranger
            .stderr
            .contains("no Membership for carol@example.com"),
        "{}",
        stranger.stderr
    );
    org.delete().await;
}
