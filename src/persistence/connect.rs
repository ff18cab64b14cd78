//! Connecting to Postgres, with TLS as libpq understands it. Managed
//! Postgres services require TLS, and operators write `DATABASE_URL` the
//! way `psql` takes it, so the URL's `sslmode` and `sslrootcert` decide
//! whether the connection is encrypted and what of the server's
//! certificate is checked:
//!
//! | `sslmode`          | encrypted                   | chain checked             | host name checked |
//! |--------------------|-----------------------------|---------------------------|-------------------|
//! | `disable`          | never                       | –                         | –                 |
//! | `prefer` (default) | if the server offers TLS    | only if `sslrootcert` set | no                |
//! | `require`          | always                      | only if `sslrootcert` set | no                |
//! | `verify-ca`        | always                      | yes                       | no                |
//! | `verify-full`      | always                      | yes                       | yes               |
//!
//! `sslrootcert` names a PEM file of trusted CA certificates (or `system`);
//! without it the verify modes trust the system's roots. A chain is checked
//! in `prefer` and `require` only when `sslrootcert` is given: libpq's rule.
//!
//! The pool, the migrations, the database-creation step and every command
//! of the CLI connect through [`PgConnector`], so they all agree.
//!
//! tokio-postgres itself knows only disable/prefer/require and leaves every
//! certificate check to the TLS connector; the difference between the
//! verify modes is the rustls verifier chosen here. rustls, not OpenSSL:
//! the binary links no system TLS library, and rustls with ring is already
//! in the build through the NATS client.

use std::sync::Arc;

use diesel::ConnectionError;
use diesel_async::pooled_connection::SetupCallback;
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, as far as confab honours it (all of it but `allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.as_str() == value)
    }

    /// What tokio-postgres does on the wire: ask for TLS or not, and give
    /// up or fall back when the server declines.
    fn on_the_wire(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Wire;
        match self {
            SslMode::Disable => Wire::Disable,
            SslMode::Prefer => Wire::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Wire::Require,
        }
    }
}

/// Whom a certificate chain must lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    System,
    File(String),
}

impl std::fmt::Display for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Roots::System => f.write_str("the system's root certificates"),
            Roots::File(path) => write!(f, "sslrootcert {path}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("database_url: {0}")]
    BadUrl(String),
    #[error("sslrootcert {path}: {why}")]
    RootCert { path: String, why: String },
    #[error("no usable system root certificates for sslmode={mode} ({why}); name a CA file with sslrootcert")]
    SystemRoots { mode: &'static str, why: String },
    /// The server's certificate did not pass the check `sslmode` asks for.
    #[error(
        "the server's TLS certificate does not verify (sslmode={mode}, host {host}): {problem}"
    )]
    Certificate {
        mode: &'static str,
        host: String,
        problem: String,
    },
    #[error("{0}")]
    Postgres(#[source] tokio_postgres::Error),
    #[error("setting up the connection: {0}")]
    Setup(#[source] ConnectionError),
}

impl ConnectError {
    /// The server answered that the database does not exist (SQLSTATE
    /// 3D000), which start-up answers by creating it.
    pub fn is_missing_database(&self) -> bool {
        matches!(self, ConnectError::Postgres(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME))
    }
}

/// How to reach one database: the URL parsed once, its TLS set up once
/// (CA file read, verifier chosen), then any number of connections.
#[derive(Clone)]
pub struct PgConnector {
    config: tokio_postgres::Config,
    mode: SslMode,
    roots: Option<Roots>,
    /// `None` with `sslmode=disable`.
    tls: Option<MakeRustlsConnect>,
}

impl PgConnector {
    /// Parses `database_url` and prepares its TLS. Fails on a bad
    /// `sslmode`, an unreadable `sslrootcert`, or no system roots where
    /// they are needed.
    pub fn from_url(database_url: &str) -> Result<Self, ConnectError> {
        let TlsParams {
            mode,
            roots,
            config,
        } = TlsParams::parse(database_url)?;
        let tls = match mode {
            SslMode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_config(mode, roots.as_ref())?)),
        };
        Ok(PgConnector {
            config,
            mode,
            roots,
            tls,
        })
    }

    /// The same server, credentials and TLS, another database: the
    /// server's maintenance database, where ours is created.
    pub fn to_database(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(name);
        other
    }

    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectError> {
        let connection = match &self.tls {
            None => {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| self.explain(e))?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            Some(tls) => {
                let (client, connection) = self
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(|e| self.explain(e))?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        };
        connection.map_err(ConnectError::Setup)
    }

    /// How the pool makes a connection: through this connector, whatever
    /// URL the pool hands it (it is the one this connector was made from).
    pub fn pool_setup(self) -> SetupCallback<AsyncPgConnection> {
        let connector = Arc::new(self);
        Box::new(move |_url| {
            let connector = connector.clone();
            async move {
                connector
                    .connect()
                    .await
                    .map_err(|e| ConnectionError::BadConnection(e.to_string()))
            }
            .boxed()
        })
    }

    /// A refused certificate becomes one sentence naming the problem; any
    /// other failure stays tokio-postgres's own.
    fn explain(&self, error: tokio_postgres::Error) -> ConnectError {
        let Some(rustls::Error::InvalidCertificate(problem)) = find_rustls_error(&error) else {
            return ConnectError::Postgres(error);
        };
        let problem = match problem {
            CertificateError::UnknownIssuer => format!(
                "it is not signed by a CA in {} (UnknownIssuer)",
                self.roots.as_ref().unwrap_or(&Roots::System)
            ),
            other => other.to_string(),
        };
        ConnectError::Certificate {
            mode: self.mode.as_str(),
            host: self.hosts(),
            problem,
        }
    }

    fn hosts(&self) -> String {
        let names: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        names.join(",")
    }
}

/// Checks `database_url`'s connection parameters without reading any
/// file: for the configuration check, so a typo in `sslmode` is a
/// configuration error. The reason comes without the key.
pub fn check_url(database_url: &str) -> Result<(), String> {
    match TlsParams::parse(database_url) {
        Ok(_) => Ok(()),
        Err(ConnectError::BadUrl(why)) => Err(why),
        Err(other) => Err(other.to_string()),
    }
}

/// The URL split into what libpq's TLS parameters ask for, and the rest,
/// which tokio-postgres parses (it rejects `sslrootcert` and the verify
/// modes it does not know).
struct TlsParams {
    mode: SslMode,
    roots: Option<Roots>,
    config: tokio_postgres::Config,
}

impl TlsParams {
    fn parse(database_url: &str) -> Result<Self, ConnectError> {
        let bad = |why: String| ConnectError::BadUrl(why);
        let mut url = url::Url::parse(database_url).map_err(|e| bad(e.to_string()))?;
        // libpq's default.
        let mut mode = SslMode::Prefer;
        let mut roots = None;
        let mut rest = Vec::new();
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => {
                    mode = SslMode::parse(&value).ok_or_else(|| {
                        bad(format!(
                            "sslmode {value:?} is not one of disable, prefer, require, verify-ca, verify-full"
                        ))
                    })?;
                }
                "sslrootcert" if value.is_empty() => {
                    return Err(bad("sslrootcert is empty".into()));
                }
                "sslrootcert" if value == "system" => roots = Some(Roots::System),
                "sslrootcert" => roots = Some(Roots::File(value.into_owned())),
                _ => rest.push((key.into_owned(), value.into_owned())),
            }
        }
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
        let mut config: tokio_postgres::Config = url
            .as_str()
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(e.to_string()))?;
        config.ssl_mode(mode.on_the_wire());
        Ok(TlsParams {
            mode,
            roots,
            config,
        })
    }
}

/// The rustls configuration `mode` asks for. ring is the crypto provider
/// (named here rather than relying on a process-wide default).
fn client_config(mode: SslMode, roots: Option<&Roots>) -> Result<ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => Arc::new(EncryptOnly {
            algorithms: provider.signature_verification_algorithms,
        }),
        (SslMode::Disable | SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, roots) => {
            Arc::new(ChainOnly(webpki_verifier(mode, roots, &provider)?))
        }
        (SslMode::VerifyFull, roots) => webpki_verifier(mode, roots, &provider)?,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::BadUrl(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

fn webpki_verifier(
    mode: SslMode,
    roots: Option<&Roots>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, ConnectError> {
    let store = match roots.unwrap_or(&Roots::System) {
        Roots::File(path) => file_roots(path)?,
        Roots::System => system_roots(mode)?,
    };
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| ConnectError::RootCert {
            path: roots.map_or_else(|| "system".into(), ToString::to_string),
            why: e.to_string(),
        })
}

fn file_roots(path: &str) -> Result<RootCertStore, ConnectError> {
    let fail = |why: String| ConnectError::RootCert {
        path: path.to_string(),
        why,
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        store.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(store)
}

fn system_roots(mode: SslMode) -> Result<RootCertStore, ConnectError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(ConnectError::SystemRoots {
            mode: mode.as_str(),
            why: if why.is_empty() {
                "none found".into()
            } else {
                why.join("; ")
            },
        });
    }
    Ok(store)
}

/// Where in an error's chain rustls said what went wrong. tokio-rustls
/// wraps it in an `io::Error`, whose `source()` skips it, so each
/// `io::Error` is looked into too.
fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        let wrapped = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if wrapped.is_some() {
            return wrapped;
        }
        next = error.source();
    }
    None
}

/// `verify-ca` (and `prefer`/`require` with `sslrootcert`): the chain must
/// lead to a trusted root, but the certificate need not name the host:
/// webpki checks the name only after the chain, so a name error means the
/// chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without `sslrootcert`: encrypted, any
/// certificate accepted (libpq's behaviour), though the handshake must
/// still be signed by the certificate's key.
#[derive(Debug)]
struct EncryptOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<TlsParams, ConnectError> {
        TlsParams::parse(url)
    }

    #[test]
    fn without_sslmode_tls_is_preferred_like_libpq() {
        let params = parse("postgres://u@h:5432/db").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(params.mode, SslMode::Prefer);
        assert_eq!(params.roots, None);
    }

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_others_left() {
        let params = parse(
            "postgres://u:p@h:5432/db?sslmode=verify-full&application_name=confab&sslrootcert=/ca.pem",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(params.mode, SslMode::VerifyFull);
        assert_eq!(params.roots, Some(Roots::File("/ca.pem".into())));
        assert_eq!(params.config.get_application_name(), Some("confab"));
        assert_eq!(params.config.get_dbname(), Some("db"));
        assert_eq!(params.config.get_password(), Some(&b"p"[..]));
    }

    #[test]
    fn every_libpq_mode_parses_and_others_are_refused() {
        for mode in SslMode::ALL {
            let url = format!("postgres://u@h/db?sslmode={}", mode.as_str());
            let params = parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(params.mode, mode);
        }
        let Err(err) = parse("postgres://u@h/db?sslmode=verify_full") else {
            panic!("verify_full is not a mode");
        };
        assert!(err.to_string().contains("sslmode"), "{err}");
        assert!(check_url("postgres://u@h/db?sslrootcert=system").is_ok());
    }

    #[test]
    fn a_missing_root_file_is_named() {
        let err = match PgConnector::from_url(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
        ) {
            Ok(_) => panic!("a missing CA file cannot verify anything"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
