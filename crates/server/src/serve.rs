//! Listeners and connections: binding, the accept loops, TLS handshakes, HTTP/1.1 and
//! HTTP/2 (by ALPN, or h2c prior knowledge in plaintext), the token expiry sweeper, and the
//! graceful drain on shutdown.
//!
//! Binding is separate from serving so that `main` can bind (and print the addresses) before
//! anything slow happens, and so that a listener on port 0 reports the port it got. Each
//! connection runs in its own task; shutdown stops accepting, asks every connection to finish
//! its in-flight requests, and waits for them up to a grace period.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use ward_core::Core;

use crate::config;
use crate::handler::Handler;
use crate::ServerError;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound listener that is not serving yet.
pub struct BoundListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    max_request_size: Option<u64>,
    local_addr: SocketAddr,
    /// Serve the web UI at `/ui/` on this listener.
    ui: bool,
    unauthenticated_metrics_access: bool,
}

impl BoundListener {
    /// Loads the listener's TLS files and binds its address.
    pub async fn bind(listener: &config::Listener) -> Result<BoundListener, ServerError> {
        let tls = match &listener.tls {
            Some(tls) => Some(TlsAcceptor::from(crate::tls::server_config(tls)?)),
            None => None,
        };
        let tcp = TcpListener::bind(&listener.address)
            .await
            .map_err(|e| ServerError::new(format!("cannot listen on {}: {e}", listener.address)))?;
        let local_addr = tcp.local_addr().map_err(|e| {
            ServerError::new(format!(
                "cannot read the address of {}: {e}",
                listener.address
            ))
        })?;
        Ok(BoundListener {
            tcp,
            tls,
            max_request_size: listener.max_request_size,
            local_addr,
            ui: false,
            unauthenticated_metrics_access: listener.unauthenticated_metrics_access,
        })
    }

    /// Serves the web UI at `/ui/` on this listener too (the configuration's `ui`).
    pub fn with_ui(mut self, enabled: bool) -> BoundListener {
        self.ui = enabled;
        self
    }

    /// The address actually bound (the real port when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The URL clients use to reach this listener.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }
}

/// The running server: accept loops, connections and the sweeper.
pub struct Running {
    shutdown: watch::Sender<bool>,
    accept_loops: Vec<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
    connections_done: mpsc::Receiver<()>,
}

/// Starts serving every listener with the core, and the token expiry sweeper.
pub fn start(core: Arc<Core>, listeners: Vec<BoundListener>) -> Running {
    let (shutdown, shutdown_rx) = watch::channel(false);
    // Every connection task holds a clone of this sender; when all are gone (and the
    // original is dropped by the accept loops), the receiver learns that the drain is done.
    let (connection_guard, connections_done) = mpsc::channel::<()>(1);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let accept_loops = listeners
        .into_iter()
        .map(|listener| {
            let mut handler = Handler::new(core.clone(), listener.max_request_size)
                .with_unauthenticated_metrics(listener.unauthenticated_metrics_access);
            if listener.ui {
                // `Secure` cookies only where the browser will send them back: over TLS.
                handler = handler.with_ui(listener.is_tls());
            }
            let handler = Arc::new(handler);
            tokio::spawn(accept_loop(
                listener,
                handler,
                builder.clone(),
                shutdown_rx.clone(),
                connection_guard.clone(),
            ))
        })
        .collect();
    let sweeper = tokio::spawn(sweep_expired(core, shutdown_rx));
    Running {
        shutdown,
        accept_loops,
        sweeper,
        connections_done,
    }
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to `grace`), stops the sweeper.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for accept_loop in self.accept_loops {
            let _ = accept_loop.await;
        }
        if tokio::time::timeout(grace, self.connections_done.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "connections still open after the grace period; closing them"
            );
        }
        let _ = self.sweeper.await;
    }
}

/// Reopens file audit devices on every SIGHUP, for log rotation: the rotating tool renames
/// the file, sends SIGHUP, and the next entry starts the new file (the hash chain continues).
pub fn reopen_audit_on_sighup(core: Arc<Core>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; audit files will not be reopened on rotation");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match core.reopen_audit_devices().await {
                Ok(failed) if failed.is_empty() => tracing::info!("audit devices reopened"),
                Ok(failed) => {
                    for (device, message) in failed {
                        tracing::error!(device = %device, error = %message, "audit device could not be reopened");
                    }
                }
                Err(ward_core::Error::Sealed) => {}
                Err(e) => tracing::warn!(error = %e, "reopening audit devices failed"),
            }
        }
    });
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

async fn accept_loop(
    listener: BoundListener,
    handler: Arc<Handler>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut shutdown: watch::Receiver<bool>,
    connection_guard: mpsc::Sender<()>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            listener.tls.clone(),
            handler.clone(),
            builder.clone(),
            shutdown.clone(),
            connection_guard.clone(),
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Arc<Handler>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shutdown: watch::Receiver<bool>,
    _connection_guard: mpsc::Sender<()>,
) {
    let remote: Arc<str> = Arc::from(peer.ip().to_string());
    let service = service_fn(move |request| {
        let handler = handler.clone();
        let remote = remote.clone();
        async move { Ok::<_, Infallible>(handler.handle(request, Some(&remote)).await) }
    });
    match tls {
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => drive(&builder, TokioIo::new(stream), service, shutdown).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        None => drive(&builder, TokioIo::new(stream), service, shutdown).await,
    }
}

async fn drive<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = crate::handler::HttpResponse,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    if *shutdown.borrow() {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
                if changed.is_err() {
                    // The server is gone; keep driving the connection until it closes.
                    if let Err(e) = connection.as_mut().await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
            }
        }
    }
}

/// Revokes expired tokens and leases every second while the core is unsealed.
async fn sweep_expired(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        if core.is_sealed() {
            continue;
        }
        match core.expire_tokens().await {
            Ok(0) | Err(ward_core::Error::Sealed) => {}
            Ok(n_expired) => tracing::debug!(n_expired, "expired tokens revoked"),
            Err(e) => tracing::warn!(error = %e, "token expiry sweep failed"),
        }
        match core.expire_leases().await {
            Ok(0) | Err(ward_core::Error::Sealed) => {}
            Ok(n_revoked) => tracing::debug!(n_revoked, "expired leases revoked"),
            Err(e) => tracing::warn!(error = %e, "lease expiry sweep failed"),
        }
    }
}
