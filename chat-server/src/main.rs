//! `fullslack-chat`: parse flags, load settings, serve. Everything else is in the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use fullslack_chat::{
    config::{LogFormat, Settings},
    App,
};
use tokio::net::TcpListener;

/// The fullslack chat server: channels, threads, DMs, receipts, presence, and its web client.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the first line printed says which).
    #[arg(long, env = "FULLSLACK_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the embedded database and the generated JWT secret.
    #[arg(long, env = "FULLSLACK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Optional TOML settings file (environment variables override it).
    #[arg(long, env = "FULLSLACK_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fullslack-chat: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    if let Some(d) = args.data_dir {
        settings.data_dir = d;
    }
    init_tracing(settings.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fullslack-chat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fullslack-chat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), fullslack_chat::StartError> {
    let listener = TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    let app = App::new(settings).await?;
    // The first stdout line is a contract: tests and the deploy tool read the port from it.
    println!("fullslack-chat listening on http://{addr}");
    let redis = app
        .cluster
        .as_ref()
        .map_or("disabled".to_string(), |c| c.addr().to_string());
    tracing::info!(%addr, node = %app.node_id, store = %redact_url(&app.settings.store_url), %redis, data_dir = %app.settings.data_dir.display(), "ready");
    fullslack_chat::serve(listener, app, fullslack_chat::shutdown_signal()).await?;
    Ok(())
}

/// `scheme://user:pass@host/…` → `scheme://***@host/…`: URLs in logs lose their credentials.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    // Colour codes only when the log stream is a terminal: a file, journald or `docker logs`
    // gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}
