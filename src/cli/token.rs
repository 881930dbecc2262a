//! `overblik token`: mints a bearer token with the development key.

use std::path::PathBuf;

use clap::Args;

use crate::identity::Claims;
use crate::identity::keys::{DEFAULT_AUDIENCE, KeyFile};

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The key file to sign with (the one `overblik dev` writes beside its
    /// database).
    #[arg(long, default_value = "overblik-dev.key.json")]
    pub key: PathBuf,
    /// Make a new development key at --key if there is none yet (for a
    /// `serve --accept-dev-key` that no `dev` run has made a key for).
    #[arg(long)]
    pub create_key: bool,
    /// A citizen token for this CPR number (Borgerblikket); the other
    /// options are for employee tokens.
    #[arg(long, conflicts_with = "system")]
    pub citizen: Option<String>,
    /// An IT system's token for this system UUID (with --cvr: the authority
    /// whose service agreement it calls under); it carries no person's
    /// claims.
    #[arg(long)]
    pub system: Option<uuid::Uuid>,
    #[arg(long, default_value = "dev-user")]
    pub user: String,
    #[arg(long)]
    pub name: Option<String>,
    /// The authority scope: a CVR number.
    #[arg(long)]
    pub cvr: Option<String>,
    /// A user-system role (repeatable), e.g. "Se sager".
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// A KLE constraint (repeatable): 32.18.04, 32.18.*, 32.* or *.
    #[arg(long = "kle")]
    pub kle: Vec<String>,
    /// The highest sensitivity (følsomhed) the user may see, 1-4.
    #[arg(long)]
    pub sensitivity: Option<i64>,
    #[arg(long)]
    pub org_unit: Option<String>,
    /// The user's own CPR number (for the self-lookup alarm).
    #[arg(long)]
    pub own_cpr: Option<String>,
    #[arg(long)]
    pub it_system: Option<String>,
    #[arg(long, default_value_t = 3600)]
    pub ttl_seconds: i64,
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    pub audience: String,
}

pub fn run(a: TokenArgs) -> anyhow::Result<i32> {
    let key = if a.create_key { KeyFile::dev_at(&a.key)? } else { KeyFile::load(&a.key)? };
    let max = crate::identity::DEFAULT_MAX_LIFETIME.as_secs() as i64;
    if !(1..=max).contains(&a.ttl_seconds) {
        anyhow::bail!("--ttl-seconds is 1-{max}: the service refuses tokens that live longer");
    }
    let personal = !a.roles.is_empty()
        || !a.kle.is_empty()
        || a.sensitivity.is_some()
        || a.org_unit.is_some()
        || a.own_cpr.is_some()
        || a.name.is_some()
        || a.it_system.is_some();
    if a.system.is_some() && personal {
        anyhow::bail!("a system token carries no person's claims: give --system and --cvr only");
    }
    let now = chrono::Utc::now().timestamp();
    let claims = match (a.citizen, a.system) {
        (_, Some(system)) => Claims {
            aud: a.audience.clone().into(),
            sub: format!("{}{system}", crate::identity::SYSTEM_SUBJECT_PREFIX),
            exp: now + a.ttl_seconds,
            iat: Some(now),
            cvr: Some(a.cvr.ok_or_else(|| anyhow::anyhow!("a system token needs --cvr: its authority"))?),
            it_system: Some(system.to_string()),
            ..Default::default()
        },
        (Some(cpr), None) => Claims {
            aud: a.audience.clone().into(),
            sub: "citizen".into(),
            exp: now + a.ttl_seconds,
            iat: Some(now),
            cpr: Some(cpr),
            ..Default::default()
        },
        (None, None) => Claims {
            aud: a.audience.clone().into(),
            sub: a.user,
            exp: now + a.ttl_seconds,
            iat: Some(now),
            name: a.name,
            cvr: Some(a.cvr.ok_or_else(|| anyhow::anyhow!("an employee token needs --cvr (or give --citizen)"))?),
            roles: a.roles,
            kle: (!a.kle.is_empty()).then_some(a.kle),
            foelsomhed: a.sensitivity,
            orgenhed: a.org_unit,
            cpr: a.own_cpr,
            it_system: a.it_system,
            ..Default::default()
        },
    };
    // Refuse to mint what the service would refuse.
    claims.caller().map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", key.mint(&claims)?);
    Ok(0)
}
