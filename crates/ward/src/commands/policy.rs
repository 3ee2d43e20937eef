//! `ward policy list|read|write|delete` over `sys/policies/acl`; the policy-as-code verbs
//! (`fmt`, `validate`, `test`, `explain`, `plan`, `apply`) live in `policy_tools`.

use serde_json::{json, Value};

use crate::client::CliError;
use crate::commands::{print_keys, Cmd};

/// `ward policy SUBCOMMAND ...`
pub(crate) async fn run(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(
            "missing subcommand; usage: ward policy list|read|write|delete|fmt",
        ));
    };
    if crate::policy_tools::VERBS.contains(&verb.as_str()) {
        let code = crate::policy_tools::run(verb, rest).await;
        return Ok(u8::try_from(code).unwrap_or(1));
    }
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
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; see: ward policy -help"
        ))),
    }
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
