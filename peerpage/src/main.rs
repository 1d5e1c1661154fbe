//! `peerpage`: the publisher's tool. `peerpage manifest DIR` indexes a
//! site's static files so that visitors can take them from each other
//! (see `protocol::site`); `--check` verifies an index against the files.
//! `peerpage keygen` and `peerpage release` sign releases of the index
//! (see `protocol::release`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod hash_file;
mod index_dir;
mod release;
mod state;
mod walk;

/// Publishes a site's static files for peer-assisted delivery.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hashes the files under DIR and writes DIR/peerpage.json (URL path ->
    /// address, size, type) and each file's manifest at
    /// DIR/.peerpage/<address>. Only listed files are ever shared by
    /// visitors. Files unchanged since the last run (same size and
    /// modification time) are not hashed again.
    Manifest {
        /// The folder the site's files are served from.
        dir: PathBuf,
        /// List only files matching this pattern (repeatable): a pattern
        /// without `/` matches file names anywhere (`*.png`), one with `/`
        /// the path under DIR (`assets/**/*.bin`).
        #[arg(long = "include", value_name = "GLOB")]
        include: Vec<String>,
        /// Verify DIR/peerpage.json instead: rehash every file and compare
        /// with the index and the manifests; writes nothing.
        #[arg(long)]
        check: bool,
    },
    /// Makes a site's key pair: the secret key goes to KEYFILE (mode 0600;
    /// never over an existing file), the public key is the last line
    /// printed. Visitors follow the public key.
    Keygen {
        /// Where the secret key goes.
        keyfile: PathBuf,
    },
    /// Indexes DIR as `manifest` does and signs a release of it: the index
    /// becomes content (DIR/.peerpage/<address>.json and its manifest) and
    /// DIR/peerpage.json the signed record (site key, seq one more than the
    /// release already there, creation time, expiry, the index's address).
    Release {
        /// The folder the site's files are served from.
        dir: PathBuf,
        /// The secret key from `peerpage keygen`.
        #[arg(long)]
        key: PathBuf,
        /// How long the release stays valid: 30d, 12h, 90m, 3600s.
        #[arg(long, default_value = "30d", value_parser = release::parse_duration)]
        expires: std::time::Duration,
        /// List only files matching this pattern (repeatable), as for
        /// `manifest`.
        #[arg(long = "include", value_name = "GLOB")]
        include: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Manifest {
            dir,
            include,
            check,
        } => {
            if check {
                index_dir::check(&dir, &include)
            } else {
                index_dir::write(&dir, &include)
            }
        }
        Command::Keygen { keyfile } => release::keygen(&keyfile),
        Command::Release {
            dir,
            key,
            expires,
            include,
        } => release::release(&dir, &include, &key, expires).map(|(summary, _)| summary),
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("peerpage: {e:#}");
            ExitCode::FAILURE
        }
    }
}
