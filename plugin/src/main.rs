//! `ostree-container`: thin binary; the work is in `storage-bridge`, the CLI in `cli.rs`.
mod cli;
mod cmd;
mod progress_fd;
mod render;

use clap::Parser;

fn main() {
    // `ostree container ...` runs us with `container` as the first argument; our own
    // `container lint` verb keeps it (`ostree container container lint` works too).
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "container") && args.get(2).is_none_or(|a| a != "lint") {
        args.remove(1);
    }
    let cli = cli::Cli::parse_from(args);
    render::init_logging();
    storage_bridge::commit::route_libostree_messages_to_stderr();
    if let Err(e) = cmd::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
