//! `ward`: the one binary. `ward server` runs the vault; the other subcommands are the
//! client (`status`, `read`, `write`, `list`, `delete`, `kv`, `operator`) and `version`.
//!
//! `main` only dispatches: the server's lifecycle is told in [`server::run`], each client
//! verb in [`commands`]. Exit codes follow Vault's CLI: 0 success, 1 a local error (bad
//! flags, unreachable server), 2 an error returned by the server (or a sealed `status`).

mod args;
mod client;
mod commands;
mod server;

use std::process::ExitCode;

const USAGE: &str = "Usage: ward <command> [args]

Common commands:
    server      Start a Ward server (-dev, or -config=FILE)
    status      Print seal and HA status
    read        Read data and retrieve secrets
    write       Write data, configuration, and secrets
    list        List data or secrets
    delete      Delete secrets and configuration
    kv          Interact with the key/value secrets engine (get, put)
    operator    Perform operator-specific tasks (init, unseal)
    version     Print the Ward version";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(1);
    };
    match command.as_str() {
        "server" => server::run(rest),
        "version" | "-version" | "--version" | "-v" => ExitCode::from(commands::version()),
        "help" | "-help" | "--help" | "-h" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        "status" | "read" | "write" | "list" | "delete" | "kv" | "operator" => {
            client_command(command, rest)
        }
        other => {
            eprintln!("Unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(1)
        }
    }
}

/// Runs one client verb on a single-threaded runtime and turns its result into an exit code.
fn client_command(command: &str, rest: &[String]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match command {
            "status" => commands::status(rest).await,
            "read" => commands::read(rest).await,
            "write" => commands::write(rest).await,
            "list" => commands::list(rest).await,
            "delete" => commands::delete(rest).await,
            "kv" => commands::kv(rest).await,
            _ => commands::operator(rest).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The first of these environment variables that is set and not empty.
pub(crate) fn env_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// Go's `strconv.ParseBool`, which Vault uses for flags and environment variables.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}
