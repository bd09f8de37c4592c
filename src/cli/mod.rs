//! The admin CLI: `guestlist campaign|audience|check|user|audit`, talking to a
//! running server over HTTP or HTTPS (`--ca-file` for a private CA).
//!
//! - [`api`]: the HTTP client; the token from `GUESTLIST_TOKEN`, deadlines,
//!   and every failure turned into a [`CliError`];
//! - [`error`]: what a failure prints and its exit code ([`Exit`]);
//! - [`campaign`], [`audience`], [`reads`]: the commands;
//! - [`output`]: tables, or the server's JSON with `--json`.
//!
//! The global options (`--server`, `--json`, `--ca-file`) are parsed once,
//! before the command, so they may go anywhere on the line.

mod api;
mod audience;
mod campaign;
mod error;
mod output;
mod reads;
mod versions;

use std::process::ExitCode;

pub use error::{CliError, Exit};

use crate::config::{Command, Remote};

/// Runs one admin command, prints its error if any, and returns its
/// documented exit code.
pub async fn run(remote: Remote, command: Command) -> ExitCode {
    let result = async {
        let api = api::Api::new(&remote)?;
        match command {
            Command::Campaign { cmd } => campaign::run(&api, cmd).await,
            Command::Audience { cmd } => audience::run(&api, cmd).await,
            Command::Check { campaign, user } => reads::check(&api, &campaign, &user).await,
            Command::User { user } => reads::user(&api, &user).await,
            Command::Audit { campaign, limit } => {
                reads::audit(&api, campaign.as_deref(), limit).await
            }
            Command::Serve(_) | Command::Bench(_) => {
                Err(CliError::usage("serve and bench are not admin commands"))
            }
        }
    }
    .await;
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            e.print();
            e.exit.into()
        }
    }
}
