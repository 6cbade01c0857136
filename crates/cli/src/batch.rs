//! `inferd batch`: score files with a model, in this process (the runtime of `serve`, no
//! server) or against running servers (`--url`, several to spread over replicas).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use inferd_batch::{Format, InProcess, Job, Location, ModelInfo, Progress, Scored, Scorer, Shard};
use inferd_core::TensorSpec;
use inferd_runtime::state::StateStore;
use inferd_runtime::{ControlMode, Runtime};

use crate::client::Client;

#[derive(Args)]
pub struct BatchArgs {
    /// The model: NAME, NAME:VERSION or NAME@ALIAS.
    #[arg(long)]
    model: String,

    /// Input file, directory (every file of the format) or s3://bucket/key-or-prefix;
    /// repeatable.
    #[arg(long = "input", required = true)]
    inputs: Vec<String>,

    /// Output file or s3://bucket/key. Rows come out in input order.
    #[arg(long)]
    output: String,

    #[arg(long, value_parser = parse_format)]
    input_format: Option<Format>,

    /// Default: from the output's extension, else the input's format.
    #[arg(long, value_parser = parse_format)]
    output_format: Option<Format>,

    /// Columns (CSV) or keys (JSON Lines) forming the model's one input, in order. Default:
    /// every column but --id-column, or columns named as the model's inputs.
    #[arg(long, value_delimiter = ',')]
    columns: Option<Vec<String>>,

    /// Column (or key) identifying a row; output and error rows carry it instead of the row
    /// number.
    #[arg(long)]
    id_column: Option<String>,

    /// Rows that fail, with the reason (JSON Lines). Default: OUTPUT.errors.jsonl.
    #[arg(long)]
    errors: Option<PathBuf>,

    /// Stop when more than N rows failed.
    #[arg(long)]
    max_errors: Option<u64>,

    /// The summary as JSON (rows, errors, seconds, rows/s, versions).
    #[arg(long)]
    summary: Option<PathBuf>,

    /// Continue an interrupted job from the checkpoint beside its output.
    #[arg(long)]
    resume: bool,

    /// Take a deterministic part I of N of the input (blocks of 1024 rows); with --shards N
    /// the index comes from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
    #[arg(long, value_parser = Shard::parse, conflicts_with = "shards")]
    shard: Option<Shard>,

    #[arg(long)]
    shards: Option<u64>,

    /// Rows per request. Default: the model's max_batch_size (256 for models without one
    /// whose first dimension is variable).
    #[arg(long)]
    batch_size: Option<usize>,

    /// Model instances in this process. Default: the config's `instance_count`, else one per
    /// core (a batch job has the machine to itself).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    instances: Option<u32>,

    /// Requests in flight, counting answered ones not yet written (output is in input order).
    /// Default: 4 per model instance in process, 4 per --url.
    #[arg(long)]
    concurrency: Option<usize>,

    /// Score against running servers (http://host:8000, https://host:8000 with the CA in
    /// $INFERD_CA_CERT, or grpc://host:8001) instead of loading the model here; repeatable to
    /// spread requests over replicas.
    #[arg(long = "url")]
    urls: Vec<String>,

    /// Retries of a request a server refused as unavailable or could not be reached.
    #[arg(long, default_value_t = 3)]
    retries: u32,

    /// The model repository, for scoring in this process.
    #[arg(long, env = "INFERD_MODEL_REPOSITORY", value_name = "DIR")]
    model_repository: Option<PathBuf>,

    /// State store with the aliases (the serve's --state-dir), for NAME@ALIAS in process.
    #[arg(long, env = "INFERD_STATE_DIR", conflicts_with = "state_url")]
    state_dir: Option<PathBuf>,

    #[arg(long, env = "INFERD_STATE_URL")]
    state_url: Option<String>,

    #[command(flatten)]
    backend: crate::backends::BackendArgs,

    /// Progress: a bar on a terminal, periodic lines otherwise (`auto`), or `off`.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProgressArg {
    Auto,
    Bar,
    Lines,
    Off,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// NAME, NAME:VERSION, NAME@ALIAS.
fn split_model(text: &str) -> (String, Option<String>) {
    if let Some((m, v)) = text.split_once('@') {
        return (m.to_string(), Some(v.to_string()));
    }
    match text.rsplit_once(':') {
        Some((m, v)) if !v.is_empty() => (m.to_string(), Some(v.to_string())),
        _ => (text.to_string(), None),
    }
}

pub fn run(args: BatchArgs) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INFERD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tract_onnx=error")),
        )
        .try_init();
    inferd_runtime::memory::tune_allocator(inferd_runtime::memory::Workload::Job);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inferd-batch")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let summary = runtime.block_on(batch(args))?;
    if summary.errors > 0 {
        return Err(format!(
            "{} of {} rows failed (see {})",
            summary.errors, summary.rows, summary.errors_file
        ));
    }
    Ok(())
}

async fn batch(args: BatchArgs) -> Result<inferd_batch::Summary, String> {
    let (name, version) = split_model(&args.model);
    let shard = match (args.shard, args.shards) {
        (Some(s), _) => s,
        (None, Some(n)) => {
            let index = std::env::var("JOB_COMPLETION_INDEX").map_err(
                |_| "--shards N takes the index from JOB_COMPLETION_INDEX, which is not set",
            )?;
            Shard::parse(&format!("{index}/{n}"))?
        }
        (None, None) => Shard::ALL,
    };
    let (scorer, concurrency): (Arc<dyn Scorer>, usize) = if args.urls.is_empty() {
        let repo = args
            .model_repository
            .as_ref()
            .ok_or("give --model-repository (to score here) or --url (to score on servers)")?;
        let store = match (&args.state_url, &args.state_dir) {
            (Some(url), _) => StateStore::postgres(url).await?,
            (None, dir) => StateStore::sqlite(dir.as_deref())?,
        };
        let runtime = Arc::new(
            Runtime::new(repo, args.backend.backends())
                .with_control_mode(ControlMode::Explicit)
                .with_store(store),
        );
        runtime
            .reload_state()
            .await
            .map_err(|e| format!("cannot read the state store: {e}"))?;
        let mut config = inferd_core::ModelConfig::load_from_dir(&repo.join(&name))
            .map_err(|e| format!("model '{name}': {e}"))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        config.instance_count = args
            .instances
            .or(config.instance_count)
            .or(Some(cores.min(inferd_core::MAX_INSTANCES)));
        runtime
            .load_model(&name, Some(config))
            .await
            .map_err(|e| e.to_string())?;
        let scorer = InProcess::new(Arc::clone(&runtime), &name, version.as_deref())?;
        let instances = runtime
            .describe(&name, version.as_deref())
            .map(|v| v.spec.instance_count as usize)
            .unwrap_or(1);
        (
            Arc::new(scorer),
            // 4, not 2: a chunk answered out of order holds its place until the ones before
            // it are written, so with 2 an instance whose thread was descheduled for a few ms
            // soon left the others idle (ratio to raw tract under a periodic CPU hog: 0.84 with
            // 2 per instance, 0.89 with 4; the same when the machine is quiet).
            args.concurrency.unwrap_or(4 * instances.max(1)),
        )
    } else {
        let concurrency = args.concurrency.unwrap_or(4 * args.urls.len());
        let remote = Remote::connect(
            &args.urls,
            &name,
            version.as_deref(),
            concurrency,
            args.retries,
        )
        .await?;
        (Arc::new(remote), concurrency)
    };
    let job = Job {
        inputs: args
            .inputs
            .iter()
            .map(|i| Location::parse(i))
            .collect::<Result<_, _>>()?,
        input_format: args.input_format,
        output: Location::parse(&args.output)?,
        output_format: args.output_format,
        errors: args.errors.clone(),
        columns: args.columns.clone(),
        id_column: args.id_column.clone(),
        batch_size: args.batch_size,
        concurrency,
        resume: args.resume,
        max_errors: args.max_errors,
        shard,
        model: args.model.clone(),
    };
    let terminal = std::io::stderr().is_terminal();
    let progress: Box<dyn Progress> = match (args.progress, terminal) {
        (ProgressArg::Off, _) => Box::new(Silent),
        (ProgressArg::Bar, _) | (ProgressArg::Auto, true) => Box::new(Bar::new()),
        _ => Box::new(Lines::new()),
    };
    let result = inferd_batch::run(job, scorer, progress.as_ref()).await;
    drop(progress);
    let summary = result.map_err(|e| e.to_string())?;
    eprintln!(
        "inferd batch: {} rows ({} scored, {} failed) in {:.1} s, {:.0} rows/s, model {} version {}",
        summary.rows,
        summary.scored,
        summary.errors,
        summary.seconds,
        summary.rows_per_second,
        summary.model,
        summary.versions.join(",")
    );
    if let Some(path) = &args.summary {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(summary)
}

struct Silent;

impl Progress for Silent {
    fn update(&self, _: u64, _: u64, _: u64, _: u64) {}
}

/// A progress bar by bytes read, with rows and rows/s.
struct Bar {
    bar: indicatif::ProgressBar,
    started: Instant,
}

impl Bar {
    fn new() -> Bar {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {msg} (ETA {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Bar {
            bar,
            started: Instant::now(),
        }
    }
}

impl Progress for Bar {
    fn update(&self, rows: u64, errors: u64, bytes: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(bytes);
        let rate = rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar
            .set_message(format!("{rows} rows, {errors} errors, {rate:.0} rows/s"));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish();
    }
}

/// A line every 10 s when stderr is not a terminal (logs of a job runner).
struct Lines {
    started: Instant,
    last: std::sync::Mutex<Instant>,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            started: Instant::now(),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }
}

impl Progress for Lines {
    fn update(&self, rows: u64, errors: u64, bytes: u64, total: u64) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < Duration::from_secs(10) {
            return;
        }
        *last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let share = bytes as f64 / total.max(1) as f64;
        let eta = if share > 0.0 {
            secs / share - secs
        } else {
            0.0
        };
        eprintln!(
            "inferd batch: {rows} rows, {errors} errors, {:.0} rows/s, {:.1}% read, ETA {eta:.0} s",
            rows as f64 / secs.max(1e-3),
            share * 100.0
        );
    }
}

/// A connection to one server.
#[derive(Clone)]
enum Conn {
    Http(Arc<Client>),
    Grpc(inferd_server::GrpcClient),
}

/// Running servers over V2 REST with the binary extension (`http://`) or gRPC (`grpc://`),
/// round robin.
struct Remote {
    conns: Vec<Conn>,
    next: AtomicUsize,
    model_name: String,
    version: String,
    path: String,
    model: ModelInfo,
    retries: u32,
}

fn specs(
    metadata: &serde_json::Value,
    key: &str,
    drop_batch: bool,
) -> Result<Vec<TensorSpec>, String> {
    metadata[key]
        .as_array()
        .ok_or_else(|| format!("the model's metadata has no {key}"))?
        .iter()
        .map(|t| {
            let dims = crate::wire::dims(t);
            Ok(TensorSpec::new(
                t["name"].as_str().unwrap_or_default(),
                crate::wire::datatype(t)?,
                if drop_batch {
                    dims.get(1..).unwrap_or_default().to_vec()
                } else {
                    dims
                },
            ))
        })
        .collect()
}

impl Remote {
    async fn connect(
        urls: &[String],
        model: &str,
        version: Option<&str>,
        concurrency: usize,
        retries: u32,
    ) -> Result<Remote, String> {
        let per_url = concurrency.div_ceil(urls.len()).max(1);
        let token = std::env::var(crate::client::TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| format!("Bearer {}", t.trim()));
        let mut conns = Vec::new();
        for url in urls {
            if let Some(address) = url.strip_prefix("grpc://") {
                // HTTP/2 multiplexes: one connection carries every call to this server.
                let c = inferd_server::GrpcClient::connect(
                    address.trim_end_matches('/'),
                    token.clone(),
                )
                .await?;
                conns.extend((0..per_url).map(|_| Conn::Grpc(c.clone())));
            } else {
                for _ in 0..per_url {
                    conns.push(Conn::Http(Arc::new(Client::new(url)?)));
                }
            }
        }
        let base = match version {
            Some(v) => format!("/v2/models/{model}/versions/{v}"),
            None => format!("/v2/models/{model}"),
        };
        let info = match &conns[0] {
            Conn::Grpc(c) => {
                let d = c
                    .describe(model, version.unwrap_or_default())
                    .await
                    .map_err(|e| format!("{}: {e}", urls[0]))?;
                ModelInfo {
                    name: model.to_string(),
                    max_batch_size: d.max_batch_size,
                    inputs: d.inputs,
                    outputs: d.outputs,
                }
            }
            Conn::Http(first) => {
                let metadata = first
                    .ok(crate::client::Method::GET, &base, None)
                    .await
                    .map_err(|e| format!("{}: {e}", urls[0]))?;
                let config = first
                    .ok(crate::client::Method::GET, &format!("{base}/config"), None)
                    .await
                    .map_err(|e| format!("{}: {e}", urls[0]))?;
                let max_batch_size = config["max_batch_size"]
                    .as_u64()
                    .or_else(|| {
                        config["max_batch_size"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                    })
                    .unwrap_or(0) as u32;
                ModelInfo {
                    name: model.to_string(),
                    max_batch_size,
                    inputs: specs(&metadata, "inputs", max_batch_size > 0)?,
                    outputs: specs(&metadata, "outputs", max_batch_size > 0)?,
                }
            }
        };
        Ok(Remote {
            conns,
            next: AtomicUsize::new(0),
            model_name: model.to_string(),
            version: version.unwrap_or_default().to_string(),
            path: format!("{base}/infer"),
            model: info,
            retries,
        })
    }
}

impl Scorer for Remote {
    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn score(
        &self,
        id: String,
        request: inferd_runtime::InferRequest,
    ) -> inferd_batch::ScoreFuture {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let conns = self.conns.clone();
        let (path, retries) = (self.path.clone(), self.retries);
        let (model, version) = (self.model_name.clone(), self.version.clone());
        Box::pin(async move {
            let mut wait = Duration::from_millis(100);
            let mut attempt = 0;
            loop {
                // Each attempt on the next connection: another replica when there are several.
                let answer = match &conns[(first + attempt as usize) % conns.len()] {
                    Conn::Http(client) => client
                        .infer(&path, &request.inputs)
                        .await
                        .map(|a| (a.version, a.outputs)),
                    Conn::Grpc(client) => {
                        client.infer(&model, &version, &id, &request.inputs).await
                    }
                };
                match answer {
                    Ok((version, outputs)) => return Ok(Scored { version, outputs }),
                    Err(e) if attempt < retries && retryable(&e) => {
                        attempt += 1;
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }
}

/// Refusals worth another try: overload (HTTP 503/429, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED)
/// and connections that failed.
fn retryable(error: &str) -> bool {
    if error.starts_with("Unavailable") || error.starts_with("ResourceExhausted") {
        return true;
    }
    let http_client_error = error.starts_with('4') && !error.starts_with("429");
    let grpc_status = error.split(':').next().is_some_and(|w| {
        w.chars().all(|c| c.is_ascii_alphabetic())
            && w.chars().next().is_some_and(char::is_uppercase)
    });
    !http_client_error && !grpc_status
}
