//! `ward`: the one binary. `ward server` runs the vault; the other verbs are the client
//! (`status`, `login`, `read`, `write`, `kv`, `token`, `policy`, `secrets`, `operator`, ...).
//!
//! `main` only dispatches: the server's lifecycle is told in [`server::run`], each client
//! verb in [`commands`], help texts and completion scripts in [`help`]. `-help` anywhere on
//! the line (before `--`) prints the help of the deepest verb named. Exit codes: 0 success,
//! 1 a local error (a file that cannot be read, a server that cannot be reached), 2 a usage
//! error or an error answered by the server (and a sealed `status`).

mod args;
mod client;
mod commands;
mod help;
mod output;
mod policy_tools;
mod server;

use std::process::ExitCode;

use client::CliError;

fn main() -> ExitCode {
    ward_server::mlock::default_sigpipe();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("{}", help::usage());
        return ExitCode::from(2);
    };
    match command.as_str() {
        "server" if !wants_help(rest) => return server::run(rest),
        "agent" => return agent(rest),
        "version" | "-version" | "--version" | "-v" => return ExitCode::from(commands::version()),
        "help" | "-help" | "--help" | "-h" => return print_help(rest),
        _ => {}
    }
    if wants_help(rest) {
        return print_help(&argv);
    }
    let result = match command.as_str() {
        "completion" => completion(rest),
        "print" => commands::print(rest),
        "status" | "login" | "read" | "write" | "list" | "delete" | "patch" | "kv" | "token"
        | "lease" | "policy" | "secrets" | "auth" | "audit" | "operator" | "unwrap" | "access"
        | "path-help" => client_command(command, rest),
        other => Err(CliError::usage(format!(
            "unknown command {other:?}; see: ward -help"
        ))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Whether `-h`, `-help` or `--help` appears before `--`.
fn wants_help(argv: &[String]) -> bool {
    argv.iter()
        .take_while(|a| *a != "--")
        .any(|a| matches!(a.as_str(), "-h" | "-help" | "--help"))
}

/// `ward help [VERB...]`, `ward VERB -help`: help for the deepest verb named, else the list.
fn print_help(words: &[String]) -> ExitCode {
    let words: Vec<String> = words
        .iter()
        .filter(|w| !w.starts_with('-'))
        .cloned()
        .collect();
    if words.is_empty() {
        println!("{}", help::usage());
        return ExitCode::SUCCESS;
    }
    match help::for_words(&words) {
        Some(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("Unknown command {:?}\n\n{}", words[0], help::usage());
            ExitCode::from(2)
        }
    }
}

fn completion(argv: &[String]) -> Result<u8, CliError> {
    match argv {
        [shell] => match help::completion(shell) {
            Some(script) => {
                print!("{script}");
                Ok(0)
            }
            None => Err(CliError::usage(format!(
                "no completion for shell {shell:?}: use bash, zsh or fish"
            ))),
        },
        _ => Err(CliError::usage("usage: ward completion bash|zsh|fish")),
    }
}

/// `ward agent ...`: the sidecar, in its own crate with its own flags and help.
fn agent(argv: &[String]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(ward_agent::run_from_args(argv.to_vec()));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs one client verb on a single-threaded runtime.
fn client_command(command: &str, rest: &[String]) -> Result<u8, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::local(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        match command {
            "status" => commands::status(rest).await,
            "login" => commands::login::run(rest).await,
            "read" => commands::read(rest).await,
            "write" => commands::write(rest).await,
            "list" => commands::list(rest).await,
            "delete" => commands::delete(rest).await,
            "patch" => commands::patch(rest).await,
            "kv" => commands::kv::run(rest).await,
            "token" => commands::token::run(rest).await,
            "lease" => commands::token::lease(rest).await,
            "policy" => commands::policy::run(rest).await,
            "secrets" => commands::mounts::secrets(rest).await,
            "auth" => commands::mounts::auth(rest).await,
            "audit" => commands::mounts::audit(rest).await,
            "access" => commands::access::access(rest).await,
            "operator" => commands::operator::run(rest).await,
            "unwrap" => commands::unwrap(rest).await,
            _ => commands::path_help(rest).await,
        }
    })
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
