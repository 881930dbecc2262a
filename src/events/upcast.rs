//! Upcasters: old versions of a type mapped, step by step, to the current one.
//!
//! An upcaster takes the `data` object of version n and returns the `data` of
//! version n+1. The decode stage chains them up to [`CURRENT_VERSION`]; a
//! version with no path there is refused with `UNKNOWN_TYPE_VERSION`, never
//! guessed. Stored events keep their original bytes, so a rebuild upcasts
//! them again with the same code.

use serde_json::{Map, Value};

use super::types::{CURRENT_VERSION, EventKind};

type Upcaster = fn(Map<String, Value>) -> Result<Map<String, Value>, String>;

/// The registry: (kind, from version) → upcaster to from version + 1.
fn upcaster(kind: EventKind, from: u32) -> Option<Upcaster> {
    match (kind, from) {
        (EventKind::PaymentEffectuated, 0) | (EventKind::PaymentCorrected, 0) => Some(payment_v0_to_v1),
        _ => None,
    }
}

/// Whether `version` of `kind` can be brought to the current version.
pub fn supported(kind: EventKind, version: u32) -> bool {
    version == CURRENT_VERSION
        || (version < CURRENT_VERSION && (version..CURRENT_VERSION).all(|v| upcaster(kind, v).is_some()))
}

/// Brings `data` of `version` up to the current version.
pub fn upcast(kind: EventKind, version: u32, mut data: Map<String, Value>) -> Result<Map<String, Value>, String> {
    for v in version..CURRENT_VERSION {
        let step = upcaster(kind, v).ok_or_else(|| format!("no upcaster from v{v}"))?;
        data = step(data)?;
    }
    Ok(data)
}

/// v0 payments follow the benefit index's schema before its version 2.3,
/// where the amount sent for payment was called the net amount (`net`,
/// Nettobeloeb); 2.3 renamed it to the amount sent (BeloebSendtTilUdbetaling).
fn payment_v0_to_v1(mut data: Map<String, Value>) -> Result<Map<String, Value>, String> {
    if data.contains_key("sent") {
        return Err("a v0 payment has `net`, not `sent`".into());
    }
    let net = data.remove("net").ok_or("a v0 payment has `net`")?;
    data.insert("sent".into(), net);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_v0_renames_net_to_sent() {
        let mut m = Map::new();
        m.insert("net".into(), Value::String("10.00".into()));
        let up = upcast(EventKind::PaymentEffectuated, 0, m).unwrap();
        assert_eq!(up.get("sent"), Some(&Value::String("10.00".into())));
        assert!(!up.contains_key("net"));
    }

    #[test]
    fn only_registered_paths_are_supported() {
        assert!(supported(EventKind::PaymentEffectuated, 0));
        assert!(supported(EventKind::CaseImported, 1));
        assert!(!supported(EventKind::CaseImported, 0));
        assert!(!supported(EventKind::PaymentEffectuated, 2));
    }
}
