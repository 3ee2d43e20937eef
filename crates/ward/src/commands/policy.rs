//! `ward policy list|read|write|delete|fmt` over `sys/policies/acl`.

use serde_json::{json, Value};

use crate::args::Kind;
use crate::client::CliError;
use crate::commands::{print_keys, Cmd};

/// `ward policy SUBCOMMAND ...`
pub(crate) async fn run(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(
            "missing subcommand; usage: ward policy list|read|write|delete|fmt",
        ));
    };
    match verb.as_str() {
        "list" => {
            let cmd = Cmd::parse(rest, &[])?;
            cmd.expect_args(0, "ward policy list")?;
            let body = cmd
                .client()?
                .request("LIST", "sys/policies/acl", None)
                .await?
                .unwrap_or(Value::Null);
            if cmd.format.is_table() && cmd.field().is_none() {
                for key in body["data"]["keys"].as_array().into_iter().flatten() {
                    println!("{}", key.as_str().unwrap_or_default());
                }
                return Ok(0);
            }
            print_keys(&cmd, &body)
        }
        "read" => {
            let cmd = Cmd::parse(rest, &[])?;
            let name = cmd.expect_args(1, "ward policy read NAME")?[0].clone();
            let path = format!("sys/policies/acl/{name}");
            let body = match cmd.client()?.request("GET", &path, None).await {
                Err(e) if e.status() == Some(404) => {
                    return Err(CliError::usage(format!(
                        "no policy named {name:?}; see the policies with: ward policy list"
                    )))
                }
                result => result?.unwrap_or(Value::Null),
            };
            if cmd.format.is_table() && cmd.field().is_none() {
                println!(
                    "{}",
                    body["data"]["policy"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_end()
                );
                return Ok(0);
            }
            cmd.show(&body)
        }
        "write" => {
            let cmd = Cmd::parse(rest, &[])?;
            let args = cmd.expect_args(2, "ward policy write NAME FILE|-")?;
            let (name, source) = (args[0].clone(), args[1].clone());
            let text = read_source(&source)?;
            let body = json!({ "policy": text });
            cmd.client()?
                .request("PUT", &format!("sys/policies/acl/{name}"), Some(&body))
                .await?;
            println!("Success! Uploaded policy: {name}");
            Ok(0)
        }
        "delete" => {
            let cmd = Cmd::parse(rest, &[])?;
            let name = cmd.expect_args(1, "ward policy delete NAME")?[0].clone();
            cmd.client()?
                .request("DELETE", &format!("sys/policies/acl/{name}"), None)
                .await?;
            println!("Success! Deleted policy: {name}");
            Ok(0)
        }
        "fmt" => fmt(rest),
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; see: ward policy -help"
        ))),
    }
}

/// `ward policy fmt [-check] FILE`: rewrites the file in the canonical layout; `-check`
/// changes nothing and exits 1 when the file would change. `-` formats stdin to stdout.
fn fmt(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[("check", Kind::Bool)])?;
    let file = cmd.expect_args(1, "ward policy fmt [-check] FILE|-")?[0].clone();
    let text = read_source(&file)?;
    if text.trim_start().starts_with('{') {
        return Err(CliError::usage(format!(
            "{file} is a JSON policy; ward policy fmt formats HCL policies"
        )));
    }
    let formatted = crate::hcl_fmt::format(&text)
        .map_err(|e| CliError::usage(format!("{file} is not valid HCL: {e}")))?;
    // Formatting must not change what the policy means: check it still parses as a policy.
    ward_policy::policy::parse("fmt", &formatted)
        .map_err(|e| CliError::usage(format!("{file} is not a valid policy: {e}")))?;
    if cmd.args.flag("check") {
        if formatted == text {
            return Ok(0);
        }
        eprintln!("{file} is not formatted; run: ward policy fmt {file}");
        return Ok(1);
    }
    if file == "-" {
        print!("{formatted}");
    } else if formatted != text {
        std::fs::write(&file, &formatted)
            .map_err(|e| CliError::local(format!("cannot write {file}: {e}")))?;
        println!("Success! Formatted policy: {file}");
    } else {
        println!("Success! {file} is already formatted");
    }
    Ok(0)
}

fn read_source(source: &str) -> Result<String, CliError> {
    if source == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| CliError::local(format!("cannot read stdin: {e}")))?;
        Ok(text)
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| CliError::local(format!("cannot read {source}: {e}")))
    }
}
