//! The `ferrisfx` command line: `dev` runs every part of the platform in one process on
//! embedded backends; the other commands talk to a running management server over its REST
//! API (`--server`, or `FX_SERVER`).

pub mod backup;
pub mod bundle;
pub mod catalogue;
pub mod client;
pub mod completions;
pub mod config_reference;
pub mod deploy;
pub mod dev;
pub mod execution;
pub mod exit;
pub mod handler;
pub mod hook;
pub mod login;
pub mod logs;
pub mod new;
pub mod notification;
pub mod ops;
pub mod output;
pub mod package;
pub mod process;
pub mod project;
pub mod replay;
pub mod schedule;
pub mod secret;
pub mod settings;
pub mod setup;
pub mod traces;
pub mod workflow;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// FerrisFX: event-driven serverless functions on WebAssembly.
#[derive(Debug, Parser)]
#[command(
    name = "ferrisfx",
    version,
    after_help = "Start with `ferrisfx new --lang rust NAME && cd NAME && ferrisfx deploy`, against a platform \
                  started with `ferrisfx dev`. Lists print tables (-o json|yaml for scripts); exit \
                  statuses, completions and man pages: docs/cli.md."
)]
pub struct Cli {
    /// The management server to talk to.
    #[arg(
        long,
        global = true,
        env = "FX_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The API token to send (else the one `ferrisfx login` kept for the server).
    #[arg(long, global = true, env = "FX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,fx_executor=debug`.
    #[arg(long, global = true, env = "FX_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "FX_LOG_JSON")]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands, in the order `--help` lists them: the developer's loop, configuration,
/// signing in, running and operating the platform, the shell.
///
/// The first paragraph of each doc comment is the one-line summary of `ferrisfx --help`; the
/// rest shows in `ferrisfx <command> --help` and the man pages.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a new function project in Rust, Python or JavaScript.
    ///
    /// The project holds the function, its manifest (fx.toml) and a project file
    /// (ferrisfx.yaml) with a handler running it: `cd NAME && ferrisfx deploy` runs it.
    New(new::NewArgs),
    /// Build, upload and configure a project in one command.
    ///
    /// Builds the project's functions, uploads what changed, applies its handlers (and the
    /// rest of its project file) and prints where to look.
    Deploy(deploy::DeployArgs),
    /// Send a CloudEvent to the server.
    Emit(client::EmitArgs),
    /// Print a handler's function log lines; -f follows them live.
    ///
    /// With -f, keeps printing new ones as they arrive (Ctrl-C stops).
    Logs(logs::LogsArgs),
    /// List executions or show one.
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Run a recorded execution again on this machine and compare.
    ///
    /// Runs it with its event, the exact package digest it ran and its handler's
    /// configuration and limits as they were, and compares the output events and log lines
    /// with the recorded ones: exit status 0 when they match, 1 with a diff when they differ.
    Replay(replay::ReplayArgs),
    /// Make the platform match a project file (ferrisfx.yaml).
    ///
    /// Creates what is missing, updates what differs (check-and-set: an entry someone else
    /// changed since the plan fails the apply), and with --prune deletes what the file no
    /// longer names. Prints the plan first; idempotent.
    Apply {
        /// The file and pruning.
        #[command(flatten)]
        args: project::ApplyArgs,
        /// Print the plan and stop.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print what `apply` would change.
    ///
    /// Each change with each changed field's old and new value.
    Diff(project::DiffArgs),
    /// Write the platform's configuration as a project file (YAML).
    ///
    /// Handlers, workflows, schedules, webhooks, bundles and notification rules, for `apply`.
    Export(project::ExportArgs),
    /// Build, upload and list packages.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Create, list and delete handlers.
    #[command(subcommand)]
    Handler(HandlerCommand),
    /// Create, list, pause, resume and delete schedules.
    ///
    /// Cron, interval or one-off ticks that run the handlers of
    /// `com.ferrisfx.schedule.fired`.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Create, list, show and delete webhooks.
    ///
    /// `POST /hooks/<name>` endpoints that check a sender's signature and turn each delivery
    /// into an event, e.g. `com.github.push`.
    #[command(subcommand)]
    Hook(hook::HookCommand),
    /// Create, list, show and delete chat command bundles.
    ///
    /// A Slack app's commands, posted to `/chat/slack/<name>`, each running a handler.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Create, list, show and delete notification rules.
    ///
    /// A signed JSON POST or a CloudEvent when executions of the handlers they watch fail,
    /// are dead-lettered or succeed.
    #[command(subcommand)]
    Notification(notification::NotificationCommand),
    /// Create, import, list, show and delete workflows; start, watch, cancel and re-drive runs.
    ///
    /// Workflows are graphs of steps, each running a package or handler after the steps it
    /// depends on; start runs and wait for them, list runs, show one's steps and outputs,
    /// cancel and re-drive.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// Write, list, delete and re-seal platform secrets; make keyring keys.
    ///
    /// Values go in, never come back out.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// The event catalogue: every (source, type) seen.
    ///
    /// With its counts, and one's fields, schema changes and matching handlers.
    #[command(subcommand)]
    Catalogue(catalogue::CatalogueCommand),
    /// Sign in to the server: trade a name and password for an API token.
    ///
    /// The token is kept in the user's config directory for this server.
    Login {
        /// Account name.
        #[arg(long)]
        user: String,
        /// Read the password from standard input (else from FX_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke and forget the token `login` kept for the server.
    Logout,
    /// Show who the token is and the rules that apply to it.
    Whoami,
    /// Run gateway, executor and management server in one process on embedded backends.
    Dev(settings::SettingsArgs),
    /// Run a gateway (dispatcher and state router) of a distributed deployment.
    Gateway(settings::SettingsArgs),
    /// Run an executor of a distributed deployment.
    Executor {
        /// Settings, as for `dev`.
        #[command(flatten)]
        args: settings::SettingsArgs,
        /// The executor pool to serve (overrides `executor.pool`).
        #[arg(long)]
        pool: Option<String>,
    },
    /// Run the management server (web UI, REST API) of a distributed deployment.
    Server(settings::SettingsArgs),
    /// Prepare a distributed deployment's backends (idempotent).
    ///
    /// Migrations, bucket, Kafka topics, and optionally the Kibana saved objects; the Helm
    /// chart's post-install job.
    Setup(setup::SetupArgs),
    /// Load and check the settings as every process does, then exit.
    ///
    /// Reads the file and the `FX_*` variables: unknown keys, missing fields and invalid
    /// values fail with the reason.
    CheckConfig(settings::SettingsArgs),
    /// Print the configuration reference (`docs/configuration-reference.md`), generated from
    /// the settings' own docs.
    #[command(hide = true)]
    ConfigReference,
    /// Write an archive of everything the platform holds to a file or an S3 bucket.
    ///
    /// Packages with their archives, handlers and their history, schedules, webhooks,
    /// bundles, notification rules, workflows, accounts, tokens, rules, sealed secrets;
    /// optionally executions and logs since a time. Administrators only.
    Backup(backup::BackupArgs),
    /// Write a backup into a deployment (an empty one, unless --force).
    ///
    /// Checked whole first, verified after (counts and package digests). Works across
    /// backends: the way from `ferrisfx dev` to a deployment and back.
    Restore(backup::RestoreArgs),
    /// Print the completion script of a shell (bash, zsh, fish, powershell, elvish).
    ///
    /// To standard output; docs/cli.md says where each shell looks for it.
    Completions(completions::CompletionsArgs),
    /// Write the man pages, or print the top one.
    ///
    /// `ferrisfx.1` and one per subcommand into a folder with `--dir`, or the top page to
    /// standard output.
    Man(completions::ManArgs),
}

/// Package commands.
#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Build a function crate for wasm32-wasip2 (or take a built component, `--wasm`) and pack
    /// it with its fx.toml into a .fxpkg.
    Build(package::BuildArgs),
    /// Upload a .fxpkg archive.
    Upload {
        /// The archive.
        file: PathBuf,
    },
    /// List packages, their versions and aliases.
    List(output::ListArgs),
    /// Point an alias (e.g. `latest`) of a package at one of its versions.
    Alias {
        /// Package name.
        name: String,
        /// Alias name.
        alias: String,
        /// Version to point at.
        version: String,
    },
}

/// Handler commands.
#[derive(Debug, Subcommand)]
pub enum HandlerCommand {
    /// Create a handler from flags or from a JSON file.
    Create(Box<client::HandlerArgs>),
    /// List handlers: package, what they match, pool, enabled, revision.
    List(output::ListArgs),
    /// Delete a handler.
    Delete {
        /// Handler name.
        name: String,
    },
}

/// Execution commands.
#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// List executions, newest first.
    List {
        /// Only this handler's.
        #[arg(long)]
        handler: Option<String>,
        /// Only this status (queued, running, succeeded, failed).
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Output format and watching.
        #[command(flatten)]
        list: output::ListArgs,
    },
    /// Show one execution: status, handler, package, event, attempts, timings, output, error
    /// and log lines (`-o json|yaml`: the API's document).
    Show {
        /// Execution id.
        id: String,
        /// Output format.
        #[command(flatten)]
        output: output::ShowArgs,
    },
}

/// Sets up logging for the process.
pub fn init_tracing(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let token = login::token_for(&cli.server, cli.token.as_deref());
    let api = client::Api::with_token(&cli.server, token);
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Gateway(args) => process::run(process::Part::Gateway, args, None).await,
        Command::Executor { args, pool } => process::run(process::Part::Executor, args, pool).await,
        Command::Server(args) => process::run(process::Part::Server, args, None).await,
        Command::Setup(args) => setup::run(args).await,
        Command::CheckConfig(args) => setup::check_config(&args),
        Command::ConfigReference => config_reference::print(),
        Command::New(args) => new::run(args),
        Command::Deploy(args) => deploy::run_deploy(&api, &cli.server, &args).await,
        Command::Apply { args, dry_run } => project::apply(&api, &args, dry_run).await,
        Command::Diff(args) => project::diff(&api, &args).await,
        Command::Export(args) => project::export_command(&api, &cli.server, &args).await,
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
        Command::Package(PackageCommand::Build(args)) => package::build(args),
        Command::Package(PackageCommand::Upload { file }) => api.upload(&file).await,
        Command::Package(PackageCommand::List(args)) => package::list(&api, &args).await,
        Command::Package(PackageCommand::Alias {
            name,
            alias,
            version,
        }) => api.set_alias(&name, &alias, &version).await,
        Command::Handler(HandlerCommand::Create(args)) => api.create_handler(*args).await,
        Command::Handler(HandlerCommand::List(args)) => handler::list(&api, &args).await,
        Command::Handler(HandlerCommand::Delete { name }) => api.delete_handler(&name).await,
        Command::Secret(command) => secret::run(&api, command).await,
        Command::Schedule(command) => schedule::run(&api, command).await,
        Command::Hook(command) => hook::run(&api, command).await,
        Command::Bundle(command) => bundle::run(&api, command).await,
        Command::Notification(command) => notification::run(&api, command).await,
        Command::Workflow(command) => workflow::run(&api, command).await,
        Command::Emit(args) => api.emit(args).await,
        Command::Login {
            user,
            password_stdin,
        } => api.login(&user, &login::password(password_stdin)?).await,
        Command::Logout => api.logout().await,
        Command::Whoami => api.whoami().await,
        Command::Executions(ExecutionsCommand::List {
            handler,
            status,
            limit,
            list,
        }) => execution::list(&api, handler, status, limit, &list).await,
        Command::Executions(ExecutionsCommand::Show { id, output }) => {
            execution::show(&api, &id, output.output).await
        }
        Command::Logs(args) => logs::run(&api, args).await,
        Command::Replay(args) => replay::run(&api, args).await,
        Command::Backup(args) => backup::backup(&api, args).await,
        Command::Catalogue(command) => catalogue::run(&api, command).await,
        Command::Restore(args) => backup::restore(&api, args).await,
    }
}
