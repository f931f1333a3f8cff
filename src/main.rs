//! The `kube-org` binary: `run` starts the operator, `crds` prints the CRDs.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use kube_org::{crdgen, run};

#[derive(Parser)]
#[command(
    name = "kube-org",
    version,
    about = "Organizations, email invitations and scoped roles for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers and the HTTP server (health, metrics, invitation acceptance).
    Run(Box<run::RunArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file each with --out-dir.
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let result = run::run(*args).await;
            // Exit here rather than by dropping the runtime, which waits for blocking
            // threads (a read of standard input, a DNS lookup) that may never return.
            if let Err(error) = result {
                eprintln!("error: {error:#}");
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        Command::Crds { out_dir: None } => {
            print!("{}", crdgen::all_yaml()?);
            Ok(())
        }
        Command::Crds { out_dir: Some(dir) } => {
            for crd in crdgen::all() {
                let path = dir.join(crdgen::file_name(&crd));
                std::fs::write(&path, crdgen::to_yaml(&crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
    }
}
