//! What `serve` and `dev` share to serve gRPC: listen address, trusted keys,
//! catalogue and alarm settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::api::Serving;
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
}

impl GrpcArgs {
    /// Builds what the services share. `dev_key` is trusted in addition to
    /// the configured keys (dev mode's own key, or `serve --accept-dev-key`).
    pub fn serving(&self, store: Store, dev_key: Option<&KeyFile>) -> anyhow::Result<Serving> {
        let mut verifier = Verifier::new(self.jwt_audience.clone());
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
        let catalogue = match &self.catalogue {
            Some(p) => Catalogue::parse(&std::fs::read_to_string(p)?)?,
            None => Catalogue::built_in(),
        };
        let alarms = AlarmSettings {
            sensitive_kle: self.alarm_sensitive_kle.clone(),
            volume_per_hour: self.alarm_volume,
            employees: match &self.employee_register {
                Some(p) => employee_register(p)?,
                None => Default::default(),
            },
        };
        let audit = AuditLog::start(store.clone());
        Ok(Serving { store, verifier, catalogue, audit, alarms })
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

/// Where dev mode keeps its key: beside a SQLite database, else in the
/// working directory.
pub fn dev_key_path(database_url: &str) -> PathBuf {
    match database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")) {
        Some(path) => {
            let path = path.split('?').next().unwrap_or(path);
            PathBuf::from(format!("{}.key.json", path.trim_end_matches(".db")))
        }
        None => PathBuf::from("overblik-dev.key.json"),
    }
}
