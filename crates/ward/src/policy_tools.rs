//! `ward policy fmt | validate | test | explain | plan | apply`: policies as code.
//!
//! This module is the command-line face of `ward_policy`'s repository tools:
//! it walks directories, reads files (through [`ward_policy::lint::decode_source`],
//! so huge and non-UTF-8 files fail the same way everywhere), prints results
//! and chooses exit codes. Formatting, linting, the test runner and the
//! repository layout live in `ward_policy` (`format`, `lint`, `testing`,
//! `repository`); `plan` and `apply` are here because only the CLI talks HTTP.
//!
//! Exit codes: 0 success; 1 an error (bad input, failed tests, `fmt -check`
//! with files to format, validation errors, an unreachable or sealed server,
//! a token without permission); 2 from `plan` when the server differs from
//! the directory (drift) and from `apply` when it stopped part-way.
//!
//! `plan` and `apply` compare the directory with the server: policies by
//! their text, objects (groups, token roles, auth roles, quotas) by the fields
//! the file names (fields the file leaves out, or the server does not return,
//! are not compared). Removals are proposed for policies always (never for
//! `root` and `default`) and for an object kind only when the directory
//! declares at least one object of that kind (auth roles: per mount), so a
//! directory of policies alone never proposes deleting groups. `apply` writes
//! in a stable order (policies, then groups, token roles, auth roles, quotas;
//! removals last and in reverse, only with `-prune`), sends the change reason
//! as the `X-Ward-Change-Reason` header on every write and as `change_reason`
//! in policy bodies, and stops at the first failure, saying what went through.
//!
//! Flags are parsed by `args.rs` like every other command's. The HTTP client here is a small
//! one of its own (same environment as `client.rs`: `WARD_ADDR`/`VAULT_ADDR`,
//! `WARD_TOKEN`/`VAULT_TOKEN`/`~/.ward-token`, `WARD_CACERT`, `WARD_SKIP_VERIFY`) because it
//! sends the change-reason header and words its errors for a CI log.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::args::{Args, Kind};
use crate::{env_var, parse_bool};
use ward_policy::acl::{compare_patterns, Acl, Operation, Request};
use ward_policy::format;
use ward_policy::lint::{self, MAX_FILE_SIZE};
use ward_policy::repository::{
    classify, Diagnostic, FileRole, Object, ObjectKind, Repository, Severity, SourceFile,
};
use ward_policy::testing;
use ward_policy::{IdentityContext, MatchKind, Policy};

const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";
const REASON_HEADER: &str = "X-Ward-Change-Reason";

const USAGE: &str = "Usage: ward policy <verb> [flags] ARGS

    fmt [-check] DIR|FILE...     Rewrite HCL files in canonical form (-check: only list them)
    validate [-strict] DIR       Report errors and suspicious rules (-strict: warnings fail too)
    test [-format=junit] DIR     Run the *_test.hcl cases with the server's evaluator
    explain -policy=FILE|NAME... [-operation=read] [-dir=DIR] PATH
                                 Show which rule decides a request, and why
    plan DIR                     Show what apply would change on the server (exit 2 on drift)
    apply [-prune] [-message=TEXT] DIR
                                 Make the server match DIR";

/// The verbs [`run`] handles (the rest of `ward policy` is the server-side CRUD).
pub(crate) const VERBS: &[&str] = &["fmt", "validate", "test", "explain", "plan", "apply"];

/// Runs one `ward policy` verb and returns the process exit code.
pub(crate) async fn run(verb: &str, args: &[String]) -> i32 {
    let outcome = match verb {
        "fmt" => fmt(args),
        "validate" => validate(args),
        "test" => test(args),
        "explain" => explain(args).await,
        "plan" => plan(args).await,
        "apply" => apply(args).await,
        _ => Err(Failure::Usage(format!(
            "unknown verb {verb:?} (one of {})",
            VERBS.join(", ")
        ))),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("{failure}");
            if matches!(failure, Failure::Usage(_)) {
                eprintln!("\n{USAGE}");
            }
            1
        }
    }
}

/// What stops a verb before it can report results of its own.
#[derive(Debug)]
enum Failure {
    Usage(String),
    /// Files that cannot be read or decoded.
    Files(Vec<Diagnostic>),
    Server(ServerError),
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) => write!(f, "Error: {message}"),
            Failure::Files(diagnostics) => {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
            Failure::Server(error) => write!(f, "Error: {error}"),
            Failure::Other(message) => write!(f, "Error: {message}"),
        }
    }
}

impl From<ServerError> for Failure {
    fn from(error: ServerError) -> Failure {
        Failure::Server(error)
    }
}

// ---------------------------------------------------------------------------
// fmt

fn fmt(argv: &[String]) -> Result<i32, Failure> {
    let args = Args::parse(argv, &[("check", Kind::Bool)]).map_err(Failure::Usage)?;
    if args.positional.is_empty() {
        return Err(Failure::Usage("fmt needs a directory or file".into()));
    }
    let check = args.flag("check");
    let mut n_errors = 0;
    let mut changed = Vec::new();
    for target in &args.positional {
        let files = hcl_files(Path::new(target))?;
        for (display, path) in files {
            let source = match read_source(&display, &path) {
                Ok(source) => source,
                Err(diagnostic) => {
                    eprintln!("{diagnostic}");
                    n_errors += 1;
                    continue;
                }
            };
            let formatted = match format::format(&source.text) {
                Ok(formatted) => formatted,
                Err(error) => {
                    eprintln!(
                        "{}",
                        Diagnostic::error(
                            &display,
                            error.line,
                            error.column,
                            format!("syntax error: {}", error.message)
                        )
                    );
                    n_errors += 1;
                    continue;
                }
            };
            if formatted == source.text {
                continue;
            }
            if !check {
                if let Err(error) = write_atomically(&path, &formatted) {
                    eprintln!("{display}: error: cannot write: {error}");
                    n_errors += 1;
                    continue;
                }
            }
            println!("{display}");
            changed.push(display);
        }
    }
    if check && !changed.is_empty() {
        eprintln!(
            "{} file(s) are not formatted; run: ward policy fmt {}",
            changed.len(),
            args.positional.join(" ")
        );
        return Ok(1);
    }
    Ok(if n_errors > 0 { 1 } else { 0 })
}

// ---------------------------------------------------------------------------
// validate

fn validate(argv: &[String]) -> Result<i32, Failure> {
    let args = Args::parse(argv, &[("strict", Kind::Bool)]).map_err(Failure::Usage)?;
    let directory = one_directory(&args, "validate")?;
    let (files, mut diagnostics) = read_repository(&directory)?;
    diagnostics.extend(lint::lint(&files));
    let n_errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let n_warnings = diagnostics.len() - n_errors;
    for diagnostic in &diagnostics {
        println!("{diagnostic}");
    }
    let n_policies = files
        .iter()
        .filter(|file| matches!(classify(&file.path), FileRole::Policy { .. }))
        .count();
    println!(
        "{} file(s), {n_policies} polic{}: {n_errors} error(s), {n_warnings} warning(s)",
        files.len(),
        if n_policies == 1 { "y" } else { "ies" }
    );
    let failed = n_errors > 0 || (args.flag("strict") && n_warnings > 0);
    Ok(i32::from(failed))
}

// ---------------------------------------------------------------------------
// test

fn test(argv: &[String]) -> Result<i32, Failure> {
    let args = Args::parse(argv, &[("format", Kind::Value)]).map_err(Failure::Usage)?;
    let junit = match args.value("format") {
        None | Some("text") => false,
        Some("junit") => true,
        Some(other) => {
            return Err(Failure::Usage(format!(
                "unknown -format={other} (text or junit)"
            )))
        }
    };
    let directory = one_directory(&args, "test")?;
    let (files, read_errors) = read_repository(&directory)?;
    let (repository, load_errors) = Repository::load(&files);
    let (results, test_errors) = testing::run(&repository);
    let errors: Vec<Diagnostic> = read_errors
        .into_iter()
        .chain(load_errors)
        .chain(test_errors)
        .filter(|d| d.severity == Severity::Error)
        .collect();
    // With JUnit on stdout, the human-readable report goes to stderr.
    let mut report = String::new();
    for error in &errors {
        report.push_str(&format!("{error}\n"));
    }
    let mut current_file = "";
    for result in &results {
        if result.file != current_file {
            current_file = &result.file;
            report.push_str(&format!("\n{current_file}\n"));
        }
        if result.passed() {
            report.push_str(&format!("  ok      {}\n", result.name));
        } else {
            report.push_str(&format!(
                "  FAILED  {} ({}:{}): {}\n          {}\n",
                result.name,
                result.file,
                result.line,
                testing::failure_summary(result),
                result.reason
            ));
        }
    }
    let n_failed = results.iter().filter(|r| !r.passed()).count();
    let n_passed = results.len() - n_failed;
    if results.is_empty() {
        report.push_str(&format!(
            "no test cases found (files named *_test.hcl) in {}\n",
            directory.display()
        ));
    }
    report.push_str(&format!("\n{n_passed} passed, {n_failed} failed\n"));
    if junit {
        eprint!("{report}");
        print!("{}", testing::junit(&results));
    } else {
        print!("{report}");
    }
    Ok(i32::from(n_failed > 0 || !errors.is_empty()))
}

// ---------------------------------------------------------------------------
// explain

async fn explain(argv: &[String]) -> Result<i32, Failure> {
    let args = Args::parse(
        argv,
        &[
            ("policy", Kind::Value),
            ("operation", Kind::Value),
            ("dir", Kind::Value),
            ("address", Kind::Value),
            ("ca-cert", Kind::Value),
            ("tls-skip-verify", Kind::Bool),
        ],
    )
    .map_err(Failure::Usage)?;
    let [path] = args.positional.as_slice() else {
        return Err(Failure::Usage("explain needs exactly one PATH".into()));
    };
    if args.values("policy").is_empty() {
        return Err(Failure::Usage(
            "explain needs at least one -policy=FILE or -policy=NAME".into(),
        ));
    }
    let operation = match args.value("operation").unwrap_or("read") {
        "read" => Operation::Read,
        "list" => Operation::List,
        "create" => Operation::Create,
        "update" => Operation::Update,
        "patch" => Operation::Patch,
        "delete" => Operation::Delete,
        other => return Err(Failure::Usage(format!("unknown -operation={other}"))),
    };
    let directory = PathBuf::from(args.value("dir").unwrap_or("."));
    let mut policies: Vec<(Policy, String)> = Vec::new();
    let mut client: Option<Client> = None;
    for reference in args.values("policy") {
        policies.push(load_explained_policy(reference, &directory, &args, &mut client).await?);
    }
    let path = path.trim_start_matches('/');
    let path = match operation {
        Operation::List if !path.ends_with('/') => format!("{path}/"),
        _ => path.to_owned(),
    };
    let refs: Vec<&Policy> = policies.iter().map(|(policy, _)| policy).collect();
    let acl = Acl::new(&refs, &IdentityContext::default());
    print!("{}", explanation(&acl, &path, operation, &policies));
    Ok(0)
}

async fn load_explained_policy(
    reference: &str,
    directory: &Path,
    args: &Args,
    client: &mut Option<Client>,
) -> Result<(Policy, String), Failure> {
    let as_file = PathBuf::from(reference);
    let in_directory = directory.join(format!("{reference}.hcl"));
    let file = if as_file.is_file() {
        Some(as_file)
    } else if in_directory.is_file() {
        Some(in_directory)
    } else {
        None
    };
    if let Some(file) = file {
        let display = file.display().to_string();
        let source = read_source(&display, &file).map_err(|d| Failure::Files(vec![d]))?;
        let name = file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or(reference)
            .to_owned();
        let policy = ward_policy::parse(&name, &source.text).map_err(|error| {
            Failure::Files(vec![Diagnostic::from_policy_error(&display, &error)])
        })?;
        return Ok((policy, display));
    }
    if client.is_none() {
        *client = Some(Client::from_args(args)?);
    }
    let Some(client) = client.as_ref() else {
        return Err(Failure::Other("no client".into()));
    };
    let name = ward_policy::normalize_name(reference).map_err(|e| Failure::Usage(e.to_string()))?;
    let body = client
        .get(&format!("sys/policies/acl/{name}"))
        .await?
        .ok_or_else(|| {
            Failure::Other(format!(
                "policy {reference:?} is neither a file, nor {}/{reference}.hcl, nor a policy on the server at {}",
                directory.display(),
                client.address
            ))
        })?;
    let text = body["data"]["policy"].as_str().unwrap_or_default();
    let policy = ward_policy::parse(&name, text)
        .map_err(|error| Failure::Other(format!("policy {name:?} on the server: {error}")))?;
    Ok((policy, format!("server {}", client.address)))
}

/// The report of `explain`: candidates, the winner, the rule that separates
/// it from the runner-up, and the decision.
fn explanation(
    acl: &Acl,
    path: &str,
    operation: Operation,
    policies: &[(Policy, String)],
) -> String {
    let mut out = String::new();
    let capability = operation.capability();
    out.push_str(&format!("Request:  {} {path}\n", capability));
    let sources: Vec<String> = policies
        .iter()
        .map(|(policy, source)| format!("{} ({source})", policy.name))
        .collect();
    out.push_str(&format!("Policies: {}\n", sources.join(", ")));
    let explained = acl.explain(path, operation);
    if explained.root {
        out.push_str("Decision: allowed: the root policy allows everything\n");
        return out;
    }
    if explained.candidates.is_empty() {
        out.push_str("\nNo pattern matches this path.\nDecision: denied: no policy grants access to this path\n");
        return out;
    }
    out.push_str("\nMatching patterns, highest priority first:\n");
    let winner_pattern = explained.winner.as_ref().map(|w| w.pattern.clone());
    let width = explained
        .candidates
        .iter()
        .map(|c| c.pattern.len())
        .max()
        .unwrap_or(0);
    for candidate in &explained.candidates {
        let marker = if Some(&candidate.pattern) == winner_pattern.as_ref() {
            "->"
        } else {
            "  "
        };
        let kind = match candidate.kind {
            MatchKind::Exact => "exact",
            MatchKind::ExactWithoutTrailingSlash => "exact (without the trailing /)",
            MatchKind::Prefix => "prefix glob",
            MatchKind::Segment => "segment glob (+)",
        };
        out.push_str(&format!(
            "  {marker} {:<width$}  {kind}; [{}] from {}\n",
            candidate.pattern,
            candidate.capabilities.join(", "),
            candidate.policies.join(", ")
        ));
    }
    if let Some(winner) = &explained.winner {
        let runner_up = explained
            .candidates
            .iter()
            .find(|c| c.pattern != winner.pattern);
        out.push_str(&format!("\nWinner: {:?}", winner.pattern));
        match runner_up {
            Some(runner_up) => {
                let (_, rule) = compare_patterns(&winner.pattern, &runner_up.pattern);
                out.push_str(&format!(" beats {:?}: {rule}", runner_up.pattern));
                if operation == Operation::List {
                    out.push_str(
                        " (for LIST, a deny at least as specific as the best list grant wins)",
                    );
                }
                out.push('\n');
            }
            None => out.push_str(": the only matching pattern\n"),
        }
    }
    let decision = acl.authorize(&Request {
        path,
        operation,
        parameters: None,
        wrap_ttl: None,
        requires_sudo: ward_policy::requires_sudo(path, operation, None),
    });
    match (&decision.denial, decision.allowed) {
        (Some(denial), _) => out.push_str(&format!("Decision: denied: {denial}\n")),
        (None, true) => {
            out.push_str(&format!(
                "Decision: allowed ({capability} granted by {})",
                decision.granting_policies.join(", ")
            ));
            if let Some(group) = &decision.control_group {
                let names: Vec<&str> = group.factors.iter().map(|f| f.name.as_str()).collect();
                out.push_str(&format!(
                    ", after approval by control group factors {}",
                    names.join(", ")
                ));
            }
            out.push('\n');
        }
        (None, false) => out.push_str("Decision: denied\n"),
    }
    out.push_str("(Parameter constraints are not checked here; write a test case with parameters for them.)\n");
    out
}

// ---------------------------------------------------------------------------
// plan and apply

/// One difference between the directory and the server.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    action: Action,
    target: Target,
    /// A unified diff (policies) or field-by-field differences (objects).
    detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Add,
    Change,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Policy {
        name: String,
        text: String,
    },
    Object {
        object: Box<Object>,
    },
    /// An object on the server that the directory does not declare.
    ServerObject {
        kind: ObjectKind,
        mount: Option<String>,
        name: String,
        path: String,
    },
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Policy { name, .. } => format!("policy {name:?}"),
            Target::Object { object } => format!("{object}"),
            Target::ServerObject {
                kind, mount, name, ..
            } => match mount {
                Some(mount) => format!("{} \"{mount}\" \"{name}\"", kind.keyword()),
                None => format!("{} \"{name}\"", kind.keyword()),
            },
        }
    }

    fn api_path(&self) -> String {
        match self {
            Target::Policy { name, .. } => format!("sys/policies/acl/{name}"),
            Target::Object { object } => object.api_path(),
            Target::ServerObject { path, .. } => path.clone(),
        }
    }

    /// Policies first, then objects in [`ObjectKind::ALL`] order, each by name.
    fn order(&self) -> (usize, String) {
        let kind_rank = |kind: ObjectKind| {
            ObjectKind::ALL
                .iter()
                .position(|k| *k == kind)
                .unwrap_or_default()
                + 1
        };
        match self {
            Target::Policy { name, .. } => (0, name.clone()),
            Target::Object { object } => (kind_rank(object.kind), object.api_path()),
            Target::ServerObject { kind, path, .. } => (kind_rank(*kind), path.clone()),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Add => "+ add",
            Action::Change => "~ change",
            Action::Remove => "- remove",
        };
        write!(
            f,
            "{verb} {} ({})",
            self.target.describe(),
            self.target.api_path()
        )
    }
}

async fn plan(argv: &[String]) -> Result<i32, Failure> {
    let args = Args::parse(
        argv,
        &[
            ("address", Kind::Value),
            ("ca-cert", Kind::Value),
            ("tls-skip-verify", Kind::Bool),
        ],
    )
    .map_err(Failure::Usage)?;
    let directory = one_directory(&args, "plan")?;
    let repository = load_for_server(&directory)?;
    let client = Client::from_args(&args)?;
    plan_directory(&client, &repository, &directory).await
}

async fn plan_directory(
    client: &Client,
    repository: &Repository,
    directory: &Path,
) -> Result<i32, Failure> {
    let changes = compute_changes(client, repository).await?;
    if changes.is_empty() {
        println!(
            "No changes: the server at {} matches {}.",
            client.address,
            directory.display()
        );
        return Ok(0);
    }
    print_plan(&changes);
    Ok(2)
}

async fn apply(argv: &[String]) -> Result<i32, Failure> {
    let args = Args::parse(
        argv,
        &[
            ("prune", Kind::Bool),
            ("message", Kind::Value),
            ("address", Kind::Value),
            ("ca-cert", Kind::Value),
            ("tls-skip-verify", Kind::Bool),
        ],
    )
    .map_err(Failure::Usage)?;
    let directory = one_directory(&args, "apply")?;
    let repository = load_for_server(&directory)?;
    let client = Client::from_args(&args)?;
    let message = args
        .value("message")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("ward policy apply {}", directory.display()));
    let options = ApplyOptions {
        prune: args.flag("prune"),
        message,
    };
    apply_directory(&client, &repository, &directory, &options).await
}

struct ApplyOptions {
    prune: bool,
    message: String,
}

async fn apply_directory(
    client: &Client,
    repository: &Repository,
    directory: &Path,
    options: &ApplyOptions,
) -> Result<i32, Failure> {
    let (prune, message) = (options.prune, options.message.as_str());
    let changes = compute_changes(client, repository).await?;
    if changes.is_empty() {
        println!(
            "No changes: the server at {} matches {}.",
            client.address,
            directory.display()
        );
        return Ok(0);
    }
    print_plan(&changes);
    let (to_apply, skipped): (Vec<&Change>, Vec<&Change>) = changes
        .iter()
        .partition(|change| change.action != Action::Remove || prune);
    println!();
    let mut applied: Vec<&Change> = Vec::new();
    for (index, change) in to_apply.iter().enumerate() {
        match apply_change(client, change, message).await {
            Ok(()) => {
                println!("applied: {change}");
                applied.push(change);
            }
            Err(error) => {
                println!("FAILED:  {change}\n         {error}");
                println!("\nStopped at the first failure. The server is partly updated.");
                println!("Applied ({}):", applied.len());
                for done in &applied {
                    println!("  {done}");
                }
                println!("Not applied ({}):", to_apply.len() - index);
                for pending in to_apply.iter().skip(index) {
                    println!("  {pending}");
                }
                println!("Fix the cause and run apply again: it only makes the remaining changes.");
                return Ok(2);
            }
        }
    }
    if !skipped.is_empty() {
        println!(
            "\nNot removed ({}; apply deletes only with -prune):",
            skipped.len()
        );
        for change in &skipped {
            println!("  {change}");
        }
    }
    println!(
        "\nApplied {} change(s) to {} (reason: {message}).",
        applied.len(),
        client.address
    );
    Ok(0)
}

fn print_plan(changes: &[Change]) {
    let count = |action| changes.iter().filter(|c| c.action == action).count();
    for change in changes {
        println!("{change}");
        for line in change.detail.lines() {
            println!("    {line}");
        }
    }
    println!(
        "\nPlan: {} to add, {} to change, {} to remove.",
        count(Action::Add),
        count(Action::Change),
        count(Action::Remove)
    );
}

/// The repository, refusing to go on when any file has an error: a plan of a
/// broken directory would propose deleting what failed to parse.
fn load_for_server(directory: &Path) -> Result<Repository, Failure> {
    let (files, mut errors) = read_repository(directory)?;
    let (repository, load_errors) = Repository::load(&files);
    errors.extend(load_errors);
    errors.retain(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        errors.push(Diagnostic::error(
            &directory.display().to_string(),
            0,
            0,
            "fix these errors first (ward policy validate); nothing was sent to the server",
        ));
        return Err(Failure::Files(errors));
    }
    Ok(repository)
}

async fn compute_changes(
    client: &Client,
    repository: &Repository,
) -> Result<Vec<Change>, ServerError> {
    let mut changes = Vec::new();
    let server_policies: BTreeSet<String> =
        client.list("sys/policies/acl").await?.into_iter().collect();
    for (name, file) in &repository.policies {
        let local = &file.policy.raw;
        let target = Target::Policy {
            name: name.clone(),
            text: local.clone(),
        };
        let remote = if server_policies.contains(name) || name == "default" {
            client
                .get(&format!("sys/policies/acl/{name}"))
                .await?
                .and_then(|body| body["data"]["policy"].as_str().map(str::to_owned))
        } else {
            None
        };
        match remote {
            None => changes.push(Change {
                action: Action::Add,
                detail: unified_diff("", local),
                target,
            }),
            Some(remote) if remote != *local => changes.push(Change {
                action: Action::Change,
                detail: unified_diff(&remote, local),
                target,
            }),
            Some(_) => {}
        }
    }
    for name in &server_policies {
        if !repository.policies.contains_key(name)
            && !matches!(name.as_str(), "root" | "default" | "response-wrapping")
        {
            changes.push(Change {
                action: Action::Remove,
                target: Target::Policy {
                    name: name.clone(),
                    text: String::new(),
                },
                detail: String::new(),
            });
        }
    }
    for object in &repository.objects {
        let remote = client.get(&object.api_path()).await?;
        let remote_fields = remote.as_ref().and_then(|body| body["data"].as_object());
        match remote_fields {
            None => changes.push(Change {
                action: Action::Add,
                detail: object
                    .fields
                    .iter()
                    .map(|(key, value)| format!("+ {key} = {value}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                target: Target::Object {
                    object: Box::new(object.clone()),
                },
            }),
            Some(server) => {
                let differences = field_differences(&object.fields, server);
                if !differences.is_empty() {
                    changes.push(Change {
                        action: Action::Change,
                        detail: differences.join("\n"),
                        target: Target::Object {
                            object: Box::new(object.clone()),
                        },
                    });
                }
            }
        }
    }
    for (kind, mount, list_path) in managed_collections(repository) {
        for name in client.list(&list_path).await? {
            let name = name.trim_end_matches('/').to_owned();
            let declared = repository
                .objects
                .iter()
                .any(|o| o.kind == kind && o.mount == mount && o.name == name);
            if declared || (kind == ObjectKind::TokenRole && name.is_empty()) {
                continue;
            }
            let path = match kind {
                ObjectKind::Group => format!("identity/group/name/{name}"),
                ObjectKind::TokenRole => format!("auth/token/roles/{name}"),
                ObjectKind::AuthRole => {
                    format!("auth/{}/role/{name}", mount.as_deref().unwrap_or_default())
                }
                ObjectKind::Quota => format!("sys/quotas/rate-limit/{name}"),
            };
            changes.push(Change {
                action: Action::Remove,
                target: Target::ServerObject {
                    kind,
                    mount: mount.clone(),
                    name,
                    path,
                },
                detail: String::new(),
            });
        }
    }
    // Adds and changes in dependency order (policies before what attaches
    // them); removals last, in reverse (objects before the policies they use).
    changes.sort_by(|a, b| {
        let removal = |c: &Change| c.action == Action::Remove;
        removal(a).cmp(&removal(b)).then_with(|| {
            if removal(a) {
                b.target.order().cmp(&a.target.order())
            } else {
                a.target.order().cmp(&b.target.order())
            }
        })
    });
    Ok(changes)
}

/// The server collections whose members not in the directory are proposed for removal.
fn managed_collections(repository: &Repository) -> Vec<(ObjectKind, Option<String>, String)> {
    let mut out: Vec<(ObjectKind, Option<String>, String)> = Vec::new();
    for object in &repository.objects {
        let entry = match object.kind {
            ObjectKind::Group => (ObjectKind::Group, None, "identity/group/name".to_owned()),
            ObjectKind::TokenRole => (ObjectKind::TokenRole, None, "auth/token/roles".to_owned()),
            ObjectKind::AuthRole => (
                ObjectKind::AuthRole,
                object.mount.clone(),
                format!("auth/{}/role", object.mount.as_deref().unwrap_or_default()),
            ),
            ObjectKind::Quota => (ObjectKind::Quota, None, "sys/quotas/rate-limit".to_owned()),
        };
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

async fn apply_change(client: &Client, change: &Change, message: &str) -> Result<(), ServerError> {
    let path = change.target.api_path();
    match (&change.action, &change.target) {
        (Action::Remove, _) => client.write("DELETE", &path, None, message).await,
        (_, Target::Policy { text, .. }) => {
            let body = json!({ "policy": text, "change_reason": message });
            client.write("PUT", &path, Some(&body), message).await
        }
        (_, Target::Object { object }) => {
            let body = Value::Object(object.fields.clone());
            client.write("POST", &path, Some(&body), message).await
        }
        (_, Target::ServerObject { .. }) => Ok(()),
    }
}

/// The fields of a declared object that differ on the server, one line each.
/// Fields the server does not return are not compared.
fn field_differences(local: &Map<String, Value>, server: &Map<String, Value>) -> Vec<String> {
    local
        .iter()
        .filter_map(|(key, want)| {
            let have = server.get(key)?;
            (!same_value(want, have)).then(|| format!("~ {key}: {have} -> {want}"))
        })
        .collect()
}

/// Equality as the server stores values: durations as seconds, lists as
/// sets, comma-separated strings as lists, numbers by value.
fn same_value(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::String(text), Value::Number(number)) => ward_policy::parse_duration(text)
            .ok()
            .map(|d| d.as_secs_f64())
            .or_else(|| text.parse::<f64>().ok())
            .is_some_and(|seconds| Some(seconds) == number.as_f64()),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(text), Value::Array(_)) => {
            let list: Vec<Value> = text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect();
            same_value(&Value::Array(list), have)
        }
        (Value::Array(a), Value::Array(b)) => {
            let key = |values: &Vec<Value>| {
                let mut keys: Vec<String> = values.iter().map(Value::to_string).collect();
                keys.sort();
                keys.dedup();
                keys
            };
            key(a) == key(b)
        }
        (Value::Array(a), Value::Null) => a.is_empty(),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, value)| b.get(key).is_some_and(|other| same_value(value, other)))
        }
        (Value::Object(a), Value::Null) => a.is_empty(),
        (a, b) => a == b,
    }
}

/// A unified diff of two texts (whole-file context), from a longest common subsequence of lines.
fn unified_diff(before: &str, after: &str) -> String {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    // Very large inputs would make the table quadratic; the file limit (1 MiB)
    // bounds them, and policies are far smaller in practice.
    let (n, m) = (old.len(), new.len());
    let mut table = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let value = if old.get(i) == new.get(j) {
                table.get(at(i + 1, j + 1)).copied().unwrap_or_default() + 1
            } else {
                let down = table.get(at(i + 1, j)).copied().unwrap_or_default();
                let right = table.get(at(i, j + 1)).copied().unwrap_or_default();
                down.max(right)
            };
            if let Some(cell) = table.get_mut(at(i, j)) {
                *cell = value;
            }
        }
    }
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        let same = i < n && j < m && old.get(i) == new.get(j);
        if same {
            lines.push(format!("  {}", old.get(i).copied().unwrap_or_default()));
            i += 1;
            j += 1;
        } else if j < m
            && (i == n
                || table.get(at(i, j + 1)).copied().unwrap_or_default()
                    >= table.get(at(i + 1, j)).copied().unwrap_or_default())
        {
            lines.push(format!("+ {}", new.get(j).copied().unwrap_or_default()));
            j += 1;
        } else {
            lines.push(format!("- {}", old.get(i).copied().unwrap_or_default()));
            i += 1;
        }
    }
    if lines.iter().all(|line| line.starts_with("  ")) {
        return String::new();
    }
    let mut out = format!("--- server\n+++ directory\n@@ -1,{n} +1,{m} @@\n");
    out.push_str(&lines.join("\n"));
    out
}

// ---------------------------------------------------------------------------
// Files

/// Every `*.hcl` file under a directory (or the file itself), sorted, with
/// the path to show and the path to open. Hidden directories are skipped.
fn hcl_files(target: &Path) -> Result<Vec<(String, PathBuf)>, Failure> {
    if target.is_file() {
        return Ok(vec![(target.display().to_string(), target.to_path_buf())]);
    }
    if !target.is_dir() {
        return Err(Failure::Other(format!(
            "{}: no such file or directory",
            target.display()
        )));
    }
    let mut out = Vec::new();
    let mut pending = vec![target.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = std::fs::read_dir(&directory).map_err(|e| {
            Failure::Other(format!(
                "cannot read directory {}: {e}",
                directory.display()
            ))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                Failure::Other(format!(
                    "cannot read directory {}: {e}",
                    directory.display()
                ))
            })?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".hcl") {
                out.push((path.display().to_string(), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The repository's files, with paths relative to the directory; files that
/// cannot be read or decoded come back as diagnostics.
fn read_repository(directory: &Path) -> Result<(Vec<SourceFile>, Vec<Diagnostic>), Failure> {
    if !directory.is_dir() {
        return Err(Failure::Other(format!(
            "{}: not a directory",
            directory.display()
        )));
    }
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for (_, path) in hcl_files(directory)? {
        let relative = path
            .strip_prefix(directory)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        match read_source(&relative, &path) {
            Ok(source) => files.push(source),
            Err(diagnostic) => errors.push(diagnostic),
        }
    }
    Ok((files, errors))
}

/// Reads at most one byte more than the limit, so a huge file is refused without loading it.
fn read_source(display: &str, path: &Path) -> Result<SourceFile, Diagnostic> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| Diagnostic::error(display, 0, 0, format!("cannot read: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or_default();
    let limit = u64::try_from(MAX_FILE_SIZE).unwrap_or(u64::MAX);
    if size > limit {
        return Err(Diagnostic::error(
            display,
            0,
            0,
            format!("file is too large ({size} bytes; the limit is {MAX_FILE_SIZE} bytes, 1 MiB)"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Diagnostic::error(display, 0, 0, format!("cannot read: {e}")))?;
    lint::decode_source(display, bytes)
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.ward-fmt"));
    std::fs::write(&temporary, text)?;
    if let Ok(metadata) = std::fs::metadata(path) {
        std::fs::set_permissions(&temporary, metadata.permissions())?;
    }
    std::fs::rename(&temporary, path)
}

fn one_directory(args: &Args, verb: &str) -> Result<PathBuf, Failure> {
    match args.positional.as_slice() {
        [directory] => Ok(PathBuf::from(directory)),
        [] => Err(Failure::Usage(format!("{verb} needs a directory"))),
        _ => Err(Failure::Usage(format!("{verb} takes one directory"))),
    }
}

// ---------------------------------------------------------------------------
// HTTP (a copy of the minimum of client.rs, plus the change-reason header)

/// Why a request to the server failed, in terms a person can act on.
#[derive(Debug)]
enum ServerError {
    Unreachable {
        address: String,
        detail: String,
    },
    Sealed {
        address: String,
    },
    NoToken,
    PermissionDenied {
        method: String,
        path: String,
    },
    Status {
        status: u16,
        method: String,
        path: String,
        errors: Vec<String>,
    },
    Setup(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Unreachable { address, detail } => write!(
                f,
                "cannot reach Ward at {address}: {detail}; is the server running? (set WARD_ADDR)"
            ),
            ServerError::Sealed { address } => write!(
                f,
                "Ward at {address} is sealed (503); unseal it (ward operator unseal) and run again"
            ),
            ServerError::NoToken => f.write_str(
                "no token: set WARD_TOKEN (in CI, log in first: ward login -method=jwt role=ci jwt=...)",
            ),
            ServerError::PermissionDenied { method, path } => write!(
                f,
                "permission denied: {method} {path} (403); the token needs read and list on sys/policies/acl/* (and on the objects the directory declares), plus create/update/delete to apply"
            ),
            ServerError::Status { status, method, path, errors } => {
                write!(f, "{method} {path}: the server answered {status}")?;
                if !errors.is_empty() {
                    write!(f, ": {}", errors.join("; "))?;
                }
                Ok(())
            }
            ServerError::Setup(message) => f.write_str(message),
        }
    }
}

struct Client {
    http: reqwest::Client,
    address: String,
    token: Option<String>,
}

impl Client {
    fn from_args(args: &Args) -> Result<Client, ServerError> {
        let address = args
            .value("address")
            .map(str::to_owned)
            .or_else(|| env_var(&["WARD_ADDR", "VAULT_ADDR"]))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
        let address = address.trim_end_matches('/').to_owned();
        if !address.starts_with("http://") && !address.starts_with("https://") {
            return Err(ServerError::Setup(format!(
                "invalid address {address:?}: it must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(60));
        let ca_cert = args
            .value("ca-cert")
            .map(str::to_owned)
            .or_else(|| env_var(&["WARD_CACERT", "VAULT_CACERT"]));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(&path).map_err(|e| {
                ServerError::Setup(format!("cannot read CA certificate {path}: {e}"))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ServerError::Setup(format!("invalid CA certificate {path}: {e}")))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let skip_verify = args.flag("tls-skip-verify")
            || env_var(&["WARD_SKIP_VERIFY", "VAULT_SKIP_VERIFY"])
                .is_some_and(|v| parse_bool(&v) == Some(true));
        if skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| ServerError::Setup(format!("cannot build the HTTP client: {e}")))?;
        let token = env_var(&["WARD_TOKEN", "VAULT_TOKEN"]).or_else(|| {
            let home = std::env::var_os("HOME")?;
            let text = std::fs::read_to_string(PathBuf::from(home).join(".ward-token")).ok()?;
            let token = text.trim();
            (!token.is_empty()).then(|| token.to_owned())
        });
        Ok(Client {
            http,
            address,
            token,
        })
    }

    /// GET a path; `None` on 404.
    async fn get(&self, path: &str) -> Result<Option<Value>, ServerError> {
        self.send("GET", path, None, None).await
    }

    /// LIST a path: the keys, or nothing on 404.
    async fn list(&self, path: &str) -> Result<Vec<String>, ServerError> {
        let body = self.send("LIST", path, None, None).await?;
        Ok(body
            .as_ref()
            .and_then(|body| body["data"]["keys"].as_array())
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A write with the change reason; a 404 is an error here.
    async fn write(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        reason: &str,
    ) -> Result<(), ServerError> {
        match self.send(method, path, body, Some(reason)).await? {
            Some(response) => {
                if let Some(warnings) = response["warnings"].as_array() {
                    for warning in warnings.iter().filter_map(Value::as_str) {
                        eprintln!("warning from the server ({path}): {warning}");
                    }
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        reason: Option<&str>,
    ) -> Result<Option<Value>, ServerError> {
        let Some(token) = &self.token else {
            return Err(ServerError::NoToken);
        };
        let http_method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ServerError::Setup(e.to_string()))?;
        let url = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
        let mut request = self
            .http
            .request(http_method, &url)
            .header("X-Vault-Request", "true")
            .header("X-Vault-Token", token);
        if let Some(reason) = reason {
            request = request.header(REASON_HEADER, header_safe(reason));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| ServerError::Unreachable {
                address: self.address.clone(),
                detail: error_chain(&error),
            })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ServerError::Unreachable {
                address: self.address.clone(),
                detail: error_chain(&error),
            })?;
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        let errors: Vec<String> = json
            .as_ref()
            .and_then(|b| b["errors"].as_array())
            .map(|e| {
                e.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        match status {
            200..=299 => Ok(json),
            404 if method == "GET" || method == "LIST" => Ok(None),
            503 => Err(ServerError::Sealed {
                address: self.address.clone(),
            }),
            403 => Err(ServerError::PermissionDenied {
                method: method.to_owned(),
                path: path.to_owned(),
            }),
            _ => Err(ServerError::Status {
                status,
                method: method.to_owned(),
                path: path.to_owned(),
                errors,
            }),
        }
    }
}

/// A header value keeps printable ASCII; other bytes are percent-encoded.
fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    fn write(directory: &Path, name: &str, bytes: &[u8]) {
        let path = directory.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, bytes).expect("write");
    }

    const AGENT: &str = "path \"database/creds/read-only\" {\n  capabilities = [\"read\"]\n}\n";

    #[tokio::test]
    async fn fmt_check_lists_then_fmt_rewrites() {
        let directory = tempfile::tempdir().expect("tempdir");
        let root = directory.path();
        write(
            root,
            "agent.hcl",
            b"path \"a\" {capabilities=[\"read\"]} # why\n",
        );
        write(root, "ok.hcl", AGENT.as_bytes());
        let target = root.display().to_string();
        assert_eq!(run("fmt", &argv(&["-check", &target])).await, 1);
        assert_eq!(run("fmt", &argv(&[&target])).await, 0);
        assert_eq!(
            std::fs::read_to_string(root.join("agent.hcl")).expect("read"),
            "path \"a\" {\n  capabilities = [\"read\"]\n} # why\n"
        );
        assert_eq!(run("fmt", &argv(&["-check", &target])).await, 0);
        write(root, "broken.hcl", b"path \"a\" {\n");
        assert_eq!(run("fmt", &argv(&["-check", &target])).await, 1);
    }

    #[tokio::test]
    async fn validate_exit_codes_and_bad_files() {
        let directory = tempfile::tempdir().expect("tempdir");
        let root = directory.path();
        let target = root.display().to_string();
        write(root, "agent.hcl", AGENT.as_bytes());
        assert_eq!(run("validate", &argv(&[&target])).await, 0);
        write(
            root,
            "wide.hcl",
            b"path \"secret/*\" { capabilities = [\"read\", \"sudo\"] }\n",
        );
        assert_eq!(run("validate", &argv(&[&target])).await, 0, "warnings only");
        assert_eq!(run("validate", &argv(&["-strict", &target])).await, 1);
        std::fs::remove_file(root.join("wide.hcl")).expect("rm");

        for (name, bytes) in [
            (
                "malformed.hcl",
                b"path \"a\" { capabilities = [\"read\" }\n".to_vec(),
            ),
            ("bad name.hcl", AGENT.as_bytes().to_vec()),
            ("latin1.hcl", b"# caf\xe9\npath \"a\" {}\n".to_vec()),
            ("huge.hcl", vec![b'#'; MAX_FILE_SIZE + 10]),
        ] {
            write(root, name, &bytes);
            let (files, mut diagnostics) = read_repository(root).expect("read");
            diagnostics.extend(lint::lint(&files));
            let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            let expected = match name {
                "malformed.hcl" => {
                    "malformed.hcl:1:35: error: syntax error: expected ',' or ']' in list"
                }
                "bad name.hcl" => "bad name.hcl: error: invalid policy name",
                "latin1.hcl" => "latin1.hcl:1:6: error: file is not valid UTF-8",
                _ => "huge.hcl: error: file is too large",
            };
            assert!(
                text.iter().any(|line| line.starts_with(expected)),
                "{name}: {text:?}"
            );
            assert_eq!(run("validate", &argv(&[&target])).await, 1, "{name}");
            // plan refuses to talk to a server about a broken directory.
            assert!(
                matches!(load_for_server(root), Err(Failure::Files(_))),
                "{name}"
            );
            std::fs::remove_file(root.join(name)).expect("rm");
        }
    }

    #[tokio::test]
    async fn test_verb_passes_fails_and_writes_junit() {
        let directory = tempfile::tempdir().expect("tempdir");
        let root = directory.path();
        let target = root.display().to_string();
        write(root, "agent.hcl", AGENT.as_bytes());
        write(
            root,
            "agent_test.hcl",
            b"case \"reads\" {\n  policies = [\"agent\"]\n  path = \"database/creds/read-only\"\n  expect = \"allow\"\n}\n",
        );
        assert_eq!(run("test", &argv(&[&target])).await, 0);
        assert_eq!(run("test", &argv(&["-format=junit", &target])).await, 0);
        write(
            root,
            "more_test.hcl",
            b"case \"writes\" {\n  policies = [\"agent\"]\n  path = \"database/creds/read-only\"\n  operation = \"update\"\n  expect = \"allow\"\n}\n",
        );
        assert_eq!(run("test", &argv(&[&target])).await, 1);
        assert_eq!(run("test", &argv(&["-format=xml", &target])).await, 1);
        write(root, "broken_test.hcl", b"case \"x\" {");
        assert_eq!(run("test", &argv(&[&target])).await, 1);
    }

    #[test]
    fn explain_names_the_deciding_rule() {
        let policy = ward_policy::parse(
            "p",
            "path \"secret/+/config\" { capabilities = [\"deny\"] }\npath \"secret/data/*\" { capabilities = [\"read\"] }",
        )
        .expect("policy");
        let acl = Acl::new(&[&policy], &IdentityContext::default());
        let text = explanation(
            &acl,
            "secret/data/config",
            Operation::Read,
            &[(policy, "p.hcl".to_owned())],
        );
        assert!(text.contains("-> secret/data/*"), "{text}");
        assert!(
            text.contains("Winner: \"secret/data/*\" beats \"secret/+/config\": rule 1"),
            "{text}"
        );
        assert!(
            text.contains("Decision: allowed (read granted by p)"),
            "{text}"
        );
    }

    #[test]
    fn unified_diff_of_policy_text() {
        let diff = unified_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(
            diff,
            "--- server\n+++ directory\n@@ -1,3 +1,4 @@\n  a\n+ B\n- b\n  c\n+ d"
        );
        assert_eq!(unified_diff("same\n", "same\n"), "");
        assert_eq!(
            unified_diff("", "x\n"),
            "--- server\n+++ directory\n@@ -1,0 +1,1 @@\n+ x"
        );
    }

    #[test]
    fn object_fields_compare_as_the_server_stores_them() {
        let table = [
            (json!("24h"), json!(86400), true),
            (json!("1h"), json!(60), false),
            (json!(["b", "a"]), json!(["a", "b"]), true),
            (json!("a, b"), json!(["a", "b"]), true),
            (json!({"team": "x"}), json!({"team": "x"}), true),
            (json!({"team": "x"}), json!({"team": "y"}), false),
            (json!([]), Value::Null, true),
            (json!(true), json!(true), true),
            (json!(3), json!(3.0), true),
        ];
        for (want, have, same) in table {
            assert_eq!(same_value(&want, &have), same, "{want} vs {have}");
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_a_clear_error() {
        let directory = tempfile::tempdir().expect("tempdir");
        write(directory.path(), "agent.hcl", AGENT.as_bytes());
        // A port that was bound and released: nothing listens there.
        let address = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", listener.local_addr().expect("addr"))
        };
        let client = Client {
            http: reqwest::Client::new(),
            address: address.clone(),
            token: Some("t".to_owned()),
        };
        let repository = load_for_server(directory.path()).expect("repository");
        let error = compute_changes(&client, &repository)
            .await
            .expect_err("unreachable");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("cannot reach Ward at {address}")),
            "{text}"
        );
        assert!(text.contains("WARD_ADDR"), "{text}");
        let without_token = Client {
            token: None,
            ..client
        };
        let error = compute_changes(&without_token, &repository)
            .await
            .expect_err("no token");
        assert!(error.to_string().contains("set WARD_TOKEN"), "{error}");
        assert_eq!(header_safe("fix: café 100%"), "fix: caf%C3%A9 100%25");
    }

    /// A dev server in this process, on port 0, with root token `root`.
    async fn dev_server() -> (
        String,
        ward_server::serve::Running,
        std::sync::Arc<ward_core::Core>,
    ) {
        let config = ward_server::config::Config::dev("127.0.0.1:0");
        let listener_config = config.listeners.first().expect("a listener");
        let listener = ward_server::serve::BoundListener::bind(listener_config)
            .await
            .expect("bind");
        let url = listener.url();
        let physical = ward_server::open_storage(&config.storage)
            .await
            .expect("storage");
        let core = ward_server::build_core(&config, physical);
        core.dev_init(Some("root")).await.expect("dev init");
        let running = ward_server::serve::start(std::sync::Arc::clone(&core), vec![listener]);
        (url, running, core)
    }

    fn client(address: &str, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            address: address.to_owned(),
            token: Some(token.to_owned()),
        }
    }

    fn example_repository(root: &Path) {
        write(
            root,
            "agent.hcl",
            include_bytes!("../../../examples/policies/agent.hcl"),
        );
        write(
            root,
            "ops.hcl",
            include_bytes!("../../../examples/policies/ops.hcl"),
        );
        write(
            root,
            "access/groups.hcl",
            include_bytes!("../../../examples/policies/access/groups.hcl"),
        );
        write(
            root,
            "access/roles.hcl",
            include_bytes!("../../../examples/policies/access/roles.hcl"),
        );
    }

    #[tokio::test]
    async fn plan_apply_drift_prune_and_partial_failure() {
        let (address, _running, core) = dev_server().await;
        let root_client = client(&address, "root");
        let directory = tempfile::tempdir().expect("tempdir");
        let root = directory.path();
        example_repository(root);
        let repository = load_for_server(root).expect("repository");
        let options = ApplyOptions {
            prune: false,
            message: "test run".to_owned(),
        };

        let changes = compute_changes(&root_client, &repository)
            .await
            .expect("plan");
        let described: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            described,
            [
                "+ add policy \"agent\" (sys/policies/acl/agent)",
                "+ add policy \"ops\" (sys/policies/acl/ops)",
                "+ add group \"leads\" (identity/group/name/leads)",
                "+ add group \"ops\" (identity/group/name/ops)",
                "+ add token_role \"agent\" (auth/token/roles/agent)",
            ]
        );
        assert_eq!(
            plan_directory(&root_client, &repository, root)
                .await
                .expect("plan"),
            2
        );
        assert_eq!(
            apply_directory(&root_client, &repository, root, &options)
                .await
                .expect("apply"),
            0
        );
        assert!(
            compute_changes(&root_client, &repository)
                .await
                .expect("plan")
                .is_empty(),
            "converged"
        );
        assert_eq!(
            plan_directory(&root_client, &repository, root)
                .await
                .expect("plan"),
            0
        );
        assert_eq!(
            apply_directory(&root_client, &repository, root, &options)
                .await
                .expect("again"),
            0
        );

        // A change by hand on the server is drift, with a diff; apply reverts it.
        let manual = json!({ "policy": "path \"secret/*\" { capabilities = [\"read\"] }\n" });
        root_client
            .write("PUT", "sys/policies/acl/agent", Some(&manual), "by hand")
            .await
            .expect("write");
        root_client
            .write("PUT", "sys/policies/acl/stray", Some(&manual), "by hand")
            .await
            .expect("write");
        let group = json!({ "policies": ["ops", "agent"] });
        root_client
            .write("POST", "identity/group/name/ops", Some(&group), "by hand")
            .await
            .expect("write");
        let changes = compute_changes(&root_client, &repository)
            .await
            .expect("plan");
        let described: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            described,
            [
                "~ change policy \"agent\" (sys/policies/acl/agent)",
                "~ change group \"ops\" (identity/group/name/ops)",
                "- remove policy \"stray\" (sys/policies/acl/stray)",
            ]
        );
        let diff = &changes.first().expect("a change").detail;
        assert!(
            diff.contains("- path \"secret/*\" { capabilities = [\"read\"] }"),
            "{diff}"
        );
        assert!(
            diff.contains("+ path \"database/creds/read-only\" {"),
            "{diff}"
        );
        let group_detail = &changes.get(1).expect("a change").detail;
        assert_eq!(group_detail, "~ policies: [\"agent\",\"ops\"] -> [\"ops\"]");
        assert_eq!(
            apply_directory(&root_client, &repository, root, &options)
                .await
                .expect("apply"),
            0
        );
        let left: Vec<String> = compute_changes(&root_client, &repository)
            .await
            .expect("plan")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            left,
            ["- remove policy \"stray\" (sys/policies/acl/stray)"],
            "no -prune: kept"
        );
        let prune = ApplyOptions {
            prune: true,
            message: "prune".to_owned(),
        };
        assert_eq!(
            apply_directory(&root_client, &repository, root, &prune)
                .await
                .expect("prune"),
            0
        );
        assert!(compute_changes(&root_client, &repository)
            .await
            .expect("plan")
            .is_empty());

        // A role on a mount that does not exist: the policy change before it goes
        // through, the role does not, and apply says so with exit code 2.
        write(
            root,
            "agent.hcl",
            b"path \"database/creds/*\" {\n  capabilities = [\"read\"]\n}\n",
        );
        write(
            root,
            "access/missing.hcl",
            b"auth_role \"nomount\" \"x\" {\n  token_policies = [\"agent\"]\n}\n",
        );
        let repository = load_for_server(root).expect("repository");
        assert_eq!(
            apply_directory(&root_client, &repository, root, &options)
                .await
                .expect("apply"),
            2
        );
        let left: Vec<String> = compute_changes(&root_client, &repository)
            .await
            .expect("plan")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            left,
            ["+ add auth_role \"nomount\" \"x\" (auth/nomount/role/x)"],
            "the policy went through"
        );

        // A token that cannot read policies.
        let weak = json!({ "policies": ["agent"] });
        let created = root_client
            .send("POST", "auth/token/create", Some(&weak), None)
            .await
            .expect("token")
            .expect("body");
        let token = created["auth"]["client_token"]
            .as_str()
            .expect("client_token");
        let error = compute_changes(&client(&address, token), &repository)
            .await
            .expect_err("403");
        assert!(
            matches!(error, ServerError::PermissionDenied { .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("permission denied: LIST sys/policies/acl (403)"),
            "{error}"
        );

        // A sealed server.
        core.seal().await;
        let error = compute_changes(&root_client, &repository)
            .await
            .expect_err("sealed");
        assert!(error.to_string().contains("is sealed (503)"), "{error}");
    }
}
