//! `keyframe`: serve the API, relay and projectors; migrate; replay; export the log.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = keyframe::cli::Cli::parse();
    keyframe::telemetry::init(cli.common.log_format);
    match keyframe::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "keyframe failed");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
