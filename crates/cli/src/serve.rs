use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use inferd_runtime::audit::{Audit, AuditSettings, WhenFull};
use inferd_runtime::state::StateStore;
use inferd_runtime::{ControlMode, Runtime};
use inferd_server::ServerConfig;
use tokio::sync::watch;

use crate::logging::{self, LogFormat};
use crate::size::parse_size;

#[derive(Args)]
pub struct ServeArgs {
    /// Directory holding <model>/[config.toml] and <model>/<version>/model.onnx.
    #[arg(long, env = "INFERD_MODEL_REPOSITORY", value_name = "DIR")]
    model_repository: PathBuf,

    /// Serve only this model (KServe's single-model runtimes: `--model-name={{.Name}}`). The
    /// repository may then be the model's own directory (`1/model.onnx`, or the model's files
    /// with no version directory, as KServe's storage initializer leaves /mnt/models) or a
    /// repository holding NAME/.
    #[arg(long, env = "INFERD_MODEL_NAME", value_name = "NAME")]
    model_name: Option<String>,

    /// Size of the response cache for models with `[response_cache] enabled = true` (e.g.
    /// 256MiB); 0 turns it off. Least recently used answers are evicted first.
    #[arg(long, env = "INFERD_CACHE_SIZE", default_value = "0", value_parser = parse_size)]
    cache_size: usize,

    /// Seconds the server goes on answering after SIGTERM or SIGINT while readiness already
    /// says 503 (so load balancers and Kubernetes endpoints stop sending first); then it
    /// finishes in-flight requests and exits. A second signal ends the grace at once.
    #[arg(long, env = "INFERD_SHUTDOWN_GRACE", default_value_t = 5.0, value_parser = grace)]
    shutdown_grace: f64,

    /// Address to listen on; 0.0.0.0 exposes the server to the network.
    #[arg(long, env = "INFERD_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,

    /// Port of the HTTP/REST endpoint (Open Inference Protocol).
    #[arg(long, env = "INFERD_HTTP_PORT", default_value_t = 8000)]
    http_port: u16,

    /// Port of the gRPC endpoint (inference.GRPCInferenceService and grpc.health.v1.Health).
    #[arg(long, env = "INFERD_GRPC_PORT", default_value_t = 8001)]
    grpc_port: u16,

    #[command(flatten)]
    backend: crate::backends::BackendArgs,

    /// Port of the Prometheus metrics endpoint (GET /metrics).
    #[arg(long, env = "INFERD_METRICS_PORT", default_value_t = 8002)]
    metrics_port: u16,

    /// Serve /metrics on --metrics-port (counters are kept either way: the statistics extension
    /// reads them).
    #[arg(long, env = "INFERD_ALLOW_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    allow_metrics: bool,

    /// Largest HTTP request body or gRPC message accepted (e.g. 64MiB); larger ones get 413
    /// (HTTP) or RESOURCE_EXHAUSTED (gRPC).
    #[arg(long, env = "INFERD_MAX_REQUEST_SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_request_size: usize,

    /// Report ready only when every model in the repository loaded (like Triton). With false,
    /// ready once loading finished even if some models failed.
    #[arg(long, env = "INFERD_STRICT_READINESS", default_value_t = true, action = clap::ArgAction::Set)]
    strict_readiness: bool,

    /// Let local clients register system shared memory regions (Triton's extension) and pass
    /// tensors through them: a process on this host hands the server memory to read and write.
    #[arg(long, env = "INFERD_ALLOW_CLIENT_SHM")]
    allow_client_shm: bool,

    /// Who decides what is loaded: `none` loads the whole repository at start; `poll` also
    /// rescans it every --repository-poll-secs and loads/unloads what changed; `explicit` loads
    /// only --load-model at start and then what the load/unload API asks for; `lazy` loads a
    /// model on its first request (and `pinned = true` models at start), under
    /// --model-memory-limit and --max-loaded-models.
    #[arg(
        long,
        env = "INFERD_MODEL_CONTROL_MODE",
        value_enum,
        default_value = "none"
    )]
    model_control_mode: ControlArg,

    /// Lazy mode: memory the loaded models may take (measured per load, e.g. 4GiB); a load
    /// that would pass it first unloads the least recently used idle models.
    #[arg(long, env = "INFERD_MODEL_MEMORY_LIMIT", value_parser = parse_size)]
    model_memory_limit: Option<usize>,

    /// Lazy mode: models loaded at once; more unload the least recently used idle ones.
    #[arg(long, env = "INFERD_MAX_LOADED_MODELS", value_parser = clap::value_parser!(u64).range(1..))]
    max_loaded_models: Option<u64>,

    /// Seconds between repository scans in poll mode.
    #[arg(long, env = "INFERD_REPOSITORY_POLL_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    repository_poll_secs: u64,

    /// Model to load at start in explicit mode (repeatable; `*` loads all).
    #[arg(long = "load-model", value_name = "NAME")]
    load_models: Vec<String>,

    /// Directory of the state store (aliases, traffic policies, rollouts and their history), an
    /// SQLite file kept across restarts. Without it (and without --state-url) that state lives
    /// in memory.
    #[arg(
        long,
        env = "INFERD_STATE_DIR",
        value_name = "DIR",
        conflicts_with = "state_url"
    )]
    state_dir: Option<PathBuf>,

    /// PostgreSQL state store shared by replicas, e.g. postgres://user:pass@host:5432/inferd;
    /// a change made on one replica reaches the others within --state-poll-ms.
    #[arg(long, env = "INFERD_STATE_URL", value_name = "URL")]
    state_url: Option<String>,

    /// How often the state store is checked for other replicas' changes, and rollouts advance.
    #[arg(long, env = "INFERD_STATE_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..))]
    state_poll_ms: u64,

    /// Where models with a `source` (S3, MLflow) are downloaded to.
    #[arg(long, env = "INFERD_MODEL_CACHE", value_name = "DIR")]
    model_cache: Option<PathBuf>,

    /// Seconds between checks of the models' sources (an MLflow alias that moved, new objects
    /// in S3); what changed loads beside what serves, then swaps in.
    #[arg(long, env = "INFERD_SOURCE_POLL_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    source_poll_secs: u64,

    /// Keep an audit log of every inference request in DIR (off without it).
    #[arg(long, env = "INFERD_AUDIT_DIR", value_name = "DIR")]
    audit_dir: Option<PathBuf>,

    /// Audit segments are closed past this size (e.g. 64MiB)...
    #[arg(long, env = "INFERD_AUDIT_SEGMENT_SIZE", default_value = "64MiB", value_parser = parse_size)]
    audit_segment_size: usize,

    /// ...or this many seconds.
    #[arg(long, env = "INFERD_AUDIT_SEGMENT_SECS", default_value_t = 3600)]
    audit_segment_secs: u64,

    /// Closed audit segments kept (the oldest are removed first); all when unset.
    #[arg(long, env = "INFERD_AUDIT_KEEP_SEGMENTS")]
    audit_keep_segments: Option<usize>,

    /// Closed audit segments younger than this many days are kept; all when unset.
    #[arg(long, env = "INFERD_AUDIT_KEEP_DAYS")]
    audit_keep_days: Option<u64>,

    /// Audit records reach the disk (fsync) at least this often, in milliseconds; 0 syncs
    /// every batch written.
    #[arg(long, env = "INFERD_AUDIT_FSYNC_MS", default_value_t = 1000)]
    audit_fsync_ms: u64,

    /// Audit records that may wait for the writer.
    #[arg(long, env = "INFERD_AUDIT_QUEUE", default_value_t = 65536)]
    audit_queue: usize,

    /// When the audit writer falls behind: `block` (requests wait: nothing is lost) or `drop`
    /// (records are dropped and counted).
    #[arg(
        long,
        env = "INFERD_AUDIT_WHEN_FULL",
        value_enum,
        default_value = "block"
    )]
    audit_when_full: WhenFullArg,

    /// Forward audit records at least once to this HTTP endpoint as CloudEvents (KServe's
    /// `ce-*` headers), reading them from the log: it resumes where it stopped.
    #[arg(
        long,
        env = "INFERD_AUDIT_SINK_URL",
        value_name = "URL",
        requires = "audit_dir"
    )]
    audit_sink_url: Option<String>,

    /// Stream consumers (Kafka, NATS JetStream) to run, declared in a TOML file of
    /// `[[stream]]` tables; see README "Streaming". Listed at GET /v2/streams.
    #[arg(long, env = "INFERD_STREAMS")]
    streams: Option<PathBuf>,

    /// Log line format.
    #[arg(long, env = "INFERD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Log lines are written in batches this often (milliseconds; warnings and errors at once,
    /// everything before exit); 0 writes each line at once.
    #[arg(long, env = "INFERD_LOG_BUFFER_MS", default_value_t = 25)]
    log_buffer_ms: u64,

    /// Log filter: a level (error, warn, info, debug, trace) or per-module directives in
    /// EnvFilter syntax; changeable at run time through /v2/logging.
    #[arg(long, env = "INFERD_LOG", default_value = logging::DEFAULT_FILTER)]
    log_level: String,

    /// One log line per inference request (id, model, version, status, latency); also
    /// switchable at run time through /v2/logging.
    #[arg(long, env = "INFERD_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    access_log: bool,

    /// OpenTelemetry collector to export traces to over OTLP/gRPC, e.g. http://localhost:4317.
    /// Without it no trace spans are created.
    #[arg(long, env = "INFERD_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,

    /// Share of requests traced when the caller's `traceparent` does not decide (0 to 1).
    #[arg(long, env = "INFERD_TRACE_SAMPLE_RATIO", default_value_t = 1.0, value_parser = ratio)]
    trace_sample_ratio: f64,

    #[command(flatten)]
    security: SecurityArgs,
}

/// TLS, authentication and connection limits (README "Security").
#[derive(Args)]
struct SecurityArgs {
    /// Serve HTTP and gRPC over TLS with this certificate chain (PEM); re-read when it changes.
    #[arg(
        long,
        env = "INFERD_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "INFERD_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// mTLS: client certificates are checked against these CA certificates (PEM).
    #[arg(
        long,
        env = "INFERD_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,

    /// With --tls-client-ca: `required` refuses clients without a certificate; `optional`
    /// checks one when shown (others then need a bearer token).
    #[arg(
        long,
        env = "INFERD_TLS_CLIENT_AUTH",
        value_enum,
        default_value = "required"
    )]
    tls_client_auth: ClientAuthArg,

    /// Serve /metrics over TLS too (same certificate).
    #[arg(long, env = "INFERD_METRICS_TLS", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    metrics_tls: bool,

    /// Require credentials (API keys from --auth-keys, JWTs from --auth-jwks-url, mTLS
    /// subjects from the key file), checked against each endpoint's scope.
    #[arg(long, env = "INFERD_AUTH", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    auth: bool,

    /// The key file (`inferd keys create`); re-read when it changes.
    #[arg(long, env = "INFERD_AUTH_KEYS", value_name = "FILE")]
    auth_keys: Option<PathBuf>,

    /// JWKS of the identity provider whose JWTs are accepted (RS256/ES256 and kin).
    #[arg(long, env = "INFERD_AUTH_JWKS_URL", value_name = "URL")]
    auth_jwks_url: Option<String>,

    /// The `iss` JWTs must carry.
    #[arg(long, env = "INFERD_AUTH_ISSUER")]
    auth_issuer: Option<String>,

    /// The `aud` JWTs must carry.
    #[arg(long, env = "INFERD_AUTH_AUDIENCE")]
    auth_audience: Option<String>,

    /// JWT claim holding the scopes; default `scope` (space-separated), then `scp` (a list).
    #[arg(long, env = "INFERD_AUTH_SCOPE_CLAIM")]
    auth_scope_claim: Option<String>,

    /// JWT claim holding the caller's request rate (requests per second).
    #[arg(long, env = "INFERD_AUTH_RATE_CLAIM", default_value = "inferd_rate")]
    auth_rate_claim: String,

    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = "INFERD_AUTH_LEEWAY_SECS", default_value_t = 30)]
    auth_leeway_secs: u64,

    /// Endpoint groups open without credentials (comma-separated scopes; `none` for none).
    #[arg(long, env = "INFERD_AUTH_PUBLIC", default_value = "health")]
    auth_public: String,

    /// Scrapes of /metrics need the `statistics` scope (public otherwise).
    #[arg(long, env = "INFERD_METRICS_AUTH", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    metrics_auth: bool,

    /// Connections open at once per listener; more wait in the kernel's backlog.
    #[arg(long, env = "INFERD_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,

    /// A TLS handshake, and an HTTP request's headers, must arrive within this many seconds;
    /// idle keep-alive connections are closed after it too.
    #[arg(long, env = "INFERD_HEADER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClientAuthArg {
    Required,
    Optional,
}

impl SecurityArgs {
    fn tls(&self, alpn: &[&[u8]]) -> Result<Option<Arc<inferd_server::Tls>>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let settings = inferd_server::TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: self.tls_client_ca.clone(),
            client_auth: match self.tls_client_auth {
                ClientAuthArg::Required => inferd_server::ClientAuth::Required,
                ClientAuthArg::Optional => inferd_server::ClientAuth::Optional,
            },
        };
        let tls = Arc::new(inferd_server::Tls::new(settings, alpn)?);
        tokio::spawn(Arc::clone(&tls).watch(FILE_CHECK));
        Ok(Some(tls))
    }

    fn listen(&self, tls: Option<Arc<inferd_server::Tls>>) -> inferd_server::ListenSettings {
        inferd_server::ListenSettings {
            tls,
            max_connections: self.max_connections as usize,
            handshake_timeout: Duration::from_secs(self.header_timeout_secs),
        }
    }

    fn auth(
        &self,
        registry: &prometheus::Registry,
    ) -> Result<Option<Arc<inferd_server::auth::Auth>>, String> {
        use inferd_server::auth::{Auth, AuthSettings, Group, JwtSettings};
        if !self.auth {
            if self.auth_keys.is_some() || self.auth_jwks_url.is_some() {
                return Err("--auth-keys and --auth-jwks-url take effect with --auth".into());
            }
            return Ok(None);
        }
        let public = match self.auth_public.trim() {
            "" | "none" => Default::default(),
            list => list
                .split(',')
                .map(|g| g.trim().parse::<Group>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("--auth-public: {e}"))?,
        };
        let jwt = self.auth_jwks_url.as_ref().map(|url| JwtSettings {
            jwks_url: url.clone(),
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
            scope_claim: self.auth_scope_claim.clone(),
            rate_claim: self.auth_rate_claim.clone(),
            leeway: Duration::from_secs(self.auth_leeway_secs),
        });
        let auth = Arc::new(Auth::new(
            AuthSettings {
                keys_file: self.auth_keys.clone(),
                jwt,
                public,
            },
            registry,
        )?);
        tokio::spawn(Arc::clone(&auth).watch(FILE_CHECK, JWKS_REFRESH));
        Ok(Some(auth))
    }
}

/// How often key, certificate and CA files are checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(1);
/// How often the JWKS is fetched again (new keys with a known `kid` are fetched at once).
const JWKS_REFRESH: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WhenFullArg {
    Block,
    Drop,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ControlArg {
    None,
    Poll,
    Explicit,
    Lazy,
}

impl From<ControlArg> for ControlMode {
    fn from(arg: ControlArg) -> ControlMode {
        match arg {
            ControlArg::None => ControlMode::None,
            ControlArg::Poll => ControlMode::Poll,
            ControlArg::Explicit => ControlMode::Explicit,
            ControlArg::Lazy => ControlMode::Lazy,
        }
    }
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{s}' is not a ratio between 0 and 1")),
    }
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    inferd_runtime::memory::tune_allocator(inferd_runtime::memory::Workload::Server);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inferd")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Inside the runtime: the OTLP exporter's channel belongs to it.
    let logging = {
        let _entered = runtime.enter();
        logging::init(
            args.log_format,
            &args.log_level,
            args.otlp_endpoint.as_deref(),
            Duration::from_millis(args.log_buffer_ms),
        )?
    };
    let result = runtime.block_on(serve(args, Arc::clone(&logging)));
    logging.flush();
    result
}

async fn serve(args: ServeArgs, logging: Arc<logging::Logging>) -> Result<(), String> {
    if !args.model_repository.is_dir() {
        return Err(format!(
            "model repository {} is not a directory",
            args.model_repository.display()
        ));
    }
    // A bad streams file stops start-up before anything listens.
    let stream_specs = match &args.streams {
        Some(path) => inferd_streams::load(path).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let repository = match &args.model_name {
        Some(name) => {
            let views = args.model_cache.clone().unwrap_or_else(std::env::temp_dir);
            crate::single_model::view(&args.model_repository, name, &views)?
        }
        None => args.model_repository.clone(),
    };
    let mode = ControlMode::from(args.model_control_mode);
    if !matches!(mode, ControlMode::Explicit | ControlMode::Lazy) && !args.load_models.is_empty() {
        return Err("--load-model needs --model-control-mode explicit or lazy (the other modes load the whole repository)".into());
    }
    let budget = inferd_runtime::Budget {
        memory_bytes: args.model_memory_limit.map(|b| b as u64),
        models: args.max_loaded_models.map(|n| n as usize),
    };
    if mode != ControlMode::Lazy && budget != inferd_runtime::Budget::default() {
        return Err(
            "--model-memory-limit and --max-loaded-models need --model-control-mode lazy \
             (models load on demand, so some may be unloaded to make room)"
                .into(),
        );
    }
    let backends = args.backend.backends();
    let store = match (&args.state_url, &args.state_dir) {
        (Some(url), _) => StateStore::postgres(url).await?,
        (None, dir) => StateStore::sqlite(dir.as_deref())?,
    };
    let access = Arc::new(inferd_server::AccessLog::new(args.access_log));
    let audit = match &args.audit_dir {
        None => None,
        Some(dir) => Some(Arc::new(Audit::start(AuditSettings {
            dir: dir.clone(),
            segment_bytes: args.audit_segment_size as u64,
            segment_age: Duration::from_secs(args.audit_segment_secs.max(1)),
            keep_segments: args.audit_keep_segments,
            keep_age: args
                .audit_keep_days
                .map(|d| Duration::from_secs(d * 86_400)),
            fsync_every: Duration::from_millis(args.audit_fsync_ms),
            queue: args.audit_queue,
            when_full: match args.audit_when_full {
                WhenFullArg::Block => WhenFull::Block,
                WhenFullArg::Drop => WhenFull::Drop,
            },
        })?)),
    };
    let mut runtime = Runtime::new(&repository, backends)
        .with_control_mode(mode)
        .with_store(store)
        .with_model_cache(
            args.model_cache
                .clone()
                .unwrap_or_else(inferd_runtime::source::default_cache),
        )
        .with_response_cache(args.cache_size)
        .with_observer(Arc::clone(&access) as Arc<dyn inferd_runtime::Observer>);
    if let Some(audit) = &audit {
        runtime = runtime.with_observer(Arc::clone(audit) as Arc<dyn inferd_runtime::Observer>);
    }
    if mode == ControlMode::Lazy {
        runtime = runtime.with_budget(budget);
    }
    let runtime = Arc::new(runtime);
    if let (Some(dir), Some(url)) = (&args.audit_dir, &args.audit_sink_url) {
        let source = format!("inferd/{}", runtime.replica());
        let sink = inferd_runtime::audit::sink::Sink::new(dir, url, &source)?;
        tokio::spawn(sink.run());
    }
    runtime
        .reload_state()
        .await
        .map_err(|e| format!("cannot read the state store: {e}"))?;
    tokio::spawn(Arc::clone(&runtime).run_background(Duration::from_millis(args.state_poll_ms)));
    // Models with a source follow it (a moved MLflow alias, new objects in S3).
    let sources = Arc::clone(&runtime);
    let every = Duration::from_secs(args.source_poll_secs);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            sources.refresh_sources().await;
        }
    });
    let bind = |port: u16| async move {
        let addr = SocketAddr::new(args.host, port);
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let http_listener = bind(args.http_port).await?;
    let grpc_listener = bind(args.grpc_port).await?;
    let metrics_listener = match args.allow_metrics {
        true => Some(bind(args.metrics_port).await?),
        false => None,
    };
    let metrics = Arc::new(inferd_server::Metrics::new(
        Arc::clone(&runtime),
        audit.clone(),
    ));
    let telemetry = Arc::new(inferd_server::Telemetry::new(
        args.otlp_endpoint.is_some(),
        args.trace_sample_ratio,
        access,
        Some(logging as Arc<dyn inferd_server::LogControl>),
    ));
    let streams = match stream_specs.is_empty() {
        true => None,
        false => Some(
            inferd_streams::Streams::start(
                stream_specs,
                inferd_server::Pipeline {
                    runtime: Arc::clone(&runtime),
                    telemetry: Arc::clone(&telemetry),
                },
                metrics.registry(),
            )
            .map_err(|e| e.to_string())?,
        ),
    };
    let config = ServerConfig {
        max_message_bytes: args.max_request_size,
        strict_readiness: args.strict_readiness,
        streams: streams
            .clone()
            .map(|s| s as Arc<dyn inferd_server::StreamsView>),
        shared_memory: Arc::new(inferd_server::shm::SharedMemory::new(args.allow_client_shm)),
    };
    let security = &args.security;
    let auth = security.auth(metrics.registry())?;
    if auth.is_none() && !args.host.is_loopback() {
        tracing::warn!(
            host = %args.host,
            "listening beyond loopback without --auth: anyone who reaches these ports can run, \
             load and unload models"
        );
    }
    let http_listen = security.listen(security.tls(&[b"http/1.1"])?);
    let grpc_listen = security.listen(security.tls(&[b"h2"])?);
    let metrics_listen = match security.metrics_tls {
        true => security.listen(security.tls(&[b"http/1.1"])?),
        false => security.listen(None),
    };
    let metrics_auth = auth.clone().filter(|_| security.metrics_auth);
    let header_timeout = Duration::from_secs(security.header_timeout_secs);
    let app = inferd_server::router(
        Arc::clone(&runtime),
        config.clone(),
        Arc::clone(&metrics),
        Arc::clone(&telemetry),
        auth.clone(),
    );
    tracing::info!(
        http = %SocketAddr::new(args.host, args.http_port),
        grpc = %SocketAddr::new(args.host, args.grpc_port),
        metrics = ?args.allow_metrics.then(|| SocketAddr::new(args.host, args.metrics_port)),
        repository = %args.model_repository.display(),
        "endpoints listening"
    );

    // Serve health and metadata while models load; readiness reports the loading state.
    tokio::spawn(load_and_poll(
        Arc::clone(&runtime),
        args.load_models.clone(),
        Duration::from_secs(args.repository_poll_secs),
    ));

    // A signal makes the server unready at once; after the grace period it stops every
    // endpoint, each finishing its in-flight requests.
    let (stop_tx, stop_rx) = watch::channel(false);
    let draining = Arc::clone(&runtime);
    let grace = Duration::from_secs_f64(args.shutdown_grace);
    tokio::spawn(async move {
        shutdown_signal().await;
        draining.begin_draining();
        tracing::info!(
            grace_secs = grace.as_secs_f64(),
            "shutting down: readiness is 503; answering through the grace period"
        );
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = shutdown_signal() => tracing::info!("second signal: grace period cut short"),
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let http = async {
        inferd_server::serve_http(
            http_listener,
            app,
            http_listen,
            header_timeout,
            stopped(stop_rx.clone()),
        )
        .await
        .map_err(|e| format!("HTTP server failed: {e}"))
    };
    let grpc = inferd_server::serve_grpc(
        grpc_listener,
        grpc_listen,
        Arc::clone(&runtime),
        config,
        Arc::clone(&metrics),
        telemetry,
        auth,
        stopped(stop_rx.clone()),
    );
    let metrics_endpoint = async {
        match metrics_listener {
            Some(listener) => inferd_server::serve_metrics(
                listener,
                metrics_listen,
                metrics,
                metrics_auth,
                stopped(stop_rx.clone()),
            )
            .await
            .map_err(|e| format!("metrics server failed: {e}")),
            None => Ok(()),
        }
    };
    // Streams stop fetching on the same signal, finish and commit what is in flight.
    let stream_consumers = async {
        if let Some(streams) = &streams {
            stopped(stop_rx.clone()).await;
            streams.shutdown().await;
        }
        Ok::<(), String>(())
    };
    tokio::try_join!(http, grpc, metrics_endpoint, stream_consumers)?;
    if let Some(audit) = &audit {
        // Every request has been answered: its record is queued. Write them all out.
        let closing = Arc::clone(audit);
        tokio::task::spawn_blocking(move || closing.close())
            .await
            .map_err(|e| format!("closing the audit log failed: {e}"))?;
        let s = audit_stats(audit);
        tracing::info!(
            written = s.0,
            dropped = s.1,
            failed = s.2,
            "audit log closed"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Start-up loading, then in poll mode a rescan every `period`.
async fn load_and_poll(runtime: Arc<Runtime>, load_models: Vec<String>, period: Duration) {
    match runtime.load_startup(&load_models).await {
        Ok(()) => {
            let r = runtime.readiness();
            if r.ready {
                tracing::info!("start-up loading finished; ready");
            } else {
                tracing::warn!(not_ready = ?r.not_ready, "loading finished; some models are not ready");
            }
        }
        Err(e) => {
            tracing::error!(repository = %runtime.repository().display(), "cannot read the model repository: {e}")
        }
    }
    if runtime.control_mode() != ControlMode::Poll {
        return;
    }
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(e) = runtime.poll().await {
            tracing::error!(repository = %runtime.repository().display(), "cannot scan the model repository: {e}");
        }
    }
}

fn grace(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('s').parse::<f64>() {
        Ok(secs) if (0.0..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "'{text}' is not a number of seconds from 0 to 3600"
        )),
    }
}

/// Resolves on SIGINT or SIGTERM; the server then finishes in-flight requests and exits.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

fn audit_stats(audit: &Audit) -> (u64, u64, u64) {
    let s = audit.stats();
    (s.written, s.dropped, s.failed)
}
