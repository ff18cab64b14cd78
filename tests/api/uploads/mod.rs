//! Files (PROTOCOL.md, Edition 2, "Files"): uploads stream to storage with
//! their sha256, are refused past the size limit leaving nothing behind,
//! get thumbnails when they are images, and are served with safe headers
//! and ranges to whoever may read them.

mod access;
mod collect;
mod s3;

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb, Rgba};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{http_client, spawn_app, spawn_app_with, TestApp, TestUser};

/// An upload's answer: status and JSON body.
pub struct Uploaded {
    pub status: u16,
    pub body: Value,
}

impl Uploaded {
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("an upload id").to_string()
    }
}

pub async fn upload(
    base: &str,
    token: &str,
    name: &str,
    mime: Option<&str>,
    bytes: Vec<u8>,
) -> Uploaded {
    let mut request = http_client()
        .post(format!("{base}/api/uploads"))
        .query(&[("name", name)])
        .bearer_auth(token)
        .body(bytes);
    if let Some(mime) = mime {
        request = request.header("content-type", mime);
    }
    let response = request.send().await.expect("the upload completes");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Uploaded { status, body }
}

/// A download: status, headers and bytes.
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<missing>")
    }
}

pub async fn fetch(base: &str, token: &str, path: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut request = http_client()
        .get(format!("{base}{path}"))
        .bearer_auth(token);
    for (name, value) in headers {
        request = request.header(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = request.send().await.expect("the download completes");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("the body arrives").to_vec();
    Fetched {
        status,
        headers,
        bytes,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Bytes that compress badly and repeat nowhere.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = ImageBuffer::from_pixel(width, height, Rgba([200u8, 80, 20, 255]));
    encode(DynamicImage::ImageRgba8(image), ImageFormat::Png)
}

pub fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

/// Every file under `dir`, however deep.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

async fn one_user(app: &TestApp) -> TestUser {
    app.users(1).await.remove(0)
}

#[actix_web::test]
async fn an_upload_comes_back_byte_for_byte_with_its_name_type_and_sha256() {
    let app = spawn_app().await;
    let ann = one_user(&app).await;
    let bytes = noise(300_000);
    let up = upload(
        &app.base,
        &ann.token,
        "report Q3 é.pdf",
        Some("application/pdf"),
        bytes.clone(),
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
    let id = up.id();
    assert_eq!(up.body["name"], "report Q3 é.pdf");
    assert_eq!(up.body["size"], 300_000);
    assert_eq!(up.body["mime"], "application/pdf");
    assert_eq!(up.body["sha256"], sha256_hex(&bytes));
    assert_eq!(up.body["url"], format!("/api/uploads/{id}"));
    assert_eq!(
        up.body["thumbnail_url"],
        Value::Null,
        "a PDF has no thumbnail"
    );
    assert!(up.body["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let got = fetch(&app.base, &ann.token, &format!("/api/uploads/{id}"), &[]).await;
    assert_eq!(got.status, 200);
    assert!(got.bytes == bytes, "the bytes come back unchanged");
    assert_eq!(got.header("content-type"), "application/pdf");
    assert_eq!(got.header("x-content-type-options"), "nosniff");
    assert_eq!(got.header("cache-control"), "private");
    assert_eq!(got.header("etag"), format!("\"{}\"", sha256_hex(&bytes)));
    assert_eq!(got.header("accept-ranges"), "bytes");
    assert_eq!(
        got.header("content-disposition"),
        "attachment; filename=\"report Q3 _.pdf\"; filename*=UTF-8''report%20Q3%20%C3%A9.pdf"
    );
    let thumbnail = fetch(
        &app.base,
        &ann.token,
        &format!("/api/uploads/{id}/thumbnail"),
        &[],
    )
    .await;
    assert_eq!(thumbnail.status, 404, "no thumbnail for a PDF");

    let mut db = app.db().await;
    let sha = sha256_hex(&bytes);
    let rows = db
        .count(&format!(
            "SELECT count(*) FROM uploads WHERE id = '{id}' AND size = 300000 AND sha256 = '{sha}'"
        ))
        .await;
    assert_eq!(rows, 1);
    let stored = files_under(Path::new(&app.settings.uploads.dir));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::read(&stored[0]).unwrap(), bytes);
}

#[actix_web::test]
async fn an_empty_file_and_a_missing_content_type_are_fine() {
    let app = spawn_app().await;
    let ann = one_user(&app).await;
    let up = upload(&app.base, &ann.token, "empty", None, Vec::new()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["mime"], "application/octet-stream");
    assert_eq!(up.body["size"], 0);
    let got = fetch(
        &app.base,
        &ann.token,
        &format!("/api/uploads/{}", up.id()),
        &[],
    )
    .await;
    assert_eq!((got.status, got.bytes.len()), (200, 0));
    assert_eq!(got.header("content-type"), "application/octet-stream");
}

#[actix_web::test]
async fn names_and_types_are_checked() {
    let app = spawn_app().await;
    let ann = one_user(&app).await;
    let long = "x".repeat(256);
    for name in [
        "",
        "a/b.txt",
        "a\\b.txt",
        "tab\there",
        "line\nbreak",
        "nul\u{0}",
        long.as_str(),
    ] {
        let up = upload(
            &app.base,
            &ann.token,
            name,
            Some("text/plain"),
            b"hi".to_vec(),
        )
        .await;
        assert_eq!(up.status, 400, "{name:?}: {}", up.body);
        assert_eq!(up.body["error"]["code"], "bad_request", "{name:?}");
    }
    let ok = upload(
        &app.base,
        &ann.token,
        &"é".repeat(255),
        Some("text/plain"),
        b"hi".to_vec(),
    )
    .await;
    assert_eq!(ok.status, 201, "255 characters are allowed: {}", ok.body);

    let response = http_client()
        .post(format!("{}/api/uploads", app.base))
        .bearer_auth(&ann.token)
        .body("no name")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400, "name is required");

    let up = upload(
        &app.base,
        &ann.token,
        "a.bin",
        Some("not a type"),
        b"hi".to_vec(),
    )
    .await;
    assert_eq!(up.status, 400, "{}", up.body);

    let response = http_client()
        .post(format!("{}/api/uploads?name=a", app.base))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401, "a token is required");

    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM uploads").await, 1);
}

/// What a refused upload may leave: nothing in the table, nothing in the
/// directory, staging files included.
async fn assert_nothing_kept(app: &TestApp) {
    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM uploads").await, 0);
    let left = files_under(Path::new(&app.settings.uploads.dir));
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[actix_web::test]
async fn over_the_limit_is_413_and_nothing_is_kept() {
    let app = spawn_app_with(|s| s.uploads.max_bytes = 100_000).await;
    let ann = one_user(&app).await;

    let exactly = upload(&app.base, &ann.token, "max.bin", None, noise(100_000)).await;
    assert_eq!(
        exactly.status, 201,
        "the limit itself is allowed: {}",
        exactly.body
    );
    let mut db = app.db().await;
    db.exec("DELETE FROM uploads").await;
    for file in files_under(Path::new(&app.settings.uploads.dir)) {
        std::fs::remove_file(file).unwrap();
    }

    // Announced with Content-Length: refused before the body is read.
    let up = upload(&app.base, &ann.token, "big.bin", None, noise(100_001)).await;
    assert_eq!(up.status, 413, "{}", up.body);
    assert_eq!(up.body["error"]["code"], "payload_too_large");
    assert_nothing_kept(&app).await;

    // Chunked, with no length: refused once the stream passes the limit,
    // after part of it was written to storage.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(noise(16 * 1024))).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = http_client()
        .post(format!("{}/api/uploads?name=stream.bin", app.base))
        .bearer_auth(&ann.token)
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => {
            assert_eq!(response.status().as_u16(), 413);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
        }
        // The server may close before the client finished sending: also
        // a refusal, and what matters is what it kept.
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    assert_nothing_kept(&app).await;
}

#[actix_web::test]
async fn images_get_thumbnails_that_fit_in_320_keeping_their_aspect() {
    let app = spawn_app().await;
    let ann = one_user(&app).await;
    let big_jpeg = encode(
        DynamicImage::ImageRgb8(ImageBuffer::from_pixel(1200, 600, Rgb([10u8, 200, 30]))),
        ImageFormat::Jpeg,
    );
    // (name, type sent, bytes, thumbnail size, thumbnail type)
    type Case = (
        &'static str,
        &'static str,
        Vec<u8>,
        (u32, u32),
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "wide.png",
            "image/png",
            png(1000, 500),
            (320, 160),
            "image/png",
        ),
        (
            "tall.png",
            "image/png",
            png(300, 900),
            (107, 320),
            "image/png",
        ),
        (
            "photo.jpg",
            "image/jpeg",
            big_jpeg,
            (320, 160),
            "image/jpeg",
        ),
        (
            "small.gif",
            "image/gif",
            encode(
                DynamicImage::ImageRgba8(ImageBuffer::from_pixel(50, 20, Rgba([1u8, 2, 3, 255]))),
                ImageFormat::Gif,
            ),
            (50, 20),
            "image/png",
        ),
        (
            "pic.webp",
            "image/webp",
            encode(
                DynamicImage::ImageRgba8(ImageBuffer::from_pixel(640, 640, Rgba([9u8, 9, 9, 255]))),
                ImageFormat::WebP,
            ),
            (320, 320),
            "image/png",
        ),
    ];
    for (name, mime, bytes, (width, height), thumb_mime) in cases {
        let up = upload(&app.base, &ann.token, name, Some(mime), bytes).await;
        assert_eq!(up.status, 201, "{name}: {}", up.body);
        let id = up.id();
        assert_eq!(
            up.body["thumbnail_url"],
            format!("/api/uploads/{id}/thumbnail"),
            "{name}"
        );
        let got = fetch(
            &app.base,
            &ann.token,
            &format!("/api/uploads/{id}/thumbnail"),
            &[],
        )
        .await;
        assert_eq!(got.status, 200, "{name}");
        assert_eq!(got.header("content-type"), thumb_mime, "{name}");
        assert!(
            got.header("content-disposition").starts_with("inline;"),
            "{name}"
        );
        assert_eq!(got.header("x-content-type-options"), "nosniff");
        let thumb = image::load_from_memory(&got.bytes).expect("the thumbnail decodes");
        assert_eq!((thumb.width(), thumb.height()), (width, height), "{name}");
        let full = fetch(&app.base, &ann.token, &format!("/api/uploads/{id}"), &[]).await;
        assert_eq!(full.header("content-type"), mime);
        assert!(
            full.header("content-disposition").starts_with("inline;"),
            "{name}: images show inline"
        );
    }

    // Claimed to be a PNG, but is not: kept, without a thumbnail.
    let fake = upload(
        &app.base,
        &ann.token,
        "fake.png",
        Some("image/png"),
        b"\x89PNG\r\n\x1a\nnot really".to_vec(),
    )
    .await;
    assert_eq!(fake.status, 201, "{}", fake.body);
    assert_eq!(fake.body["thumbnail_url"], Value::Null);
}

/// A PNG header claiming 100 000 × 100 000 pixels: 10^10 pixels, 40 GB
/// decoded, from a few dozen bytes.
fn png_bomb() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&100_000u32.to_be_bytes());
    header.extend_from_slice(&100_000u32.to_be_bytes());
    header.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[actix_web::test]
async fn a_decompression_bomb_is_refused_with_400_and_nothing_is_kept() {
    let app = spawn_app().await;
    let ann = one_user(&app).await;
    let up = upload(
        &app.base,
        &ann.token,
        "bomb.png",
        Some("image/png"),
        png_bomb(),
    )
    .await;
    assert_eq!(up.status, 400, "{}", up.body);
    assert_eq!(up.body["error"]["code"], "bad_request");
    assert_nothing_kept(&app).await;

    // The cap is configurable: a modest image over a small cap is refused too.
    let app = spawn_app_with(|s| s.uploads.max_pixels = 10_000).await;
    let ann = one_user(&app).await;
    let up = upload(
        &app.base,
        &ann.token,
        "big.png",
        Some("image/png"),
        png(200, 100),
    )
    .await;
    assert_eq!(up.status, 400, "{}", up.body);
    assert_nothing_kept(&app).await;
    let up = upload(
        &app.base,
        &ann.token,
        "ok.png",
        Some("image/png"),
        png(100, 100),
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
}

#[actix_web::test]
async fn ranges_are_served_as_206_and_a_known_etag_as_304() {
    let app = spawn_app().await;
    let ann = one_user(&app).await;
    let bytes = noise(1000);
    let up = upload(&app.base, &ann.token, "data.bin", None, bytes.clone()).await;
    let path = format!("/api/uploads/{}", up.id());
    let etag = format!("\"{}\"", sha256_hex(&bytes));

    let part = fetch(&app.base, &ann.token, &path, &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.bytes, bytes[10..20]);
    assert_eq!(part.header("content-range"), "bytes 10-19/1000");
    assert_eq!(part.header("content-length"), "10");

    let tail = fetch(&app.base, &ann.token, &path, &[("range", "bytes=-5")]).await;
    assert_eq!((tail.status, tail.bytes.as_slice()), (206, &bytes[995..]));
    let rest = fetch(&app.base, &ann.token, &path, &[("range", "bytes=990-")]).await;
    assert_eq!((rest.status, rest.bytes.as_slice()), (206, &bytes[990..]));

    let past = fetch(&app.base, &ann.token, &path, &[("range", "bytes=1000-")]).await;
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), "bytes */1000");

    let several = fetch(&app.base, &ann.token, &path, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(
        (several.status, several.bytes.len()),
        (200, 1000),
        "several ranges: the whole file"
    );

    let stale = fetch(
        &app.base,
        &ann.token,
        &path,
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(
        stale.status, 200,
        "If-Range with another tag: the whole file"
    );

    let cached = fetch(&app.base, &ann.token, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, 304);
    assert!(cached.bytes.is_empty());
    assert_eq!(cached.header("etag"), etag);
    let changed = fetch(
        &app.base,
        &ann.token,
        &path,
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!(changed.status, 200);
}
