//! The `mcu` command line: `serve` (the default).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcu::config::Config;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "mcu", version, about = "WebRTC MCU: one peer connection in, the mixed conference out")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Print the effective configuration (defaults, file, environment) as TOML.
    Config(ServeArgs),
    /// Mint an access token (HS256, signed with MCU_AUTH_SECRET) and print it.
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Room the token is for, or `*` for every room.
    #[arg(long)]
    room: String,
    /// Identity of the bearer (the `sub` claim).
    #[arg(long)]
    identity: String,
    /// Comma-separated permissions: publish, subscribe, record, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    perms: Vec<mcu::auth::Permission>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// The signing secret.
    #[arg(long, env = "MCU_AUTH_SECRET", hide_env_values = true)]
    secret: String,
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// HTTP listen address [env: MCU_LISTEN] [default: 0.0.0.0:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Configuration file (TOML).
    #[arg(long, env = "MCU_CONFIG")]
    config: Option<PathBuf>,
}

fn load_config(args: &ServeArgs) -> Result<Config, mcu::config::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    config.apply_env(|name| std::env::var(name).ok())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    mcu::media::limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error,warp=error")
        }))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    match command {
        Command::Config(args) => match load_config(&args) {
            Ok(config) => {
                print!("{}", config.to_redacted_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Token(args) => mint_token(args),
        Command::Serve(args) => {
            let config = match load_config(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(config))
        }
    }
}

fn mint_token(args: TokenArgs) -> ExitCode {
    if args.room != "*" && mcu::room::RoomName::parse(&args.room).is_err() {
        eprintln!("error: --room must be a room name or '*'");
        return ExitCode::from(2);
    }
    let claims = mcu::auth::Claims {
        sub: args.identity,
        room: args.room,
        exp: mcu::auth::unix_now() + args.ttl,
        perms: args.perms,
    };
    match mcu::auth::mint(&args.secret, &claims) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let server = match mcu::server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on http://{}", server.http_addr);
    let _ = std::io::stdout().flush();
    tracing::info!(http = %server.http_addr, udp_port = server.udp_port, "MCU ready");
    mcu::server::shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}
