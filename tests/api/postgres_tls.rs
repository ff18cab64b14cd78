//! TLS to Postgres, as an operator of a managed database sets it up:
//! `sslmode` and `sslrootcert` in DATABASE_URL. The local Postgres serves
//! TLS with the snakeoil certificate, made for the name `localhost` only.

use std::path::PathBuf;
use std::process::Output;

use confab::persistence::connect::PgConnector;
use diesel::sql_types::Bool;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use reqwest::Method;
use uuid::Uuid;

use crate::support::child::{ChildConfig, ChildServer};
use crate::support::db::Db;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

/// The test database of `config`, reached as `host` with these TLS
/// parameters.
fn url(config: &ChildConfig, host: &str, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:5432/{}?{params}",
        config.db.name
    )
}

fn with_database_url(mut config: ChildConfig, database_url: String) -> ChildConfig {
    config.env.push(("DATABASE_URL".into(), database_url));
    config
}

/// A CA certificate of its own, which signed nothing the server has: the
/// "wrong CA" an operator might configure. Removed when dropped.
struct ThrowawayCa(PathBuf);

impl ThrowawayCa {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "confab throwaway test CA");
        let cert = params.self_signed(&key).expect("a self-signed CA");
        let path = std::env::temp_dir().join(format!("confab-test-ca-{}.pem", Uuid::new_v4()));
        std::fs::write(&path, cert.pem()).expect("write the CA file");
        ThrowawayCa(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for ThrowawayCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether each backend connected to the test database (other than the
/// asking one) is encrypted, from Postgres's own view.
async fn backends_encrypted(db: &mut Db, name: &str) -> (i64, i64) {
    let of_confab = format!(
        "FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
         WHERE a.datname = '{name}' AND a.pid <> pg_backend_pid()"
    );
    let all = db.count(&format!("SELECT count(*) {of_confab}")).await;
    let encrypted = db
        .count(&format!("SELECT count(*) {of_confab} AND s.ssl"))
        .await;
    (all, encrypted)
}

/// Ready, and a message goes from one user to another through Postgres.
async fn serves_a_round_trip(server: &ChildServer) {
    let ready = server.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let users = server.users(2).await;
    let thread = server.group(&[&users[0], &users[1]]).await;
    let mut ann = server.connect(&users[0]).await;
    let mut bob = server.connect(&users[1]).await;
    let sent = ann.send_message(thread, "over TLS or not").await;
    let got = bob.next_event("chat:message").await;
    assert_eq!(got["message"]["id"], sent["id"], "{got}");
    assert_eq!(got["message"]["body"], "over TLS or not");
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[actix_web::test]
async fn a_server_on_verify_full_serves_and_every_connection_it_holds_is_encrypted() {
    let base = ChildConfig::new(&[]);
    let tls_url = url(
        &base,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"),
    );
    let config = with_database_url(base, tls_url);
    let server = config.start().await;
    serves_a_round_trip(&server).await;

    let mut db = config.db.connect().await;
    let (all, encrypted) = backends_encrypted(&mut db, &config.db.name).await;
    assert!(all >= 1, "the server holds connections to its database");
    assert_eq!(encrypted, all, "every one of them is encrypted");
}

#[actix_web::test]
async fn sslmode_disable_still_connects_in_plain_text() {
    let base = ChildConfig::new(&[]);
    let plain_url = url(&base, "127.0.0.1", "sslmode=disable");
    let config = with_database_url(base, plain_url);
    let server = config.start().await;
    serves_a_round_trip(&server).await;

    let mut db = config.db.connect().await;
    let (all, encrypted) = backends_encrypted(&mut db, &config.db.name).await;
    assert!(all >= 1, "the server holds connections to its database");
    assert_eq!(encrypted, 0, "sslmode=disable: none is encrypted");
}

#[test]
fn a_certificate_from_another_ca_stops_start_up_with_one_line_naming_the_problem() {
    let wrong = ThrowawayCa::new();
    let base = ChildConfig::new(&[]);
    let tls_url = url(
        &base,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", wrong.path()),
    );
    let config = with_database_url(base, tls_url);
    let output = config.command().output().expect("run confab");
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    let problem: Vec<&str> = message
        .lines()
        .filter(|line| line.contains("certificate"))
        .collect();
    assert_eq!(problem.len(), 1, "one line: {message}");
    let line = problem[0];
    assert!(line.starts_with("confab: "), "{line}");
    assert!(line.contains("does not verify"), "{line}");
    assert!(
        line.contains(&format!(
            "not signed by a CA in sslrootcert {}",
            wrong.path()
        )),
        "{line}"
    );
}

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

async fn encrypted(conn: &mut AsyncPgConnection) -> bool {
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(conn)
        .await
        .expect("pg_stat_ssl");
    row.ssl
}

async fn connect(url: &str) -> Result<AsyncPgConnection, String> {
    let connector = PgConnector::from_url(url).map_err(|e| e.to_string())?;
    connector.connect().await.map_err(|e| e.to_string())
}

/// The snakeoil certificate names `localhost` only, so 127.0.0.1 is the
/// same server under a name its certificate does not carry.
#[actix_web::test]
async fn verify_ca_checks_the_chain_and_verify_full_the_host_name_too() {
    let at = |host: &str, params: &str| {
        format!("postgres://postgres@{host}:5432/postgres?sslrootcert={SNAKEOIL}&{params}")
    };

    let mut by_ip = connect(&at("127.0.0.1", "sslmode=verify-ca"))
        .await
        .expect("verify-ca does not check the name");
    assert!(encrypted(&mut by_ip).await);

    let refused = match connect(&at("127.0.0.1", "sslmode=verify-full")).await {
        Ok(_) => panic!("verify-full must check the host name"),
        Err(e) => e,
    };
    assert!(refused.contains("does not verify"), "{refused}");
    assert!(refused.contains("\"127.0.0.1\""), "{refused}");

    let mut by_name = connect(&at("localhost", "sslmode=verify-full"))
        .await
        .expect("the certificate names localhost");
    assert!(encrypted(&mut by_name).await);
}

#[actix_web::test]
async fn require_encrypts_and_checks_the_chain_only_when_given_a_root_like_libpq() {
    let plain = "postgres://postgres@127.0.0.1:5432/postgres";
    let mut unchecked = connect(&format!("{plain}?sslmode=require"))
        .await
        .expect("require without sslrootcert accepts any certificate");
    assert!(encrypted(&mut unchecked).await);

    let wrong = ThrowawayCa::new();
    let refused = match connect(&format!(
        "{plain}?sslmode=require&sslrootcert={}",
        wrong.path()
    ))
    .await
    {
        Ok(_) => panic!("require with sslrootcert checks the chain"),
        Err(e) => e,
    };
    assert!(refused.contains("not signed by a CA"), "{refused}");

    let mut preferred = connect(plain).await.expect("the default, prefer");
    assert!(
        encrypted(&mut preferred).await,
        "without sslmode, TLS is used when the server offers it"
    );
}
