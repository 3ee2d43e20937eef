//! `ward agent` as a standalone binary, for the demo and the benchmark while the `ward` binary
//! does not have the subcommand (it calls the same `ward_agent::run_from_args`).

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = ward_agent::run_from_args(args).await;
    std::process::exit(code);
}
