//! Request framing as the client wrote it, read before hyper parses it: how the agent's
//! listeners refuse a request that carries both `Content-Length` and `Transfer-Encoding`.
//!
//! Why here and not in the handlers: hyper frames such a request by `Transfer-Encoding`, drops
//! the `Content-Length` header and closes the connection after answering (RFC 9112 §6.1), so
//! by the time a handler runs it looks like an honest chunked request. The pair is the classic
//! request-smuggling vector (a front end and a back end disagreeing on where the body ends),
//! and RFC 9112 lets a server refuse it outright, which is what a careful proxy does.
//!
//! [`InspectedIo`] wraps a connection and sees every byte hyper reads. It follows HTTP/1.1
//! message framing on its own: heads parsed with `httparse` (the parser hyper uses), bodies
//! skipped by `Content-Length` or by chunk sizes. It records which request of the connection
//! (counting from 0) carried both headers in a [`Verdicts`] shared with the connection's
//! service, which answers that request 400 instead of handling it. hyper closes the connection
//! after it, so nothing after it on that connection is ever served.
//!
//! Anything this reader does not follow (HTTP/2, an upgrade or `CONNECT`, a head or chunk line
//! it cannot parse or that is too long) ends the inspection for the rest of the connection;
//! hyper's own framing and checks still apply then, and they refuse what is malformed.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's default limit on request headers.
const MAX_HEADERS: usize = 100;
/// The longest request head followed (hyper's read buffer stops well before).
const MAX_HEAD_BYTES: usize = 512 * 1024;
/// The longest chunk-size or trailer line followed.
const MAX_LINE_BYTES: usize = 8 * 1024;

/// What the inspection found on one connection, shared with the connection's service.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// The index of the request carrying both framing headers, plus one; 0 for none.
    refused: AtomicU64,
    /// How many requests the service has been handed so far.
    n_handled: AtomicU64,
}

impl Verdicts {
    /// Called once per request as the service receives it, in order; true if this request
    /// carried both `Content-Length` and `Transfer-Encoding`.
    pub fn next_is_refused(&self) -> bool {
        let index = self.n_handled.fetch_add(1, Ordering::Relaxed);
        self.refused.load(Ordering::Relaxed) == index + 1
    }

    fn refuse(&self, index: u64) {
        self.refused.store(index + 1, Ordering::Relaxed);
    }
}

/// A connection whose incoming bytes are followed request by request.
pub struct InspectedIo<IO> {
    io: IO,
    /// Bytes already read from `io` by someone else (the egress fast path handing a
    /// connection over), read again before `io`; they start at a request head.
    prefix: Vec<u8>,
    n_prefix_read: usize,
    framing: Framing,
}

impl<IO> InspectedIo<IO> {
    pub fn new(io: IO, verdicts: Arc<Verdicts>) -> InspectedIo<IO> {
        InspectedIo::with_prefix(io, Vec::new(), verdicts)
    }

    /// A connection of which `prefix` was already read: it is read again first.
    pub fn with_prefix(io: IO, prefix: Vec<u8>, verdicts: Arc<Verdicts>) -> InspectedIo<IO> {
        InspectedIo {
            io,
            prefix,
            n_prefix_read: 0,
            framing: Framing::new(verdicts),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for InspectedIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let rest = this.prefix.get(this.n_prefix_read..).unwrap_or_default();
        let polled = if rest.is_empty() {
            Pin::new(&mut this.io).poll_read(cx, buf)
        } else {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.n_prefix_read += n;
            if this.n_prefix_read == this.prefix.len() {
                this.prefix = Vec::new();
                this.n_prefix_read = 0;
            }
            Poll::Ready(Ok(()))
        };
        if matches!(polled, Poll::Ready(Ok(()))) && !this.framing.is_off() {
            if let Some(read) = buf.filled().get(before..) {
                this.framing.feed(read);
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for InspectedIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Where in the byte stream the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// Body bytes still to skip (`Content-Length`).
    Fixed(u64),
    ChunkSize,
    /// Chunk bytes still to skip.
    ChunkData(u64),
    /// The CRLF after a chunk: bytes still to skip.
    ChunkEnd(u8),
    /// Trailer lines, up to an empty line.
    Trailers,
    /// Not followed any further on this connection.
    Off,
}

struct Framing {
    state: State,
    /// A head or line split across reads.
    pending: Vec<u8>,
    n_heads: u64,
    verdicts: Arc<Verdicts>,
}

/// What one request head says about its body.
enum HeadFraming {
    /// Both framing headers: refuse.
    Conflicting,
    Length(u64),
    Chunked,
    None,
    /// Not followed: an upgrade, `CONNECT`, a non-chunked transfer coding, a bad length.
    Unfollowed,
}

impl Framing {
    fn new(verdicts: Arc<Verdicts>) -> Framing {
        Framing {
            state: State::Head,
            pending: Vec::new(),
            n_heads: 0,
            verdicts,
        }
    }

    fn is_off(&self) -> bool {
        self.state == State::Off
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.pending = Vec::new();
    }

    /// Follows `bytes`, the next bytes read from the client.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Off => return,
                State::Head => bytes = self.feed_head(bytes),
                State::Fixed(remaining) => {
                    let skipped = skip(&mut bytes, remaining);
                    self.state = match remaining - skipped {
                        0 => State::Head,
                        left => State::Fixed(left),
                    };
                }
                State::ChunkData(remaining) => {
                    let skipped = skip(&mut bytes, remaining);
                    self.state = match remaining - skipped {
                        0 => State::ChunkEnd(2),
                        left => State::ChunkData(left),
                    };
                }
                State::ChunkEnd(remaining) => {
                    let skipped = skip(&mut bytes, u64::from(remaining));
                    // At most 2, so the subtraction fits.
                    let left = u64::from(remaining) - skipped;
                    self.state = match left {
                        0 => State::ChunkSize,
                        _ => State::ChunkEnd(1),
                    };
                }
                State::ChunkSize | State::Trailers => {
                    let Some((line, rest)) = self.take_line(bytes) else {
                        return;
                    };
                    bytes = rest;
                    self.state = match (self.state, line) {
                        (State::Trailers, Line::Empty) => State::Head,
                        (State::Trailers, Line::Text(_)) => State::Trailers,
                        (_, Line::Empty) => State::Off,
                        (_, Line::Text(size)) => match size {
                            Some(0) => State::Trailers,
                            Some(size) => State::ChunkData(size),
                            None => State::Off,
                        },
                    };
                    if self.is_off() {
                        self.stop();
                    }
                }
            }
        }
    }

    /// Parses a request head from `bytes` (after whatever part of it came before); returns
    /// what follows the head.
    fn feed_head<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (parsed, already) = if self.pending.is_empty() {
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(bytes) {
                Ok(httparse::Status::Complete(length)) => {
                    (Some((head_framing(&request), length)), 0)
                }
                Ok(httparse::Status::Partial) => (None, 0),
                Err(_) => {
                    self.stop();
                    return &[];
                }
            }
        } else {
            let already = self.pending.len();
            self.pending.extend_from_slice(bytes);
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&self.pending) {
                Ok(httparse::Status::Complete(length)) => {
                    (Some((head_framing(&request), length)), already)
                }
                Ok(httparse::Status::Partial) => (None, already),
                Err(_) => {
                    self.stop();
                    return &[];
                }
            }
        };
        let Some((framing, length)) = parsed else {
            if already == 0 {
                self.pending.extend_from_slice(bytes);
            }
            if self.pending.len() > MAX_HEAD_BYTES {
                self.stop();
            }
            return &[];
        };
        self.pending.clear();
        let index = self.n_heads;
        self.n_heads += 1;
        self.state = match framing {
            HeadFraming::Conflicting => {
                self.verdicts.refuse(index);
                // hyper closes the connection after this request; what follows is never
                // served, so there is nothing more to follow.
                State::Off
            }
            HeadFraming::Length(0) | HeadFraming::None => State::Head,
            HeadFraming::Length(length) => State::Fixed(length),
            HeadFraming::Chunked => State::ChunkSize,
            HeadFraming::Unfollowed => State::Off,
        };
        if self.is_off() {
            self.stop();
            return &[];
        }
        bytes.get(length - already..).unwrap_or_default()
    }

    /// Takes one line (up to LF) from the pending bytes and `bytes`; None when the line is
    /// not complete yet (its start is kept) or too long (the inspection stops).
    fn take_line<'a>(&mut self, bytes: &'a [u8]) -> Option<(Line, &'a [u8])> {
        let Some(end) = bytes.iter().position(|&byte| byte == b'\n') else {
            self.pending.extend_from_slice(bytes);
            if self.pending.len() > MAX_LINE_BYTES {
                self.stop();
            }
            return None;
        };
        let (head, rest) = bytes.split_at(end + 1);
        let line = if self.pending.is_empty() {
            Line::parse(head)
        } else {
            self.pending.extend_from_slice(head);
            let line = Line::parse(&self.pending);
            self.pending.clear();
            line
        };
        Some((line, rest))
    }
}

/// A chunk-size or trailer line.
enum Line {
    Empty,
    /// A non-empty line, with its leading hexadecimal number if it has one that fits.
    Text(Option<u64>),
}

impl Line {
    fn parse(line: &[u8]) -> Line {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Line::Empty;
        }
        let digits = line
            .iter()
            .take_while(|byte| byte.is_ascii_hexdigit())
            .count();
        let size = std::str::from_utf8(line.get(..digits).unwrap_or_default())
            .ok()
            .filter(|digits| !digits.is_empty())
            .and_then(|digits| u64::from_str_radix(digits, 16).ok());
        Line::Text(size)
    }
}

/// Skips up to `count` bytes; returns how many were skipped.
fn skip(bytes: &mut &[u8], count: u64) -> u64 {
    let available = bytes.len();
    let n = usize::try_from(count).map_or(available, |count| count.min(available));
    *bytes = bytes.get(n..).unwrap_or_default();
    n as u64
}

fn head_framing(request: &httparse::Request<'_, '_>) -> HeadFraming {
    if request.method == Some("CONNECT") {
        return HeadFraming::Unfollowed;
    }
    let mut length: Option<u64> = None;
    let mut has_length = false;
    let mut transfer_codings: Option<&[u8]> = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|value| value.trim().parse::<u64>().ok());
            match (value, length) {
                (Some(value), None) => length = Some(value),
                (Some(value), Some(previous)) if value == previous => {}
                _ => return HeadFraming::Unfollowed,
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_codings = Some(header.value);
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            return HeadFraming::Unfollowed;
        }
    }
    match (has_length, transfer_codings) {
        (true, Some(_)) => HeadFraming::Conflicting,
        (false, Some(codings)) => {
            let last = codings
                .rsplit(|&byte| byte == b',')
                .next()
                .unwrap_or(codings);
            if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                HeadFraming::Chunked
            } else {
                HeadFraming::Unfollowed
            }
        }
        (true, None) => length.map_or(HeadFraming::Unfollowed, HeadFraming::Length),
        (false, None) => HeadFraming::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `piece` bytes; returns the refused request index, if any.
    fn refused(stream: &[u8], piece: usize) -> Option<u64> {
        let verdicts = Arc::new(Verdicts::default());
        let mut framing = Framing::new(Arc::clone(&verdicts));
        for part in stream.chunks(piece) {
            framing.feed(part);
        }
        match verdicts.refused.load(Ordering::Relaxed) {
            0 => None,
            index => Some(index - 1),
        }
    }

    #[test]
    fn finds_the_request_carrying_both_framing_headers_in_any_split() {
        let honest_chunked = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n";
        // A body that looks like a refused head is only a body.
        let inner = "POST /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let honest_length = format!(
            "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        let get = b"\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        let both_length_first =
            b"POST /e HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let both_encoding_first =
            b"POST /e HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n";
        let mut stream = Vec::new();
        stream.extend_from_slice(honest_chunked);
        stream.extend_from_slice(honest_length.as_bytes());
        stream.extend_from_slice(get);
        for piece in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(refused(&stream, piece), None, "piece {piece}");
            for both in [&both_length_first[..], &both_encoding_first[..]] {
                let mut attack = stream.clone();
                attack.extend_from_slice(both);
                assert_eq!(refused(&attack, piece), Some(3), "piece {piece}");
            }
        }
    }

    #[test]
    fn stops_following_what_it_cannot() {
        let verdicts = Arc::new(Verdicts::default());
        for stream in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let mut framing = Framing::new(Arc::clone(&verdicts));
            framing.feed(stream);
            assert!(framing.is_off(), "{}", String::from_utf8_lossy(stream));
        }
    }

    #[test]
    fn the_service_sees_the_verdict_of_its_own_request() {
        let verdicts = Verdicts::default();
        verdicts.refuse(1);
        assert!(!verdicts.next_is_refused());
        assert!(verdicts.next_is_refused());
        assert!(!verdicts.next_is_refused());
    }
}
