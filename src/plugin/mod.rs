//! `kubectl org`, the kubectl plugin of kube-org (binary `kubectl-org`): invite people,
//! resend and cancel invitations, list members, invitations and roles, show where a
//! member can go, and accept an invitation. One file per concern; the pure parts
//! (flags into Invitations, the scope syntax, tables) are unit-tested without a cluster.

pub mod accept;
pub mod cli;
pub mod cluster;
pub mod error;
pub mod invitations;
pub mod invite;
pub mod members;
pub mod output;
pub mod roles;
pub mod scope;

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
    }
}
