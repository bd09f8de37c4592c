//! The `guestlist` binary: parse, set up logs, dispatch.

use clap::{CommandFactory, FromArgMatches};
use guestlist::config::{Cli, Command, SECRETS_HELP};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `serve --help` is where an operator looks for the tokens.
    let matches = Cli::command()
        .after_long_help(SECRETS_HELP)
        .after_help(SECRETS_HELP)
        .mut_subcommand("serve", |serve| serve.after_help(SECRETS_HELP))
        .get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(serve) = matches.subcommand_matches("serve") {
        guestlist::config::refuse_store_password_in_argv(serve)?;
    }
    match cli.command {
        Command::Serve(args) => {
            guestlist::telemetry::init_logs(args.log_format, &args.log_level);
            guestlist::server::serve(args, shutdown_signal()).await
        }
        Command::Bench(args) => {
            // Warnings only: the progress bar and the tables are the output.
            guestlist::telemetry::init_logs(guestlist::config::LogFormat::Text, "warn");
            guestlist::bench::main(args).await
        }
        Command::Campaign { cmd, remote } => guestlist::cli::campaign(remote, cmd).await,
        Command::Audience { cmd, remote } => guestlist::cli::audience(remote, cmd).await,
        Command::Check {
            campaign,
            user,
            remote,
        } => guestlist::cli::check(remote, campaign, user).await,
        Command::User { user, remote } => guestlist::cli::user(remote, user).await,
        Command::Audit {
            campaign,
            limit,
            remote,
        } => guestlist::cli::audit(remote, campaign, limit).await,
    }
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
