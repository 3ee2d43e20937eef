//! The upstream for `bench/egress.sh`: a minimal HTTP/1.1 server answering every request with
//! a 433-byte chat-completion JSON body, or 401 when the `Authorization` header is not
//! `Bearer $BENCH_KEY` (so a benchmark run with non-2xx answers shows the injection failed).
//!
//! Usage: `egress_bench <port-file>`; prints nothing, writes the bound port to the file.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

const BODY: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench","choices":[{"index":0,"message":{"role":"assistant","content":"This is a fixed answer from the benchmark upstream, about as long as a short chat reply."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32},"system_fingerprint":"fp_bench"}"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port_file = std::env::args()
        .nth(1)
        .ok_or("usage: egress_bench <port-file>")?;
    let expected = format!("Bearer {}", std::env::var("BENCH_KEY")?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    std::fs::write(&port_file, listener.local_addr()?.port().to_string())?;
    let expected: &'static str = Box::leak(expected.into_boxed_str());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: http::Request<hyper::body::Incoming>| async move {
                    let authorized = request
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .is_some_and(|value| value.as_bytes() == expected.as_bytes());
                    // Read the request body so the connection stays reusable.
                    let _ = http_body_util::BodyExt::collect(request.into_body()).await;
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                    if !authorized {
                        *response.status_mut() = StatusCode::UNAUTHORIZED;
                    }
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                },
            );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
