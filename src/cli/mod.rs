//! The command line. `confab` alone serves; the other subcommands prepare
//! the database, seed a demo, mint a token or show the configuration, each
//! in a module of its own. Every failure is one [`CliError`] line on stderr
//! and a non-zero exit (2 for a bad configuration, 1 for anything else).

mod check_config;
mod demo;
mod token;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use actix::{Actor, Addr};
use clap::{Parser, Subcommand};

use crate::auth::{random_secret, Auth};
use crate::config::{ConfigError, Settings};
use crate::error::AppError;
use crate::persistence::migrate::{prepare_database, PrepareError};
use crate::persistence::{build_pool, BatchSettings, Persistence, Subscribers};
use crate::startup::{Application, StartError};

/// Real-time chat server: WebSocket JSON frames, multi-tenant, durable on
/// Postgres. Configuration comes from config/default.toml (or the file in
/// CONFAB_CONFIG) and CONFAB_* environment variables.
#[derive(Debug, Parser)]
#[command(name = "confab", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket until SIGTERM or SIGINT (the default).
    Serve(ServeArgs),
    /// Create the database if it is missing, run pending migrations, exit.
    Migrate,
    /// Seed a demo company (Ann, Bob, Cleo, Dev, a few threads, and 16 more
    /// people for the directory), print a login link per user, then serve.
    Demo(demo::DemoArgs),
    /// Mint a user JWT signed with the configured jwt_secret.
    Token(token::TokenArgs),
    /// Print the effective configuration, secrets masked.
    CheckConfig,
}

#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// Neither create nor migrate the database (as CONFAB_MIGRATE=false),
    /// for deployments that run `confab migrate` as a step of their own.
    /// The server refuses to start if the database is missing or has
    /// migrations pending.
    #[arg(long)]
    no_migrate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] PrepareError),
    #[error("cannot start: {0}")]
    Start(#[from] StartError),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    App(#[from] AppError),
    /// A refusal of this command, with its reason.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

impl Cli {
    /// The log level when RUST_LOG says nothing: the server's commands
    /// report what they do; the one-shot ones print only their answer.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            None | Some(Command::Serve(_) | Command::Migrate | Command::Demo(_)) => "info",
            Some(Command::Token(_) | Command::CheckConfig) => "warn",
        }
    }

    /// Loads the settings, starts the log in their format and runs the
    /// command. A bad configuration is reported before any log exists.
    pub fn run(self) -> Result<(), CliError> {
        let mut settings = Settings::load()?;
        crate::logging::init(settings.log_format, self.default_log_level());
        // The TLS parameters are Persistence's to read; a typo in them is
        // still a configuration error (exit 2), found before anything runs.
        crate::persistence::connect::check_url(&settings.database_url)
            .map_err(|why| ConfigError::invalid("database_url", &why))?;
        match self.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::CheckConfig => {
                print!("{}", check_config::render(&settings));
                Ok(())
            }
            Command::Serve(args) => {
                if args.no_migrate {
                    settings.migrate = false;
                }
                crate::startup::raise_open_files_limit();
                actix_web::rt::System::new()
                    .block_on(async move { serve(Application::build(settings).await?).await })
            }
            Command::Migrate => actix_web::rt::System::new().block_on(async move {
                prepare_database(&settings.database_url).await?;
                println!("database ready: migrations are up to date");
                Ok(())
            }),
            Command::Demo(args) => {
                if !args.no_serve {
                    crate::startup::raise_open_files_limit();
                }
                actix_web::rt::System::new().block_on(demo::run(settings, args))
            }
            Command::Token(args) => {
                actix_web::rt::System::new().block_on(token::run(settings, args))
            }
        }
    }
}

async fn serve(app: Application) -> Result<(), CliError> {
    app.run_until_stopped(true).await.map_err(CliError::Serve)
}

/// Persistence for a command that runs no server: its own pool, and no
/// subscribers, since no session can be online to hear of its changes.
fn offline_persistence(settings: &Settings) -> Result<Addr<Persistence>, CliError> {
    let pool = build_pool(
        &settings.database_url,
        settings.db_pool_size,
        settings.db_timeout(),
    )?;
    Ok(Persistence::new(
        pool,
        Subscribers::default(),
        settings.db_request_timeout(),
        BatchSettings::from_settings(settings),
    )
    .start())
}

/// Signs user tokens with the secret the server checks them with. An empty
/// secret is replaced by a fresh one for this run, as `serve` does; the
/// caller must then hand the same settings to the server it starts.
fn user_token_signer(settings: &mut Settings) -> Auth {
    if settings.jwt_secret.is_empty() {
        settings.jwt_secret = random_secret(48);
        log::warn!("no jwt_secret configured; generated one for this run: user tokens end with the process");
    }
    Auth::new(settings.jwt_secret.as_bytes(), settings.admin_token.clone())
}

/// Where a browser reaches a server bound to `addr`: an unspecified
/// address (0.0.0.0, ::) is reachable on loopback.
fn browser_base(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The login link the browser client understands (`/#token=`: a fragment
/// never reaches a server log).
pub fn login_link(addr: SocketAddr, token: &str) -> String {
    format!("{}/#token={token}", browser_base(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_to_an_unspecified_address_go_to_loopback() {
        let any = SocketAddr::from(([0, 0, 0, 0], 8080));
        assert_eq!(login_link(any, "t"), "http://127.0.0.1:8080/#token=t");
        let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 9000));
        assert_eq!(login_link(v6, "t"), "http://[::1]:9000/#token=t");
        let host = SocketAddr::from(([10, 1, 2, 3], 80));
        assert_eq!(login_link(host, "t"), "http://10.1.2.3:80/#token=t");
    }

    #[test]
    fn every_subcommand_has_help() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
