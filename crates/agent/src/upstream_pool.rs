//! A keep-alive pool of plain HTTP/1.1 upstream connections for the egress proxy.
//!
//! The request task uses a connection's [`http1::SendRequest`] directly: check out an idle
//! handle (ready, not closed, not idle too long), send, and hand the handle back when the
//! response body has been read to its end. When none is idle a new connection is opened
//! (`TCP_NODELAY`, TCP keep-alive). Compared with hyper-util's legacy pooled client this saves,
//! per request, the pool's checkout machinery, the absolute-to-origin URI rewrite and the task
//! it spawns to wait for the connection to become ready again. A request that could not even
//! be written on a reused connection (the upstream closed it while idle) is retried once on a
//! fresh one, as the legacy client does.
//!
//! [`RawPool`] keeps the same kind of connections as plain sockets for the egress fast path.
//!
//! Only `http://` upstreams use them; `https://` ones keep the legacy client, which negotiates
//! HTTP/2 where the upstream offers it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http_util::{BoxError, ProxyBody};

/// How long an idle connection is kept (as the legacy client's `pool_idle_timeout`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most idle connections kept per upstream host.
const MAX_IDLE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Sender = http1::SendRequest<ProxyBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections, per upstream authority (a route usually has just one).
#[derive(Default)]
pub struct H1Pool {
    idle: Mutex<Vec<(Authority, Vec<Idle>)>>,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool").finish_non_exhaustive()
    }
}

impl H1Pool {
    pub fn new() -> Arc<H1Pool> {
        Arc::new(H1Pool::default())
    }

    fn checkout(&self, authority: &Authority) -> Option<Sender> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let list = idle
            .iter_mut()
            .find(|(key, _)| key == authority)
            .map(|(_, list)| list)?;
        let now = Instant::now();
        while let Some(entry) = list.pop() {
            // A handle that is not ready is still finishing an exchange (say, a request body
            // the upstream answered early): dropping it lets that connection close afterwards.
            if entry.sender.is_ready()
                && !entry.sender.is_closed()
                && now.saturating_duration_since(entry.since) < IDLE_TIMEOUT
            {
                return Some(entry.sender);
            }
        }
        None
    }

    fn checkin(&self, authority: &Authority, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = Idle {
            sender,
            since: Instant::now(),
        };
        if let Some((_, list)) = idle.iter_mut().find(|(key, _)| key == authority) {
            if list.len() >= MAX_IDLE {
                // Drop the oldest.
                list.remove(0);
            }
            list.push(entry);
        } else {
            idle.push((authority.clone(), vec![entry]));
        }
    }

    /// Sends `request` (origin-form URI, `Host` already set) to `authority` over plain HTTP/1.1.
    /// The response body returns the connection to the pool when read to its end.
    pub fn send<'a>(
        self: &'a Arc<Self>,
        authority: &'a Authority,
        request: Request<ProxyBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<PooledBody>, BoxError>> + Send + 'a>> {
        Box::pin(self.send_inner(authority, request))
    }

    async fn send_inner(
        self: &Arc<Self>,
        authority: &Authority,
        request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, BoxError> {
        let mut request = request;
        let mut reused = true;
        let mut sender = match self.checkout(authority) {
            Some(sender) => sender,
            None => {
                reused = false;
                match connect(authority).await {
                    Ok(sender) => sender,
                    Err(error) => return Err(error),
                }
            }
        };
        loop {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let keep = response.status() != http::StatusCode::SWITCHING_PROTOCOLS;
                    let (parts, body) = response.into_parts();
                    let mut pooled = PooledBody {
                        inner: body,
                        home: keep.then(|| (Arc::clone(self), authority.clone(), sender)),
                    };
                    if pooled.inner.is_end_stream() {
                        pooled.release();
                    }
                    return Ok(Response::from_parts(parts, pooled));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: the idle connection had been closed by the upstream.
                    Some(message) if reused => {
                        request = message;
                        reused = false;
                        sender = match connect(authority).await {
                            Ok(sender) => sender,
                            Err(error) => return Err(error),
                        };
                    }
                    _ => return Err(Box::new(error.into_error())),
                },
            }
        }
    }
}

async fn connect(authority: &Authority) -> Result<Sender, BoxError> {
    let stream = connect_tcp(authority).await?;
    let (sender, connection) = match http1::Builder::new()
        .handshake::<_, ProxyBody>(TokioIo::new(stream))
        .await
    {
        Ok(handshake) => handshake,
        Err(error) => return Err(Box::new(error)),
    };
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Opens a TCP connection to `authority` (`TCP_NODELAY`, TCP keep-alive, 10 s to connect).
pub async fn connect_tcp(authority: &Authority) -> Result<TcpStream, BoxError> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut last_error: Option<std::io::Error> = None;
        for address in tokio::net::lookup_host((host, port)).await? {
            let socket = if address.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_nodelay(true)?;
            socket.set_keepalive(true)?;
            match socket.connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host")
        }))
    })
    .await;
    match stream {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(Box::new(error)),
        Err(_) => Err(format!("connecting to {authority} timed out").into()),
    }
}

/// Idle keep-alive connections to one upstream as plain sockets, for the egress fast path
/// (`egress_h1`), which speaks HTTP/1.1 on them itself. A connection is checked out
/// for one exchange and checked in only when that exchange ended cleanly framed.
#[derive(Default)]
pub struct RawPool {
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

impl std::fmt::Debug for RawPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPool").finish_non_exhaustive()
    }
}

impl RawPool {
    /// The most recently used idle connection that is still open and quiet, if any.
    pub fn checkout(&self) -> Option<TcpStream> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        while let Some((stream, since)) = idle.pop() {
            if now.saturating_duration_since(since) >= IDLE_TIMEOUT {
                continue;
            }
            // An idle connection has nothing to say: end of stream means the upstream closed
            // it, and bytes mean it broke framing. tokio answers from its readiness state, so
            // a quiet connection costs no system call here.
            if is_quiet(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Returns a connection whose last exchange ended cleanly.
    pub fn checkin(&self, stream: TcpStream) {
        // Read once more now, after the response went out: the read that finds nothing
        // (`WouldBlock`) clears tokio's readiness, so the probe in `checkout`, which runs on
        // the next call's way to the upstream, costs no system call. Anything that did arrive
        // means the upstream broke framing or closed: not reused.
        if !is_quiet(&stream) {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() >= MAX_IDLE {
            // Drop the oldest.
            idle.remove(0);
        }
        idle.push((stream, Instant::now()));
    }
}

/// True if the connection has nothing to read (and is not closed).
fn is_quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
}

/// A response body that hands its connection back to the pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    home: Option<(Arc<H1Pool>, Authority, Sender)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((pool, authority, sender)) = self.home.take() {
            pool.checkin(&authority, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Dropped before its end, the connection is in an unknown state: let it close.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
