//! One handler file per verb.
mod encapsulate;
mod pull;
mod unencapsulate;

use crate::cli::{Cli, Command, ImageCommand};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Encapsulate(a) => encapsulate::run(*a),
        Command::Unencapsulate(a) => unencapsulate::run(*a),
        Command::Image(ImageCommand::Pull(a)) => pull::run(*a),
    }
}
