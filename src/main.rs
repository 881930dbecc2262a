use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = overblik::cli::Cli::parse();
    if cli.command.only_prints() {
        // A command whose output goes to `head` should end quietly when the
        // pipe closes, as command-line tools do, not panic. Servers keep
        // Rust's default of ignoring SIGPIPE.
        // SAFETY: called before any thread is started; restores the default
        // disposition of one signal.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OVERBLIK_LOG")
                .unwrap_or_else(|_| "info,librdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: can't start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(overblik::cli::run(cli)) {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
