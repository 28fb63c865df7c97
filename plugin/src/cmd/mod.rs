//! One handler file per verb.
mod encapsulate;
mod unencapsulate;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Encapsulate(a) => encapsulate::run(*a),
        Command::Unencapsulate(a) => unencapsulate::run(*a),
    }
}
