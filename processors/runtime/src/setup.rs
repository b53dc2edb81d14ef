//! Connecting to NATS and making the server's streams and consumers what this build and
//! this configuration say they are.
//!
//! * [`NatsConnect`]: a comma-separated server list (as the `nats` CLI takes it),
//!   user/password, token, NKey seed or a `.creds` file, and TLS (an extra CA, a client
//!   certificate, TLS required).
//! * [`ensure_streams`] and [`ensure_consumer`] create what is missing and update what
//!   drifted (ack wait, delivery limit, TTLs, de-duplication window, replicas): a
//!   setting changed in the configuration takes effect at the next start. What the
//!   server cannot change in place (a stream's retention) is refused with an error that
//!   says what differs and how to fix it.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use serde::{Deserialize, Serialize};
use vigil_contracts::streams::{self, ConsumerDef, Retention, StreamDef, StreamTuning};
use vigil_contracts::Subjects;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("JetStream setup failed for {what}: {message}")]
    Setup { what: String, message: String },
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    /// The message is larger than the server accepts (`max_payload`): retrying will not help.
    #[error("publish to {subject} failed, the message is too large: {message}")]
    TooLarge { subject: String, message: String },
}

/// How to reach the NATS servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NatsConnect {
    /// One server or a comma-separated list (`nats://a:4222,nats://b:4222`); the client
    /// connects to any and fails over to the others.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An NKey seed (`SU…`).
    pub nkey_seed: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) for the servers' TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse to talk to a server without TLS.
    pub tls_required: bool,
}

impl NatsConnect {
    pub fn url(url: impl Into<String>) -> Self {
        NatsConnect {
            url: url.into(),
            ..Default::default()
        }
    }

    /// The server list, each with a scheme.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, RunnerError> {
        let mut out = Vec::new();
        for part in self.url.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let addr: async_nats::ServerAddr = part.parse().map_err(|e| RunnerError::Connect {
                url: self.url.clone(),
                message: format!("{part}: {e}"),
            })?;
            out.push(addr);
        }
        if out.is_empty() {
            return Err(RunnerError::Connect {
                url: self.url.clone(),
                message: "no server given".into(),
            });
        }
        Ok(out)
    }
}

/// Connect to NATS with unlimited reconnects (a NATS restart must not end a stage).
pub async fn connect(url: &str) -> Result<async_nats::Client, RunnerError> {
    connect_with(&NatsConnect::url(url)).await
}

/// Connect with credentials and TLS as configured; a server that is not there yet is
/// waited for (services: `vigil run`).
pub async fn connect_with(c: &NatsConnect) -> Result<async_nats::Client, RunnerError> {
    connect_opts(c, true).await
}

/// Connect once, failing at once when no server answers or the credentials are refused
/// (commands: `vigil submit`, `feeds request`, `policy publish`).
pub async fn connect_once(c: &NatsConnect) -> Result<async_nats::Client, RunnerError> {
    connect_opts(c, false).await
}

async fn connect_opts(c: &NatsConnect, wait: bool) -> Result<async_nats::Client, RunnerError> {
    crate::install_crypto_provider();
    let err = |m: String| RunnerError::Connect {
        url: c.url.clone(),
        message: m,
    };
    let servers = c.servers()?;
    let mut o = match &c.creds_file {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| err(format!("credentials file {}: {e}", path.display())))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let (Some(u), Some(p)) = (&c.user, &c.password) {
        o = o.user_and_password(u.clone(), p.clone());
    } else if c.user.is_some() || c.password.is_some() {
        return Err(err("give both a user and a password".into()));
    }
    if let Some(t) = &c.token {
        o = o.token(t.clone());
    }
    if let Some(seed) = &c.nkey_seed {
        o = o.nkey(seed.clone());
    }
    if let Some(ca) = &c.tls_ca {
        o = o.add_root_certificates(ca.clone());
    }
    match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) => o = o.add_client_certificate(cert.clone(), key.clone()),
        (None, None) => {}
        _ => return Err(err("give both tls_cert and tls_key".into())),
    }
    if c.tls_required {
        o = o.require_tls(true);
    }
    if wait {
        o = o.retry_on_initial_connect();
    }
    o.max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .map_err(|e| err(e.to_string()))
}

fn stream_config(def: &StreamDef) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: def.name.clone(),
        subjects: def.subjects.clone(),
        retention: match def.retention {
            Retention::WorkQueue => jetstream::stream::RetentionPolicy::WorkQueue,
            Retention::Limits => jetstream::stream::RetentionPolicy::Limits,
        },
        max_age: def.max_age,
        duplicate_window: def.duplicate_window,
        num_replicas: def.num_replicas.max(1),
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    }
}

/// Create the streams if missing; update those whose settings drifted; refuse one whose
/// retention differs (it cannot be changed in place).
pub async fn ensure_streams(
    js: &jetstream::Context,
    subjects: &Subjects,
    tuning: &StreamTuning,
) -> Result<(), RunnerError> {
    for def in streams::all_streams(subjects, tuning) {
        ensure_stream(js, &def).await?;
    }
    Ok(())
}

async fn ensure_stream(js: &jetstream::Context, def: &StreamDef) -> Result<(), RunnerError> {
    let setup = |e: &dyn std::fmt::Display| RunnerError::Setup {
        what: format!("stream {}", def.name),
        message: e.to_string(),
    };
    let want = stream_config(def);
    let mut existing = match js.get_stream(&def.name).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            js.create_stream(want.clone())
                .await
                .map_err(|e| setup(&e))?;
            return Ok(());
        }
        Err(e) => return Err(setup(&e)),
    };
    let have = existing.info().await.map_err(|e| setup(&e))?.config.clone();
    if have.retention != want.retention {
        return Err(setup(&format!(
            "the existing stream has retention {:?}, this vigil needs {:?}; it cannot be \
             changed in place: drain and delete the stream (nats stream rm {}) and restart",
            have.retention, want.retention, def.name
        )));
    }
    let mut subjects_have = have.subjects.clone();
    subjects_have.sort();
    let mut subjects_want = want.subjects.clone();
    subjects_want.sort();
    if have.max_age != want.max_age
        || have.duplicate_window != want.duplicate_window
        || have.num_replicas != want.num_replicas
        || subjects_have != subjects_want
    {
        tracing::info!(
            stream = %def.name,
            max_age = ?want.max_age,
            duplicate_window = ?want.duplicate_window,
            replicas = want.num_replicas,
            "updating the stream's settings"
        );
        let mut new = have;
        new.max_age = want.max_age;
        new.duplicate_window = want.duplicate_window;
        new.num_replicas = want.num_replicas;
        new.subjects = want.subjects;
        js.update_stream(&new).await.map_err(|e| setup(&e))?;
    }
    Ok(())
}

fn consumer_config(def: &ConsumerDef) -> pull::Config {
    pull::Config {
        durable_name: Some(def.durable_name.clone()),
        filter_subjects: def.filter_subjects.clone(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: def.ack_wait,
        max_deliver: def.max_deliver,
        backoff: Vec::new(),
        max_ack_pending: def.max_ack_pending,
        num_replicas: def.num_replicas,
        ..Default::default()
    }
}

/// The stage's durable consumer, created when missing and updated when its settings
/// differ from `def` (including a server-side backoff list left by an older vigil,
/// which would silently shorten the ack wait).
pub async fn ensure_consumer(
    js: &jetstream::Context,
    def: &ConsumerDef,
) -> Result<jetstream::consumer::PullConsumer, RunnerError> {
    let setup = |e: &dyn std::fmt::Display| RunnerError::Setup {
        what: format!("consumer {}", def.durable_name),
        message: e.to_string(),
    };
    let stream = js.get_stream(&def.stream).await.map_err(|e| setup(&e))?;
    let want = consumer_config(def);
    match stream.get_consumer::<pull::Config>(&def.durable_name).await {
        Ok(mut c) => {
            let have = c.info().await.map_err(|e| setup(&e))?.config.clone();
            let mut fs_have = have.filter_subjects.clone();
            if fs_have.is_empty() && !have.filter_subject.is_empty() {
                fs_have.push(have.filter_subject.clone());
            }
            fs_have.sort();
            let mut fs_want = want.filter_subjects.clone();
            fs_want.sort();
            let replicas_differ = have.num_replicas != want.num_replicas
                && !(have.num_replicas == 0 && want.num_replicas <= 1);
            if have.ack_wait != want.ack_wait
                || have.max_deliver != want.max_deliver
                || !have.backoff.is_empty()
                || have.max_ack_pending != want.max_ack_pending
                || fs_have != fs_want
                || replicas_differ
            {
                tracing::info!(
                    consumer = %def.durable_name,
                    ack_wait = ?want.ack_wait,
                    max_ack_pending = want.max_ack_pending,
                    "updating the consumer's settings"
                );
                stream.update_consumer(want).await.map_err(|e| setup(&e))
            } else {
                Ok(c)
            }
        }
        Err(_) => stream
            .get_or_create_consumer(&def.durable_name, want)
            .await
            .map_err(|e| setup(&e)),
    }
}
