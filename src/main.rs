//! The `conveyor` command line: parse arguments, set up logging, and call the library
//! ([`conveyor::cli::run`]). Nothing else lives here.

/// mimalloc instead of the system allocator: glibc's per-thread arenas keep what a large sync
/// freed, so one `conveyor sync` of TPC-H SF10 peaked at 2.2 GB with them and 1.2 GB with two
/// arenas; mimalloc returns freed memory and keeps peak memory close to what is live.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

use conveyor::Error;
use conveyor::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.serving());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(conveyor::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                Error::Config(_) | Error::BadInput(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn init_tracing(serving: bool) {
    // qdrant-edge warns about an mmap capability probe on every start, and deltalake about
    // merge metrics it derives itself; both are noise for users.
    let default = if serving {
        "info,qdrant_edge=error,deltalake_core=error,buoyant_kernel=error"
    } else {
        "warn,qdrant_edge=error,deltalake_core=error,buoyant_kernel=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
