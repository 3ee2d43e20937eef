"""Fixtures that run real `ward server` processes for the hvac compatibility suite.

Each server is a child process of the test run. Its output goes to a log file; the fixture reads the
API address from that output ("Api Address: http://127.0.0.1:NNNNN", the server binds port 0), polls
`sys/health` with a deadline until the server answers, and stops the process when the fixture goes out
of scope (SIGTERM, then SIGKILL). Nothing here sleeps blindly: every wait polls a condition with a deadline.

Two kinds of server:
- the dev server (`-dev`): in memory, unsealed, with a root token that the fixture chooses;
- the config server (`-config`): TLS with a throwaway CA, SQLite storage, not initialised, so that
  tests drive `sys/init` and `sys/unseal` themselves and can restart it on the same storage.

The binary comes from `$WARD_BIN` (set by scripts/test), else `$CARGO_TARGET_DIR/debug/ward`,
else `target/debug/ward` in the repository.

Logs: with `$WARD_TEST_LOG_DIR` set (scripts/test sets it), each server's output goes there as
`compat-<name>-<id>.<n>.log`, and the dev servers also get a file audit device writing
`compat-<name>-<id>-audit.log` there; scripts/test scans that folder for canary values (the
`CANARY-` prefix of `canary()`) and tokens in clear after every suite has run.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path

import hvac
import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

# A debug build starts in well under a second; the margin is for a loaded CI machine.
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.02

API_ADDRESS_PATTERN = re.compile(r"Api Address:\s*(https?://[0-9A-Za-z.\-\[\]:]+)")
UNSEAL_KEY_PATTERN = re.compile(r"Unseal Key:\s*(\S+)")
# The statuses sys/health answers with in some state of the server: any of them means "it is serving".
HEALTH_STATUSES = {200, 429, 472, 473, 474, 501, 503, 530}

_running_servers: list["WardServer"] = []

CANARY_PREFIX = "CANARY-"


def canary(what: str) -> str:
    """A recognisable secret value: the suite-wide log scan fails if one appears in clear."""
    return f"{CANARY_PREFIX}{what}-{secrets.token_hex(4)}"


def log_directory(fallback: Path) -> Path:
    """Where servers keep their logs: $WARD_TEST_LOG_DIR when set, else the test's own folder."""
    configured = os.environ.get("WARD_TEST_LOG_DIR")
    if not configured:
        return fallback
    path = Path(configured)
    path.mkdir(parents=True, exist_ok=True)
    return path


def unique(prefix: str) -> str:
    """A name no other test uses, so tests sharing a server do not see each other's mounts or secrets."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(condition, timeout: float, what: str):
    """Poll `condition` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_INTERVAL_SECONDS)


def locate_ward_binary() -> Path:
    configured = os.environ.get("WARD_BIN")
    if configured:
        candidate = Path(configured)
    else:
        target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        candidate = target_dir / "debug" / "ward"
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        pytest.fail(
            f"ward binary not found at {candidate}: run scripts/test, or build it with "
            "`cargo build -p ward --bin ward` and set WARD_BIN",
            pytrace=False,
        )
    return candidate


class WardServer:
    """One `ward server` child process and the facts a test needs about it."""

    def __init__(self, binary: Path, args: list[str], workdir: Path, name: str, ca_file: Path | None = None):
        self.binary = binary
        self.args = args
        self.workdir = workdir
        self.name = name
        self.ca_file = ca_file
        self.process: subprocess.Popen | None = None
        self.address: str | None = None
        self.log_path: Path | None = None
        self.log_stem = f"compat-{name}-{uuid.uuid4().hex[:8]}"
        self._n_starts = 0

    # Lifecycle

    def start(self) -> "WardServer":
        self._n_starts += 1
        self.log_path = log_directory(self.workdir) / f"{self.log_stem}.{self._n_starts}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._environment(),
            )
        _running_servers.append(self)
        try:
            self.address = wait_until(self._printed_address, STARTUP_TIMEOUT_SECONDS, f"{self.name} to print its address")
            wait_until(self._answers_health, STARTUP_TIMEOUT_SECONDS, f"{self.name} to answer sys/health")
        except Exception as error:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {error}\n--- output ---\n{self.output()}") from error
        return self

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self.process = None
        if self in _running_servers:
            _running_servers.remove(self)

    def restart(self) -> "WardServer":
        self.stop()
        return self.start()

    # What tests use

    def client(self, token: str | None = "") -> hvac.Client:
        """An hvac client for this server. The default empty token sends no X-Vault-Token header
        (None would make hvac read VAULT_TOKEN or ~/.vault-token from the environment)."""
        return hvac.Client(url=self.address, token=token, verify=str(self.ca_file) if self.ca_file else True, timeout=30)

    def output(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def printed_unseal_key(self) -> str:
        match = UNSEAL_KEY_PATTERN.search(self.output())
        assert match, f"the dev server printed no 'Unseal Key:' line:\n{self.output()}"
        return match.group(1)

    # Helpers

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        # The server under test must not pick up a developer's Vault or Ward settings.
        for key in list(environment):
            if key.startswith(("VAULT_", "WARD_")):
                del environment[key]
        environment.setdefault("RUST_BACKTRACE", "1")
        # Debug logs say the most, so the canary scan of the logs (scripts/test) covers the most.
        environment["WARD_LOG_LEVEL"] = "debug"
        return environment

    def _printed_address(self) -> str | None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"ward exited with status {self.process.returncode}")
        match = API_ADDRESS_PATTERN.search(self.output())
        return match.group(1).rstrip("/") if match else None

    def _answers_health(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"ward exited with status {self.process.returncode}")
        try:
            response = requests.get(
                f"{self.address}/v1/sys/health",
                verify=str(self.ca_file) if self.ca_file else True,
                timeout=2,
            )
        except requests.RequestException:
            return False
        return response.status_code in HEALTH_STATUSES


@atexit.register
def _stop_leftover_servers() -> None:
    # Fixtures stop their servers; this covers an interrupted run.
    for server in list(_running_servers):
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the end of each server's output to a failed test's report (a panic shows up there)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name in ("own_dev_server", "config_server", "dev_server"):
        server = item.funcargs.get(name)
        if isinstance(server, WardServer):
            tail = "\n".join(server.output().splitlines()[-30:])
            report.sections.append((f"{name} output (last 30 lines)", tail))


# The binary and the dev server


@pytest.fixture(scope="session")
def ward_binary() -> Path:
    return locate_ward_binary()


class DevServer(WardServer):
    root_token: str


def start_dev_server(binary: Path, workdir: Path, name: str) -> DevServer:
    # Vault does not allow "." in a custom token id.
    root_token = f"root-{secrets.token_hex(12)}"
    server = DevServer(
        binary,
        [
            "server",
            "-dev",
            "-dev-listen-address=127.0.0.1:0",
            f"-dev-root-token-id={root_token}",
        ],
        workdir,
        name,
    )
    server.root_token = root_token
    server.start()
    # Every request of the suite is audited to a file kept with the logs, for the canary scan.
    audit_path = log_directory(workdir) / f"{server.log_stem}-audit.log"
    response = requests.put(
        f"{server.address}/v1/sys/audit/suite-log",
        headers={"X-Vault-Token": root_token},
        json={"type": "file", "options": {"file_path": str(audit_path)}},
        timeout=10,
    )
    assert response.status_code == 204, f"enabling the suite's audit device: {response.status_code} {response.text}"
    return server


@pytest.fixture(scope="session")
def dev_server(ward_binary, tmp_path_factory) -> DevServer:
    """The dev server shared by the whole session. Tests that seal a server or rotate state that others
    observe use `own_dev_server` instead."""
    server = start_dev_server(ward_binary, tmp_path_factory.mktemp("dev"), "dev")
    yield server
    server.stop()


@pytest.fixture
def own_dev_server(ward_binary, tmp_path) -> DevServer:
    """A dev server for one test only (for tests that seal it)."""
    server = start_dev_server(ward_binary, tmp_path, "own-dev")
    yield server
    server.stop()


@pytest.fixture
def client(dev_server) -> hvac.Client:
    """An hvac client holding the dev server's root token."""
    return dev_server.client(dev_server.root_token)


@pytest.fixture
def client_for(dev_server):
    """Make an hvac client for the shared dev server with the given token."""

    def make(token: str) -> hvac.Client:
        return dev_server.client(token)

    return make


@pytest.fixture
def kv1_mount(client) -> str:
    """A fresh KV v1 mount (path without slashes), removed after the test."""
    path = unique("kv1")
    client.sys.enable_secrets_engine("kv", path=path, options={"version": "1"})
    yield path
    _disable_quietly(client, path)


@pytest.fixture
def kv2_mount(client) -> str:
    """A fresh KV v2 mount (path without slashes), removed after the test."""
    path = unique("kv2")
    client.sys.enable_secrets_engine("kv", path=path, options={"version": "2"})
    yield path
    _disable_quietly(client, path)


def _disable_quietly(client: hvac.Client, path: str) -> None:
    try:
        client.sys.disable_secrets_engine(path)
    except (hvac.exceptions.VaultError, requests.RequestException):
        # Cleanup only; the test itself already passed or failed on what it asserted.
        pass


def token_with_policy(client: hvac.Client, policy_name: str, policy_text: str, **create_args) -> str:
    """Write an ACL policy and return a new child token of the caller holding it (and `default`)."""
    client.sys.create_or_update_acl_policy(name=policy_name, policy=policy_text)
    created = client.auth.token.create(policies=[policy_name], **create_args)
    return created["auth"]["client_token"]


# The config server: TLS, SQLite, not initialised


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI.

    A separate CA (instead of one self-signed leaf) keeps strict verifiers happy: Python 3.13 turns on
    VERIFY_X509_STRICT, and rustls refuses a CA certificate used as an end-entity certificate."""
    directory = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    server_key, server_csr, server_cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n"
    )

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory, timeout=60)

    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "2", "-subj", "/CN=ward compat test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(server_key), "-out", str(server_csr), "-subj", "/CN=127.0.0.1",
    )
    openssl(
        "x509", "-req", "-in", str(server_csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(server_cert), "-days", "2", "-extfile", str(extensions),
    )
    return {"ca": ca_cert, "cert": server_cert, "key": server_key}


@pytest.fixture
def config_server(ward_binary, tls_files, tmp_path) -> WardServer:
    """A server started from a JSON config file (Vault's JSON config shape): TLS on 127.0.0.1, SQLite
    storage in the test's own folder, no dev mode, so it starts uninitialised and sealed."""
    config = {
        "storage": {"sqlite": {"path": str(tmp_path / "ward.db")}},
        "listener": {
            "tcp": {
                "address": "127.0.0.1:0",
                "tls_cert_file": str(tls_files["cert"]),
                "tls_key_file": str(tls_files["key"]),
            }
        },
        "disable_mlock": True,
        "default_lease_ttl": "768h",
        "max_lease_ttl": "768h",
    }
    config_path = tmp_path / "ward.json"
    config_path.write_text(json.dumps(config, indent=2))
    server = WardServer(ward_binary, ["server", f"-config={config_path}"], tmp_path, "config", ca_file=tls_files["ca"])
    server.start()
    yield server
    server.stop()
