//! `overblik lookup`: one area of one citizen over gRPC, or their timeline
//! over several areas, for people and scripts. Exit code 0 when allowed, 3
//! when denied.

use clap::Args;
use tonic::metadata::MetadataValue;
use tonic_types::StatusExt;

use crate::domain::DataArea;
use crate::proto as pb;
use crate::proto::overblik_client::OverblikClient;

#[derive(Args, Debug)]
pub struct LookupArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// A bearer token (see `overblik token`).
    #[arg(long, env = "OVERBLIK_TOKEN")]
    pub token: String,
    /// The citizen: 10 CPR digits or a party URN.
    #[arg(long)]
    pub citizen: String,
    /// The data area, e.g. sager, ydelser, forskudsopgoerelse.
    #[arg(long, required_unless_present = "timeline")]
    pub area: Option<String>,
    /// The purpose id (repeat it to see the refusal of two purposes).
    #[arg(long = "purpose")]
    pub purposes: Vec<u32>,
    /// The timeline (GetTimeline) instead of one area's list: an area and
    /// its purpose, once per area, e.g. `--timeline sager:1 --timeline
    /// ydelser:1`. Shows the first 500 items.
    #[arg(long = "timeline", value_name = "AREA:PURPOSE", conflicts_with_all = ["area", "purposes"])]
    pub timeline: Vec<String>,
    #[arg(long)]
    pub transaction_id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn request<T>(body: T, a: &LookupArgs) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(body);
    let auth: MetadataValue<_> = format!("Bearer {}", a.token).parse()?;
    req.metadata_mut().insert("authorization", auth);
    if let Some(t) = &a.transaction_id {
        req.metadata_mut().insert("x-transaktions-id", t.parse()?);
    }
    Ok(req)
}

/// What the command asks for.
enum Asked {
    Area(DataArea),
    Timeline(Vec<pb::AreaPurpose>),
}

impl Asked {
    fn of(a: &LookupArgs) -> anyhow::Result<Asked> {
        match &a.area {
            Some(area) => {
                DataArea::parse(area).map(Asked::Area).ok_or_else(|| anyhow::anyhow!("unknown data area {area:?}"))
            }
            None => a.timeline.iter().map(|t| area_purpose(t)).collect::<anyhow::Result<_>>().map(Asked::Timeline),
        }
    }
}

/// `AREA:PURPOSE` as the request names it; the service judges both.
fn area_purpose(s: &str) -> anyhow::Result<pb::AreaPurpose> {
    let (area, purpose) =
        s.split_once(':').ok_or_else(|| anyhow::anyhow!("--timeline takes AREA:PURPOSE, e.g. sager:1"))?;
    let purpose: u32 = purpose.parse().map_err(|_| anyhow::anyhow!("the purpose of {area:?} is not a number"))?;
    Ok(pb::AreaPurpose { data_area: area.to_string(), purpose_ids: vec![purpose] })
}

pub async fn run(a: LookupArgs) -> anyhow::Result<i32> {
    let asked = Asked::of(&a)?;
    let mut client = OverblikClient::connect(a.endpoint.clone()).await?;
    let fetched = match asked {
        Asked::Area(area) => fetch(&mut client, area, &a).await,
        Asked::Timeline(purposes) => timeline(&mut client, purposes, &a).await,
    };
    let result = fetched.map_err(|e| match e.downcast::<tonic::Status>() {
        Ok(status) => status,
        Err(other) => tonic::Status::internal(other.to_string()),
    });
    match result {
        Ok(v) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_rows(&v);
            }
            Ok(0)
        }
        Err(status) => {
            let reason = status.get_details_error_info().map(|i| i.reason).unwrap_or_default();
            let denied = matches!(status.code(), tonic::Code::PermissionDenied | tonic::Code::Unauthenticated);
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({ "denied": denied, "code": format!("{:?}", status.code()), "reason": reason, "message": status.message() })
                );
            } else {
                // Denials carry their reason first in the message already.
                let message = status.message();
                if reason.is_empty() || !message.starts_with(&reason) {
                    eprintln!("{:?}: {message}", status.code());
                } else {
                    eprintln!("{message}");
                }
            }
            Ok(if denied { 3 } else { 1 })
        }
    }
}

async fn fetch(
    client: &mut OverblikClient<tonic::transport::Channel>,
    area: DataArea,
    a: &LookupArgs,
) -> anyhow::Result<serde_json::Value> {
    let list = || pb::ListRequest {
        citizen: a.citizen.clone(),
        purpose: Some(pb::AreaPurpose { data_area: area.to_string(), purpose_ids: a.purposes.clone() }),
        page_size: 500,
        page_token: String::new(),
    };
    Ok(match area {
        DataArea::Sager => serde_json::to_value(client.list_cases(request(list(), a)?).await?.into_inner())?,
        DataArea::Ydelser => {
            let grants = client.list_grants(request(list(), a)?).await?.into_inner();
            let payments = client.list_payments(request(list(), a)?).await?.into_inner();
            serde_json::json!({ "grants": grants, "payments": payments })
        }
        DataArea::UdkSager => serde_json::to_value(client.list_udk_cases(request(list(), a)?).await?.into_inner())?,
        DataArea::UdkYdelser => {
            serde_json::to_value(client.list_udk_benefits(request(list(), a)?).await?.into_inner())?
        }
        DataArea::Kontrolsager => {
            serde_json::to_value(client.list_control_cases(request(list(), a)?).await?.into_inner())?
        }
        DataArea::Beskaeftigelse => {
            serde_json::to_value(client.list_employment(request(list(), a)?).await?.into_inner())?
        }
        _ => serde_json::to_value(client.list_tax_records(request(list(), a)?).await?.into_inner())?,
    })
}

/// The first page of the citizen's timeline over `purposes`' areas.
async fn timeline(
    client: &mut OverblikClient<tonic::transport::Channel>,
    purposes: Vec<pb::AreaPurpose>,
    a: &LookupArgs,
) -> anyhow::Result<serde_json::Value> {
    let req = pb::TimelineRequest { citizen: a.citizen.clone(), purposes, page_size: 500, page_token: String::new() };
    Ok(serde_json::to_value(client.get_timeline(request(req, a)?).await?.into_inner())?)
}

fn print_rows(v: &serde_json::Value) {
    // A timeline names its denied areas beside its items.
    for area in v.get("areas").and_then(|x| x.as_array()).into_iter().flatten() {
        if let Some(denial) = area.get("denial").filter(|d| d.is_object()) {
            println!("{}: denied, {}", area["data_area"], denial["reason"]);
        }
    }
    let lists: Vec<(&str, &serde_json::Value)> = match v.get("items") {
        Some(items) => vec![("", items)],
        None => v.as_object().map(|o| o.iter().map(|(k, v)| (k.as_str(), &v["items"])).collect()).unwrap_or_default(),
    };
    for (name, items) in lists {
        let items = items.as_array().cloned().unwrap_or_default();
        if !name.is_empty() {
            println!("{name}: {} rows", items.len());
        } else {
            println!("{} rows", items.len());
        }
        for item in items {
            println!("  {item}");
        }
    }
}
