//! The `socket` audit device: audit lines over TCP, UDP or a Unix socket.
//!
//! The core opens no sockets, so the server registers this factory with the core
//! (`core.register_audit_factory("socket", Arc::new(SocketSinkFactory))`). Options as in
//! Vault: `address`, `socket_type` (`tcp`, default; `udp`; `unix`), `write_timeout` (read
//! by the core's device task). The connection is made when the device is enabled (so a peer
//! that is not listening is a 400, as in Vault) and again after any failed or timed-out
//! write, because half a batch may be in the old stream. UDP sends each line as its own
//! datagram. A peer that accepts and never reads fills the socket buffer; the device's write
//! timeout then fails that batch without holding up the other devices.

use std::collections::BTreeMap;
use std::io;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use ward_core::audit::{AuditSink, AuditSinkFactory};

/// Builds socket sinks from a device's options.
pub struct SocketSinkFactory;

#[async_trait]
impl AuditSinkFactory for SocketSinkFactory {
    async fn open(&self, options: &BTreeMap<String, String>) -> Result<Box<dyn AuditSink>, String> {
        let address = options
            .get("address")
            .filter(|a| !a.is_empty())
            .ok_or("address is required")?
            .clone();
        let kind = match options
            .get("socket_type")
            .map(String::as_str)
            .unwrap_or("tcp")
        {
            "" | "tcp" => SocketKind::Tcp,
            "udp" => SocketKind::Udp,
            "unix" => SocketKind::Unix,
            other => {
                return Err(format!(
                    "unsupported socket_type {other:?}: tcp, udp or unix"
                ))
            }
        };
        let mut sink = SocketSink {
            address,
            kind,
            connection: None,
        };
        sink.connect()
            .await
            .map_err(|e| format!("cannot connect to the audit socket: {e}"))?;
        Ok(Box::new(sink))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketKind {
    Tcp,
    Udp,
    Unix,
}

enum Connection {
    Tcp(TcpStream),
    Udp(UdpSocket),
    Unix(tokio::net::UnixStream),
}

struct SocketSink {
    address: String,
    kind: SocketKind,
    connection: Option<Connection>,
}

impl SocketSink {
    async fn connect(&mut self) -> io::Result<()> {
        let connection = match self.kind {
            SocketKind::Tcp => {
                let stream = TcpStream::connect(&self.address).await?;
                stream.set_nodelay(true)?;
                Connection::Tcp(stream)
            }
            SocketKind::Udp => {
                let socket = UdpSocket::bind("0.0.0.0:0").await?;
                socket.connect(&self.address).await?;
                Connection::Udp(socket)
            }
            SocketKind::Unix => {
                Connection::Unix(tokio::net::UnixStream::connect(&self.address).await?)
            }
        };
        self.connection = Some(connection);
        Ok(())
    }
}

#[async_trait]
impl AuditSink for SocketSink {
    async fn write(&mut self, batch: &[u8]) -> io::Result<()> {
        if self.connection.is_none() {
            self.connect().await?;
        }
        let result = match &mut self.connection {
            Some(Connection::Tcp(stream)) => match stream.write_all(batch).await {
                Ok(()) => stream.flush().await,
                Err(e) => Err(e),
            },
            Some(Connection::Unix(stream)) => match stream.write_all(batch).await {
                Ok(()) => stream.flush().await,
                Err(e) => Err(e),
            },
            Some(Connection::Udp(socket)) => {
                let mut result = Ok(());
                for line in batch.split_inclusive(|b| *b == b'\n') {
                    if let Err(e) = socket.send(line).await {
                        result = Err(e);
                        break;
                    }
                }
                result
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "audit socket not connected",
            )),
        };
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn reopen(&mut self) -> io::Result<()> {
        self.connection = None;
        self.connect().await
    }

    async fn reset(&mut self) {
        // A timed-out write may have left half a line in the stream: start a new one.
        self.connection = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};
    use tokio::io::AsyncBufReadExt;
    use ward_core::request::{Request, Response, Verb};
    use ward_core::{Core, CoreConfig, Error};

    use super::*;

    async fn dev_core() -> (Arc<Core>, String) {
        let core = Core::new(
            CoreConfig::default(),
            Arc::new(ward_storage::InMemory::new()),
            ward_engines::registry(),
        );
        core.register_audit_factory("socket", Arc::new(SocketSinkFactory));
        let root = core
            .dev_init(None)
            .await
            .expect("dev init")
            .root_token
            .to_string();
        (core, root)
    }

    async fn call(
        core: &Core,
        verb: Verb,
        path: &str,
        token: &str,
        data: Value,
    ) -> Result<Response, Error> {
        core.handle_request(Request::new(verb, path).with_token(token).with_data(data))
            .await
    }

    #[tokio::test]
    async fn a_tcp_device_receives_chained_hashed_lines() {
        let (core, root) = dev_core().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let received = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut lines = tokio::io::BufReader::new(stream).lines();
            let mut out = Vec::new();
            while out.len() < 3 {
                match lines.next_line().await {
                    Ok(Some(line)) => out.push(line),
                    _ => break,
                }
            }
            out
        });
        call(
            &core,
            Verb::Write,
            "sys/audit/net",
            &root,
            json!({"type": "socket", "options": {"address": address}}),
        )
        .await
        .expect("enable");
        call(
            &core,
            Verb::Write,
            "secret/data/x",
            &root,
            json!({"data": {"v": "socket-canary-31c"}}),
        )
        .await
        .expect("write");
        let lines = tokio::time::timeout(Duration::from_secs(5), received)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(
            lines.len(),
            3,
            "enable response, write request, write response"
        );
        let joined = lines.join("\n") + "\n";
        assert!(!joined.contains("socket-canary-31c") && !joined.contains(&root));
        assert!(ward_core::audit::verify(joined.as_bytes())
            .expect("read")
            .is_intact());
    }

    #[tokio::test]
    async fn a_peer_that_is_not_listening_is_refused_at_enable() {
        let (core, root) = dev_core().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let result = call(
            &core,
            Verb::Write,
            "sys/audit/net",
            &root,
            json!({"type": "socket", "options": {"address": address}}),
        )
        .await;
        assert!(
            matches!(&result, Err(Error::InvalidRequest(m)) if m.contains("cannot connect")),
            "{result:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_peer_neither_blocks_a_healthy_device_nor_leaves_requests_stuck() {
        let (core, root) = dev_core().await;
        // A peer that accepts and never reads, with a small receive buffer.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("buffer");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let address = socket.local_addr().expect("addr").to_string();
        let listener = socket.listen(8).expect("listen");
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("audit.log");
        call(
            &core,
            Verb::Write,
            "sys/audit/hung",
            &root,
            json!({"type": "socket", "options": {"address": address, "write_timeout": "500ms"}}),
        )
        .await
        .expect("enable socket");
        call(
            &core,
            Verb::Write,
            "sys/audit/file",
            &root,
            json!({"type": "file", "options": {"file_path": log.to_string_lossy()}}),
        )
        .await
        .expect("enable file");

        // Large entries fill the socket buffers quickly.
        let mut body = serde_json::Map::new();
        for i in 0..200 {
            body.insert(format!("f{i}"), json!("x"));
        }
        let body = Value::Object(body);
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        for i in 0..300 {
            let one = Instant::now();
            call(
                &core,
                Verb::Write,
                &format!("secret/data/k{i}"),
                &root,
                json!({"data": body}),
            )
            .await
            .expect("answered");
            slowest = slowest.max(one.elapsed());
        }
        assert!(
            slowest < Duration::from_secs(2),
            "no request waits for the hung device: {slowest:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        let deadline = Instant::now() + Duration::from_secs(10);
        while core
            .metrics()
            .counter("ward_audit_failures_total", &[("device", "hung/")])
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "the hung device's writes time out and are counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            std::fs::read_to_string(&log)
                .expect("log")
                .contains("secret/data/k299"),
            "the healthy device has every entry"
        );

        // Only the hung device left: after a timeout the device reconnects, and the peer's
        // fresh buffer takes entries until it is full again; from then on requests fail
        // closed after the write timeout. None hangs.
        call(&core, Verb::Delete, "sys/audit/file", &root, json!({}))
            .await
            .expect("disable file");
        let mut refused = 0;
        for i in 0..300 {
            let one = Instant::now();
            let result = call(
                &core,
                Verb::Write,
                &format!("secret/data/h{i}"),
                &root,
                json!({"data": body}),
            )
            .await;
            assert!(
                one.elapsed() < Duration::from_secs(3),
                "answered within the write timeout"
            );
            if let Err(error) = result {
                assert!(matches!(&error, Error::AuditFailed), "{error:?}");
                refused += 1;
                if refused == 2 {
                    break;
                }
            }
        }
        assert_eq!(refused, 2, "once the buffer is full, requests are refused");
        held.abort();
    }
}
