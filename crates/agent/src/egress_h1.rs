//! The egress proxy's HTTP/1.1 fast path: one task per client connection that reads request
//! heads itself, runs the same checks as the hyper path ([`EgressProxy::admit`]), and talks
//! to the upstream over a plain socket it owns for the exchange, nginx-style.
//!
//! Why it exists: with hyper on both sides a proxied call went through two HTTP/1.1 codecs,
//! two `HeaderMap`s and three tasks (client connection, pooled `SendRequest`, upstream
//! connection), and spent twice nginx's user-space CPU per call. Here a call is one parse of
//! the request head with `httparse`, one buffer holding the upstream request head and body
//! (one write), one parse of the response head, and one buffer holding the client's response
//! head and the first body bytes (one write); no task hop, no header map.
//!
//! It handles only the common, unambiguous case: HTTP/1.1, a request body framed by a single
//! `Content-Length` of at most [`MAX_FAST_BODY`] bytes (read whole before the upstream is
//! contacted, so a stale pooled connection can be retried), a plain-`http://` route. Anything
//! else (HTTP/1.0 or HTTP/2, `Upgrade`, `Expect`, `Transfer-Encoding`, `CONNECT`, a target
//! that is not origin-form ASCII, `x-ward-upstream-host`, `https://` routes, larger bodies)
//! is handed, with the bytes already read and for the rest of the connection, to the hyper
//! path ([`http_util::serve_connection_with_prefix`], inside
//! [`crate::request_framing::InspectedIo`], which reads those bytes again first), which is
//! where a request with both `Content-Length` and `Transfer-Encoding` is refused.
//!
//! Framing is strict both ways. Requests: a head `httparse` cannot parse (obs-fold, control
//! characters in a value, a bad name), a second or invalid `Content-Length`, or a head over
//! [`MAX_HEAD_BYTES`] is answered 400 or 431 and the connection closed; the body is consumed
//! by its length exactly, so a pipelined next request starts where the upstream's request
//! ended. Responses: a conflicting or invalid length, or a bad chunk, ends the exchange; the
//! client connection is closed rather than left half-relayed, and the upstream connection is
//! never reused after anything but a cleanly framed response. Chunked bodies are decoded and
//! re-chunked as they arrive, so server-sent events stream through.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::egress::{self, Admitted, Credential, EgressProxy, Refusal, RequestView, Route};
use crate::http_util;
use crate::secret::SecretString;
use crate::upstream_pool::RawPool;

/// hyper's default limit on request headers, also used for responses.
const MAX_HEADERS: usize = 100;
/// The longest request or response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest request body the fast path takes; larger ones go to the hyper path, which
/// streams them while it reads the response.
const MAX_FAST_BODY: u64 = 64 * 1024;
/// How long a client has to send a request head (hyper's `header_read_timeout` on the other
/// path), or the rest of a request body.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest error body scanned for the key (as on the hyper path).
const MAX_SCRUB_BYTES: usize = 1024 * 1024;
/// The longest chunk-size or trailer line, and all trailers together.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;
const READ_SIZE: usize = 16 * 1024;
/// How long, and how much, a refused client's remaining bytes are read before closing.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// Serves one client connection until it closes, or hands it to the hyper path.
pub(crate) async fn serve_connection(proxy: Arc<EgressProxy>, client: TcpStream) {
    let mut connection = Connection {
        proxy,
        client,
        input: Vec::with_capacity(READ_SIZE),
        upstream_out: Vec::new(),
        upstream_in: Vec::new(),
        out: Vec::new(),
    };
    loop {
        match connection.serve_one().await {
            Next::Continue => {}
            Next::Close => return,
            Next::HandOver => {
                let Connection {
                    proxy,
                    client,
                    input,
                    ..
                } = connection;
                http_util::serve_connection_with_prefix(
                    client,
                    input,
                    move |request| {
                        let proxy = Arc::clone(&proxy);
                        async move { proxy.handle(request).await }
                    },
                    egress::bad_request,
                );
                return;
            }
        }
    }
}

/// What happens to the connection after a request.
enum Next {
    Continue,
    Close,
    /// The hyper path takes the connection, starting with the request in `input`.
    HandOver,
}

struct Connection {
    proxy: Arc<EgressProxy>,
    client: TcpStream,
    /// Bytes read from the client and not yet consumed; always starts at a request head.
    input: Vec<u8>,
    /// The request as sent upstream: head and body.
    upstream_out: Vec<u8>,
    /// Bytes read from the upstream and not yet relayed.
    upstream_in: Vec<u8>,
    /// What goes to the client next.
    out: Vec<u8>,
}

/// What the request head asks for, decided before anything else is read.
enum Plan {
    HandOver,
    /// A head the fast path refuses outright: answered, then the connection is closed.
    Malformed {
        status: StatusCode,
        message: &'static str,
    },
    Refuse {
        call: Call,
        refusal: Refusal,
    },
    Forward {
        call: Call,
        route: Arc<Route>,
        credential: Option<Arc<Credential>>,
    },
}

/// One call, for the response and the log line.
struct Call {
    method: http::Method,
    path: String,
    head_len: usize,
    body_len: usize,
    /// The client sent `Connection: close`.
    client_close: bool,
}

/// How the upstream frames its response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// No length: the body ends when the upstream closes.
    UntilClose,
}

/// What the upstream's response head says, its header lines already written for the client.
struct ResponseHead {
    status: u16,
    head_len: usize,
    framing: Framing,
    /// The upstream allows another request on its connection.
    keep_alive: bool,
}

/// Why the exchange with the upstream failed before a response head arrived.
struct Unreachable(String);

impl Connection {
    async fn serve_one(&mut self) -> Next {
        let Some(plan) = self.read_head().await else {
            return Next::Close;
        };
        match plan {
            Plan::HandOver => Next::HandOver,
            Plan::Malformed { status, message } => self.answer_malformed(status, message).await,
            Plan::Refuse { call, refusal } => {
                let start = Instant::now();
                if !self.read_body(&call).await {
                    return Next::Close;
                }
                self.input.drain(..call.head_len + call.body_len);
                self.refuse(&call, refusal.route.as_deref(), &refusal, start)
                    .await
            }
            Plan::Forward {
                call,
                route,
                credential,
            } => {
                let start = Instant::now();
                if !self.read_body(&call).await {
                    return Next::Close;
                }
                let end = call.head_len + call.body_len;
                if let Some(body) = self.input.get(call.head_len..end) {
                    self.upstream_out.extend_from_slice(body);
                }
                self.input.drain(..end);
                self.forward(&call, &route, credential.as_deref(), start)
                    .await
            }
        }
    }

    /// Reads until `input` holds a complete request head and plans the call (parsing the
    /// head once); `None` when the client closed (or went quiet) between requests.
    async fn read_head(&mut self) -> Option<Plan> {
        loop {
            if !self.input.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut request = httparse::Request::new(&mut headers);
                let too_large = Plan::Malformed {
                    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    message: "request head too large",
                };
                match request.parse(&self.input) {
                    Ok(httparse::Status::Complete(head_len)) if head_len <= MAX_HEAD_BYTES => {
                        return Some(plan(
                            &self.proxy,
                            &request,
                            head_len,
                            &mut self.upstream_out,
                        ))
                    }
                    Ok(_) if self.input.len() > MAX_HEAD_BYTES => return Some(too_large),
                    Ok(_) => {}
                    Err(httparse::Error::TooManyHeaders) => return Some(too_large),
                    // HTTP/2 with prior knowledge, or an HTTP version httparse does not know:
                    // hyper decides.
                    Err(httparse::Error::Version) => return Some(Plan::HandOver),
                    Err(_) => {
                        return Some(Plan::Malformed {
                            status: StatusCode::BAD_REQUEST,
                            message: "malformed request head",
                        })
                    }
                }
            }
            self.input.reserve(READ_SIZE);
            match tokio::time::timeout(CLIENT_READ_TIMEOUT, self.client.read_buf(&mut self.input))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads until `input` holds the whole request body; false if the client went away.
    async fn read_body(&mut self, call: &Call) -> bool {
        let end = call.head_len + call.body_len;
        while self.input.len() < end {
            self.input.reserve(end - self.input.len());
            match tokio::time::timeout(CLIENT_READ_TIMEOUT, self.client.read_buf(&mut self.input))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return false,
                Ok(Ok(_)) => {}
            }
        }
        true
    }

    /// Answers a head the fast path refuses outright, then closes the connection.
    async fn answer_malformed(&mut self, status: StatusCode, message: &'static str) -> Next {
        tracing::debug!(%status, message, "egress request refused before routing");
        let refusal = Refusal {
            route: None,
            status,
            code: "bad_request",
            message: message.to_owned(),
            retry_after: None,
        };
        self.out.clear();
        write_refusal(&mut self.out, &refusal, true);
        if self.client.write_all(&self.out).await.is_ok() {
            self.linger().await;
        }
        Next::Close
    }

    /// Closes the sending side and reads (and drops) what the client still sends for a
    /// moment, so that closing with unread bytes does not reset the connection before the
    /// client has read the answer (as nginx's lingering close).
    async fn linger(&mut self) {
        if self.client.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut n_drained = 0;
        let mut sink = [0u8; 4096];
        while n_drained < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, self.client.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => n_drained += n,
                _ => return,
            }
        }
    }

    /// Sends the request in `upstream_out` and relays the response.
    async fn forward(
        &mut self,
        call: &Call,
        route: &Route,
        credential: Option<&Credential>,
        start: Instant,
    ) -> Next {
        let Some(pool) = route.raw_pool.as_ref() else {
            return Next::Close;
        };
        let scrub = credential.map_or(&[][..], |credential| credential.scrub.as_slice());
        let head_only = call.method == http::Method::HEAD;
        self.out.clear();
        let idempotent = is_idempotent(&call.method);
        let (mut upstream, head) = match self.exchange(route, head_only, idempotent, scrub).await {
            Ok(exchanged) => exchanged,
            Err(Unreachable(detail)) => {
                let refusal = egress::upstream_unreachable(route, &detail);
                return self.refuse(call, Some(route), &refusal, start).await;
            }
        };
        self.upstream_in.drain(..head.head_len);
        if head.status >= 400 && !scrub.is_empty() && head.framing != Framing::None {
            return self
                .relay_scrubbed(call, route, upstream, head, scrub, start)
                .await;
        }
        let close_client = call.client_close || head.framing == Framing::UntilClose;
        match head.framing {
            Framing::Length(length) => {
                let _ = write!(self.out, "content-length: {length}\r\n");
            }
            Framing::Chunked => self
                .out
                .extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Framing::None | Framing::UntilClose => {}
        }
        if close_client {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        // The call's duration runs to the response head. A stream is logged as it starts; a
        // body of known length after it was written, so that at one connection the log line
        // is not on the path of the response.
        let elapsed = start.elapsed();
        let streamed = matches!(head.framing, Framing::Chunked | Framing::UntilClose);
        if streamed {
            egress::record_call(Some(route), &call.method, &call.path, head.status, elapsed);
        }
        let clean = match head.framing {
            Framing::None => {
                let clean = self.upstream_in.is_empty();
                self.client
                    .write_all(&self.out)
                    .await
                    .map(|()| clean)
                    .map_err(|_| ())
            }
            Framing::Length(length) => self.relay_length(&mut upstream, length).await,
            Framing::Chunked => self.relay_chunked(&mut upstream).await,
            Framing::UntilClose => self.relay_until_close(&mut upstream).await,
        };
        if !streamed {
            egress::record_call(Some(route), &call.method, &call.path, head.status, elapsed);
        }
        match clean {
            Ok(clean) => self.finish(pool, upstream, &head, clean, close_client),
            // The body broke off or was misframed: the client gets a truncated response and
            // a closed connection, never a guess at where the next response starts.
            Err(()) => Next::Close,
        }
    }

    /// After a response was relayed whole: the upstream connection goes back to the pool
    /// when its response ended exactly and it allows reuse.
    fn finish(
        &mut self,
        pool: &RawPool,
        upstream: TcpStream,
        head: &ResponseHead,
        clean: bool,
        close_client: bool,
    ) -> Next {
        if clean && head.keep_alive && head.framing != Framing::UntilClose {
            pool.checkin(upstream);
        }
        self.upstream_in.clear();
        if close_client {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// Answers a call with a refusal, counted and logged like any call.
    async fn refuse(
        &mut self,
        call: &Call,
        route: Option<&Route>,
        refusal: &Refusal,
        start: Instant,
    ) -> Next {
        egress::record_call(
            route,
            &call.method,
            &call.path,
            refusal.status.as_u16(),
            start.elapsed(),
        );
        self.out.clear();
        write_refusal(&mut self.out, refusal, call.client_close);
        if self.client.write_all(&self.out).await.is_err() || call.client_close {
            return Next::Close;
        }
        Next::Continue
    }

    /// Writes the request to an upstream connection and reads the response head; retries
    /// once on a fresh connection when a reused one fails before any response byte (the
    /// upstream closed it while idle; the whole request is in `upstream_out`). A request the
    /// reused connection took whole is sent again only if its method is idempotent: the
    /// upstream may have acted on it before closing, and a second POST to an LLM API is a
    /// second billed call (RFC 9110 §9.2.2: a proxy must not retry non-idempotent requests on
    /// its own). Such a call gets the 502 instead.
    async fn exchange(
        &mut self,
        route: &Route,
        head_only: bool,
        idempotent: bool,
        scrub: &[SecretString],
    ) -> Result<(TcpStream, ResponseHead), Unreachable> {
        let pool = route.raw_pool.as_ref();
        let (mut upstream, mut reused) = match pool.and_then(|pool| pool.checkout()) {
            Some(upstream) => (upstream, true),
            None => (connect(route).await?, false),
        };
        loop {
            self.upstream_in.clear();
            let mut delivered = false;
            let sent = match upstream.write_all(&self.upstream_out).await {
                Ok(()) => {
                    delivered = true;
                    self.read_response_head(&mut upstream, head_only, scrub)
                        .await
                }
                Err(error) => Err(ReadHeadError::Io(error.to_string(), 0)),
            };
            match sent {
                Ok(head) => return Ok((upstream, head)),
                Err(ReadHeadError::Io(_, 0)) if reused && (idempotent || !delivered) => {
                    reused = false;
                    upstream = connect(route).await?;
                }
                Err(ReadHeadError::Io(detail, _)) | Err(ReadHeadError::Invalid(detail)) => {
                    return Err(Unreachable(detail))
                }
            }
        }
    }

    /// Reads and parses the response head (skipping interim 1xx responses), and writes the
    /// client's status line and header lines into `out` (without framing headers and the
    /// final empty line).
    async fn read_response_head(
        &mut self,
        upstream: &mut TcpStream,
        head_only: bool,
        scrub: &[SecretString],
    ) -> Result<ResponseHead, ReadHeadError> {
        let mut n_read = 0;
        loop {
            if !self.upstream_in.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.upstream_in) {
                    Ok(httparse::Status::Complete(head_len)) => {
                        let status = response.code.unwrap_or(0);
                        if (100..200).contains(&status) && status != 101 {
                            // An interim response (100 Continue, 103 Early Hints): skipped.
                            self.upstream_in.drain(..head_len);
                            continue;
                        }
                        self.out.clear();
                        return response_head(&response, head_len, head_only, scrub, &mut self.out)
                            .map_err(|message| ReadHeadError::Invalid(message.to_owned()));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(error) => {
                        return Err(ReadHeadError::Invalid(format!(
                            "malformed response head: {error}"
                        )))
                    }
                }
                if self.upstream_in.len() > MAX_HEAD_BYTES {
                    return Err(ReadHeadError::Invalid("response head too large".into()));
                }
            }
            self.upstream_in.reserve(READ_SIZE);
            match upstream.read_buf(&mut self.upstream_in).await {
                Ok(0) => {
                    return Err(ReadHeadError::Io(
                        "the upstream closed the connection before responding".into(),
                        n_read,
                    ))
                }
                Ok(n) => n_read += n,
                Err(error) => return Err(ReadHeadError::Io(error.to_string(), n_read)),
            }
        }
    }

    /// Relays a body of `length` bytes; Ok(true) when it ended exactly (nothing more came).
    async fn relay_length(&mut self, upstream: &mut TcpStream, length: u64) -> Result<bool, ()> {
        let mut remaining = length;
        let in_hand = take_up_to(&self.upstream_in, remaining);
        self.out
            .extend_from_slice(self.upstream_in.get(..in_hand).unwrap_or_default());
        remaining -= in_hand as u64;
        let extra = self.upstream_in.len() > in_hand;
        self.upstream_in.clear();
        self.client.write_all(&self.out).await.map_err(|_| ())?;
        while remaining > 0 {
            self.upstream_in.reserve(READ_SIZE);
            match upstream.read_buf(&mut self.upstream_in).await {
                Ok(0) | Err(_) => return Err(()),
                Ok(_) => {}
            }
            let take = take_up_to(&self.upstream_in, remaining);
            remaining -= take as u64;
            if self.upstream_in.len() > take {
                return Err(());
            }
            self.client
                .write_all(&self.upstream_in)
                .await
                .map_err(|_| ())?;
            self.upstream_in.clear();
        }
        Ok(!extra)
    }

    /// Relays a chunked body, decoded strictly and re-chunked as it arrives (trailers are
    /// dropped); Ok(true) when it ended exactly.
    async fn relay_chunked(&mut self, upstream: &mut TcpStream) -> Result<bool, ()> {
        let mut decoder = ChunkDecoder::default();
        let mut data = Vec::new();
        loop {
            let consumed = decoder.feed(&self.upstream_in, &mut data).map_err(|_| ())?;
            if !data.is_empty() {
                let _ = write!(self.out, "{:x}\r\n", data.len());
                self.out.extend_from_slice(&data);
                self.out.extend_from_slice(b"\r\n");
                data.clear();
            }
            let done = decoder.is_done();
            if done {
                self.out.extend_from_slice(b"0\r\n\r\n");
            }
            if !self.out.is_empty() {
                self.client.write_all(&self.out).await.map_err(|_| ())?;
                self.out.clear();
            }
            if done {
                return Ok(consumed == self.upstream_in.len());
            }
            self.upstream_in.clear();
            self.upstream_in.reserve(READ_SIZE);
            match upstream.read_buf(&mut self.upstream_in).await {
                Ok(0) | Err(_) => return Err(()),
                Ok(_) => {}
            }
        }
    }

    /// Relays everything until the upstream closes; the client connection closes after.
    async fn relay_until_close(&mut self, upstream: &mut TcpStream) -> Result<bool, ()> {
        self.out.extend_from_slice(&self.upstream_in);
        self.upstream_in.clear();
        self.client.write_all(&self.out).await.map_err(|_| ())?;
        loop {
            self.upstream_in.reserve(READ_SIZE);
            match upstream.read_buf(&mut self.upstream_in).await {
                Ok(0) => return Ok(false),
                Err(_) => return Err(()),
                Ok(_) => {}
            }
            self.client
                .write_all(&self.upstream_in)
                .await
                .map_err(|_| ())?;
            self.upstream_in.clear();
        }
    }

    /// An error response from a route with a credential: read whole (up to 1 MiB), scrubbed
    /// of the key, and sent with its new length; too large or broken → 502.
    async fn relay_scrubbed(
        &mut self,
        call: &Call,
        route: &Route,
        mut upstream: TcpStream,
        head: ResponseHead,
        scrub: &[SecretString],
        start: Instant,
    ) -> Next {
        let collected = self.collect_body(&mut upstream, head.framing).await;
        let Some((body, clean)) = collected else {
            let refusal = egress::upstream_error_unscrubbable();
            return self.refuse(call, Some(route), &refusal, start).await;
        };
        let cleaned = egress::scrub_bytes(&body, scrub);
        let _ = write!(self.out, "content-length: {}\r\n", cleaned.len());
        if call.client_close {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&cleaned);
        egress::record_call(
            Some(route),
            &call.method,
            &call.path,
            head.status,
            start.elapsed(),
        );
        match route.raw_pool.as_ref() {
            Some(pool) if self.client.write_all(&self.out).await.is_ok() => {
                self.finish(pool, upstream, &head, clean, call.client_close)
            }
            _ => Next::Close,
        }
    }

    /// Reads a whole response body (decoded); with whether it ended exactly. `None` when it
    /// is larger than [`MAX_SCRUB_BYTES`], broken off or misframed.
    async fn collect_body(
        &mut self,
        upstream: &mut TcpStream,
        framing: Framing,
    ) -> Option<(Vec<u8>, bool)> {
        let mut body = Vec::new();
        let mut decoder = ChunkDecoder::default();
        loop {
            match framing {
                Framing::None => return Some((body, self.upstream_in.is_empty())),
                Framing::Length(length) => {
                    if length > MAX_SCRUB_BYTES as u64 {
                        return None;
                    }
                    let wanted = usize::try_from(length).ok()?;
                    if self.upstream_in.len() >= wanted {
                        let clean = self.upstream_in.len() == wanted;
                        body.extend_from_slice(self.upstream_in.get(..wanted).unwrap_or_default());
                        return Some((body, clean));
                    }
                }
                Framing::Chunked => {
                    let consumed = decoder.feed(&self.upstream_in, &mut body).ok()?;
                    if decoder.is_done() {
                        return Some((body, consumed == self.upstream_in.len()));
                    }
                    self.upstream_in.clear();
                }
                Framing::UntilClose => {}
            }
            if self.upstream_in.len() + body.len() > MAX_SCRUB_BYTES {
                return None;
            }
            self.upstream_in.reserve(READ_SIZE);
            match upstream.read_buf(&mut self.upstream_in).await {
                Ok(0) if framing == Framing::UntilClose => {
                    body.extend_from_slice(&self.upstream_in);
                    return Some((body, false));
                }
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

enum ReadHeadError {
    /// An I/O failure or an early close, after this many response bytes.
    Io(String, usize),
    Invalid(String),
}

async fn connect(route: &Route) -> Result<TcpStream, Unreachable> {
    crate::upstream_pool::connect_tcp(&route.authority)
        .await
        .map_err(|error| Unreachable(http_util::error_chain(&*error)))
}

/// How many of `bytes` belong to a body with `remaining` bytes still to come.
fn take_up_to(bytes: &[u8], remaining: u64) -> usize {
    usize::try_from(remaining).map_or(bytes.len(), |remaining| remaining.min(bytes.len()))
}

/// Reads a request head: decides whether the fast path serves it, runs the checks, and for
/// a call it forwards writes the upstream request head into `upstream_head`.
fn plan(
    proxy: &EgressProxy,
    request: &httparse::Request<'_, '_>,
    head_len: usize,
    upstream_head: &mut Vec<u8>,
) -> Plan {
    let malformed = |message| Plan::Malformed {
        status: StatusCode::BAD_REQUEST,
        message,
    };
    if request.version != Some(1) {
        return Plan::HandOver;
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return malformed("malformed request head");
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return malformed("invalid method");
    };
    // Origin-form, visible ASCII, no fragment; anything else is hyper's to judge.
    if method == http::Method::CONNECT
        || !target.starts_with('/')
        || !target
            .bytes()
            .all(|byte| (0x21..0x7f).contains(&byte) && byte != b'#')
    {
        return Plan::HandOver;
    }
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut client_close = false;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return malformed("more than one Content-Length");
            }
            let digits = header.value;
            if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
                return malformed("invalid Content-Length");
            }
            content_length = std::str::from_utf8(digits)
                .ok()
                .and_then(|digits| digits.parse().ok());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case(egress::UPSTREAM_HOST_HEADER)
        {
            return Plan::HandOver;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list_tokens(header.value) {
                if token.eq_ignore_ascii_case(b"upgrade") {
                    return Plan::HandOver;
                }
                client_close |= token.eq_ignore_ascii_case(b"close");
            }
        }
    }
    // Framed by `Transfer-Encoding`: hyper's path, whose listener refuses it together with a
    // `Content-Length` and closes the connection.
    if transfer_encoding || content_length.is_some_and(|length| length > MAX_FAST_BODY) {
        return Plan::HandOver;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if proxy.route_of(path).is_some_and(|route| !route.fast_path) {
        return Plan::HandOver;
    }
    let body_len = content_length
        .and_then(|length| usize::try_from(length).ok())
        .unwrap_or(0);
    let call = Call {
        method,
        path: path.to_owned(),
        head_len,
        body_len,
        client_close,
    };
    let view = RequestView {
        method: &call.method,
        path,
        upstream_host: None,
        content_length,
    };
    let Admitted {
        route,
        rest,
        credential,
        authority: _,
    } = match proxy.admit(&view) {
        Ok(admitted) => admitted,
        Err(refusal) => return Plan::Refuse { call, refusal },
    };
    let injected = credential
        .as_ref()
        .and_then(|credential| credential.headers.as_deref())
        .unwrap_or_default();
    upstream_head.clear();
    upstream_head.extend_from_slice(call.method.as_str().as_bytes());
    upstream_head.push(b' ');
    egress::push_upstream_target(upstream_head, &route, rest, query, credential.as_deref());
    upstream_head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    upstream_head.extend_from_slice(route.host.as_bytes());
    upstream_head.extend_from_slice(b"\r\n");
    let connection_named = connection_tokens(&*request.headers);
    for header in request.headers.iter() {
        let name = header.name;
        // The body goes upstream as it came, so its length always goes with it, whatever
        // `Connection` names (dropping it would let the body be read as a request).
        let framing = name.eq_ignore_ascii_case("content-length");
        let dropped = name.eq_ignore_ascii_case("host")
            || (http_util::is_hop_by_hop_name(name)
                && !(name.eq_ignore_ascii_case("te") && http_util::te_is_trailers(header.value)))
            || egress::CLIENT_HEADERS_DROPPED
                .iter()
                .any(|dropped| dropped.as_str().eq_ignore_ascii_case(name))
            || injected
                .iter()
                .any(|(injected, _)| injected.as_str().eq_ignore_ascii_case(name))
            || connection_named
                .iter()
                .any(|named| named.eq_ignore_ascii_case(name.as_bytes()));
        if framing || !dropped {
            push_header(upstream_head, name.as_bytes(), header.value);
        }
    }
    for (name, value) in injected {
        push_header(upstream_head, name.as_str().as_bytes(), value.as_bytes());
    }
    upstream_head.extend_from_slice(b"\r\n");
    Plan::Forward {
        call,
        route,
        credential,
    }
}

/// Reads a response head: its framing and whether the upstream keeps the connection, and
/// writes the client's status line and header lines (hop-by-hop ones dropped, the key
/// scrubbed) into `out`. An `Err` is a response that cannot be relayed unambiguously.
fn response_head(
    response: &httparse::Response<'_, '_>,
    head_len: usize,
    head_only: bool,
    scrub: &[SecretString],
    out: &mut Vec<u8>,
) -> Result<ResponseHead, &'static str> {
    let status = response.code.unwrap_or(0);
    if status == 101 {
        return Err("the upstream switched protocols unasked");
    }
    let mut length: Option<u64> = None;
    let mut length_header: Option<&[u8]> = None;
    let mut last_coding: Option<&[u8]> = None;
    let mut keep_alive = response.version == Some(1);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = header.value.trim_ascii();
            let parsed =
                (!value.is_empty() && value.len() <= 18 && value.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                    .flatten();
            match (parsed, length) {
                (Some(value), None) => length = Some(value),
                (Some(value), Some(previous)) if value == previous => {}
                _ => return Err("invalid or conflicting Content-Length in the response"),
            }
            length_header = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            last_coding = list_tokens(header.value).last().or(last_coding);
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive &=
                !list_tokens(header.value).any(|token| token.eq_ignore_ascii_case(b"close"));
        }
    }
    let no_body = head_only || status == 204 || status == 304;
    let framing = match (last_coding, length) {
        _ if no_body => Framing::None,
        (Some(_), Some(_)) => {
            return Err("both Content-Length and Transfer-Encoding in the response")
        }
        (Some(coding), None) if coding.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        (Some(_), None) | (None, None) => Framing::UntilClose,
        (None, Some(length)) => Framing::Length(length),
    };
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("");
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    let connection_named = connection_tokens(&*response.headers);
    for header in response.headers.iter() {
        let name = header.name;
        if http_util::is_hop_by_hop_name(name)
            || name.eq_ignore_ascii_case("content-length")
            || connection_named
                .iter()
                .any(|named| named.eq_ignore_ascii_case(name.as_bytes()))
        {
            continue;
        }
        if !scrub.is_empty() && egress::contains_any(header.value, scrub) {
            push_header(
                out,
                name.as_bytes(),
                &egress::scrub_bytes(header.value, scrub),
            );
        } else {
            push_header(out, name.as_bytes(), header.value);
        }
    }
    // A response without a body keeps the length it declares (of the body a GET would get).
    if framing == Framing::None && status != 204 {
        if let Some(value) = length_header {
            push_header(out, b"content-length", value);
        }
    }
    Ok(ResponseHead {
        status,
        head_len,
        framing,
        keep_alive,
    })
}

/// The header names listed in `Connection` headers (hop-by-hop for this message).
fn connection_tokens<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h [u8]> {
    let mut named = Vec::new();
    for header in headers {
        if header.name.eq_ignore_ascii_case("connection") {
            named.extend(list_tokens(header.value));
        }
    }
    named
}

/// The elements of a comma-separated header value, trimmed, empty ones skipped.
fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes a refusal as a complete response (the same JSON as the hyper path).
fn write_refusal(out: &mut Vec<u8>, refusal: &Refusal, close: bool) {
    let body = http_util::json_error_body(refusal.code, &refusal.message);
    let status = refusal.status;
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .as_bytes(),
    );
    if let Some(seconds) = refusal.retry_after {
        let _ = write!(out, "retry-after: {seconds}\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data: how many of its two bytes were seen.
    DataEnd(u8),
    Trailers,
    Done,
}

/// A strict decoder of chunked transfer coding (RFC 9112 §7.1): hexadecimal sizes (with
/// optional extensions, ignored), CRLF line ends, trailers dropped.
#[derive(Default)]
struct ChunkDecoder {
    state: ChunkState,
    /// A size or trailer line split across reads.
    line: Vec<u8>,
    trailer_bytes: usize,
}

/// The chunked body is malformed.
#[derive(Debug)]
struct BadChunk;

impl ChunkDecoder {
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending chunk data to `data`; returns how many bytes of
    /// `input` were consumed (all of them unless the body ended within it).
    fn feed(&mut self, input: &[u8], data: &mut Vec<u8>) -> Result<usize, BadChunk> {
        let mut position = 0;
        while position < input.len() {
            let rest = input.get(position..).unwrap_or_default();
            match self.state {
                ChunkState::Done => return Ok(position),
                ChunkState::Data(remaining) => {
                    let take = take_up_to(rest, remaining);
                    data.extend_from_slice(rest.get(..take).unwrap_or_default());
                    position += take;
                    self.state = match remaining - take as u64 {
                        0 => ChunkState::DataEnd(0),
                        left => ChunkState::Data(left),
                    };
                }
                ChunkState::DataEnd(seen) => {
                    let expected = if seen == 0 { b'\r' } else { b'\n' };
                    if rest.first() != Some(&expected) {
                        return Err(BadChunk);
                    }
                    position += 1;
                    self.state = if seen == 0 {
                        ChunkState::DataEnd(1)
                    } else {
                        ChunkState::Size
                    };
                }
                ChunkState::Size | ChunkState::Trailers => {
                    let Some(end) = rest.iter().position(|&byte| byte == b'\n') else {
                        self.line.extend_from_slice(rest);
                        if self.line.len() > MAX_CHUNK_LINE {
                            return Err(BadChunk);
                        }
                        return Ok(input.len());
                    };
                    self.line
                        .extend_from_slice(rest.get(..=end).unwrap_or_default());
                    position += end + 1;
                    if self.line.len() > MAX_CHUNK_LINE {
                        return Err(BadChunk);
                    }
                    let line = std::mem::take(&mut self.line);
                    let text = line.strip_suffix(b"\r\n").ok_or(BadChunk)?;
                    self.state = if self.state == ChunkState::Size {
                        match parse_chunk_size(text)? {
                            0 => ChunkState::Trailers,
                            size => ChunkState::Data(size),
                        }
                    } else if text.is_empty() {
                        ChunkState::Done
                    } else {
                        self.trailer_bytes += line.len();
                        if self.trailer_bytes > MAX_TRAILER_BYTES
                            || text.iter().any(|&byte| byte == b'\r' || byte == 0)
                        {
                            return Err(BadChunk);
                        }
                        ChunkState::Trailers
                    };
                    self.line = line;
                    self.line.clear();
                }
            }
        }
        Ok(position)
    }
}

/// A chunk-size line without its CRLF: hex digits (at most 15, so it fits), then nothing or
/// extensions after `;` (optionally after spaces or tabs).
fn parse_chunk_size(line: &[u8]) -> Result<u64, BadChunk> {
    let digits = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    if digits == 0 || digits > 15 {
        return Err(BadChunk);
    }
    let after = line.get(digits..).unwrap_or_default().trim_ascii_start();
    if !(after.is_empty() || after.starts_with(b";"))
        || after.iter().any(|&byte| byte == b'\r' || byte == 0)
    {
        return Err(BadChunk);
    }
    let text = std::str::from_utf8(line.get(..digits).unwrap_or_default()).map_err(|_| BadChunk)?;
    u64::from_str_radix(text, 16).map_err(|_| BadChunk)
}

/// Methods a proxy may send again on its own (RFC 9110 §9.2.2).
fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::TRACE
            | http::Method::PUT
            | http::Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8], piece: usize) -> Result<(Vec<u8>, usize), BadChunk> {
        let mut decoder = ChunkDecoder::default();
        let mut data = Vec::new();
        let mut consumed = 0;
        for part in body.chunks(piece) {
            consumed += decoder.feed(part, &mut data)?;
            if decoder.is_done() {
                return Ok((data, consumed));
            }
        }
        Err(BadChunk)
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nEXTRA";
        for piece in [1, 2, 3, 7, 64] {
            let (data, consumed) = decode(body, piece).expect("valid");
            assert_eq!(data, b"hello world", "piece {piece}");
            assert_eq!(consumed, body.len() - 5, "piece {piece}");
        }
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for body in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            assert!(
                decode(body, 64).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn chunk_sizes_and_body_lengths() {
        assert_eq!(parse_chunk_size(b"1a ; x=y").ok(), Some(26));
        assert_eq!(take_up_to(b"abc", 2), 2);
        assert_eq!(take_up_to(b"abc", u64::MAX), 3);
    }
}
