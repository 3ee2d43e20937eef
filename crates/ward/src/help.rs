//! Help texts for every verb and subcommand (`ward VERB -help`, `ward help VERB`), and the
//! shell completion scripts generated from the same table (`ward completion bash|zsh|fish`),
//! so a new verb gets both by adding one entry.

/// One command's help: `path` is the words after `ward` (`"kv metadata get"`).
pub(crate) struct Help {
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    usage: &'static str,
    description: &'static str,
    example: &'static str,
}

const fn help(
    path: &'static str,
    summary: &'static str,
    usage: &'static str,
    description: &'static str,
    example: &'static str,
) -> Help {
    Help {
        path,
        summary,
        usage,
        description,
        example,
    }
}

/// Every command, top-level verbs first in the order `ward -help` lists them.
pub(crate) const COMMANDS: &[Help] = &[
    help("server", "Start a Ward server", "ward server -dev | -config=FILE",
        "Runs the server. -dev runs in memory, unsealed, with KV v2 at secret/ and the root\n  token printed and stored for the CLI (-dev-root-token-id=ID, -dev-listen-address=ADDR).\n  -config=FILE reads Vault's HCL server configuration; such a server starts sealed and\n  uninitialised: see ward operator init.",
        "ward server -config=/etc/ward/ward.hcl"),
    help("status", "Print seal and HA status", "ward status [flags]",
        "Prints whether Ward is initialised and sealed. Exit code 0 when unsealed, 2 when\n  sealed, 1 when the server cannot be reached.",
        "ward status -format=json"),
    help("login", "Authenticate and store the token", "ward login [-method=M] [-path=P] [-no-store] [TOKEN | k=v ...]",
        "Logs in and writes the token to ~/.ward-token (mode 0600) for later commands, unless\n  -no-store. Methods: token (default; TOKEN, or prompted without echo), userpass\n  (username=NAME, password prompted), approle (role_id= secret_id=), jwt (role= jwt=@file),\n  kubernetes (role=, the service-account token by default), oidc (role=; opens the\n  provider's URL and waits on localhost:8250; port=N to change it, port=0 for any free\n  port). -path=P when the method is mounted elsewhere. -token-only prints only the token.",
        "ward login -method=userpass username=alice"),
    help("read", "Read data and retrieve secrets", "ward read [flags] PATH [k=v ...]",
        "Reads any API path. k=v pairs are sent as query parameters. Prints a table, or the\n  response with -format=json|yaml, or one value with -field=NAME.",
        "ward read -field=password database/creds/readonly"),
    help("write", "Write data, configuration, and secrets", "ward write [flags] PATH [k=v ... | -]",
        "Writes to any API path. Values: k=v, k=@file (the file's contents), k=- (stdin); a\n  lone - reads a JSON object from stdin. A key given twice becomes a list. -force writes\n  with no data.",
        "ward write auth/userpass/users/alice password=@pw.txt token_policies=dev"),
    help("list", "List data or secrets", "ward list [flags] PATH",
        "Lists the keys under a path (folders end in /).",
        "ward list secret/metadata/agents"),
    help("delete", "Delete secrets and configuration", "ward delete [flags] PATH",
        "Deletes the data at a path.",
        "ward delete sys/policies/acl/old-agent"),
    help("patch", "Patch data at a path (JSON merge patch)", "ward patch [flags] PATH [k=v ... | -]",
        "Sends a PATCH with a JSON merge patch: only the given keys change.",
        "ward patch secret/data/app data=-"),
    help("kv", "Interact with the key/value secrets engine", "ward kv SUBCOMMAND [flags] PATH ...",
        "Reads and writes KV secrets on version 1 and 2 mounts alike: the mount's version is\n  detected, and on version 2 data/ or metadata/ is inserted after the mount. -mount=NAME\n  names the mount, the path then being relative to it.",
        "ward kv put secret/agents/openai api_key=sk-test-123"),
    help("kv get", "Read a secret", "ward kv get [-mount=M] [-version=N] [-field=K] PATH",
        "Prints a secret's data (and metadata on KV v2). -version reads an older version.",
        "ward kv get -field=api_key secret/agents/openai"),
    help("kv put", "Write a secret (a new version on KV v2)", "ward kv put [-mount=M] [-cas=N] PATH k=v... | -",
        "Replaces the secret's data. -cas=N writes only if the current version is N (0: only if\n  it does not exist yet).",
        "ward kv put -cas=0 secret/app user=alice password=@pw.txt"),
    help("kv patch", "Change some keys of a secret", "ward kv patch [-mount=M] [-cas=N] [-method=patch|rw] PATH k=v...",
        "Changes the given keys and keeps the others. -method=rw reads and writes with\n  check-and-set instead of sending a PATCH.",
        "ward kv patch secret/app password=n3w"),
    help("kv list", "List secrets", "ward kv list [-mount=M] PATH",
        "Lists the secrets and folders under a path.",
        "ward kv list secret/agents"),
    help("kv delete", "Delete a secret (soft delete on KV v2)", "ward kv delete [-mount=M] [-versions=1,2] PATH",
        "Deletes the latest version, or the given versions; on KV v2 they can be undeleted.",
        "ward kv delete -versions=2 secret/app"),
    help("kv undelete", "Restore deleted versions (KV v2)", "ward kv undelete [-mount=M] -versions=1,2 PATH",
        "Restores soft-deleted versions.",
        "ward kv undelete -versions=2 secret/app"),
    help("kv destroy", "Destroy versions for good (KV v2)", "ward kv destroy [-mount=M] -versions=1,2 PATH",
        "Removes the data of the given versions permanently.",
        "ward kv destroy -versions=1 secret/app"),
    help("kv metadata", "Read and change a secret's metadata (KV v2)", "ward kv metadata get|put|patch|delete [flags] PATH",
        "Manages a secret's metadata: versions, max versions, check-and-set, custom metadata.",
        "ward kv metadata get secret/app"),
    help("kv metadata get", "Read a secret's metadata and versions", "ward kv metadata get [-mount=M] PATH",
        "Prints the metadata and every version's state.",
        "ward kv metadata get secret/app"),
    help("kv metadata put", "Set a secret's metadata", "ward kv metadata put [-max-versions=N] [-cas-required] [-delete-version-after=D] [-custom-metadata=k=v] PATH",
        "Sets the metadata; -custom-metadata may be repeated.",
        "ward kv metadata put -max-versions=5 -custom-metadata=owner=ops secret/app"),
    help("kv metadata patch", "Change some metadata fields", "ward kv metadata patch [flags] PATH",
        "As put, but changes only the given fields.",
        "ward kv metadata patch -custom-metadata=owner=sre secret/app"),
    help("kv metadata delete", "Delete a secret and all its versions", "ward kv metadata delete [-mount=M] PATH",
        "Removes the metadata and every version.",
        "ward kv metadata delete secret/app"),
    help("kv rollback", "Restore an older version as the newest (KV v2)", "ward kv rollback [-mount=M] -version=N PATH",
        "Writes version N's data as a new version (with check-and-set on the current one).",
        "ward kv rollback -version=2 secret/app"),
    help("token", "Create, inspect, renew and revoke tokens", "ward token SUBCOMMAND [flags] ...",
        "Works with tokens (auth/token/*).",
        "ward token create -policy=openai-agent -ttl=15m"),
    help("token create", "Create a token", "ward token create [flags]",
        "Flags: -policy=P (repeatable), -ttl, -explicit-max-ttl, -period, -orphan,\n  -no-default-policy, -use-limit=N, -type=service|batch, -role=R, -display-name,\n  -metadata=k=v (repeatable), -renewable=false, -wrap-ttl=D (answer with a wrapping token).\n  -field=token prints only the token.",
        "ward token create -policy=openai-agent -ttl=15m -field=token"),
    help("token lookup", "Show a token's properties", "ward token lookup [-accessor] [TOKEN|ACCESSOR]",
        "Looks up the token in use, another token, or a token by its accessor.",
        "ward token lookup -accessor hmXz8cE2p0mA"),
    help("token renew", "Renew a token", "ward token renew [-increment=D] [-accessor] [TOKEN|ACCESSOR]",
        "Extends a token's lease (the token in use without an argument).",
        "ward token renew -increment=1h"),
    help("token revoke", "Revoke a token and its children", "ward token revoke [-self | -accessor ACCESSOR | -mode=orphan|path TOKEN | TOKEN]",
        "Revokes a token, its child tokens and their leases. -self revokes the token in use\n  (do this with the root token once Ward is set up). -mode=orphan keeps the children as\n  orphans; -mode=path revokes every token created under a path prefix.",
        "ward token revoke -self"),
    help("token capabilities", "Show what a token may do on a path", "ward token capabilities [-accessor] [TOKEN|ACCESSOR] PATH",
        "Prints the capabilities the token in use (or the given one) has on PATH.",
        "ward token capabilities secret/data/agents/openai"),
    help("lease", "Look up, renew and revoke leases", "ward lease SUBCOMMAND [flags] LEASE_ID",
        "Works with the leases of dynamic secrets (sys/leases/*).",
        "ward lease revoke -prefix database/creds/readonly"),
    help("lease lookup", "Show a lease", "ward lease lookup LEASE_ID",
        "Prints the lease's issue and expiry times and TTL.",
        "ward lease lookup database/creds/readonly/2f6a614c"),
    help("lease renew", "Renew a lease", "ward lease renew [-increment=D] LEASE_ID",
        "Asks for the lease to be extended by the increment (the server may grant less).",
        "ward lease renew -increment=1h database/creds/readonly/2f6a614c"),
    help("lease revoke", "Revoke a lease, or every lease under a prefix", "ward lease revoke [-prefix] [-force] [-sync] LEASE_ID|PREFIX",
        "Revokes one lease, or with -prefix all leases under a path (a progress line shows on\n  a terminal). -force (with -prefix) drops the leases even when the backend cannot\n  revoke them: the credentials may still work. -sync=false lets the server revoke later.",
        "ward lease revoke -prefix database/creds/"),
    help("policy", "Manage ACL policies", "ward policy SUBCOMMAND ...",
        "Lists, reads, writes, deletes and formats policies (sys/policies/acl).",
        "ward policy write openai-agent openai-agent.hcl"),
    help("policy list", "List policies", "ward policy list", "Prints the policy names.", "ward policy list"),
    help("policy read", "Print a policy", "ward policy read NAME", "Prints the policy's text.", "ward policy read default"),
    help("policy write", "Create or replace a policy", "ward policy write NAME FILE|-",
        "Uploads the policy in FILE (HCL or JSON), or read from stdin with -.",
        "ward policy write openai-agent openai-agent.hcl"),
    help("policy delete", "Delete a policy", "ward policy delete NAME",
        "Deletes the policy; tokens that carry its name lose what it granted.",
        "ward policy delete old-agent"),
    help("policy fmt", "Format a policy file canonically", "ward policy fmt [-check] FILE|-",
        "Rewrites the HCL file in the canonical layout (two-space indent, aligned =, short\n  lists on one line), keeping its comments. -check changes nothing and exits 1 when the\n  file is not formatted. - formats stdin to stdout.",
        "ward policy fmt -check policies/*.hcl"),
    help("secrets", "Manage secrets engines", "ward secrets SUBCOMMAND [flags] ...",
        "Enables, disables, lists, tunes and moves secrets engines (sys/mounts).",
        "ward secrets enable -path=kv -version=2 kv"),
    help("secrets enable", "Enable a secrets engine", "ward secrets enable [flags] TYPE",
        "Flags: -path=P (default: TYPE), -description, -default-lease-ttl, -max-lease-ttl,\n  -options=k=v (repeatable), -version=2 (KV v2), -local, -seal-wrap.",
        "ward secrets enable -path=agents -version=2 kv"),
    help("secrets disable", "Disable a secrets engine", "ward secrets disable PATH",
        "Disables the engine and revokes its leases; its data is deleted.",
        "ward secrets disable agents/"),
    help("secrets list", "List secrets engines", "ward secrets list [-detailed]",
        "Prints the mounted engines.",
        "ward secrets list -detailed"),
    help("secrets tune", "Tune a secrets engine", "ward secrets tune [flags] PATH",
        "Changes -default-lease-ttl, -max-lease-ttl, -description, -options or -version.",
        "ward secrets tune -max-lease-ttl=24h database/"),
    help("secrets move", "Move a secrets engine to another path", "ward secrets move SOURCE DESTINATION",
        "Moves the engine and its data; leases move with it.",
        "ward secrets move secret/ kv-old/"),
    help("auth", "Manage auth methods", "ward auth SUBCOMMAND [flags] ...",
        "Enables, disables, lists and tunes auth methods (sys/auth). Log in with ward login.",
        "ward auth enable userpass"),
    help("auth enable", "Enable an auth method", "ward auth enable [flags] TYPE",
        "Flags: -path=P (default: TYPE), -description, -default-lease-ttl, -max-lease-ttl,\n  -options=k=v, -token-type, -listing-visibility, -local.",
        "ward auth enable -path=agents approle"),
    help("auth disable", "Disable an auth method", "ward auth disable PATH",
        "Disables the method and revokes every token it issued.",
        "ward auth disable userpass/"),
    help("auth list", "List auth methods", "ward auth list [-detailed]", "Prints the enabled methods.", "ward auth list"),
    help("auth tune", "Tune an auth method", "ward auth tune [flags] PATH",
        "Changes -default-lease-ttl, -max-lease-ttl, -description, -token-type, ...",
        "ward auth tune -default-lease-ttl=1h approle/"),
    help("audit", "Manage audit devices", "ward audit SUBCOMMAND ...",
        "Enables, disables and lists audit devices (sys/audit), and verifies audit files.",
        "ward audit enable file file_path=/var/log/ward_audit.log"),
    help("audit enable", "Enable an audit device", "ward audit enable [-path=P] [-description=D] TYPE [option=value ...]",
        "Enables a device; the options are the device's (file: file_path, mode, log_raw, ...).",
        "ward audit enable file file_path=/var/log/ward_audit.log"),
    help("audit disable", "Disable an audit device", "ward audit disable PATH",
        "Disables the device. Its hashing salt is lost.",
        "ward audit disable file/"),
    help("audit list", "List audit devices", "ward audit list [-detailed]", "Prints the enabled devices.", "ward audit list -detailed"),
    help("audit verify", "Check the hash chain and signed checkpoints of audit files", "ward audit verify [-public-key=KEY] [-device=PATH] FILE...",
        "Checks that no line was altered, removed, inserted or moved; give rotated files\n  first, oldest to newest. With -public-key (base64 or hex; @FILE reads it from a file)\n  every signed checkpoint is checked too; -device=PATH takes the key and the last\n  checkpoint from the server (sys/audit-checkpoint/PATH), which also shows a log cut\n  after its last checkpoint. Needs no server otherwise. Exit 0 intact, 2 broken.",
        "ward audit verify -device=file /var/log/ward_audit.log.1 /var/log/ward_audit.log"),
    help("access", "Just-in-time access requests", "ward access SUBCOMMAND ...",
        "Asks for a named elevation (sys/access/roles) for a reason and an event; the\n  gatekeeper and approvers decide; the requester fetches the short-lived token once.",
        "ward access request -reason='nightly report' -event-type=nightly-billing-report -event-id=run-42 billing"),
    help("access request", "Ask for an elevation", "ward access request -reason=TEXT [-event-type=T -event-id=ID] [-ttl=D] ROLE",
        "Creates an access request for ROLE; prints its id and state.",
        "ward access request -reason='incident 7' -ttl=30m payments-admin"),
    help("access list", "List access requests", "ward access list",
        "Your requests, or the ones you can approve.",
        "ward access list"),
    help("access get", "Show an access request", "ward access get ID",
        "Shows the state and history; once approved, the requester's first get returns the token.",
        "ward access get 2b1c..."),
    help("access approve", "Approve an access request", "ward access approve [-reason=TEXT] ID",
        "Records your approval (you must be in one of the role's approver groups).",
        "ward access approve 2b1c..."),
    help("access deny", "Deny an access request", "ward access deny [-reason=TEXT] ID",
        "Denies the request.", "ward access deny -reason='not on call' 2b1c..."),
    help("access revoke", "Revoke an access grant", "ward access revoke [-reason=TEXT] ID",
        "Ends an active grant and revokes its token.", "ward access revoke 2b1c..."),
    help("operator", "Operator tasks: init, unseal, seal, root token, rekey", "ward operator SUBCOMMAND [flags]",
        "The workflows of the key share holders.",
        "ward operator init -key-shares=5 -key-threshold=3"),
    help("operator init", "Initialise a new server", "ward operator init [-key-shares=5] [-key-threshold=3] [-status]",
        "Creates the root key, splits the unseal key into shares and prints them with the\n  initial root token. Hand each share to a different person. Use the root token to set\n  Ward up, then revoke it (ward token revoke -self). -status: exit 0 when initialised, 2\n  when not.",
        "ward operator init -key-shares=5 -key-threshold=3"),
    help("operator unseal", "Enter one key share", "ward operator unseal [-reset] [KEY|-]",
        "Enters one share (prompted without echo on a terminal, or read from stdin with -).\n  Ward unseals once the threshold is reached. -reset forgets the shares entered so far.",
        "ward operator unseal"),
    help("operator seal", "Seal the server", "ward operator seal",
        "Seals Ward at once: it serves nothing until a quorum unseals it. Needs sudo.",
        "ward operator seal"),
    help("operator rotate", "Rotate the encryption key", "ward operator rotate",
        "Adds a new barrier encryption key for new writes; older keys still decrypt.",
        "ward operator rotate"),
    help("operator key-status", "Show the encryption key's term", "ward operator key-status",
        "Prints the current key term and when it was installed.",
        "ward operator key-status"),
    help("operator generate-root", "Generate a new root token with a quorum of shares", "ward operator generate-root -init | [KEY|-] -nonce=N | -decode=ENC -otp=OTP | -cancel -nonce=N | -status",
        "-init starts an attempt and prints its nonce and a one-time pad (OTP; or give -otp).\n  Each share holder then submits a share with -nonce (prompted without echo). When the\n  quorum is complete the encoded token is printed; the initiator decodes it with -decode\n  and -otp. -cancel needs the nonce.",
        "ward operator generate-root -nonce=2dbd10f1-... "),
    help("operator rekey", "Change the key shares and threshold", "ward operator rekey -init -key-shares=N -key-threshold=T [-verify] | [KEY|-] -nonce=N | -verify [KEY|-] -nonce=N | -cancel -nonce=N | -status",
        "-init starts a rekey (with -verify, the new shares must be proven before they replace\n  the old). Holders of the current shares submit them with -nonce; the new shares are\n  printed once. With verification, holders of the new shares submit them with -verify\n  and the verification nonce.",
        "ward operator rekey -init -key-shares=7 -key-threshold=4 -verify"),
    help("unwrap", "Unwrap a wrapped response", "ward unwrap [flags] [TOKEN]",
        "Returns the response wrapped in TOKEN (or in the token in use). Works once.",
        "ward unwrap wrs.CAESIJ..."),
    help("print", "Print local CLI state", "ward print token", "Prints the token the CLI would use.", "ward print token"),
    help("print token", "Print the token in use", "ward print token",
        "Prints WARD_TOKEN, VAULT_TOKEN, or the stored token, whichever the CLI would send.",
        "ward print token"),
    help("path-help", "Show the server's help for a path", "ward path-help PATH",
        "Prints the server's help text for an API path, when it offers one.",
        "ward path-help secret/"),
    help("version", "Print the Ward version", "ward version", "Prints the version and the Vault API version Ward follows.", "ward version"),
    help("completion", "Print a shell completion script", "ward completion bash|zsh|fish",
        "Prints a script that completes verbs and subcommands.",
        "source <(ward completion bash)"),
    help("completion bash", "Bash completion", "ward completion bash", "Prints the bash script.", "ward completion bash > /etc/bash_completion.d/ward"),
    help("completion zsh", "Zsh completion", "ward completion zsh", "Prints the zsh script.", "ward completion zsh > \"${fpath[1]}/_ward\""),
    help("completion fish", "Fish completion", "ward completion fish", "Prints the fish script.", "ward completion fish > ~/.config/fish/completions/ward.fish"),
    help("agent", "Run the Ward agent beside a workload", "ward agent -config=FILE",
        "Logs in with the workload's identity, renders secrets to files, keeps leases renewed\n  and proxies the API. See ward agent -help.",
        "ward agent -config=/etc/ward/agent.hcl"),
];

/// The common flags, shown under every client verb's help.
const COMMON_FLAGS: &str = "HTTP options:
  -address=ADDR         Ward's address (WARD_ADDR, VAULT_ADDR; default http://127.0.0.1:8200)
  -ca-cert=FILE         CA certificate(s) to verify the server (WARD_CACERT, VAULT_CACERT)
  -tls-skip-verify      DANGEROUS: do not verify the server's certificate (anyone on the path
                        can read and change the traffic, tokens included)
  -wrap-ttl=D           Answer with a wrapping token valid for D instead of the response

Output options:
  -format=table|json|yaml   Output format (WARD_FORMAT)
  -field=NAME               Print only this field, bare

The token comes from WARD_TOKEN, VAULT_TOKEN, or ~/.ward-token (written by ward login).";

/// The text of `ward -help`.
pub(crate) fn usage() -> String {
    let mut text = String::from("Usage: ward <command> [args]\n\nCommands:\n");
    for command in COMMANDS.iter().filter(|c| !c.path.contains(' ')) {
        text.push_str(&format!("    {:<12}{}\n", command.path, command.summary));
    }
    text.push_str(
        "\nRun ward <command> -help for a command's usage, flags and an example.\n\
         Exit codes: 0 success, 1 local error (a file, an unreachable server), 2 usage or server error.",
    );
    text
}

/// The help for the deepest command named by `words` (`["kv", "put", "secret/x"]` → `kv put`).
pub(crate) fn for_words(words: &[String]) -> Option<String> {
    let mut found = None;
    for n in 1..=words.len().min(3) {
        let path = words[..n].join(" ");
        if let Some(command) = COMMANDS.iter().find(|c| c.path == path) {
            found = Some(command);
        } else {
            break;
        }
    }
    found.map(render)
}

fn render(command: &Help) -> String {
    let mut text = format!(
        "Usage: {}\n\n  {}\n\n  {}\n\nExample:\n  $ {}\n",
        command.usage, command.summary, command.description, command.example
    );
    let depth = command.path.split(' ').count();
    let children: Vec<&Help> = COMMANDS
        .iter()
        .filter(|c| {
            c.path.starts_with(command.path)
                && c.path[command.path.len()..].starts_with(' ')
                && c.path.split(' ').count() == depth + 1
        })
        .collect();
    if !children.is_empty() {
        text.push_str("\nSubcommands:\n");
        for child in children {
            let name = child.path.rsplit(' ').next().unwrap_or_default();
            text.push_str(&format!("    {name:<14}{}\n", child.summary));
        }
    }
    let local = [
        "server",
        "version",
        "completion",
        "agent",
        "print",
        "policy fmt",
        "audit verify",
    ];
    if !local.iter().any(|l| command.path.starts_with(l)) {
        text.push('\n');
        text.push_str(COMMON_FLAGS);
        text.push('\n');
    }
    text
}

/// The subcommand names under `path` (`""` for the top-level verbs).
fn children(path: &str) -> Vec<&'static Help> {
    let depth = if path.is_empty() {
        0
    } else {
        path.split(' ').count()
    };
    COMMANDS
        .iter()
        .filter(|c| {
            c.path.split(' ').count() == depth + 1
                && (path.is_empty() || c.path.starts_with(&format!("{path} ")))
        })
        .collect()
}

fn last_word(command: &Help) -> &'static str {
    command.path.rsplit(' ').next().unwrap_or_default()
}

/// Paths that have subcommands, deepest last.
fn parents() -> Vec<&'static str> {
    COMMANDS
        .iter()
        .map(|c| c.path)
        .filter(|p| !children(p).is_empty())
        .collect()
}

/// `ward completion bash|zsh|fish`
pub(crate) fn completion(shell: &str) -> Option<String> {
    match shell {
        "bash" => Some(bash()),
        "zsh" => Some(zsh()),
        "fish" => Some(fish()),
        _ => None,
    }
}

fn names(path: &str) -> String {
    children(path)
        .iter()
        .map(|c| last_word(c))
        .collect::<Vec<_>>()
        .join(" ")
}

fn bash() -> String {
    let mut cases = String::new();
    for parent in parents() {
        cases.push_str(&format!(
            "        \"{parent}\") words=\"{}\" ;;\n",
            names(parent)
        ));
    }
    format!(
        r#"# bash completion for ward: source <(ward completion bash)
_ward() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}"
    local path="" words="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) continue ;; esac
        path="${{path:+$path }}${{COMP_WORDS[i]}}"
    done
    case "$path" in
        "") words="{top} help" ;;
{cases}        *) words="" ;;
    esac
    if [[ "$cur" == -* ]]; then
        words="-address= -ca-cert= -tls-skip-verify -format= -field= -wrap-ttl= -help"
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _ward ward
"#,
        top = names("")
    )
}

fn zsh() -> String {
    let describe = |path: &str| -> String {
        children(path)
            .iter()
            .map(|c| format!("'{}:{}'", last_word(c), c.summary.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut cases = String::new();
    for parent in parents() {
        cases.push_str(&format!(
            "        \"{parent}\") choices=({}) ;;\n",
            describe(parent)
        ));
    }
    format!(
        r#"#compdef ward
# zsh completion for ward: ward completion zsh > "${{fpath[1]}}/_ward"
_ward() {{
    local -a choices
    local path="" word
    for word in "${{words[@]:1:$((CURRENT - 2))}}"; do
        [[ "$word" == -* ]] && continue
        path="${{path:+$path }}$word"
    done
    case "$path" in
        "") choices=({top}) ;;
{cases}        *) _files; return ;;
    esac
    _describe 'ward command' choices
}}
compdef _ward ward
"#,
        top = describe("")
    )
}

fn fish() -> String {
    let mut text = String::from(
        "# fish completion for ward: ward completion fish > ~/.config/fish/completions/ward.fish\ncomplete -c ward -f\n",
    );
    for command in COMMANDS {
        let words: Vec<&str> = command.path.split(' ').collect();
        let (parents, name) = words.split_at(words.len() - 1);
        let condition = if parents.is_empty() {
            "__fish_use_subcommand".to_string()
        } else {
            let siblings = names(&parents.join(" "));
            let mut parts: Vec<String> = parents
                .iter()
                .map(|p| format!("__fish_seen_subcommand_from {p}"))
                .collect();
            parts.push(format!("not __fish_seen_subcommand_from {siblings}"));
            parts.join("; and ")
        };
        text.push_str(&format!(
            "complete -c ward -n '{condition}' -a '{}' -d '{}'\n",
            name[0],
            command.summary.replace('\'', "")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_usage_and_example() {
        for command in COMMANDS {
            assert!(command.usage.starts_with("ward "), "{}", command.path);
            assert!(
                command.example.starts_with("ward ") || command.example.starts_with("source"),
                "{}",
                command.path
            );
            assert!(!command.description.is_empty(), "{}", command.path);
        }
    }

    #[test]
    fn deepest_help_wins() {
        let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let text = for_words(&words("kv metadata get secret/x")).expect("help");
        assert!(text.starts_with("Usage: ward kv metadata get"), "{text}");
        let text = for_words(&words("kv")).expect("help");
        assert!(text.contains("rollback"), "{text}");
        assert!(for_words(&words("nope")).is_none());
    }

    #[test]
    fn completion_scripts_name_the_verbs() {
        for shell in ["bash", "zsh", "fish"] {
            let script = completion(shell).expect("script");
            for verb in ["kv", "operator", "generate-root", "metadata", "rollback"] {
                assert!(script.contains(verb), "{shell}: {verb}");
            }
        }
    }
}
