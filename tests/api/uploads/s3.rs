//! The S3 store, against a real S3-compatible server started here: moto's
//! `moto_server` (PyPI, installed by `support::tools` when missing). The
//! same requests as against the directory: the bytes round-trip, a refused
//! upload leaves no object and no unfinished multipart upload.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{fetch, noise, png, sha256_hex, upload};
use crate::support::{http_client, spawn_app_with, tools, TestApp};

/// A moto server on a free port, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Moto {
        let program = tools::moto_server();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, endpoint };
        for _ in 0..200 {
            if http_client()
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not answer on {}", moto.endpoint);
    }

    /// Makes a bucket (moto accepts unsigned requests).
    async fn bucket(&self, name: &str) {
        let response = http_client()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }

    /// The bucket's listing (objects) or its unfinished multipart uploads.
    async fn list(&self, bucket: &str, query: &str) -> String {
        http_client()
            .get(format!("{}/{bucket}?{query}", self.endpoint))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn app_on(moto: &Moto, bucket: &str, max_bytes: u64) -> TestApp {
    let endpoint = moto.endpoint.clone();
    let bucket = bucket.to_string();
    spawn_app_with(move |s| {
        s.uploads.s3_bucket = bucket;
        s.uploads.s3_endpoint = endpoint;
        s.uploads.s3_region = "us-east-1".into();
        s.uploads.s3_access_key_id = "testing".into();
        s.uploads.s3_secret_access_key = "testing".into();
        s.uploads.s3_allow_http = true;
        s.uploads.max_bytes = max_bytes;
    })
    .await
}

#[actix_web::test]
async fn the_s3_store_round_trips_files_and_thumbnails_and_keeps_nothing_refused() {
    let moto = Moto::start().await;
    moto.bucket("confab-files").await;
    let app = app_on(&moto, "confab-files", 12 * 1024 * 1024).await;
    let ann = app.users(1).await.remove(0);

    let bytes = noise(200_000);
    let up = upload(&app.base, &ann.token, "a.bin", None, bytes.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    let id = up.id();
    let got = fetch(&app.base, &ann.token, &format!("/api/uploads/{id}"), &[]).await;
    assert!(got.bytes == bytes);
    let part = fetch(
        &app.base,
        &ann.token,
        &format!("/api/uploads/{id}"),
        &[("range", "bytes=100-199")],
    )
    .await;
    assert_eq!(
        (part.status, part.bytes.as_slice()),
        (206, &bytes[100..200])
    );
    let listing = moto.list("confab-files", "list-type=2").await;
    assert!(
        listing.contains(&format!("<Key>files/{id}</Key>")),
        "{listing}"
    );

    let image = upload(
        &app.base,
        &ann.token,
        "p.png",
        Some("image/png"),
        png(900, 300),
    )
    .await;
    assert_eq!(image.status, 201, "{}", image.body);
    let thumb = fetch(
        &app.base,
        &ann.token,
        &format!("/api/uploads/{}/thumbnail", image.id()),
        &[],
    )
    .await;
    let decoded = image::load_from_memory(&thumb.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 107));

    // Over one part: a multipart upload, completed.
    let big = noise(7 * 1024 * 1024);
    let up = upload(&app.base, &ann.token, "big.bin", None, big.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["sha256"], sha256_hex(&big));
    let got = fetch(
        &app.base,
        &ann.token,
        &format!("/api/uploads/{}", up.id()),
        &[],
    )
    .await;
    assert!(got.bytes == big);

    // Refused past the limit after a multipart upload began: aborted.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..16).map(|_| Ok(noise(1024 * 1024))).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let _ = http_client()
        .post(format!("{}/api/uploads?name=huge.bin", app.base))
        .bearer_auth(&ann.token)
        .body(body)
        .send()
        .await;
    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM uploads").await, 3);
    let listing = moto.list("confab-files", "list-type=2").await;
    assert_eq!(
        listing.matches("<Key>").count(),
        4,
        "three files and a thumbnail: {listing}"
    );
    let unfinished = moto.list("confab-files", "uploads").await;
    assert!(
        unfinished.contains("ListMultipartUploadsResult"),
        "{unfinished}"
    );
    assert!(
        !unfinished.contains("<Upload>"),
        "no multipart upload left open: {unfinished}"
    );
}
