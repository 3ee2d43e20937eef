//! `ward operator ...`: the workflows of the people who hold the unseal key shares.
//!
//! `init` (shares and threshold), `unseal` (a share per run, hidden prompt or `-`), `seal`,
//! `rotate`, `key-status`, `generate-root` (a new root token from a quorum of shares, XORed
//! with a one-time pad so that only the initiator can read it) and `rekey` (new shares and
//! threshold, optionally verified with the new shares before the old ones stop working).
//!
//! The recommended practice these make easy: initialise, unseal, configure, revoke the root
//! token (`ward token revoke -self`), and regenerate a root token with a quorum only when one
//! is needed. Submitting a share to an attempt needs that attempt's nonce, which the initiator
//! hands out with the request: a holder never adds a share to an attempt they did not expect.

use serde_json::{json, Value};

use crate::args::Kind;
use crate::client::CliError;
use crate::commands::{read_secret, seal_rows, Cmd};
use crate::output;

/// The reminder printed with every new set of key shares.
const SHARE_REMINDER: &str =
    "Hand each key share to a different person, and keep no two shares in one place:\n\
     any quorum of holders can unseal Ward, rekey it, or generate a new root token.";

/// `ward operator SUBCOMMAND ...`
pub(crate) async fn run(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(
            "missing subcommand; usage: ward operator init|unseal|seal|rotate|key-status|generate-root|rekey",
        ));
    };
    match verb.as_str() {
        "init" => init(rest).await,
        "unseal" => unseal(rest).await,
        "seal" => seal(rest).await,
        "rotate" => rotate(rest).await,
        "key-status" => key_status(rest).await,
        "generate-root" => generate_root(rest).await,
        "rekey" => rekey(rest).await,
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; see: ward operator -help"
        ))),
    }
}

async fn init(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(
        argv,
        &[
            ("key-shares", Kind::Value),
            ("key-threshold", Kind::Value),
            ("status", Kind::Bool),
        ],
    )?;
    cmd.expect_args(0, "ward operator init [-key-shares=N] [-key-threshold=T]")?;
    let client = cmd.client()?;
    if cmd.args.flag("status") {
        // As Vault's: exit 0 initialised, 2 not initialised, 1 on an error.
        let body = client
            .request("GET", "sys/init", None)
            .await?
            .unwrap_or(Value::Null);
        let initialized = body["initialized"].as_bool().unwrap_or(false);
        if initialized {
            println!("Ward is initialized");
            return Ok(0);
        }
        println!("Ward is not initialized");
        return Ok(2);
    }
    let shares = cmd.number_flag("key-shares")?.unwrap_or(5);
    let threshold = cmd.number_flag("key-threshold")?.unwrap_or(3);
    check_shares(shares, threshold)?;
    let request = ward_api::InitRequest {
        secret_shares: u32::try_from(shares).unwrap_or(u32::MAX),
        secret_threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
        ..ward_api::InitRequest::default()
    };
    let body = serde_json::to_value(&request).map_err(|e| CliError::local(e.to_string()))?;
    let response = client
        .request("PUT", "sys/init", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if !cmd.format.is_table() {
        cmd.format.print(&response);
        return Ok(0);
    }
    let init: ward_api::InitResponse = serde_json::from_value(response)
        .map_err(|e| CliError::local(format!("unexpected init response: {e}")))?;
    for (i, key) in init.keys_base64.iter().enumerate() {
        println!("Unseal Key {}: {key}", i + 1);
    }
    println!("\nInitial Root Token: {}\n", init.root_token);
    println!(
        "Ward initialized with {shares} key shares and a key threshold of {threshold}.\n\n\
         {SHARE_REMINDER} When Ward is sealed, restarted or stopped,\n\
         {threshold} of these {shares} shares must be entered (ward operator unseal) before it serves\n\
         requests again. Ward does not keep the root key: without {threshold} shares it stays\n\
         sealed for good.\n\n\
         Use the root token only to set Ward up (auth methods, policies, secrets engines),\n\
         then revoke it: ward token revoke -self\n\
         When a root token is needed again, a quorum of share holders can generate one:\n\
         ward operator generate-root -init"
    );
    Ok(0)
}

fn check_shares(shares: u64, threshold: u64) -> Result<(), CliError> {
    if shares == 0 || threshold == 0 || threshold > shares || shares > 255 {
        return Err(CliError::usage(format!(
            "invalid shares and threshold ({shares} shares, threshold {threshold}): the threshold must be between 1 and the number of shares, and there can be at most 255 shares"
        )));
    }
    if threshold == 1 && shares > 1 {
        eprintln!(
            "WARNING! A threshold of 1 lets any one of the {shares} holders unseal, rekey or generate a root token alone."
        );
    }
    Ok(())
}

/// A key share from the argument, or prompted without echo (`-` or none).
fn share_argument(cmd: &Cmd, usage: &str, prompt: &str) -> Result<String, CliError> {
    match cmd.positional() {
        [] => read_secret(prompt),
        [key] if key == "-" => read_secret(prompt),
        [key] => Ok(key.clone()),
        _ => Err(CliError::usage(format!(
            "too many arguments; usage: {usage}"
        ))),
    }
}

async fn unseal(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward operator unseal [-reset] [KEY|-]";
    let cmd = Cmd::parse(argv, &[("reset", Kind::Bool)])?;
    let body = if cmd.args.flag("reset") {
        cmd.expect_args(0, usage)?;
        json!({ "reset": true })
    } else {
        json!({ "key": share_argument(&cmd, usage, "Unseal Key")? })
    };
    let client = cmd.client()?;
    let response = client
        .request("PUT", "sys/unseal", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if !cmd.format.is_table() || cmd.field().is_some() {
        return cmd.show_data(&response, Vec::new());
    }
    let status: ward_api::SealStatusResponse = serde_json::from_value(response)
        .map_err(|e| CliError::local(format!("unexpected unseal response: {e}")))?;
    output::print_table(&seal_rows(&status));
    if status.sealed && status.progress > 0 {
        eprintln!(
            "\n{} of {} shares entered; the next holder runs: ward operator unseal",
            status.progress, status.t
        );
    }
    Ok(0)
}

async fn seal(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    cmd.expect_args(0, "ward operator seal")?;
    cmd.client()?.request("PUT", "sys/seal", None).await?;
    println!(
        "Success! Ward is sealed. Unsealing needs a quorum of key shares: ward operator unseal"
    );
    Ok(0)
}

async fn rotate(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    cmd.expect_args(0, "ward operator rotate")?;
    let client = cmd.client()?;
    client.request("PUT", "sys/rotate", None).await?;
    let status = client
        .request("GET", "sys/key-status", None)
        .await?
        .unwrap_or(Value::Null);
    if !cmd.format.is_table() || cmd.field().is_some() {
        return cmd.show_data(&key_status_data(&status), Vec::new());
    }
    println!("Success! Rotated key\n");
    output::print_table(&key_status_rows(&status));
    Ok(0)
}

async fn key_status(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    cmd.expect_args(0, "ward operator key-status")?;
    let status = cmd
        .client()?
        .request("GET", "sys/key-status", None)
        .await?
        .unwrap_or(Value::Null);
    let data = key_status_data(&status);
    cmd.show_data(&data, key_status_rows(&status))
}

fn key_status_data(status: &Value) -> Value {
    match &status["data"] {
        Value::Object(_) => status["data"].clone(),
        _ => status.clone(),
    }
}

fn key_status_rows(status: &Value) -> Vec<(String, String)> {
    let data = key_status_data(status);
    vec![
        ("Key Term".into(), output::display(&data["term"])),
        (
            "Install Time".into(),
            output::display(&data["install_time"]),
        ),
        (
            "Encryption Count".into(),
            output::display(&data["encryptions"]),
        ),
    ]
}

async fn generate_root(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward operator generate-root -init [-otp=OTP] | [KEY|-] -nonce=NONCE | -decode=ENCODED -otp=OTP | -cancel -nonce=NONCE | -status";
    let cmd = Cmd::parse(
        argv,
        &[
            ("init", Kind::Bool),
            ("otp", Kind::Value),
            ("nonce", Kind::Value),
            ("decode", Kind::Value),
            ("cancel", Kind::Bool),
            ("status", Kind::Bool),
        ],
    )?;
    let modes = ["init", "decode", "cancel", "status"]
        .iter()
        .filter(|m| cmd.args.has(m) && (**m == "decode" || cmd.args.flag(m)))
        .count();
    if modes > 1 {
        return Err(CliError::usage(format!(
            "choose one of -init, -decode, -cancel, -status; usage: {usage}"
        )));
    }
    if let Some(encoded) = cmd.args.value("decode") {
        cmd.expect_args(0, usage)?;
        let otp = cmd.args.value("otp").ok_or_else(|| {
            CliError::usage("-decode needs the -otp printed by ward operator generate-root -init")
        })?;
        let encoded = if encoded == "-" {
            read_secret("Encoded token")?
        } else {
            encoded.to_string()
        };
        let token = ward_core::operator::decode_root_token(&encoded, otp)
            .map_err(|e| CliError::usage(format!("cannot decode the root token: {e}")))?;
        if cmd.format.is_table() {
            println!("{token}");
        } else {
            cmd.format.print(&json!({ "token": token }));
        }
        return Ok(0);
    }
    let client = cmd.client()?;
    if cmd.args.flag("status") {
        cmd.expect_args(0, usage)?;
        let status = client
            .request("GET", "sys/generate-root/attempt", None)
            .await?
            .unwrap_or(Value::Null);
        return print_root_status(&cmd, &status);
    }
    if cmd.args.flag("cancel") {
        cmd.expect_args(0, usage)?;
        let nonce = required_nonce(&cmd, "generate-root")?;
        client
            .request(
                "DELETE",
                &format!(
                    "sys/generate-root/attempt?nonce={}",
                    crate::commands::encode(&nonce)
                ),
                None,
            )
            .await?;
        println!("Success! Root token generation canceled (if it was started)");
        return Ok(0);
    }
    if cmd.args.flag("init") {
        cmd.expect_args(0, usage)?;
        let mut body = json!({});
        if let Some(otp) = cmd.args.value("otp") {
            body["otp"] = json!(otp);
        }
        let status = client
            .request("PUT", "sys/generate-root/attempt", Some(&body))
            .await?
            .unwrap_or(Value::Null);
        let code = print_root_status(&cmd, &status)?;
        if cmd.format.is_table() {
            let otp = status["otp"].as_str().filter(|o| !o.is_empty());
            eprintln!(
                "\nGive the nonce to each key holder; each runs:\n    ward operator generate-root -nonce={} [KEY]\n{}",
                status["nonce"].as_str().unwrap_or_default(),
                if otp.is_some() {
                    "Keep the OTP to yourself: it decodes the new root token, and it is shown only now."
                } else {
                    "Keep your OTP to yourself: it decodes the new root token."
                }
            );
        }
        return Ok(code);
    }
    let nonce = required_nonce(&cmd, "generate-root")?;
    let key = share_argument(&cmd, usage, "Unseal Key (generate-root)")?;
    let body = json!({ "key": key, "nonce": nonce });
    let status = client
        .request("PUT", "sys/generate-root/update", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    let code = print_root_status(&cmd, &status)?;
    if cmd.format.is_table() && status["complete"].as_bool() == Some(true) {
        eprintln!(
            "\nThe quorum is complete. Whoever holds the OTP decodes the new root token with:\n    ward operator generate-root -decode={} -otp=OTP",
            status["encoded_token"].as_str().unwrap_or_default()
        );
    }
    Ok(code)
}

fn required_nonce(cmd: &Cmd, what: &str) -> Result<String, CliError> {
    cmd.args.value("nonce").map(str::to_string).ok_or_else(|| {
        CliError::usage(format!(
            "missing -nonce: the initiator of the attempt gives it out (it is also shown by ward operator {what} -status)"
        ))
    })
}

fn print_root_status(cmd: &Cmd, status: &Value) -> Result<u8, CliError> {
    let mut rows = vec![
        ("Nonce".to_string(), output::display(&status["nonce"])),
        ("Started".into(), output::display(&status["started"])),
        (
            "Progress".into(),
            format!(
                "{}/{}",
                status["progress"].as_u64().unwrap_or(0),
                status["required"].as_u64().unwrap_or(0)
            ),
        ),
        ("Complete".into(), output::display(&status["complete"])),
    ];
    if let Some(otp) = status["otp"].as_str().filter(|o| !o.is_empty()) {
        rows.push(("OTP".into(), otp.to_string()));
    }
    rows.push(("OTP Length".into(), output::display(&status["otp_length"])));
    if let Some(encoded) = status["encoded_token"].as_str().filter(|e| !e.is_empty()) {
        rows.push(("Encoded Token".into(), encoded.to_string()));
    }
    cmd.show_data(status, rows)
}

async fn rekey(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward operator rekey -init -key-shares=N -key-threshold=T [-verify] | [KEY|-] -nonce=NONCE | -verify [KEY|-] -nonce=NONCE | -cancel -nonce=NONCE | -status";
    let cmd = Cmd::parse(
        argv,
        &[
            ("init", Kind::Bool),
            ("key-shares", Kind::Value),
            ("key-threshold", Kind::Value),
            ("verify", Kind::Bool),
            ("nonce", Kind::Value),
            ("cancel", Kind::Bool),
            ("status", Kind::Bool),
        ],
    )?;
    let client = cmd.client()?;
    let verify = cmd.args.flag("verify");
    if cmd.args.flag("status") {
        cmd.expect_args(0, usage)?;
        let path = if verify {
            "sys/rekey/verify"
        } else {
            "sys/rekey/init"
        };
        let status = client
            .request("GET", path, None)
            .await?
            .unwrap_or(Value::Null);
        return print_rekey_status(&cmd, &status);
    }
    if cmd.args.flag("cancel") {
        cmd.expect_args(0, usage)?;
        let nonce = required_nonce(&cmd, "rekey")?;
        let path = if verify {
            "sys/rekey/verify"
        } else {
            "sys/rekey/init"
        };
        client
            .request(
                "DELETE",
                &format!("{path}?nonce={}", crate::commands::encode(&nonce)),
                None,
            )
            .await?;
        println!("Success! Canceled rekeying (if it was started)");
        return Ok(0);
    }
    if cmd.args.flag("init") {
        cmd.expect_args(0, usage)?;
        let shares = cmd.number_flag("key-shares")?.unwrap_or(5);
        let threshold = cmd.number_flag("key-threshold")?.unwrap_or(3);
        check_shares(shares, threshold)?;
        let body = json!({
            "secret_shares": shares,
            "secret_threshold": threshold,
            "require_verification": verify,
        });
        let status = client
            .request("PUT", "sys/rekey/init", Some(&body))
            .await?
            .unwrap_or(Value::Null);
        let code = print_rekey_status(&cmd, &status)?;
        if cmd.format.is_table() {
            eprintln!(
                "\nGive the nonce to each holder of a current key share; each runs:\n    ward operator rekey -nonce={} [KEY]",
                status["nonce"].as_str().unwrap_or_default()
            );
        }
        return Ok(code);
    }
    let nonce = required_nonce(&cmd, "rekey")?;
    let (path, prompt) = if verify {
        ("sys/rekey/verify", "New Unseal Key (verification)")
    } else {
        ("sys/rekey/update", "Unseal Key (rekey)")
    };
    let key = share_argument(&cmd, usage, prompt)?;
    let body = json!({ "key": key, "nonce": nonce });
    let status = client
        .request("PUT", path, Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if !cmd.format.is_table() || cmd.field().is_some() {
        return cmd.show_data(&status, Vec::new());
    }
    if let Some(keys) = status["keys_base64"].as_array().filter(|k| !k.is_empty()) {
        for (i, key) in keys.iter().enumerate() {
            println!("Key {}: {}", i + 1, key.as_str().unwrap_or_default());
        }
        let threshold = status["t"].as_u64().unwrap_or(0);
        println!(
            "\nWard rekeyed with {} key shares and a key threshold of {threshold}.\n\n{SHARE_REMINDER}\nThese new shares are shown only once.",
            keys.len()
        );
        match status["verification_nonce"].as_str().filter(|n| !n.is_empty()) {
            Some(verification_nonce) => println!(
                "\nThe old shares still unseal Ward until {threshold} holders of the NEW shares verify them;\n\
                 each runs:\n    ward operator rekey -verify -nonce={verification_nonce} [NEW_KEY]"
            ),
            None => println!("\nThe old key shares no longer unseal Ward."),
        }
        return Ok(0);
    }
    if verify && status["complete"].as_bool() == Some(true) {
        println!(
            "Success! The new key shares are verified: Ward now unseals with them, and the old ones no longer work."
        );
        return Ok(0);
    }
    print_rekey_status(&cmd, &status)
}

fn print_rekey_status(cmd: &Cmd, status: &Value) -> Result<u8, CliError> {
    let mut rows = vec![
        ("Nonce".to_string(), output::display(&status["nonce"])),
        ("Started".into(), output::display(&status["started"])),
        (
            "Rekey Progress".into(),
            format!(
                "{}/{}",
                status["progress"].as_u64().unwrap_or(0),
                status["required"].as_u64().unwrap_or(0)
            ),
        ),
        ("New Shares".into(), output::display(&status["n"])),
        ("New Threshold".into(), output::display(&status["t"])),
        (
            "Verification Required".into(),
            output::display(&status["verification_required"]),
        ),
    ];
    if let Some(nonce) = status["verification_nonce"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        rows.push(("Verification Nonce".into(), nonce.to_string()));
        rows.push((
            "Verification Progress".into(),
            format!(
                "{}/{}",
                status["verification_progress"].as_u64().unwrap_or(0),
                status["t"].as_u64().unwrap_or(0)
            ),
        ));
    }
    cmd.show_data(status, rows)
}
