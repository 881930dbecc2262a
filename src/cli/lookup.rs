//! `overblik lookup`: one area of one citizen over gRPC, for people and
//! scripts. Exit code 0 when allowed, 3 when denied.

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
    #[arg(long)]
    pub area: String,
    /// The purpose id (repeat it to see the refusal of two purposes).
    #[arg(long = "purpose")]
    pub purposes: Vec<u32>,
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

pub async fn run(a: LookupArgs) -> anyhow::Result<i32> {
    let area = DataArea::parse(&a.area).ok_or_else(|| anyhow::anyhow!("unknown data area {:?}", a.area))?;
    let mut client = OverblikClient::connect(a.endpoint.clone()).await?;
    let result = fetch(&mut client, area, &a).await.map_err(|e| match e.downcast::<tonic::Status>() {
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
        purpose: Some(pb::AreaPurpose { data_area: a.area.clone(), purpose_ids: a.purposes.clone() }),
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

fn print_rows(v: &serde_json::Value) {
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
