//! `ward login`: authenticate and keep the token in the token helper file (`~/.ward-token`,
//! mode 0600) unless `-no-store`.
//!
//! Methods: `token` (the default: the token is checked with `lookup-self`), `userpass` and
//! `ldap` (`username=`, password prompted without echo), `approle`, `jwt`, `kubernetes` (the
//! service-account token file by default), `oidc` (the browser flow, as Vault's CLI runs it:
//! a callback listener on `localhost:8250`, or on any free port with `port=0`), and any other
//! method by its `k=v` login fields.

use std::io::Read;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::args::Kind;
use crate::client::{CliError, Client};
use crate::commands::{auth_rows, data_arguments, encode, read_secret, Cmd};
use crate::output;

const KUBERNETES_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// How long the OIDC flow waits for the browser to come back.
const OIDC_WAIT: Duration = Duration::from_secs(300);

/// `ward login [-method=M] [-path=P] [-no-store] [TOKEN | k=v ...]`
pub(crate) async fn run(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(
        argv,
        &[
            ("method", Kind::Value),
            ("path", Kind::Value),
            ("no-store", Kind::Bool),
            ("token-only", Kind::Bool),
            ("no-print", Kind::Bool),
        ],
    )?;
    let method = cmd.args.value("method").unwrap_or("token").to_string();
    let mount = cmd
        .args
        .value("path")
        .unwrap_or(&method)
        .trim_matches('/')
        .to_string();
    // A login never sends the token the CLI may already hold.
    let client = cmd.client()?.with_token(None);
    let response = match method.as_str() {
        "token" => token_login(&cmd, client).await?,
        "oidc" => {
            let data = data_arguments(cmd.positional())?;
            oidc_login(&client, &mount, data).await?
        }
        _ => {
            let mut data = data_arguments(cmd.positional())?;
            let path = login_path(&method, &mount, &mut data)?;
            client
                .request("PUT", &path, Some(&Value::Object(data)))
                .await?
                .unwrap_or(Value::Null)
        }
    };
    let token = response["auth"]["client_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CliError::local("the login response holds no token"))?
        .to_string();
    let stored = !cmd.args.flag("no-store");
    if stored {
        crate::client::store_token(&token).map_err(|e| {
            CliError::local(format!(
                "logged in, but cannot write the token to ~/.ward-token: {e}"
            ))
        })?;
        if crate::env_var(&["WARD_TOKEN", "VAULT_TOKEN"]).is_some_and(|t| t != token) {
            eprintln!(
                "WARNING! WARD_TOKEN (or VAULT_TOKEN) is set and takes precedence over the stored token; unset it to use this login."
            );
        }
    }
    if cmd.args.flag("token-only") {
        println!("{token}");
        return Ok(0);
    }
    if cmd.args.flag("no-print") {
        return Ok(0);
    }
    if cmd.field().is_some() || !cmd.format.is_table() {
        return cmd.show(&response);
    }
    if stored {
        println!(
            "Success! You are now authenticated. The token below is stored in ~/.ward-token;\n\
             later ward commands use it, so you need not log in again until it expires.\n"
        );
    } else {
        println!(
            "Success! You are now authenticated. The token below is NOT stored (-no-store);\n\
             pass it to later commands with WARD_TOKEN.\n"
        );
    }
    let auth = response["auth"].as_object().cloned().unwrap_or_default();
    output::print_table(&auth_rows(&auth));
    Ok(0)
}

/// The login path and body for the methods that post their fields.
fn login_path(
    method: &str,
    mount: &str,
    data: &mut Map<String, Value>,
) -> Result<String, CliError> {
    match method {
        "userpass" | "ldap" => {
            let username = match data.remove("username") {
                Some(Value::String(u)) if !u.is_empty() => u,
                _ => {
                    return Err(CliError::usage(format!(
                        "missing username; usage: ward login -method={method} username=NAME [password=...]"
                    )))
                }
            };
            if !data.contains_key("password") {
                data.insert("password".into(), json!(read_secret("Password")?));
            }
            Ok(format!("auth/{mount}/login/{}", encode(&username)))
        }
        "approle" => {
            for field in ["role_id", "secret_id"] {
                if !data.contains_key(field) {
                    if field == "secret_id" {
                        // A role may be set up without a secret ID (bind_secret_id=false).
                        continue;
                    }
                    return Err(CliError::usage(
                        "missing role_id; usage: ward login -method=approle role_id=ID secret_id=SECRET",
                    ));
                }
            }
            Ok(format!("auth/{mount}/login"))
        }
        "jwt" => {
            if !data.contains_key("jwt") {
                return Err(CliError::usage(
                    "missing jwt; usage: ward login -method=jwt role=ROLE jwt=@token-file",
                ));
            }
            Ok(format!("auth/{mount}/login"))
        }
        "kubernetes" => {
            if !data.contains_key("jwt") {
                let jwt = std::fs::read_to_string(KUBERNETES_TOKEN).map_err(|e| {
                    CliError::local(format!(
                        "no jwt given and cannot read the service-account token {KUBERNETES_TOKEN}: {e}"
                    ))
                })?;
                data.insert("jwt".into(), json!(jwt.trim()));
            }
            Ok(format!("auth/{mount}/login"))
        }
        _ => Ok(format!("auth/{mount}/login")),
    }
}

/// `ward login TOKEN`: checks the token with `lookup-self`, then shapes the answer like a
/// login's so the same table and `-field=token` work.
async fn token_login(cmd: &Cmd, client: Client) -> Result<Value, CliError> {
    let token = match cmd.positional() {
        [] => read_secret("Token")?,
        [token] if token == "-" => read_secret("Token")?,
        [token] => token.clone(),
        _ => {
            return Err(CliError::usage(
                "too many arguments; usage: ward login [TOKEN] (or -method=M k=v ...)",
            ))
        }
    };
    let client = client.with_token(Some(token.clone()));
    let lookup = client
        .request("GET", "auth/token/lookup-self", None)
        .await?
        .unwrap_or(Value::Null);
    let data = &lookup["data"];
    Ok(json!({
        "auth": {
            "client_token": token,
            "accessor": data["accessor"],
            "lease_duration": data["ttl"],
            "renewable": data["renewable"],
            "token_policies": data["policies"],
            "identity_policies": data["identity_policies"],
            "policies": data["policies"],
            "metadata": data["meta"],
            "entity_id": data["entity_id"],
            "token_type": data["type"],
            "orphan": data["orphan"],
        }
    }))
}

/// The browser flow: ask the server for the provider's URL, show it (and try to open a
/// browser), wait for the provider to redirect to the local listener, then hand the code and
/// state to the server's callback, which answers with the token.
async fn oidc_login(
    client: &Client,
    mount: &str,
    mut data: Map<String, Value>,
) -> Result<Value, CliError> {
    let take = |data: &mut Map<String, Value>, key: &str, default: &str| -> String {
        match data.remove(key) {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => default.to_string(),
        }
    };
    let listen = take(&mut data, "listenaddress", "localhost");
    let port = take(&mut data, "port", "8250");
    let callback_host = take(&mut data, "callbackhost", "localhost");
    let callback_port = take(&mut data, "callbackport", "");
    let callback_method = take(&mut data, "callbackmethod", "http");
    let skip_browser = take(&mut data, "skip_browser", "false");
    let role = take(&mut data, "role", "");
    // Listen first: with `port=0` the system picks a free port, and the redirect URI names
    // it (the server matches loopback redirect URIs on any port, as Vault does).
    let listener = tokio::net::TcpListener::bind(format!("{listen}:{port}"))
        .await
        .map_err(|e| {
            CliError::local(format!(
                "cannot listen on {listen}:{port} for the OIDC callback: {e} (choose another with port=N)"
            ))
        })?;
    let callback_port = if callback_port.is_empty() {
        listener
            .local_addr()
            .map_err(|e| CliError::local(format!("OIDC callback listener failed: {e}")))?
            .port()
            .to_string()
    } else {
        callback_port
    };
    let redirect_uri = format!("{callback_method}://{callback_host}:{callback_port}/oidc/callback");
    let client_nonce = random_hex(20)?;
    let body = json!({ "role": role, "redirect_uri": redirect_uri, "client_nonce": client_nonce });
    let response = client
        .request("PUT", &format!("auth/{mount}/oidc/auth_url"), Some(&body))
        .await?
        .unwrap_or(Value::Null);
    let auth_url = response["data"]["auth_url"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            CliError::local(format!(
                "the server returned no auth_url: check that the role's allowed_redirect_uris include {redirect_uri}"
            ))
        })?
        .to_string();
    eprintln!(
        "Complete the login with your OIDC provider. Open this URL in a browser:\n\n    {auth_url}\n\nWaiting for OIDC authentication to complete..."
    );
    if crate::parse_bool(&skip_browser) != Some(true) {
        open_browser(&auth_url);
    }
    let wait = async {
        loop {
            let (mut stream, _) = listener
                .accept()
                .await
                .map_err(|e| CliError::local(format!("OIDC callback listener failed: {e}")))?;
            let Some(query) = read_callback(&mut stream).await else {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            };
            let path = format!(
                "auth/{mount}/oidc/callback?{query}&client_nonce={}",
                encode(&client_nonce)
            );
            let result = client.request("GET", &path, None).await;
            let page = match &result {
                Ok(_) => "Signed in to Ward. You can close this window and return to the terminal.",
                Err(_) => "Ward login failed. See the terminal for the error.",
            };
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            return result.map(|r| r.unwrap_or(Value::Null));
        }
    };
    tokio::time::timeout(OIDC_WAIT, wait)
        .await
        .map_err(|_| CliError::local("timed out waiting for the OIDC provider to redirect back"))?
}

/// Reads one HTTP request head; returns the query of `GET /oidc/callback?...`.
async fn read_callback(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let target = text.lines().next()?.split_whitespace().nth(1)?.to_string();
    let (path, query) = target.split_once('?')?;
    (path == "/oidc/callback").then(|| query.to_string())
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

fn random_hex(n_bytes: usize) -> Result<String, CliError> {
    let mut bytes = vec![0u8; n_bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CliError::local(format!("cannot read /dev/urandom: {e}")))?;
    Ok(hex_string(&bytes))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
