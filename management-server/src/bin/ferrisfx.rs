//! `ferrisfx`: run the platform (`ferrisfx dev`) and talk to a running management server.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = management_server::cli::Cli::parse();
    management_server::cli::init_tracing(&cli);
    management_server::metrics::install();
    match management_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
