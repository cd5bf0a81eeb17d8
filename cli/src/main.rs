//! `fnhost`: invoke a module, serve functions over HTTP, scaffold and build
//! guests. Run `fnhost --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use fnhost::{FunctionConfig, Host};
use fnhost_cli::cluster::{Cluster, ClusterOptions};
use fnhost_cli::config::{Config, parse_duration, parse_size};
use fnhost_cli::http::{self, Gateway, Route};
use fnhost_cli::scaffold;

#[derive(Parser)]
#[command(
    name = "fnhost",
    version,
    about = "Serverless functions as a Rust crate: run WebAssembly functions locally or behind HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Invoke a module once; print its output, then the REPORT line.
    Invoke {
        /// The .wasm module.
        module: PathBuf,
        /// JSON payload.
        #[arg(long, conflicts_with = "payload_file")]
        payload: Option<String>,
        /// Read the payload from a file.
        #[arg(long)]
        payload_file: Option<PathBuf>,
        /// Memory limit, e.g. 128MB.
        #[arg(long, default_value = "128MB")]
        memory: String,
        /// Timeout, e.g. 3s.
        #[arg(long, default_value = "3s")]
        timeout: String,
        /// Environment variable K=V (repeatable).
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
    },
    /// Serve functions over HTTP (Lambda Invoke API, routes, /metrics).
    Serve {
        /// Config file (fnhost.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Quick function: name=path.wasm (repeatable).
        #[arg(long = "function", value_name = "NAME=PATH")]
        functions: Vec<String>,
        /// Address to listen on (overrides the config's `listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Grace period for running invocations at shutdown.
        #[arg(long, default_value = "30s")]
        grace: String,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Turns on the control API (deploy functions, versions, aliases)
        /// for requests signed with SigV4 using this token as the secret
        /// access key (any access key id; what AWS SDKs and the AWS CLI
        /// send), or with `Authorization: Bearer <token>`.
        #[arg(long, env = "FNHOST_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// An access key the control API also accepts, as `ID=SECRET`
        /// (repeatable; SigV4 only).
        #[arg(long = "admin-key", value_name = "ID=SECRET")]
        admin_keys: Vec<String>,
    },
    /// Create a new function project.
    New {
        /// The function's name (and the project's directory).
        name: String,
        /// Its language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::NewLang,
    },
    /// Build the project in a directory; prints the function file's path.
    /// JavaScript and Python toolchains are installed on first use.
    Build {
        /// Project directory.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
}

/// Cluster membership (`serve --cluster`). The artifact key is read from
/// `FNHOST_CLUSTER_KEY` only, never from the command line.
#[derive(clap::Args)]
struct ClusterArgs {
    /// Join the cluster on this NATS server (JetStream enabled), e.g.
    /// nats://127.0.0.1:4222.
    #[arg(long = "cluster", env = "FNHOST_CLUSTER", value_name = "NATS_URL")]
    url: Option<String>,
    /// This node's name (default: host name and process id).
    #[arg(long, env = "FNHOST_NODE")]
    node: Option<String>,
    /// How long an event a node holds may go without word before another
    /// node gets it.
    #[arg(long, default_value = "30s")]
    ack_wait: String,
    /// Event invocations this node runs at once.
    #[arg(long, default_value_t = 8)]
    event_concurrency: usize,
}

impl ClusterArgs {
    fn options(&self) -> Result<Option<ClusterOptions>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut o = ClusterOptions::new(url);
        if let Some(n) = &self.node {
            anyhow::ensure!(
                !n.is_empty() && n.len() <= 128 && n.bytes().all(|b| b.is_ascii_graphic()),
                "--node must be 1-128 printable ASCII characters without spaces"
            );
            o.node = n.clone();
        }
        o.ack_wait = parse_duration(&self.ack_wait).context("--ack-wait")?;
        anyhow::ensure!(
            o.ack_wait >= std::time::Duration::from_secs(1),
            "--ack-wait must be at least 1s"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&self.event_concurrency),
            "--event-concurrency must be 1 to 10000"
        );
        o.event_concurrency = self.event_concurrency;
        o.key = match std::env::var("FNHOST_CLUSTER_KEY") {
            Ok(k) => Some(ClusterOptions::key_from(&k).context("FNHOST_CLUSTER_KEY")?),
            Err(_) => {
                tracing::warn!(
                    "FNHOST_CLUSTER_KEY is not set: nodes will not share compiled artifacts"
                );
                None
            }
        };
        Ok(Some(o))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FNHOST_LOG")
                .unwrap_or_else(|_| "info,fnhost::guest=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Invoke {
            module,
            payload,
            payload_file,
            memory,
            timeout,
            env,
        } => {
            let payload = match (payload, payload_file) {
                (Some(p), _) => p.into_bytes(),
                (None, Some(f)) => {
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?
                }
                (None, None) => b"{}".to_vec(),
            };
            let name = module
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("function")
                .replace(
                    |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
                    "_",
                );
            let mut cfg = FunctionConfig::from_file(name.clone(), &module)
                .memory_limit(parse_size(&memory).context("--memory")?)
                .timeout(parse_duration(&timeout).context("--timeout")?)
                .max_input(payload.len().max(6 << 20));
            for kv in &env {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--env {kv:?}: expected K=V"))?;
                cfg = cfg.env(k, v);
            }
            // One invocation: a pool of 4 slots and nothing idle (smaller
            // reservations to make at start and to unmap at exit).
            let host = Host::builder()
                .no_log_sink()
                .concurrency_limit(4)
                .max_idle_instances(0)
                .workers(1)
                .build()?;
            host.register(cfg)
                .with_context(|| format!("registering {}", module.display()))?;
            let inv = host.invoke(&name, &payload)?;
            eprint!("{}", inv.logs.to_display_string());
            let code = match &inv.outcome {
                Ok(out) => {
                    println!("{}", String::from_utf8_lossy(out));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error ({}): {e}", e.kind().as_str());
                    ExitCode::from(1)
                }
            };
            eprintln!("{}", inv.report.report_line());
            // Nothing is left to keep (no data dir, the artifact cache was
            // written at register): end the process without the host's
            // orderly stop (joining its threads, unmapping its pool).
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            std::mem::forget(host);
            Ok(code)
        }
        Command::Serve {
            config,
            functions,
            listen,
            grace,
            cluster,
            admin_token,
            admin_keys,
        } => {
            let (cfg, base) = match &config {
                Some(p) => (
                    Config::load(p)?,
                    p.parent().map(PathBuf::from).unwrap_or_default(),
                ),
                None => (Config::parse("")?, PathBuf::from(".")),
            };
            let cluster = cluster.options()?;
            // An empty token (an unset variable) means no control API; a
            // short one is refused before anything starts.
            let admin_token = admin_token.filter(|t| !t.is_empty());
            if let Some(t) = &admin_token {
                anyhow::ensure!(
                    t.len() >= 16,
                    "the admin token must be at least 16 bytes long"
                );
            }
            let mut keys = Vec::new();
            for k in &admin_keys {
                let Some((id, secret)) = k
                    .split_once('=')
                    .filter(|(i, s)| !i.is_empty() && !s.is_empty())
                else {
                    anyhow::bail!(
                        "--admin-key must be ID=SECRET, not {:?}",
                        k.split('=').next().unwrap_or("")
                    );
                };
                anyhow::ensure!(
                    secret.len() >= 16,
                    "the secret of admin key {id} must be at least 16 bytes long"
                );
                keys.push((id.to_string(), secret.to_string()));
            }
            let admin = http::AdminKeys {
                token: admin_token,
                keys,
            };
            let mut builder = Host::builder();
            if let Some(c) = cfg.concurrency {
                builder = builder.concurrency_limit(c);
            }
            if let Some(d) = &cfg.data_dir {
                builder = builder.data_dir(if d.is_absolute() {
                    d.clone()
                } else {
                    base.join(d)
                });
            }
            let host = builder.build()?;
            if cluster.is_none() && !host.events().is_durable() {
                tracing::warn!(
                    "no data_dir configured: Event invocations are kept in memory and lost on exit"
                );
            }
            let mut routes = Vec::new();
            let mut registrations = Vec::new();
            let file = config
                .as_ref()
                .map_or_else(String::new, |p| format!(" in {}", p.display()));
            for (i, f) in cfg.functions.iter().enumerate() {
                let fc = f
                    .to_config(&base, i)
                    .with_context(|| file.trim_start().to_string())?;
                let ec = f
                    .event_config(i)
                    .with_context(|| file.trim_start().to_string())?;
                registrations.push((fc, ec, format!("function `{}`{file}", f.name)));
                for r in &f.routes {
                    routes.push(Route::parse(r, &f.name)?);
                }
            }
            for spec in &functions {
                let (name, path) = spec
                    .split_once('=')
                    .with_context(|| format!("--function {spec:?}: expected NAME=PATH"))?;
                registrations.push((
                    FunctionConfig::from_file(name, path),
                    None,
                    format!("--function {spec}"),
                ));
            }
            let addr = listen
                .or(cfg.listen.clone())
                .unwrap_or_else(|| "127.0.0.1:9000".into());
            let grace = parse_duration(&grace).context("--grace")?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                // In a cluster the config's functions are registered through
                // it: the first node publishes them, the others find them
                // already there (same code and settings: no new version).
                let cluster = match cluster {
                    Some(o) => Some(Cluster::join(host.clone(), o).await?),
                    None => None,
                };
                for (fc, events, what) in registrations {
                    let name = fc.name().to_string();
                    match &cluster {
                        Some(c) => c.register(fc).await.map(drop),
                        None => host.register(fc).map(drop),
                    }
                    .with_context(|| what.clone())?;
                    if let Some(ec) = events {
                        host.events()
                            .configure(&name, ec)
                            .with_context(|| format!("{what}: events"))?;
                    }
                }
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("listening on {addr}"))?;
                // The line a supervisor (or test) waits for.
                println!("listening on http://{}", listener.local_addr()?);
                let gw = Gateway {
                    host,
                    routes,
                    max_body: cfg.max_body() as usize,
                    cluster,
                    admin,
                };
                http::serve(listener, gw, shutdown_signal(), grace).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New { name, lang } => {
            scaffold::new_project(&PathBuf::from(&name), &name, lang)?;
            println!("created {name}/ — build it with `fnhost build {name}`");
            Ok(ExitCode::SUCCESS)
        }
        Command::Build { path } => {
            let wasm = scaffold::build(&path)?;
            println!("{}", wasm.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!(target: "fnhost::http", "signal received: draining");
}
