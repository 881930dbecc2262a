//! gRPC over TLS with a real TLS client: a client that doesn't trust the
//! server's CA can't talk to it; with client-certificate verification, a
//! client without a certificate is refused; plaintext is refused on a
//! non-loopback address unless the operator says otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use overblik::api::Transport;
use overblik::api::transport::{Plaintext, TlsFiles, TransportError, TransportSettings};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::serve::served;
use crate::support::Backend;

/// A CA, a server certificate for `localhost` and a client certificate,
/// written as PEM files into a directory of their own.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("overblik-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "overblik test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let issue = |name: &str, file: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{file}.der")), cert.der()).unwrap();
            std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        };
        issue("localhost", "server");
        issue("esdh.example", "client");
        issue("other.example", "other-client");
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        // A second CA nobody configured.
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = CertifiedIssuer::self_signed(other, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves the services over TLS on a fresh store; returns the port.
async fn serve_tls(
    pki: &Pki,
    client_ca: Option<&Path>,
    pins: overblik::identity::CertificatePins,
) -> (u16, crate::serve::Served) {
    // The served() store and keys, behind a TLS listener of its own.
    let s = served(Backend::Sqlite).await;
    let settings = TransportSettings {
        tls: Some(TlsFiles {
            cert: pki.path("server.pem"),
            key: pki.path("server.key"),
            client_ca: client_ca.map(Path::to_path_buf),
        }),
        ..TransportSettings::plaintext("127.0.0.1:0".parse().unwrap())
    };
    let transport = Transport::bind(&settings).unwrap();
    assert!(transport.is_tls());
    let port = transport.local_addr().unwrap().port();
    let mut verifier = overblik::identity::Verifier::new(overblik::identity::keys::DEFAULT_AUDIENCE);
    verifier.trust(&s.key).unwrap();
    let serving = overblik::api::Serving::new(
        s.store.clone(),
        verifier,
        overblik::catalogue::Catalogue::built_in(),
        overblik::audit::writer::AuditLog::start(s.store.clone(), crate::serve::test_key()),
        Default::default(),
        Default::default(),
    )
    .with_system_certificates(pins);
    let stop: overblik::ingest::StopFlag = Arc::new(AtomicBool::new(false));
    tokio::spawn(overblik::api::serve(serving, transport, overblik::cli::stopped(stop)));
    (port, s)
}

/// A health check over TLS with `tls`; whether it was answered.
async fn healthy(port: u16, tls: Option<ClientTlsConfig>) -> bool {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let Ok(channel) = endpoint.connect().await else { return false };
    let reply = HealthClient::new(channel).check(HealthCheckRequest { service: "overblik.v1.Overblik".into() }).await;
    reply.is_ok()
}

fn trusting(pki: &Pki, ca: &str) -> ClientTlsConfig {
    ClientTlsConfig::new().domain_name("localhost").ca_certificate(Certificate::from_pem(pki.read(ca)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_servers_ca_cannot_talk_to_it() {
    let pki = Pki::new();
    let (port, _s) = serve_tls(&pki, None, Default::default()).await;
    assert!(healthy(port, Some(trusting(&pki, "ca.pem"))).await, "with the CA the call is answered");
    assert!(!healthy(port, Some(trusting(&pki, "other-ca.pem"))).await, "another CA is not the server's");
    assert!(!healthy(port, Some(ClientTlsConfig::new().domain_name("localhost"))).await, "no CA at all");
    assert!(!healthy(port, None).await, "plaintext to a TLS server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_verification_a_client_without_a_certificate_is_refused() {
    let pki = Pki::new();
    let (port, _s) = serve_tls(&pki, Some(&pki.path("ca.pem")), Default::default()).await;
    assert!(!healthy(port, Some(trusting(&pki, "ca.pem"))).await, "no client certificate");
    let identity = Identity::from_pem(pki.read("client.pem"), pki.read("client.key"));
    assert!(healthy(port, Some(trusting(&pki, "ca.pem").identity(identity))).await, "with one");
}

/// A client certificate pinned to an IT system is that system: without a
/// token it calls under the system's service agreement; a token for anyone
/// else beside it is refused; it opens neither Borgerblikket nor the
/// officer's service; an unpinned certificate is no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_client_certificate_is_its_it_system() {
    use overblik::proto::overblik_client::OverblikClient;
    use tonic_types::StatusExt;
    let pki = Pki::new();
    let system = uuid::Uuid::new_v4();
    let fingerprint = hex::encode(overblik::identity::fingerprint(&pki.read("client.der")));
    let pins = overblik::identity::CertificatePins::parse(&[format!("{fingerprint}={system}@55133018")]).unwrap();
    let (port, s) = serve_tls(&pki, Some(&pki.path("ca.pem")), pins).await;
    crate::serve::load_facts(&s.store).await;
    let today = overblik::domain::copenhagen_today(chrono::Utc::now());
    crate::system::stored(&s.store, system, today, today + chrono::Days::new(1)).await;
    let channel = |client: &str| {
        let identity = Identity::from_pem(pki.read(&format!("{client}.pem")), pki.read(&format!("{client}.key")));
        let tls = trusting(&pki, "ca.pem").identity(identity);
        let endpoint = Channel::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls).unwrap();
        async move { endpoint.connect().await.unwrap() }
    };
    let mut pinned = OverblikClient::new(channel("client").await);
    let list = || crate::serve::list("sager", &[1]);
    let cases = pinned.list_cases(crate::serve::authed(list(), None)).await.unwrap().into_inner().items;
    assert_eq!(cases.len(), 2, "the certificate's system, within its agreement");
    let employee = s.key.mint(&crate::serve::employee("55133018", &["Se sager"])).unwrap();
    let err = pinned.list_cases(crate::serve::authed(list(), Some(&employee))).await.unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "BAD_TOKEN", "a token for someone else beside it");
    // The certificate alone opens no citizen's or officer's service.
    let pinned_channel = channel("client").await;
    let mut borger = overblik::proto::borgerblikket_client::BorgerblikketClient::new(pinned_channel.clone());
    let my = overblik::proto::MyListRequest { page_size: 0, page_token: String::new() };
    let err = borger.list_my_cases(crate::serve::authed(my, None)).await.unwrap_err();
    assert_eq!(
        (err.code(), err.get_details_error_info().unwrap().reason.as_str()),
        (tonic::Code::PermissionDenied, "NO_ROLE")
    );
    let mut audit = overblik::proto::audit_client::AuditClient::new(pinned_channel);
    let q = overblik::proto::AuditQuery { citizen: "0101801234".into(), ..Default::default() };
    let err = audit.query_audit(crate::serve::authed(q, None)).await.unwrap_err();
    assert_eq!(
        (err.code(), err.get_details_error_info().unwrap().reason.as_str()),
        (tonic::Code::PermissionDenied, "NO_ROLE")
    );
    let mut unpinned = OverblikClient::new(channel("other-client").await);
    let err = unpinned.list_cases(crate::serve::authed(list(), None)).await.unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "NO_TOKEN", "an unpinned certificate is no one");
    let filter = overblik::store::AuditFilter { user_id: Some(format!("system:{system}")), ..Default::default() };
    let records = s.store.audit_records(&filter, 0, 100).await.unwrap();
    assert_eq!(records.iter().filter(|r| r.entry.kind == "lookup").count(), 1);
    assert_eq!(records.iter().find(|r| r.entry.kind == "lookup").unwrap().entry.it_system, system.to_string());
}

#[test]
fn plaintext_is_refused_beyond_loopback_unless_asked_for() {
    let open = TransportSettings::plaintext("0.0.0.0:0".parse().unwrap());
    assert!(matches!(Transport::bind(&open), Err(TransportError::PlaintextNotLoopback(_))));
    let told = TransportSettings { plaintext: Plaintext::Anywhere, ..open };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { assert!(Transport::bind(&told).is_ok()) });
    let pki = Pki::new();
    let missing = TransportSettings {
        tls: Some(TlsFiles { cert: pki.path("nope.pem"), key: pki.path("server.key"), client_ca: None }),
        ..TransportSettings::plaintext("127.0.0.1:0".parse().unwrap())
    };
    let err = rt.block_on(async { Transport::bind(&missing).err().unwrap() });
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[test]
fn serve_refuses_a_public_plaintext_address_at_start() {
    let dir = std::env::temp_dir().join(format!("overblik-serve-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("dev.key.json");
    overblik::identity::keys::KeyFile::dev_at(&key).unwrap();
    let db = format!("sqlite://{}", dir.join("s.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["serve", "--database-url", &db, "--grpc-listen", "0.0.0.0:0"])
        .arg("--accept-dev-key")
        .arg(&key)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without TLS"), "{stderr}");
}
