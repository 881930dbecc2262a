//! How the gRPC server listens: TLS (rustls through tonic), client
//! certificates, a request timeout and a concurrency limit.
//!
//! Bearer tokens and personal numbers travel in every request, so a server
//! reachable from other hosts must speak TLS: [`Transport::bind`] refuses a
//! non-loopback address without it unless the operator says
//! `--insecure-plaintext` (for a deployment whose TLS ends in front of it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// Where the server's certificate, key and client CA come from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// Whether plaintext on a non-loopback address is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plaintext {
    LoopbackOnly,
    /// `--insecure-plaintext`: TLS ends in front of this server.
    Anywhere,
}

/// The server's transport settings.
#[derive(Clone, Debug)]
pub struct TransportSettings {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub plaintext: Plaintext,
    /// A call running longer is cancelled (`CANCELLED`/`DEADLINE_EXCEEDED`).
    pub timeout: Duration,
    /// Calls in progress at once, over all connections; more are refused
    /// `RESOURCE_EXHAUSTED` at once rather than queued.
    pub concurrency: usize,
}

impl TransportSettings {
    /// Plaintext on `listen` with the default limits (dev mode, tests).
    pub fn plaintext(listen: SocketAddr) -> TransportSettings {
        TransportSettings {
            listen,
            tls: None,
            plaintext: Plaintext::LoopbackOnly,
            timeout: Duration::from_secs(30),
            concurrency: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "refusing to listen on {0} without TLS: give --grpc-tls-cert and --grpc-tls-key, or --insecure-plaintext if TLS ends in front of this server"
    )]
    PlaintextNotLoopback(SocketAddr),
    #[error("can't read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the TLS configuration is not usable: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("can't listen for gRPC on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the concurrency limit must be at least 1")]
    NoConcurrency,
}

/// A bound listener and how to serve on it.
pub struct Transport {
    pub(super) incoming: TcpIncoming,
    tls: Option<ServerTlsConfig>,
    timeout: Duration,
    concurrency: usize,
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|source| TransportError::Read { what, path: path.clone(), source })
}

impl Transport {
    /// Reads the TLS files and binds the address (port 0 picks a free port;
    /// [`Transport::local_addr`] tells).
    pub fn bind(s: &TransportSettings) -> Result<Transport, TransportError> {
        if s.tls.is_none() && s.plaintext == Plaintext::LoopbackOnly && !s.listen.ip().is_loopback() {
            return Err(TransportError::PlaintextNotLoopback(s.listen));
        }
        if s.concurrency == 0 {
            return Err(TransportError::NoConcurrency);
        }
        let tls = match &s.tls {
            None => None,
            Some(files) => {
                let identity = Identity::from_pem(read("certificate", &files.cert)?, read("key", &files.key)?);
                let mut config = ServerTlsConfig::new().identity(identity);
                if let Some(ca) = &files.client_ca {
                    config = config.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
                }
                // Fail at start, not at the first connection.
                Server::builder().tls_config(config.clone()).map_err(TransportError::Tls)?;
                Some(config)
            }
        };
        let incoming = TcpIncoming::bind(s.listen)
            .map(|i| i.with_nodelay(Some(true)))
            .map_err(|source| TransportError::Bind { addr: s.listen, source })?;
        Ok(Transport { incoming, tls, timeout: s.timeout, concurrency: s.concurrency })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.incoming.local_addr().ok()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The server builder with this transport's TLS and limits.
    pub(super) fn server(
        &self,
    ) -> Result<
        Server<tower::layer::util::Stack<tower::limit::GlobalConcurrencyLimitLayer, tower::layer::util::Identity>>,
        TransportError,
    > {
        let mut builder = Server::builder();
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.clone()).map_err(TransportError::Tls)?;
        }
        if let Some(addr) = self.local_addr() {
            tracing::info!(%addr, tls = self.tls.is_some(), "gRPC listening");
        }
        Ok(builder
            .timeout(self.timeout)
            .load_shed(true)
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(self.concurrency)))
    }
}
