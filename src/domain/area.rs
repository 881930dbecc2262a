//! Data areas, aggregate kinds and sensitivity levels.

use std::fmt;

use super::invalid::{Invalid, InvalidCode};

/// A data area (dataområde): the unit a lookup names a purpose for and an
/// agreement covers. The identifiers are the catalogue's own and appear in
/// requests, agreements and the audit log, so they stay in Danish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataArea {
    /// Cases (sager) in the municipalities' case index.
    Sager,
    /// Control cases (kontrolsager), UDK-loven §11a.
    Kontrolsager,
    /// Benefits (ydelser): grants and payments.
    Ydelser,
    /// Employment data from the job-centre systems (beskæftigelse).
    Beskaeftigelse,
    /// Monthly income reports from eIndkomst.
    Indkomst,
    /// Annual tax assessments (årsopgørelse).
    Aarsopgoerelse,
    /// Preliminary tax assessments (forskudsopgørelse).
    Forskudsopgoerelse,
    /// Person control data (personkontroloplysninger).
    Personkontroloplysninger,
    /// Digital logbook (digital logbog).
    DigitalLogbog,
    /// Self-employment (selvstændig virksomhed), SAPA 3.18.
    SelvstaendigVirksomhed,
    /// Pension rights (pensionsrettigheder), SAPA 3.18.
    Pensionsrettigheder,
    /// UDK's cases seen across authorities, limited by UDK-loven §8.
    UdkSager,
    /// UDK's benefits seen across authorities, limited by UDK-loven §8.
    UdkYdelser,
}

impl DataArea {
    pub const ALL: [DataArea; 13] = [
        DataArea::Sager,
        DataArea::Kontrolsager,
        DataArea::Ydelser,
        DataArea::Beskaeftigelse,
        DataArea::Indkomst,
        DataArea::Aarsopgoerelse,
        DataArea::Forskudsopgoerelse,
        DataArea::Personkontroloplysninger,
        DataArea::DigitalLogbog,
        DataArea::SelvstaendigVirksomhed,
        DataArea::Pensionsrettigheder,
        DataArea::UdkSager,
        DataArea::UdkYdelser,
    ];

    /// The SKAT data areas, all held as tax records.
    pub const TAX: [DataArea; 7] = [
        DataArea::Indkomst,
        DataArea::Aarsopgoerelse,
        DataArea::Forskudsopgoerelse,
        DataArea::Personkontroloplysninger,
        DataArea::DigitalLogbog,
        DataArea::SelvstaendigVirksomhed,
        DataArea::Pensionsrettigheder,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DataArea::Sager => "sager",
            DataArea::Kontrolsager => "kontrolsager",
            DataArea::Ydelser => "ydelser",
            DataArea::Beskaeftigelse => "beskaeftigelse",
            DataArea::Indkomst => "indkomst",
            DataArea::Aarsopgoerelse => "aarsopgoerelse",
            DataArea::Forskudsopgoerelse => "forskudsopgoerelse",
            DataArea::Personkontroloplysninger => "personkontroloplysninger",
            DataArea::DigitalLogbog => "digital_logbog",
            DataArea::SelvstaendigVirksomhed => "selvstaendig_virksomhed",
            DataArea::Pensionsrettigheder => "pensionsrettigheder",
            DataArea::UdkSager => "udk_sager",
            DataArea::UdkYdelser => "udk_ydelser",
        }
    }

    pub fn parse(s: &str) -> Option<DataArea> {
        DataArea::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for DataArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DataArea {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for DataArea {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: crate::domain::JsonStr<'de> = serde::Deserialize::deserialize(d)?;
        DataArea::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown data area {:?}", &*s)))
    }
}

/// What an aggregate is. Every event type belongs to exactly one kind, and an
/// aggregate id keeps its kind for life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateKind {
    Case,
    ControlCase,
    Grant,
    Payment,
    Employment,
    TaxRecord,
}

impl AggregateKind {
    pub const ALL: [AggregateKind; 6] = [
        AggregateKind::Case,
        AggregateKind::ControlCase,
        AggregateKind::Grant,
        AggregateKind::Payment,
        AggregateKind::Employment,
        AggregateKind::TaxRecord,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AggregateKind::Case => "case",
            AggregateKind::ControlCase => "control_case",
            AggregateKind::Grant => "grant",
            AggregateKind::Payment => "payment",
            AggregateKind::Employment => "employment",
            AggregateKind::TaxRecord => "tax_record",
        }
    }

    pub fn parse(s: &str) -> Option<AggregateKind> {
        AggregateKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for AggregateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sensitivity (følsomhed) of a case or grant, 1–4. A caller cleared for level
/// n sees levels 1..=n (the index rule: level 3 also sees 2 and 1, never 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sensitivity {
    /// 1: no confidential data (ikke fortrolige data).
    NotConfidential = 1,
    /// 2: confidential personal data (økonomi, skat, gæld, sygedage).
    Confidential = 2,
    /// 3: sensitive personal data (helbred, strafbare forhold).
    Sensitive = 3,
    /// 4: VIP cases.
    Vip = 4,
}

impl Sensitivity {
    pub fn from_level(level: i64) -> Result<Sensitivity, Invalid> {
        match level {
            1 => Ok(Sensitivity::NotConfidential),
            2 => Ok(Sensitivity::Confidential),
            3 => Ok(Sensitivity::Sensitive),
            4 => Ok(Sensitivity::Vip),
            _ => Err(Invalid::new(InvalidCode::Sensitivity, "sensitivity is an integer 1-4")),
        }
    }

    pub fn level(self) -> i64 {
        self as i64
    }
}

impl<'de> serde::Deserialize<'de> for Sensitivity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Sensitivity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sensitivity level 1-4")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Sensitivity, E> {
                Sensitivity::from_level(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Sensitivity, E> {
                Sensitivity::from_level(i64::try_from(v).unwrap_or(0)).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Sensitivity, E> {
                Err(E::custom(Invalid::new(InvalidCode::Sensitivity, "sensitivity is an integer 1-4")))
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Sensitivity, E> {
                Err(E::custom(Invalid::new(InvalidCode::Sensitivity, "sensitivity is an integer 1-4, not a string")))
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for Sensitivity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.level())
    }
}
