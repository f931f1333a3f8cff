//! `kubectl-org`, the kubectl plugin: `kubectl org <command>` once on the PATH. The
//! commands live in `kube_org::plugin`; this only parses, runs and maps errors to exit
//! codes (0 ok, 1 error, 2 usage).

use std::process::ExitCode;

use clap::Parser;
use kube_org::plugin::output::note;
use kube_org::plugin::{Cli, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error.is_reported() {
                note(&format!("error: {error}"));
            }
            ExitCode::from(error.exit_code())
        }
    }
}
