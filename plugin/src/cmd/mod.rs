//! One handler file per verb.
mod encapsulate;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Encapsulate(a) => encapsulate::run(a),
    }
}
