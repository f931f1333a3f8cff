//! The command line of `kubectl org` (clap derive). Values whose shape alone is wrong
//! (`--scope`, `--ttl`, `-o`) are refused here, by clap, with exit code 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::output::Format;
use super::scope::parse_scope;
use crate::api::fields::Rfc3339;
use crate::api::{Access, GoDuration, Scope};

/// What `--help` says about exit codes; the README repeats it.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the cluster refused or failed, or the input names something that does not exist
     (an organization, invitation, member or role); for invite: any email failed;
     for revoke: nothing matched; for remove and leave: kube-org refused to let the
     member go; for why: the answer is no
  2  usage: an unknown flag, a missing argument or a malformed value";

/// Organizations, members, invitations and roles of kube-org, from kubectl.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-org",
    bin_name = "kubectl org",
    version,
    about = "Organizations, members, invitations and roles of kube-org",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Which cluster to talk to.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Cluster options")]
pub struct KubeArgs {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Invite people by email: one Invitation each, with the roles to grant on accepting.
    #[command(after_help = INVITE_HELP)]
    Invite(InviteArgs),
    /// Send an invitation again: a new link and a new expiry (the old link stops working).
    Resend(TargetArgs),
    /// Cancel an invitation: delete it, so its link stops working at once.
    Cancel(TargetArgs),
    /// List the members: email, where they came from, roles with scopes, Ready.
    Members(ListArgs),
    /// List the invitations: email, roles, phase, expiry, delivery.
    Invitations(ListArgs),
    /// List the roles: the built-in catalog, and with --org the organization's own.
    Roles(RolesArgs),
    /// Show where a member can go: each resource namespace and the ClusterRoles held there.
    Access(AccessArgs),
    /// Accept an invitation with the token (or the whole link) from the email.
    Accept(AcceptArgs),
    /// Give a member a role: one kube-org RoleBinding.
    #[command(after_help = GRANT_HELP)]
    Grant(GrantArgs),
    /// Take a role from a member: delete the matching kube-org RoleBindings.
    #[command(after_help = REVOKE_HELP)]
    Revoke(MemberRoleArgs),
    /// Remove a member: delete the Membership, which revokes all their access.
    Remove(RemoveArgs),
    /// Leave the organization yourself (the user your kubeconfig signs in as).
    Leave(LeaveArgs),
    /// Explain whether a member may do something, and which objects grant it.
    #[command(after_help = WHY_HELP)]
    Why(WhyArgs),
}

const GRANT_HELP: &str = "\
Scopes as for invite: `organization`, `TYPE/*` or `TYPE/name1,name2`; without --scope an
organization-level role applies to the organization. The person must be a member
already (invite them otherwise). Granting what the member holds already changes nothing.

A time-bound role: --for DURATION (from now, e.g. 8h) or --until TIME (RFC 3339); from
then on the binding grants nothing (Ready=False, Expired). Granting a role the member
holds until an earlier time (or held and expired) moves its end to the new one; without
--for/--until the role stops expiring. Grant never shortens a role: revoke it instead.

Examples:
  kubectl org grant bob@example.com --org acme --role viewer --scope 'deployment/*'
  kubectl org grant bob@example.com --org acme --role admin --scope deployment/prod,staging
  kubectl org grant bob@example.com --org acme --role billing-admin --access console
  kubectl org grant bob@example.com --org acme --role admin --scope deployment/prod --for 8h
  kubectl org grant bob@example.com --org acme --role viewer --scope 'deployment/*' --until 2026-12-31T00:00:00Z";

const REVOKE_HELP: &str = "\
Without --scope, every binding of the role is deleted; with it, only the binding of that
exact scope.

Examples:
  kubectl org revoke bob@example.com --org acme --role viewer --scope 'deployment/*'
  kubectl org revoke bob@example.com --org acme --role admin";

const WHY_HELP: &str = "\
RESOURCE is TYPE, TYPE.GROUP or either with /NAME, as for `kubectl auth can-i`: pods,
deployments.apps, deploy/web. The answer is the cluster's own (a SubjectAccessReview for
the member's user name); then the chain that grants it: the kube-org RoleBinding, the
native RoleBinding kube-org made from it, and the rule of its ClusterRole. Exit code 0
when the answer is yes, 1 when it is no.

Examples:
  kubectl org why bob@example.com list pods -n acme-prod --org acme
  kubectl org why bob@example.com update deployments.apps/web -n acme-prod --org acme
  kubectl org why bob@example.com get pods --subresource log -n acme-prod --org acme
  kubectl org why bob@example.com list namespaces -A --org acme";

const INVITE_HELP: &str = "\
Scopes: `organization`, `TYPE/*` (every resource of the type, including later ones) or
`TYPE/name1,name2` (named resources). Give --scope and --access once for every role, or
once per --role in the same order; without --scope an organization-level role applies to
the organization.

Examples:
  kubectl org invite bob@example.com carol@example.com --org acme --role viewer --scope 'deployment/*'
  kubectl org invite dave@example.com --org acme --role admin --scope deployment/prod,staging --ttl 24h
  kubectl org invite erin@example.com --org acme --role billing-admin";

/// The organization a command works on.
#[derive(Debug, Clone, Args)]
pub struct OrgArg {
    /// The organization (its home namespace holds the kube-org objects).
    #[arg(long, env = "KUBE_ORG_ORGANIZATION", value_name = "ORG")]
    pub org: String,
}

#[derive(Debug, Clone, Args)]
pub struct InviteArgs {
    /// The invitees' email addresses.
    #[arg(required = true, value_name = "EMAIL")]
    pub emails: Vec<String>,

    #[command(flatten)]
    pub org: OrgArg,

    /// A role to offer (see `kubectl org roles`); repeat for several.
    #[arg(long = "role", required = true, value_name = "ROLE")]
    pub roles: Vec<String>,

    /// Where the role applies: organization, TYPE/* or TYPE/name1,name2.
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    pub scopes: Vec<Scope>,

    /// full (default): the role inside each resource; console: sees the organization
    /// and its resources only.
    #[arg(long = "access", value_name = "ACCESS", value_enum)]
    pub access: Vec<AccessArg>,

    /// How long the link stays valid, e.g. 24h (default: the organization's, 72h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<GoDuration>,
}

/// `--access` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessArg {
    Full,
    Console,
}

impl From<AccessArg> for Access {
    fn from(value: AccessArg) -> Self {
        match value {
            AccessArg::Full => Access::Full,
            AccessArg::Console => Access::Console,
        }
    }
}

/// An invitation named by its object name or by the invitee's email.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The Invitation's name, or the invitee's email.
    #[arg(value_name = "NAME|EMAIL")]
    pub target: String,

    #[command(flatten)]
    pub org: OrgArg,
}

/// A listing of one organization.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub org: OrgArg,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct RolesArgs {
    /// Also show this organization's custom roles and overrides, and only the roles its
    /// resource types can use.
    #[arg(long, env = "KUBE_ORG_ORGANIZATION", value_name = "ORG")]
    pub org: Option<String>,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// The member's email.
    #[arg(value_name = "EMAIL")]
    pub email: String,

    #[command(flatten)]
    pub org: OrgArg,

    #[command(flatten)]
    pub output: OutputArg,
}

/// A member and one of their roles, as `revoke` takes them (and `grant`, with
/// `--access`).
#[derive(Debug, Clone, Args)]
pub struct MemberRoleArgs {
    /// The member's email.
    #[arg(value_name = "EMAIL")]
    pub email: String,

    #[command(flatten)]
    pub org: OrgArg,

    /// The role (see `kubectl org roles --org ORG`).
    #[arg(long, value_name = "ROLE")]
    pub role: String,

    /// Where the role applies: organization, TYPE/* or TYPE/name1,name2.
    #[arg(long, value_name = "SCOPE", value_parser = parse_scope)]
    pub scope: Option<Scope>,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    pub member: MemberRoleArgs,

    /// full (default): the role inside each resource; console: sees the organization
    /// and its resources only.
    #[arg(long, value_name = "ACCESS", value_enum)]
    pub access: Option<AccessArg>,

    /// The role ends this long from now, e.g. 8h, 30m or 1h30m.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration, conflicts_with = "until")]
    pub for_: Option<GoDuration>,

    /// The role ends at this time, in RFC 3339, e.g. 2026-12-31T00:00:00Z or
    /// 2026-12-31T09:00:00+09:00 (must be in the future).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<Rfc3339>,
}

/// How long `remove` and `leave` wait for kube-org to let the member go.
#[derive(Debug, Clone, Args)]
pub struct WaitArg {
    /// How long to wait for kube-org to release the Membership (or say why not).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: GoDuration,
}

#[derive(Debug, Clone, Args)]
pub struct RemoveArgs {
    /// The member's email.
    #[arg(value_name = "EMAIL")]
    pub email: String,

    #[command(flatten)]
    pub org: OrgArg,

    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Clone, Args)]
pub struct LeaveArgs {
    #[command(flatten)]
    pub org: OrgArg,

    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["namespace", "all_namespaces"])))]
pub struct WhyArgs {
    /// The member's email.
    #[arg(value_name = "EMAIL")]
    pub email: String,

    /// The verb, e.g. get, list, create, delete.
    #[arg(value_name = "VERB")]
    pub verb: String,

    /// TYPE[.GROUP][/NAME], e.g. pods, deployments.apps/web.
    #[arg(value_name = "RESOURCE")]
    pub resource: String,

    /// The namespace the question is about.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Ask about every namespace at once, or a cluster-scoped resource.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// A subresource, e.g. log, exec, status, scale.
    #[arg(long, value_name = "SUBRESOURCE")]
    pub subresource: Option<String>,

    #[command(flatten)]
    pub org: OrgArg,

    #[command(flatten)]
    pub output: OutputArg,
}

/// `-o yaml|json`; a table without it.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArg {
    /// Print YAML or JSON instead of a table.
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Args)]
pub struct AcceptArgs {
    /// The token from the invitation email, the whole link, or `-` to read either from
    /// standard input (keeps it out of the shell history).
    #[arg(value_name = "TOKEN")]
    pub token: String,

    /// The accept endpoint's base URL, e.g. https://org.example.com (default: the host of
    /// a link given as TOKEN).
    #[arg(long, env = "KUBE_ORG_ACCEPT_URL", value_name = "URL")]
    pub url: Option<String>,
}

/// `--ttl` and `--timeout`: a Go duration, not negative.
fn parse_time(value: &str) -> Result<Rfc3339, String> {
    let time = Rfc3339::from(value);
    time.parse().map_err(|e| e.to_string())?;
    Ok(time)
}

fn parse_duration(value: &str) -> Result<GoDuration, String> {
    let ttl = GoDuration::from(value);
    ttl.to_std().map_err(|e| e.to_string())?;
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    /// Parses `kubectl org LINE` (words split at white space).
    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-org").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn invite_takes_several_emails_roles_and_scopes() {
        let cli = parse("invite a@example.com b@example.com --org acme --role viewer --scope deployment/* --ttl 24h")
        .expect("parses");
        let Command::Invite(args) = cli.command else {
            panic!("not invite")
        };
        assert_eq!(args.emails, ["a@example.com", "b@example.com"]);
        assert_eq!(args.org.org, "acme");
        assert_eq!(args.scopes, [Scope::all_of("deployment")]);
        assert_eq!(args.ttl, Some(GoDuration::from("24h")));
    }

    #[test]
    fn malformed_values_are_usage_errors() {
        let bad_scope = parse("invite a@example.com --org acme --role viewer --scope prod")
            .expect_err("a scope without a type");
        assert_eq!(bad_scope.kind(), ErrorKind::ValueValidation);
        assert_eq!(bad_scope.exit_code(), 2);
        let bad_ttl = parse("invite a@example.com --org acme --role viewer --ttl soon")
            .expect_err("a ttl that is no duration");
        assert_eq!(bad_ttl.kind(), ErrorKind::ValueValidation);
        let no_role = parse("invite a@example.com --org acme").expect_err("no role");
        assert_eq!(no_role.kind(), ErrorKind::MissingRequiredArgument);
        let bad_format = parse("roles -o xml").expect_err("no such format");
        assert_eq!(bad_format.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn grant_and_revoke_take_one_role_and_scope() {
        let cli = parse(
            "grant bob@example.com --org acme --role viewer --scope deployment/* --access console",
        )
        .expect("parses");
        let Command::Grant(args) = cli.command else {
            panic!("not grant")
        };
        assert_eq!(args.member.email, "bob@example.com");
        assert_eq!(args.member.scope, Some(Scope::all_of("deployment")));
        assert_eq!(args.access, Some(AccessArg::Console));
        assert_eq!((args.for_.clone(), args.until.clone()), (None, None));
        let Command::Grant(timed) =
            parse("grant bob@example.com --org acme --role viewer --for 8h")
                .expect("parses")
                .command
        else {
            panic!("not grant")
        };
        assert_eq!(timed.for_, Some(GoDuration::from("8h")));
        let Command::Grant(until) =
            parse("grant bob@example.com --org acme --role viewer --until 2026-12-31T00:00:00Z")
                .expect("parses")
                .command
        else {
            panic!("not grant")
        };
        assert_eq!(until.until, Some(Rfc3339::from("2026-12-31T00:00:00Z")));
        let both = parse(
            "grant bob@example.com --org acme --role viewer --for 8h --until 2026-12-31T00:00:00Z",
        )
        .expect_err("one end at most");
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(both.exit_code(), 2);
        for bad in ["--until tomorrow", "--until 2026-12-31", "--for forever"] {
            let error = parse(&format!(
                "grant bob@example.com --org acme --role viewer {bad}"
            ))
            .expect_err(bad);
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad}");
        }
        let cli = parse("revoke bob@example.com --org acme --role viewer -o json").expect("parses");
        let Command::Revoke(args) = cli.command else {
            panic!("not revoke")
        };
        assert_eq!((args.role.as_str(), args.scope), ("viewer", None));
        let twice = parse("grant bob@example.com --org acme --role viewer --role admin")
            .expect_err("one role at a time");
        assert_eq!(twice.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn why_needs_a_namespace_or_all_of_them() {
        let cli =
            parse("why bob@example.com get deploy/web --org acme -n prod --subresource scale")
                .expect("parses");
        let Command::Why(args) = cli.command else {
            panic!("not why")
        };
        assert_eq!(
            (args.verb.as_str(), args.resource.as_str()),
            ("get", "deploy/web")
        );
        assert_eq!(args.namespace.as_deref(), Some("prod"));
        assert_eq!(args.subresource.as_deref(), Some("scale"));
        assert!(parse("why bob@example.com get pods --org acme -A").is_ok());
        let nowhere = parse("why bob@example.com get pods --org acme").expect_err("where?");
        assert_eq!(nowhere.kind(), ErrorKind::MissingRequiredArgument);
        let both = parse("why bob@example.com get pods --org acme -A -n prod").expect_err("both");
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn remove_and_leave_wait_30s_unless_told() {
        let cli = parse("remove bob@example.com --org acme").expect("parses");
        let Command::Remove(args) = cli.command else {
            panic!("not remove")
        };
        assert_eq!(args.wait.timeout, GoDuration::from("30s"));
        let cli = parse("leave --org acme --timeout 2m").expect("parses");
        let Command::Leave(args) = cli.command else {
            panic!("not leave")
        };
        assert_eq!(args.wait.timeout, GoDuration::from("2m"));
        let bad = parse("leave --org acme --timeout soon").expect_err("no duration");
        assert_eq!(bad.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn roles_need_no_organization() {
        let cli = parse("roles -o json").expect("parses");
        let Command::Roles(args) = cli.command else {
            panic!("not roles")
        };
        assert_eq!(args.output.format, Some(Format::Json));
    }
}
