//! `kubectl org`, the kubectl plugin of kube-org (binary `kubectl-org`): invite people,
//! resend and cancel invitations, list members, invitations and roles, show where a
//! member can go, accept an invitation, grant and revoke roles, remove members or leave,
//! and explain why a member may do something. One file per concern; the pure parts
//! (flags into objects, the scope syntax, tables, RBAC matching, the `why` chain) are
//! unit-tested without a cluster.

pub mod accept;
pub mod bindings;
pub mod cli;
pub mod cluster;
pub mod error;
pub mod invitations;
pub mod invite;
pub mod leave;
pub mod members;
pub mod output;
pub mod rbac;
pub mod roles;
pub mod scope;
pub mod why;

pub use cli::Cli;
pub use error::PluginError;

use cli::{Command, OrgArg};
use cluster::OrgContext;

/// Runs one command.
pub async fn run(cli: Cli) -> Result<(), PluginError> {
    let org = |arg: &OrgArg| {
        let name = arg.org.clone();
        let kube = cli.kube.clone();
        async move { OrgContext::load(cluster::client(&kube).await?, &name).await }
    };
    match &cli.command {
        Command::Invite(args) => invite::invite(&org(&args.org).await?, args).await,
        Command::Resend(args) => invitations::resend(&org(&args.org).await?, args).await,
        Command::Cancel(args) => invitations::cancel(&org(&args.org).await?, args).await,
        Command::Members(args) => members::members(&org(&args.org).await?, args).await,
        Command::Invitations(args) => invitations::list(&org(&args.org).await?, args).await,
        Command::Access(args) => members::access(&org(&args.org).await?, args).await,
        Command::Roles(args) => roles::list(&cli.kube, args).await,
        Command::Accept(args) => accept::accept(args).await,
        Command::Grant(args) => bindings::grant(&org(&args.member.org).await?, args).await,
        Command::Revoke(args) => bindings::revoke(&org(&args.org).await?, args).await,
        Command::Remove(args) => leave::remove(&org(&args.org).await?, args).await,
        Command::Leave(args) => leave::leave(&org(&args.org).await?, args).await,
        Command::Why(args) => why::why(&org(&args.org).await?, args).await,
    }
}
