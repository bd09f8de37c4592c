//! The `guestlist` binary: parse, set up logs, dispatch.

use std::process::ExitCode;

use clap::FromArgMatches;
use guestlist::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let mut command = guestlist::config::command();
    let matches = command.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(flag) = guestlist::config::misplaced_admin_options(&matches) {
        command
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{flag} is an option of the admin commands (campaign, audience, check, user, audit), not of serve or bench"),
            )
            .exit();
    }
    if let Some(serve) = matches.subcommand_matches("serve") {
        guestlist::config::refuse_store_password_in_argv(serve)?;
    }
    match cli.command {
        Command::Serve(args) => {
            guestlist::telemetry::init_logs(args.log_format, &args.log_level);
            guestlist::server::serve(args, shutdown_signal()).await?;
        }
        Command::Bench(args) => {
            // Warnings only: the progress bar and the tables are the output.
            guestlist::telemetry::init_logs(guestlist::config::LogFormat::Text, "warn");
            guestlist::bench::main(args).await?;
        }
        // The admin commands print their own errors, without a backtrace,
        // and exit with a documented code.
        admin => return Ok(guestlist::cli::run(cli.remote, admin).await),
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM; the server then drains in-flight requests.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; draining"),
        () = term => tracing::info!("SIGTERM received; draining"),
    }
}
