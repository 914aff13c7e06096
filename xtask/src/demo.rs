//! `cargo xtask demo`: bootstrap, build, then the narrated demo (`scripts/demo.sh`).

use std::process::Command;

use crate::{root, setup, sh, target_dir};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Non-interactive: no pauses, and every step's status code is asserted.
    #[arg(long)]
    ci: bool,
    /// Skip the bootstrap step.
    #[arg(long)]
    no_setup: bool,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if !args.no_setup {
        setup::run()?;
    }
    let root = root();
    sh(Command::new("cargo").args(["build", "-p", "ward"]).current_dir(&root))?;
    let mut demo = Command::new("bash");
    demo.arg(root.join("scripts/demo.sh")).env("WARD_BIN", target_dir().join("debug/ward")).current_dir(&root);
    if args.ci {
        demo.arg("--ci");
    }
    sh(&mut demo)
}
