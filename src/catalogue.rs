//! The catalogue of data areas and purposes: data, loaded and validated at
//! start (`catalogue/catalogue.toml` is built in; `--catalogue` replaces it).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::{Cvr, DataArea};

/// A purpose (formål) a lookup may name for a data area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purpose {
    pub id: u32,
    pub name: String,
    /// The KLIK task an agreement for this purpose rests on, e.g. `K53`.
    pub klik: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AreaEntry {
    pub area: DataArea,
    pub name: String,
    /// User-system roles that open the area (any one suffices).
    pub roles: Vec<String>,
    /// Whether a lookup needs an active data-exchange agreement.
    pub agreement_required: bool,
    pub purposes: BTreeMap<u32, Purpose>,
}

#[derive(Clone, Debug)]
pub struct Catalogue {
    areas: BTreeMap<DataArea, AreaEntry>,
    /// Udbetaling Danmark's CVR number: the authority of the udk_* areas.
    pub udk_cvr: Cvr,
    /// The national supervisory role: reads every authority's audit
    /// records, where a data-protection officer reads their own
    /// authority's.
    pub supervisory_role: String,
    /// Authority names by CVR (what a citizen is told of who looked).
    authorities: BTreeMap<Cvr, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("catalogue: {0}")]
pub struct CatalogueError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    udk_cvr: String,
    supervisory_role: String,
    #[serde(default)]
    authorities: Vec<RawAuthority>,
    area: Vec<RawArea>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    cvr: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArea {
    id: String,
    name: String,
    roles: Vec<String>,
    agreement: bool,
    purposes: Vec<RawPurpose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: u32,
    name: String,
    #[serde(default)]
    klik: Option<String>,
}

/// The catalogue shipped with the service.
pub const BUILT_IN: &str = include_str!("../catalogue/catalogue.toml");

impl Catalogue {
    pub fn built_in() -> Catalogue {
        Catalogue::parse(BUILT_IN).expect("the built-in catalogue is valid")
    }

    /// Parses and validates: every data area exactly once, each with at
    /// least one role and one purpose, unique purpose ids, KLIK tasks of the
    /// form `Knn`.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let raw: RawCatalogue = toml::from_str(text).map_err(|e| CatalogueError(e.to_string()))?;
        let udk_cvr = Cvr::parse(&raw.udk_cvr).map_err(|e| CatalogueError(format!("udk_cvr: {e}")))?;
        if raw.supervisory_role.trim().is_empty() {
            return Err(CatalogueError("supervisory_role: name the national supervisory role".into()));
        }
        let mut areas = BTreeMap::new();
        for a in raw.area {
            let area = DataArea::parse(&a.id).ok_or_else(|| CatalogueError(format!("unknown data area {:?}", a.id)))?;
            if a.roles.is_empty() || a.roles.iter().any(|r| r.trim().is_empty()) {
                return Err(CatalogueError(format!("{}: every area needs at least one non-empty role", a.id)));
            }
            if a.purposes.is_empty() {
                return Err(CatalogueError(format!("{}: every area needs at least one purpose", a.id)));
            }
            let mut purposes = BTreeMap::new();
            for p in a.purposes {
                if let Some(k) = &p.klik {
                    let ok = k.len() == 3 && k.starts_with('K') && k[1..].bytes().all(|b| b.is_ascii_digit());
                    if !ok {
                        return Err(CatalogueError(format!("{}: KLIK task {k:?} is not Knn", a.id)));
                    }
                }
                if p.name.trim().is_empty() {
                    return Err(CatalogueError(format!("{}: purpose {} has no name", a.id, p.id)));
                }
                if purposes.insert(p.id, Purpose { id: p.id, name: p.name, klik: p.klik }).is_some() {
                    return Err(CatalogueError(format!("{}: purpose {} listed twice", a.id, p.id)));
                }
            }
            let entry = AreaEntry { area, name: a.name, roles: a.roles, agreement_required: a.agreement, purposes };
            if areas.insert(area, entry).is_some() {
                return Err(CatalogueError(format!("data area {} listed twice", a.id)));
            }
        }
        if let Some(missing) = DataArea::ALL.iter().find(|a| !areas.contains_key(a)) {
            return Err(CatalogueError(format!("data area {missing} is missing")));
        }
        let mut authorities = BTreeMap::new();
        for a in raw.authorities {
            let cvr = Cvr::parse(&a.cvr).map_err(|e| CatalogueError(format!("authority {:?}: {e}", a.cvr)))?;
            if a.name.trim().is_empty() || authorities.insert(cvr, a.name).is_some() {
                return Err(CatalogueError(format!("authority {}: needs one non-empty name", a.cvr)));
            }
        }
        Ok(Catalogue { areas, udk_cvr, supervisory_role: raw.supervisory_role, authorities })
    }

    pub fn area(&self, area: DataArea) -> &AreaEntry {
        &self.areas[&area]
    }

    pub fn areas(&self) -> impl Iterator<Item = &AreaEntry> {
        self.areas.values()
    }

    /// An authority's name, if the catalogue knows it.
    pub fn authority_name(&self, cvr: &Cvr) -> Option<&str> {
        self.authorities.get(cvr).map(String::as_str)
    }

    pub fn purpose(&self, area: DataArea, id: u32) -> Option<&Purpose> {
        self.areas.get(&area)?.purposes.get(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalogue_is_valid_and_complete() {
        let c = Catalogue::built_in();
        for a in DataArea::ALL {
            assert!(!c.area(a).purposes.is_empty());
        }
        assert!(c.area(DataArea::Forskudsopgoerelse).agreement_required);
        assert!(!c.area(DataArea::Sager).agreement_required);
        assert_eq!(c.purpose(DataArea::Forskudsopgoerelse, 1).unwrap().klik.as_deref(), Some("K53"));
        assert_eq!(c.purpose(DataArea::Personkontroloplysninger, 1).unwrap().klik.as_deref(), Some("K54"));
        assert_eq!(c.purpose(DataArea::DigitalLogbog, 1).unwrap().klik.as_deref(), Some("K55"));
        assert_eq!(c.purpose(DataArea::Indkomst, 286).unwrap().name, "Snæver dataadgang");
    }

    #[test]
    fn a_broken_catalogue_is_refused_with_a_reason() {
        let missing_area = BUILT_IN.replace("id = \"digital_logbog\"", "id = \"sager\"");
        assert!(Catalogue::parse(&missing_area).unwrap_err().to_string().contains("twice"));
        let dup = BUILT_IN.replace("{ id = 2, name = \"UDK Pension\" }", "{ id = 1, name = \"UDK Pension\" }");
        assert!(Catalogue::parse(&dup).unwrap_err().to_string().contains("listed twice"));
        let klik = BUILT_IN.replace("klik = \"K53\"", "klik = \"53\"");
        assert!(Catalogue::parse(&klik).unwrap_err().to_string().contains("KLIK"));
        let unknown = BUILT_IN.replace("id = \"sager\"", "id = \"skat\"");
        assert!(Catalogue::parse(&unknown).unwrap_err().to_string().contains("unknown data area"));
    }
}
