//! The caseworkers' lookups (SAPA).

use tonic::{Request, Response, Status};

use super::{Call, Shared, bad_request, citizen, convert, denied, page, store_failed, today};
use crate::access::filter;
use crate::access::{Allow, Deny, decide};
use crate::agreements::Agreement;
use crate::audit::Entry;
use crate::audit::dpo::lookup_alarms;
use crate::domain::{AggregateKind, DataArea, Kle, PartyId, Sensitivity};
use crate::identity::Employee;
use crate::proto as pb;
use crate::proto::overblik_server::Overblik;
use crate::store::StoreError;

pub struct OverblikService(pub Shared);

/// Rows an overview section shows at most; the area's list pages the rest.
const OVERVIEW_ROWS: usize = 100;

/// Which rows a call reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Cases,
    Grants,
    Payments,
    UdkCases,
    UdkBenefits,
    ControlCases,
    Employment,
    Tax(DataArea),
}

enum Rows {
    Cases(Vec<pb::Case>),
    Grants(Vec<pb::Grant>),
    Payments(Vec<pb::Payment>),
    UdkCases(Vec<pb::UdkCase>),
    UdkBenefits(Vec<pb::UdkBenefit>),
    ControlCases(Vec<pb::ControlCase>),
    Employment(Vec<pb::EmploymentRecord>),
    Tax(Vec<pb::TaxRecord>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Cases(v) => v.len(),
            Rows::Grants(v) => v.len(),
            Rows::Payments(v) => v.len(),
            Rows::UdkCases(v) => v.len(),
            Rows::UdkBenefits(v) => v.len(),
            Rows::ControlCases(v) => v.len(),
            Rows::Employment(v) => v.len(),
            Rows::Tax(v) => v.len(),
        }
    }

    fn page(self, size: u32, token: &str) -> Result<(Rows, String), Status> {
        Ok(match self {
            Rows::Cases(v) => page(v, size, token).map(|(v, n)| (Rows::Cases(v), n))?,
            Rows::Grants(v) => page(v, size, token).map(|(v, n)| (Rows::Grants(v), n))?,
            Rows::Payments(v) => page(v, size, token).map(|(v, n)| (Rows::Payments(v), n))?,
            Rows::UdkCases(v) => page(v, size, token).map(|(v, n)| (Rows::UdkCases(v), n))?,
            Rows::UdkBenefits(v) => page(v, size, token).map(|(v, n)| (Rows::UdkBenefits(v), n))?,
            Rows::ControlCases(v) => page(v, size, token).map(|(v, n)| (Rows::ControlCases(v), n))?,
            Rows::Employment(v) => page(v, size, token).map(|(v, n)| (Rows::Employment(v), n))?,
            Rows::Tax(v) => page(v, size, token).map(|(v, n)| (Rows::Tax(v), n))?,
        })
    }
}

/// Rows, and what the alarms look at: the KLE and sensitivity of each.
struct Fetched {
    rows: Rows,
    kles: Vec<Kle>,
    sensitivities: Vec<Sensitivity>,
}

/// The list calls: which areas each may read, and what it reads there.
#[derive(Clone, Copy, Debug)]
enum List {
    Cases,
    Grants,
    Payments,
    UdkCases,
    UdkBenefits,
    ControlCases,
    Employment,
    Tax,
}

impl List {
    fn areas(self) -> &'static [DataArea] {
        match self {
            List::Cases => &[DataArea::Sager],
            List::Grants | List::Payments => &[DataArea::Ydelser],
            List::UdkCases => &[DataArea::UdkSager],
            List::UdkBenefits => &[DataArea::UdkYdelser],
            List::ControlCases => &[DataArea::Kontrolsager],
            List::Employment => &[DataArea::Beskaeftigelse],
            List::Tax => &DataArea::TAX,
        }
    }

    fn want(self, area: DataArea) -> Want {
        match self {
            List::Cases => Want::Cases,
            List::Grants => Want::Grants,
            List::Payments => Want::Payments,
            List::UdkCases => Want::UdkCases,
            List::UdkBenefits => Want::UdkBenefits,
            List::ControlCases => Want::ControlCases,
            List::Employment => Want::Employment,
            List::Tax => Want::Tax(area),
        }
    }
}

fn purpose_text(p: &pb::AreaPurpose) -> String {
    let ids: Vec<String> = p.purpose_ids.iter().map(u32::to_string).collect();
    format!("{}/FormaalType: {}", p.data_area, ids.join(","))
}

/// The citizen's aggregates one call read: their own first, then cases
/// about others where they are a party.
struct Loaded {
    all: Vec<crate::projection::Aggregate>,
    own: usize,
}

impl Loaded {
    /// The aggregates about the citizen.
    fn own(&self) -> &[crate::projection::Aggregate] {
        &self.all[..self.own]
    }
}

impl Want {
    /// The aggregate kinds this reads, and whether cases where the citizen
    /// is only a party count.
    fn kinds(self) -> (&'static [AggregateKind], bool) {
        match self {
            Want::Cases => (&[AggregateKind::Case], true),
            Want::Grants => (&[AggregateKind::Grant], false),
            Want::Payments => (&[AggregateKind::Payment], false),
            Want::UdkCases => (&[AggregateKind::Case, AggregateKind::Grant, AggregateKind::Payment], false),
            Want::UdkBenefits => (&[AggregateKind::Grant, AggregateKind::Payment], false),
            Want::ControlCases => (&[AggregateKind::ControlCase], false),
            Want::Employment => (&[AggregateKind::Employment], false),
            Want::Tax(_) => (&[AggregateKind::TaxRecord], false),
        }
    }
}

/// Shapes what `want` shows of the loaded aggregates for `caller` (pure).
fn shape(want: Want, loaded: &Loaded, caller: &Employee, udk: &crate::domain::Cvr) -> Fetched {
    let today = today();
    let own = loaded.own();
    let (mut kles, mut sensitivities) = (Vec::new(), Vec::new());
    let rows = match want {
        Want::Cases => {
            let visible = filter::cases(&loaded.all, caller);
            for (_, c) in &visible {
                kles.push(c.kle);
                sensitivities.push(c.sensitivity);
            }
            Rows::Cases(visible.into_iter().map(|(a, c)| convert::case(a, c)).collect())
        }
        Want::Grants => {
            let visible = filter::grants(own, caller);
            for (_, g) in &visible {
                kles.extend(g.fields.benefits.iter().map(|b| b.kle));
                sensitivities.push(g.fields.sensitivity);
            }
            Rows::Grants(visible.into_iter().map(|(a, g)| convert::grant(a, g)).collect())
        }
        Want::Payments => {
            let visible = filter::payments(own, caller);
            for (_, p) in &visible {
                kles.extend(p.fields.lines.iter().map(|l| l.kle));
            }
            Rows::Payments(visible.into_iter().map(|(a, p)| convert::payment(a, p)).collect())
        }
        Want::UdkCases => {
            let shown = filter::udk_cases(own, udk, today);
            kles.extend(shown.iter().map(|c| c.kle));
            Rows::UdkCases(shown.iter().map(convert::udk_case).collect())
        }
        Want::UdkBenefits => {
            Rows::UdkBenefits(filter::udk_benefits(own, udk, today).iter().map(convert::udk_benefit).collect())
        }
        Want::ControlCases => {
            Rows::ControlCases(filter::control_cases(own, today).iter().map(convert::control_case).collect())
        }
        Want::Employment => Rows::Employment(
            filter::employment(own, caller).into_iter().map(|(a, e)| convert::employment(a, e)).collect(),
        ),
        Want::Tax(area) => {
            Rows::Tax(filter::tax_records(own, area).into_iter().map(|(a, t)| convert::tax_record(a, t)).collect())
        }
    };
    Fetched { rows, kles, sensitivities }
}

impl OverblikService {
    /// Reads, in one query, every aggregate the `wants` need.
    async fn load(&self, wants: &[Want], citizen: &PartyId) -> Result<Loaded, StoreError> {
        let mut kinds = Vec::new();
        let mut party_cases = false;
        for want in wants {
            let (k, party) = want.kinds();
            kinds.extend_from_slice(k);
            party_cases |= party;
        }
        kinds.sort();
        kinds.dedup();
        if kinds.is_empty() {
            return Ok(Loaded { all: Vec::new(), own: 0 });
        }
        let mut all = self.0.store.citizen_aggregates(&citizen.urn(), &kinds, party_cases).await?.aggregates;
        // Stable: the citizen's own first, the party cases after.
        all.sort_by_key(|a| a.subject != *citizen);
        let own = all.iter().take_while(|a| a.subject == *citizen).count();
        Ok(Loaded { all, own })
    }

    /// Identity and access for one area: the grant, or the denial (already
    /// filled into `entry`).
    /// `agreements` holds the caller's authority's agreements once read, so
    /// a call over several areas reads them once.
    async fn guard<'c>(
        &self,
        call: &'c Call,
        entry: &mut Entry,
        area: DataArea,
        purposes: &[u32],
        agreements: &mut Option<Vec<Agreement>>,
    ) -> Result<(&'c Employee, Allow), Result<Deny, Status>> {
        let caller = call.employee().map_err(Ok)?;
        let needed = self.0.catalogue.area(area).agreement_required;
        if needed && agreements.is_none() {
            let read = self.0.store.agreements_of(caller.authority.as_str()).await.map_err(|e| Err(store_failed(e)))?;
            *agreements = Some(read);
        }
        let known = agreements.as_deref().filter(|_| needed).unwrap_or_default();
        let allow = decide(caller, &self.0.catalogue, known, today(), area, purposes).map_err(Ok)?;
        entry.roles_used = allow.roles_used.clone();
        entry.agreement_id = allow.agreement_id.clone().unwrap_or_default();
        Ok((caller, allow))
    }

    /// One area, one page: the common path of the list calls.
    async fn list(&self, req: Request<pb::ListRequest>, rpc: &str, list: List) -> Result<(Rows, String), Status> {
        let call = self.0.call(&req);
        let r = req.into_inner();
        let purpose = r.purpose.unwrap_or_default();
        let mut entry =
            call.entry("lookup", format!("rpc: {rpc}; {}; page_token: {}", purpose_text(&purpose), r.page_token));
        entry.data_area = purpose.data_area.clone();
        entry.purpose_id = (purpose.purpose_ids.len() == 1).then(|| purpose.purpose_ids[0]);
        let parsed = citizen(&r.citizen).and_then(|c| {
            let area = DataArea::parse(&purpose.data_area).filter(|a| list.areas().contains(a)).ok_or_else(|| {
                let names: Vec<&str> = list.areas().iter().map(|a| a.as_str()).collect();
                bad_request(format!("{rpc} reads {}", names.join(" or ")))
            })?;
            page(Vec::<()>::new(), r.page_size, &r.page_token)?;
            Ok((c, area))
        });
        let (citizen, area) = match parsed {
            Ok(x) => x,
            Err(status) => return self.refuse(entry, "BAD_REQUEST", status).await,
        };
        entry.citizen = citizen.urn();
        let (caller, _) = match self.guard(&call, &mut entry, area, &purpose.purpose_ids, &mut None).await {
            Ok(x) => x,
            Err(Ok(deny)) => return self.refuse(entry, deny.reason.as_str(), denied(&deny)).await,
            Err(Err(status)) => return Err(status),
        };
        let want = list.want(area);
        let loaded = self.load(&[want], &citizen).await.map_err(store_failed)?;
        let fetched = shape(want, &loaded, caller, &self.0.catalogue.udk_cvr);
        let (rows, next) = fetched.rows.page(r.page_size, &r.page_token)?;
        entry.alarms = lookup_alarms(caller, &citizen, &fetched.kles, &fetched.sensitivities, &self.0.alarms);
        entry.decision = "allow".into();
        entry.rows_returned = rows.len() as i32;
        self.0.record(vec![entry]).await?;
        Ok((rows, next))
    }

    /// Records a refusal, then returns it.
    async fn refuse<T>(&self, mut entry: Entry, reason: &str, status: Status) -> Result<T, Status> {
        entry.decision = "deny".into();
        entry.reason = reason.into();
        self.0.record(vec![entry]).await?;
        Err(status)
    }
}

macro_rules! unwrap_rows {
    ($rows:expr, $variant:ident) => {
        match $rows {
            Rows::$variant(v) => v,
            _ => unreachable!("the call asked for {}", stringify!($variant)),
        }
    };
}

#[tonic::async_trait]
impl Overblik for OverblikService {
    async fn get_citizen_overview(
        &self,
        req: Request<pb::CitizenOverviewRequest>,
    ) -> Result<Response<pb::CitizenOverview>, Status> {
        let call = self.0.call(&req);
        let r = req.into_inner();
        let base = call.entry("lookup", "rpc: GetCitizenOverview".into());
        let allowed = [DataArea::Sager, DataArea::Ydelser, DataArea::UdkSager, DataArea::UdkYdelser];
        let parsed = citizen(&r.citizen).and_then(|c| {
            if r.purposes.is_empty() {
                return Err(bad_request("name at least one data area with its purpose"));
            }
            let areas = r
                .purposes
                .iter()
                .map(|p| {
                    DataArea::parse(&p.data_area)
                        .filter(|a| allowed.contains(a))
                        .ok_or_else(|| bad_request("the overview reads sager, ydelser, udk_sager and udk_ydelser"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut distinct = areas.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() != areas.len() {
                return Err(bad_request("name each data area once"));
            }
            Ok((c, areas))
        });
        let (citizen, areas) = match parsed {
            Ok(x) => x,
            Err(status) => return self.refuse(base, "BAD_REQUEST", status).await,
        };
        // Decide every area first, then read what the allowed ones need in
        // one query, then shape each section.
        let mut agreements = None;
        let mut decided = Vec::with_capacity(areas.len());
        let mut first_denial = None;
        for (area, purpose) in areas.into_iter().zip(&r.purposes) {
            let mut entry = base.clone();
            entry.search_criteria = format!("rpc: GetCitizenOverview; {}", purpose_text(purpose));
            entry.data_area = area.to_string();
            entry.purpose_id = (purpose.purpose_ids.len() == 1).then(|| purpose.purpose_ids[0]);
            entry.citizen = citizen.urn();
            let outcome = match self.guard(&call, &mut entry, area, &purpose.purpose_ids, &mut agreements).await {
                Err(Err(status)) => return Err(status),
                Err(Ok(deny)) => Err(deny),
                Ok((caller, _)) => Ok(caller),
            };
            decided.push((area, entry, outcome));
        }
        let wants_of = |area: DataArea| -> &'static [Want] {
            match area {
                DataArea::Sager => &[Want::Cases],
                DataArea::Ydelser => &[Want::Grants, Want::Payments],
                DataArea::UdkSager => &[Want::UdkCases],
                _ => &[Want::UdkBenefits],
            }
        };
        let wants: Vec<Want> =
            decided.iter().filter(|(_, _, o)| o.is_ok()).flat_map(|(area, _, _)| wants_of(*area)).copied().collect();
        let loaded = self.load(&wants, &citizen).await.map_err(store_failed)?;
        let mut entries = Vec::with_capacity(decided.len());
        let mut sections = Vec::with_capacity(decided.len());
        for (area, mut entry, outcome) in decided {
            let mut section = pb::OverviewSection { data_area: area.to_string(), ..Default::default() };
            match outcome {
                Err(deny) => {
                    entry.decision = "deny".into();
                    entry.reason = deny.reason.as_str().into();
                    section.denial =
                        Some(pb::Denial { reason: deny.reason.as_str().into(), message: deny.detail.clone() });
                    first_denial.get_or_insert(deny);
                }
                Ok(caller) => {
                    let (mut kles, mut sensitivities, mut rows) = (Vec::new(), Vec::new(), 0);
                    for want in wants_of(area) {
                        let f = shape(*want, &loaded, caller, &self.0.catalogue.udk_cvr);
                        section.truncated |= f.rows.len() > OVERVIEW_ROWS;
                        kles.extend(f.kles);
                        sensitivities.extend(f.sensitivities);
                        let (shown, _) = f.rows.page(OVERVIEW_ROWS as u32, "")?;
                        rows += shown.len();
                        match shown {
                            Rows::Cases(v) => section.cases = v,
                            Rows::Grants(v) => section.grants = v,
                            Rows::Payments(v) => section.payments = v,
                            Rows::UdkCases(v) => section.udk_cases = v,
                            Rows::UdkBenefits(v) => section.udk_benefits = v,
                            _ => unreachable!("overview areas"),
                        }
                    }
                    entry.alarms = lookup_alarms(caller, &citizen, &kles, &sensitivities, &self.0.alarms);
                    entry.decision = "allow".into();
                    entry.rows_returned = rows as i32;
                }
            }
            entries.push(entry);
            sections.push(section);
        }
        self.0.record(entries).await?;
        match first_denial {
            Some(deny) if sections.iter().all(|s| s.denial.is_some()) => Err(denied(&deny)),
            _ => Ok(Response::new(pb::CitizenOverview { sections })),
        }
    }

    async fn list_cases(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::CaseList>, Status> {
        let (rows, next) = self.list(req, "ListCases", List::Cases).await?;
        Ok(Response::new(pb::CaseList { items: unwrap_rows!(rows, Cases), next_page_token: next }))
    }

    async fn get_case(&self, req: Request<pb::GetCaseRequest>) -> Result<Response<pb::Case>, Status> {
        let r = req.get_ref();
        let id = r.case_id.clone();
        let list = pb::ListRequest {
            citizen: r.citizen.clone(),
            purpose: r.purpose.clone(),
            page_size: 500,
            page_token: String::new(),
        };
        let mut inner = Request::new(list);
        *inner.metadata_mut() = req.metadata().clone();
        let (rows, _) = self.list(inner, &format!("GetCase {id}"), List::Cases).await?;
        unwrap_rows!(rows, Cases)
            .into_iter()
            .find(|c| c.case_id == id)
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no such case among those the caller may see"))
    }

    async fn list_grants(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::GrantList>, Status> {
        let (rows, next) = self.list(req, "ListGrants", List::Grants).await?;
        Ok(Response::new(pb::GrantList { items: unwrap_rows!(rows, Grants), next_page_token: next }))
    }

    async fn list_payments(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::PaymentList>, Status> {
        let (rows, next) = self.list(req, "ListPayments", List::Payments).await?;
        Ok(Response::new(pb::PaymentList { items: unwrap_rows!(rows, Payments), next_page_token: next }))
    }

    async fn list_udk_cases(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::UdkCaseList>, Status> {
        let (rows, next) = self.list(req, "ListUdkCases", List::UdkCases).await?;
        Ok(Response::new(pb::UdkCaseList { items: unwrap_rows!(rows, UdkCases), next_page_token: next }))
    }

    async fn list_udk_benefits(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::UdkBenefitList>, Status> {
        let (rows, next) = self.list(req, "ListUdkBenefits", List::UdkBenefits).await?;
        Ok(Response::new(pb::UdkBenefitList { items: unwrap_rows!(rows, UdkBenefits), next_page_token: next }))
    }

    async fn list_control_cases(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ControlCaseList>, Status> {
        let (rows, next) = self.list(req, "ListControlCases", List::ControlCases).await?;
        Ok(Response::new(pb::ControlCaseList { items: unwrap_rows!(rows, ControlCases), next_page_token: next }))
    }

    async fn list_employment(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::EmploymentList>, Status> {
        let (rows, next) = self.list(req, "ListEmployment", List::Employment).await?;
        Ok(Response::new(pb::EmploymentList { items: unwrap_rows!(rows, Employment), next_page_token: next }))
    }

    async fn list_tax_records(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::TaxRecordList>, Status> {
        let (rows, next) = self.list(req, "ListTaxRecords", List::Tax).await?;
        Ok(Response::new(pb::TaxRecordList { items: unwrap_rows!(rows, Tax), next_page_token: next }))
    }
}
