//! One handler file per verb.
mod deploy;
mod encapsulate;
mod images;
mod lint;
mod manage;
mod pull;
mod status;
mod unencapsulate;
mod upgrade;

use crate::cli::{Cli, Command, ContainerCommand, ImageCommand};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Encapsulate(a) => encapsulate::run(*a),
        Command::Unencapsulate(a) => unencapsulate::run(*a),
        Command::Image(ImageCommand::Pull(a)) => pull::run(*a),
        Command::Image(ImageCommand::Deploy(a)) => deploy::run(*a),
        Command::Image(ImageCommand::List(a)) => images::list(a),
        Command::Image(ImageCommand::Metadata(a)) => images::metadata(a),
        Command::Image(ImageCommand::History(a)) => images::history(a),
        Command::Image(ImageCommand::Remove(a)) => images::remove(a),
        Command::Image(ImageCommand::PruneImages(a)) => manage::prune(a),
        Command::Image(ImageCommand::PruneLayers(a)) => images::prune_layers(a),
        Command::Status(a) => status::run(a),
        Command::Upgrade(a) => upgrade::run(*a),
        Command::Switch(a) => manage::switch(*a),
        Command::Rollback(a) => manage::rollback(a),
        Command::Pin(a) => manage::pin(a, true),
        Command::Unpin(a) => manage::pin(a, false),
        Command::Container(ContainerCommand::Lint(a)) => lint::run(a),
    }
}
