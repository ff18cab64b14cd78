//! /api/uploads: files. An upload streams from the socket to storage a
//! chunk at a time, hashed on the way, and is refused (413, nothing kept)
//! the moment it passes `uploads.max_bytes`. Downloads are served to the
//! uploader and to members of a thread holding a live message that carries
//! the file (persistence/uploads.rs); anyone else gets 404.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use super::extract::AuthUser;
use super::ranges::{self, RangeRequest};
use super::responses::{BadRequest, NotFound, Unauthorized, Unavailable};
use super::AppState;
use crate::domain::{FileName, MediaType, UploadId};
use crate::error::{AppError, HttpErrorBody};
use crate::persistence::{FindReadableUpload, RecordUpload, StoredUpload};
use crate::protocol::views::UploadView;
use crate::storage::{Blob, Storage, StorageError};
use crate::thumbnail;

/// Enough of a file's first bytes to tell an image format.
const SNIFF_BYTES: usize = 64;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/uploads").post(upload))
        .service(web::resource("/uploads/{id}").get(download))
        .service(web::resource("/uploads/{id}/thumbnail").get(download_thumbnail));
}

impl From<StorageError> for AppError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound => AppError::Internal("an upload's bytes are missing".into()),
            StorageError::Failed(detail) => AppError::Internal(detail),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name: 1 to 255 characters, no `/`, `\` or control
    /// characters.
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\\\x00-\x1f\x7f-\x9f]+$"
    )]
    name: String,
}

/// The file's bytes, as they are.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBytes(#[allow(dead_code)] Vec<u8>);

#[derive(IntoResponses)]
#[response(
    status = 413,
    description = "The file is over `uploads.max_bytes` (default 25 MiB); nothing of it is kept (`payload_too_large`)"
)]
pub struct FileTooLarge(pub HttpErrorBody);

/// Stores a file for the caller. The body is the raw bytes; `Content-Type`
/// is kept and served back (default `application/octet-stream`). A JPEG,
/// PNG, GIF or WebP image that decodes gets a thumbnail; one with more
/// pixels than `uploads.max_pixels` is refused with 400.
#[utoipa::path(
    post,
    path = "/api/uploads",
    tag = "user",
    operation_id = "upload_file",
    security(("user_token" = [])),
    params(UploadQuery),
    // Not required: no body is an empty file, which is a file like any other.
    request_body(content = Option<FileBytes>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = UploadView),
        BadRequest, Unauthorized, FileTooLarge, Unavailable
    )
)]
pub(super) async fn upload(
    caller: AuthUser,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
    body: web::Payload,
) -> Result<HttpResponse, AppError> {
    let name = FileName::parse(query.into_inner().name)?;
    let content_type = match req.headers().get(header::CONTENT_TYPE) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            AppError::bad_request("Content-Type must be a media type like image/png")
        })?),
    };
    let mime = MediaType::parse(content_type)?;
    let max_bytes = state.settings.uploads.max_bytes;
    // A length announced over the limit is refused before a byte is read.
    if declared_length(req.headers()).is_some_and(|len| len > max_bytes) {
        return Err(AppError::PayloadTooLarge);
    }
    let id = UploadId::new_v7();
    let storage = &state.storage;
    let received = receive(storage, id, body, max_bytes).await?;
    let thumbnail = match make_thumbnail(&state, id, &received.head).await {
        Ok(thumbnail) => thumbnail,
        Err(error) => {
            discard(storage, id).await;
            return Err(error);
        }
    };
    let record = RecordUpload {
        id,
        uploader: caller.claimed,
        name,
        size: received.size,
        mime,
        sha256: received.sha256,
        thumbnail,
    };
    match state.ask(record).await {
        Ok(stored) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, UploadView::url_of(id)))
            .json(stored.view())),
        Err(error) => {
            discard(storage, id).await;
            Err(error)
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

struct Received {
    size: u64,
    sha256: String,
    head: Vec<u8>,
}

/// Streams the body into storage. On any failure the partial object is
/// aborted, so nothing of it stays.
async fn receive(
    storage: &Storage,
    id: UploadId,
    mut body: web::Payload,
    max_bytes: u64,
) -> Result<Received, AppError> {
    let mut writer = storage.writer(Blob::File(id.0));
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    while let Some(chunk) = body.next().await {
        let chunk: Bytes = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                writer.abort().await;
                return Err(AppError::bad_request(format!("the body broke off: {e}")));
            }
        };
        size = size.saturating_add(chunk.len() as u64);
        if size > max_bytes {
            // Stop reading: the rest of the body is never taken in.
            writer.abort().await;
            return Err(AppError::PayloadTooLarge);
        }
        hasher.update(&chunk);
        let wanted = SNIFF_BYTES.saturating_sub(head.len()).min(chunk.len());
        head.extend_from_slice(&chunk[..wanted]);
        if let Err(e) = writer.write(chunk).await {
            writer.abort().await;
            return Err(e.into());
        }
    }
    writer.finish().await?;
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Received { size, sha256, head })
}

/// The thumbnail of an image upload, made on the blocking pool and stored;
/// `None` for anything that is not one of the four image types or does
/// not decode. An image over the pixel cap is a 400.
async fn make_thumbnail(
    state: &AppState,
    id: UploadId,
    head: &[u8],
) -> Result<Option<(&'static str, u64)>, AppError> {
    if thumbnail::image_format(head).is_none() {
        return Ok(None);
    }
    let bytes = state.storage.read_all(Blob::File(id.0)).await?;
    let max_pixels = state.settings.uploads.max_pixels;
    let made = web::block(move || thumbnail::make(&bytes, max_pixels))
        .await
        .map_err(|e| AppError::Internal(format!("thumbnail task: {e}")))?
        .map_err(|too_many| AppError::bad_request(too_many.to_string()))?;
    let Some(made) = made else {
        return Ok(None);
    };
    let size = made.bytes.len() as u64;
    state
        .storage
        .put(Blob::Thumbnail(id.0), Bytes::from(made.bytes))
        .await?;
    Ok(Some((made.mime, size)))
}

/// Removes what was stored for an upload that will not be recorded.
async fn discard(storage: &Storage, id: UploadId) {
    for blob in [Blob::File(id.0), Blob::Thumbnail(id.0)] {
        if let Err(e) = storage.delete(blob).await {
            log::warn!(upload_id:% = id; "removing an unrecorded upload: {e}");
        }
    }
}

/// A file's bytes, with the headers that make it safe to serve.
#[derive(IntoResponses)]
pub enum Download {
    /// The whole file, with its stored `Content-Type`, `ETag` (the
    /// sha256), `Content-Disposition` (inline for JPEG, PNG, GIF and WebP,
    /// else attachment), `X-Content-Type-Options: nosniff` and
    /// `Cache-Control: private`.
    #[response(status = 200, content_type = "*/*")]
    Whole(FileBytes),
    /// The one range that `Range` asked for, with `Content-Range`.
    #[response(status = 206, content_type = "*/*")]
    Part(FileBytes),
    /// `If-None-Match` names the current `ETag`.
    #[response(status = 304)]
    NotModified,
    /// The range starts past the end (`Content-Range: bytes */<size>`).
    #[response(status = 416)]
    RangeNotSatisfiable(HttpErrorBody),
}

/// The file, to its uploader and to members of a thread where a live
/// message carries it.
#[utoipa::path(
    get,
    path = "/api/uploads/{id}",
    tag = "user",
    operation_id = "download_file",
    security(("user_token" = [])),
    params(("id" = UploadId, Path, description = "The upload")),
    responses(Download, BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn download(
    caller: AuthUser,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<UploadId>,
) -> Result<HttpResponse, AppError> {
    let upload = readable(&caller, &state, id.into_inner()).await?;
    let inline = upload.mime.is_inline_image();
    let served = Served {
        blob: Blob::File(upload.id.0),
        size: upload.size,
        mime: upload.mime.as_str(),
        etag: format!("\"{}\"", upload.sha256),
        disposition: disposition(inline, &upload.name),
    };
    serve(&state.storage, &req, served).await
}

/// The upload's thumbnail (PNG or JPEG, at most 320 × 320), to whoever
/// may read the upload; 404 when it has none.
#[utoipa::path(
    get,
    path = "/api/uploads/{id}/thumbnail",
    tag = "user",
    operation_id = "download_thumbnail",
    security(("user_token" = [])),
    params(("id" = UploadId, Path, description = "The upload")),
    responses(
        (status = 200, description = "The thumbnail, with the headers of a download (inline)",
         content((FileBytes = "image/png"), (FileBytes = "image/jpeg"))),
        (status = 206, description = "The one range that `Range` asked for",
         content((FileBytes = "image/png"), (FileBytes = "image/jpeg"))),
        (status = 304, description = "`If-None-Match` names the current `ETag`"),
        (status = 416, description = "The range starts past the end", body = HttpErrorBody),
        BadRequest, Unauthorized, NotFound, Unavailable
    )
)]
pub(super) async fn download_thumbnail(
    caller: AuthUser,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<UploadId>,
) -> Result<HttpResponse, AppError> {
    let upload = readable(&caller, &state, id.into_inner()).await?;
    let (mime, size) = upload
        .thumbnail
        .as_ref()
        .ok_or(AppError::NotFound("thumbnail"))?;
    let served = Served {
        blob: Blob::Thumbnail(upload.id.0),
        size: *size,
        mime,
        etag: format!("\"{}-thumbnail\"", upload.sha256),
        disposition: disposition(true, &upload.name),
    };
    serve(&state.storage, &req, served).await
}

async fn readable(
    caller: &AuthUser,
    state: &AppState,
    upload_id: UploadId,
) -> Result<StoredUpload, AppError> {
    state
        .ask(FindReadableUpload {
            reader: caller.claimed,
            upload_id,
        })
        .await
}

struct Served<'a> {
    blob: Blob,
    size: u64,
    mime: &'a str,
    etag: String,
    disposition: String,
}

async fn serve(
    storage: &Storage,
    req: &HttpRequest,
    served: Served<'_>,
) -> Result<HttpResponse, AppError> {
    let headers = req.headers();
    if etag_matches(headers.get(header::IF_NONE_MATCH), &served.etag) {
        let mut response = HttpResponse::NotModified();
        common_headers(&mut response, &served);
        return Ok(response.finish());
    }
    // If-Range with another validator: the file changed, send all of it.
    let range_header = match headers.get(header::IF_RANGE) {
        Some(validator) if validator.as_bytes() != served.etag.as_bytes() => None,
        _ => headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
    };
    let (status, range) = match ranges::parse(range_header, served.size) {
        RangeRequest::Whole => (StatusCode::OK, None),
        RangeRequest::Part(range) => (StatusCode::PARTIAL_CONTENT, Some(range)),
        RangeRequest::Unsatisfiable => {
            let body = serde_json::json!({"error": {"code": "bad_request",
                "message": "the range starts past the end of the file"}});
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{}", served.size)))
                .json(body));
        }
    };
    let length = range.as_ref().map_or(served.size, |r| r.end - r.start);
    let mut response = HttpResponse::build(status);
    common_headers(&mut response, &served);
    response.insert_header((header::CONTENT_TYPE, served.mime));
    if let Some(range) = &range {
        response.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", range.start, range.end - 1, served.size),
        ));
    }
    if length == 0 {
        return Ok(response.no_chunking(0).body(Bytes::new()));
    }
    let bytes = storage.read(served.blob, range).await?;
    Ok(response.no_chunking(length).streaming(bytes))
}

fn common_headers(response: &mut HttpResponseBuilder, served: &Served<'_>) {
    response
        .insert_header((header::ETAG, served.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "private"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        // Opened directly, a file runs nothing: no script, no plugin, no
        // same-origin access, whatever its type says.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ));
    if let Ok(value) = HeaderValue::from_str(&served.disposition) {
        response.insert_header((header::CONTENT_DISPOSITION, value));
    }
}

/// `If-None-Match`: `*` or a list that names `etag` (weak or strong).
fn etag_matches(header: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// `Content-Disposition` with the file name twice: an ASCII fallback and
/// the exact UTF-8 name (RFC 6266, RFC 8187).
fn disposition(inline: bool, name: &str) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => encoded.push(byte as char),
            b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disposition_carries_an_ascii_fallback_and_the_exact_name() {
        assert_eq!(
            disposition(false, "r\u{e9}sum\u{e9} \"v2\".pdf"),
            "attachment; filename=\"r_sum_ _v2_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
        assert!(disposition(true, "a.png").starts_with("inline; "));
    }

    #[test]
    fn if_none_match_names_the_etag_or_anything() {
        let etag = "\"abc\"";
        let value = |s: &'static str| HeaderValue::from_static(s);
        assert!(etag_matches(Some(&value("\"abc\"")), etag));
        assert!(etag_matches(Some(&value("\"x\", W/\"abc\"")), etag));
        assert!(etag_matches(Some(&value("*")), etag));
        assert!(!etag_matches(Some(&value("\"abd\"")), etag));
        assert!(!etag_matches(None, etag));
    }
}
