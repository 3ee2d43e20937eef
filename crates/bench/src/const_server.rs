//! The HTTP baseline of bench/run: a trivial axum server answering every GET with a constant
//! body, read once from a file, on the same runtime and stack as Ward. Ward's KV read
//! throughput is reported as a ratio to this server's.
//!
//! Usage: `const-server ADDRESS BODY_FILE`; prints `listening on ADDRESS` once bound.

use std::sync::Arc;

use axum::http::header;
use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let body_file = args.next().unwrap_or_default();
    let body: Arc<[u8]> = std::fs::read(&body_file)
        .unwrap_or_else(|_| b"{}".to_vec())
        .into();
    let app = Router::new().fallback(get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body.to_vec()) }
    }));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
