//! `ferrisfx`: run the platform (`ferrisfx dev`) and talk to a running management server.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ferrisfx::Cli::parse();
    ferrisfx::init_tracing(&cli);
    management_server::metrics::install();
    match ferrisfx::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(ferrisfx::exit::code(&e))
        }
    }
}
