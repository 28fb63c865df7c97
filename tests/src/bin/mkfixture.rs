//! mkfixture: build an ostree commit from a fixture description.
//!
//!   mkfixture --repo REPO --ref REF [--mode bare|bare-user|archive] (--sample | FILE)
use anyhow::{bail, Context, Result};
use storage_bridge::fixture::{create_repo, Fixture, SAMPLE};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut repo, mut refname, mut mode, mut text) = (None, None, ostree::RepoMode::Bare, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--repo" => repo = args.next(),
            "--ref" => refname = args.next(),
            "--mode" => {
                mode = match args.next().as_deref() {
                    Some("bare") => ostree::RepoMode::Bare,
                    Some("bare-user") => ostree::RepoMode::BareUser,
                    Some("archive") => ostree::RepoMode::Archive,
                    o => bail!("--mode {o:?}: bare, bare-user or archive"),
                }
            }
            "--sample" => text = Some(SAMPLE.to_string()),
            "-h" | "--help" => {
                println!("mkfixture --repo REPO --ref REF [--mode bare|bare-user|archive] (--sample | FILE)");
                return Ok(());
            }
            f => text = Some(std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?),
        }
    }
    let (Some(repo), Some(refname), Some(text)) = (repo, refname, text) else {
        bail!("usage: mkfixture --repo REPO --ref REF [--mode MODE] (--sample | FILE)");
    };
    let r = create_repo(std::path::Path::new(&repo), mode)?;
    let csum = Fixture::parse(&text)?.commit(&r, &refname)?;
    println!("{csum}");
    Ok(())
}
