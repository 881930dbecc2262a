//! What `serve` and `dev` share to serve gRPC: listen address, trusted keys,
//! catalogue and alarm settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::api::Serving;
use crate::api::limiter::Limits;
use crate::api::transport::{Plaintext, TlsFiles, TransportSettings};
use crate::audit::checkpoint::{AuditKey, Sink};
use crate::audit::checkpointer;
use crate::audit::dpo::AlarmSettings;
use crate::audit::writer::AuditLog;
use crate::catalogue::Catalogue;
use crate::domain::{Cvr, PartyId};
use crate::identity::Verifier;
use crate::identity::keys::{DEFAULT_AUDIENCE, DEV_KID, KeyFile};
use crate::store::Store;

#[derive(Args, Debug, Clone)]
pub struct GrpcArgs {
    /// Where the gRPC services listen.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    /// A public key to trust for bearer tokens (JSON key file; repeatable).
    #[arg(long = "jwt-key")]
    pub jwt_keys: Vec<PathBuf>,
    /// The audience tokens must name.
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// The data areas and purposes, replacing the built-in catalogue.
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
    /// KLE prefix whose lookups raise the sensitive-KLE alarm (repeatable).
    #[arg(long = "alarm-sensitive-kle", default_values_t = vec!["32.15".to_string()])]
    pub alarm_sensitive_kle: Vec<String>,
    /// More distinct citizens per user per hour than this raises an alarm.
    #[arg(long, default_value_t = 100)]
    pub alarm_volume: usize,
    /// Employee register for the colleague alarm: CSV lines `cpr,cvr`.
    #[arg(long)]
    pub employee_register: Option<PathBuf>,
    /// The server's TLS certificate chain (PEM). With --grpc-tls-key, gRPC
    /// is served over TLS.
    #[arg(long, requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// The server's TLS private key (PEM).
    #[arg(long, requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, requires = "grpc_tls_cert")]
    pub grpc_client_ca: Option<PathBuf>,
    /// A client certificate that stands for an IT system (repeatable):
    /// `<sha256 of the DER certificate, hex>=<system uuid>@<cvr>`. Needs
    /// --grpc-client-ca.
    #[arg(long = "system-certificate", requires = "grpc_client_ca")]
    pub system_certificates: Vec<String>,
    /// Serve plaintext gRPC on a non-loopback address (only when TLS ends in
    /// front of this server: bearer tokens and CPR numbers travel in it).
    #[arg(long, conflicts_with = "grpc_tls_cert")]
    pub insecure_plaintext: bool,
    /// A call running longer than this is cancelled, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = super::serve::parse_interval)]
    pub grpc_timeout: std::time::Duration,
    /// Calls served at once over all connections; more are refused
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub grpc_concurrency: u32,
    /// The longest a token may be valid (exp - iat), e.g. 12h.
    #[arg(long, default_value = "12h", value_parser = super::serve::parse_interval)]
    pub jwt_max_lifetime: std::time::Duration,
    /// Calls without a valid token per peer address per minute; more are
    /// refused RESOURCE_EXHAUSTED and summarised in one audit record.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub anonymous_per_minute: u32,
    /// The audit log's checkpoint key (PKCS#8 PEM, `overblik audit keygen`):
    /// signs checkpoints and keys each record's MAC.
    #[arg(long, env = "OVERBLIK_AUDIT_KEY")]
    pub audit_key: Option<PathBuf>,
    /// Write signed checkpoints of the audit log here (one file each,
    /// append-only), besides the database.
    #[arg(long)]
    pub audit_checkpoints: Option<PathBuf>,
    /// Make a checkpoint after this many new records at the latest.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub audit_checkpoint_every: u64,
    /// Make a checkpoint this long after new records at the latest, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = super::serve::parse_interval)]
    pub audit_checkpoint_interval: std::time::Duration,
}

impl GrpcArgs {
    /// Builds what the services share. `dev_key` is trusted in addition to
    /// the configured keys (dev mode's own key, or `serve --accept-dev-key`).
    pub fn serving(
        &self,
        store: Store,
        dev_key: Option<&KeyFile>,
        audit_key: std::sync::Arc<AuditKey>,
    ) -> anyhow::Result<Serving> {
        let mut verifier = Verifier::new(self.jwt_audience.clone()).with_max_lifetime(self.jwt_max_lifetime);
        for path in &self.jwt_keys {
            let key = KeyFile::load(path)?;
            if key.kid == DEV_KID && dev_key.is_none() {
                anyhow::bail!("{} is the development key; serve accepts it only with --accept-dev-key", path.display());
            }
            verifier.trust(&key)?;
        }
        if let Some(k) = dev_key {
            verifier.trust(k)?;
        }
        if verifier.is_empty() {
            anyhow::bail!("no signing key to verify tokens with: give --jwt-key");
        }
        let catalogue = self.load_catalogue()?;
        let alarms = AlarmSettings {
            sensitive_kle: self.alarm_sensitive_kle.clone(),
            volume_per_hour: self.alarm_volume,
            employees: match &self.employee_register {
                Some(p) => employee_register(p)?,
                None => Default::default(),
            },
        };
        let audit = AuditLog::start(store.clone(), audit_key);
        let anonymous = Limits { per_minute: self.anonymous_per_minute, ..Limits::default() };
        let pins = crate::identity::CertificatePins::parse(&self.system_certificates).map_err(anyhow::Error::msg)?;
        Ok(Serving::new(store, verifier, catalogue, audit, alarms, anonymous).with_system_certificates(pins))
    }

    /// The catalogue: the one named, else the built-in one.
    pub fn load_catalogue(&self) -> anyhow::Result<Catalogue> {
        Ok(match &self.catalogue {
            Some(p) => Catalogue::parse(&std::fs::read_to_string(p)?)?,
            None => Catalogue::built_in(),
        })
    }

    /// Starts making checkpoints of the audit log into `dir`, if given.
    pub fn spawn_checkpointer(
        &self,
        store: Store,
        serving: &Serving,
        dir: Option<&std::path::Path>,
    ) -> anyhow::Result<()> {
        let Some(dir) = dir else {
            tracing::warn!("no --audit-checkpoints: the audit log is not checkpointed outside the database");
            return Ok(());
        };
        let sink = Sink::open(dir).map_err(|e| anyhow::anyhow!("can't use {} for checkpoints: {e}", dir.display()))?;
        let settings =
            checkpointer::Settings { every: self.audit_checkpoint_every, interval: self.audit_checkpoint_interval };
        let key = serving.audit.key_arc();
        tokio::spawn(checkpointer::run(store, key, sink, settings, serving.audit.appended()));
        Ok(())
    }

    /// How the server listens.
    pub fn transport(&self) -> TransportSettings {
        TransportSettings {
            listen: self.grpc_listen,
            tls: match (&self.grpc_tls_cert, &self.grpc_tls_key) {
                (Some(cert), Some(key)) => {
                    Some(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: self.grpc_client_ca.clone() })
                }
                _ => None,
            },
            plaintext: if self.insecure_plaintext { Plaintext::Anywhere } else { Plaintext::LoopbackOnly },
            timeout: self.grpc_timeout,
            concurrency: self.grpc_concurrency as usize,
        }
    }
}

fn employee_register(path: &Path) -> anyhow::Result<std::collections::HashMap<PartyId, Cvr>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
        let (cpr, cvr) =
            line.split_once(',').ok_or_else(|| anyhow::anyhow!("{}:{}: expected cpr,cvr", path.display(), n + 1))?;
        let party = PartyId::parse(&format!("{}{}", PartyId::CPR_PREFIX, cpr.trim()))
            .map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), n + 1, e.detail))?;
        let cvr = Cvr::parse(cvr.trim()).map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), n + 1, e.detail))?;
        out.insert(party, cvr);
    }
    Ok(out)
}

/// Where dev mode keeps a file of its own: beside a SQLite database
/// (`<base><suffix>`), else in the working directory.
fn dev_path(database_url: &str, suffix: &str) -> PathBuf {
    match database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")) {
        Some(path) => {
            let path = path.split('?').next().unwrap_or(path);
            PathBuf::from(format!("{}{suffix}", path.trim_end_matches(".db")))
        }
        None => PathBuf::from(format!("overblik-dev{suffix}")),
    }
}

/// Where dev mode keeps its token-signing key.
pub fn dev_key_path(database_url: &str) -> PathBuf {
    dev_path(database_url, ".key.json")
}

/// Where dev mode keeps its audit checkpoint key.
pub fn dev_audit_key_path(database_url: &str) -> PathBuf {
    dev_path(database_url, ".audit-key.pem")
}

/// Where dev mode writes its audit checkpoints.
pub fn dev_checkpoints_path(database_url: &str) -> PathBuf {
    dev_path(database_url, ".checkpoints")
}

/// The audit key: the one named, else dev mode's beside a SQLite database.
/// Commands that write to the audit log need it: every record carries a
/// MAC under it, and one without is reported as not the service's.
#[derive(Args, Debug, Clone)]
pub struct AuditKeyArgs {
    /// The audit log's checkpoint key (PKCS#8 PEM).
    #[arg(long, env = "OVERBLIK_AUDIT_KEY")]
    pub audit_key: Option<PathBuf>,
}

impl AuditKeyArgs {
    pub fn load(&self, database_url: &str) -> anyhow::Result<std::sync::Arc<AuditKey>> {
        let path = match &self.audit_key {
            Some(p) => p.clone(),
            None => {
                let dev = dev_audit_key_path(database_url);
                if !database_url.starts_with("sqlite") || !dev.exists() {
                    anyhow::bail!(
                        "this command records its use in the audit log, and records are written under the audit key: give --audit-key"
                    );
                }
                dev
            }
        };
        Ok(std::sync::Arc::new(AuditKey::load(&path)?))
    }
}
