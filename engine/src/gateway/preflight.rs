//! What the gateway settles before s3s sees a request, and adds to every answer: what
//! s3s 0.14 does differently from S3.
//!
//! - Every answer carries a request id (`x-amz-request-id`), and an error's body names it
//!   too (`<RequestId>`), so a failure a user reports can be found in the log.
//! - `OPTIONS` is a CORS preflight, and fdw has no CORS rules: `400` without an `Origin`,
//!   `403` with one, as S3 answers for a bucket without CORS configuration.
//! - A presigned URL's `X-Amz-Expires` must be whole seconds in `0..=604800` (seven
//!   days). s3s accepts any `u32`, so a URL signed for longer than S3 allows worked, and
//!   one with a negative expiry was a `400`; S3 answers both `403 AccessDenied`.
//! - A body sent with `Transfer-Encoding: chunked` and neither `Content-Length` nor
//!   `x-amz-decoded-content-length` (curl reading a pipe, boto3 with a streaming body)
//!   is refused by s3s as `MissingContentLength`. S3 takes it. Such a body is read here,
//!   up to [`MAX_UNSIZED_BODY_BYTES`], and handed on with its length, which is what the
//!   cluster needs to place a put. The bytes in memory at once are bounded by
//!   [`UNSIZED_BUDGET_BYTES`]; a request beyond the budget waits for room, one beyond
//!   the limit is refused naming it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::body::Incoming;
use s3s::service::S3Service;
use s3s::{Body, HttpError, HttpRequest, HttpResponse};
use tokio::sync::Semaphore;

/// The largest body of unknown length read into memory before it is handed on.
pub const MAX_UNSIZED_BODY_BYTES: usize = 64 << 20;
/// Bytes held by bodies of unknown length at once, across the gateway's connections.
const UNSIZED_BUDGET_BYTES: usize = 4 * MAX_UNSIZED_BODY_BYTES;
/// The longest validity of a presigned URL, as S3 allows: seven days.
const MAX_PRESIGNED_EXPIRY_SECS: i64 = 604_800;

/// The gateway's service: [`preflight`](Preflight::call) checks, then s3s.
#[derive(Clone)]
pub(super) struct Preflight {
    s3s: S3Service,
    unsized_budget: Arc<Semaphore>,
    ids: Arc<RequestIds>,
}

/// Request ids: unique within the process (a counter) and across processes (a random
/// base).
struct RequestIds {
    base: u64,
    next: AtomicU64,
}

impl Preflight {
    pub(super) fn new(s3s: S3Service) -> Self {
        use std::hash::BuildHasher;
        Self {
            s3s,
            unsized_budget: Arc::new(Semaphore::new(UNSIZED_BUDGET_BYTES)),
            ids: Arc::new(RequestIds {
                base: std::hash::RandomState::new().hash_one(std::process::id()),
                next: AtomicU64::new(0),
            }),
        }
    }

    async fn serve(self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let n = self.ids.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016X}{n:08X}", self.ids.base);
        let mut response = self.answer(request).await?;
        if response.status().is_client_error() || response.status().is_server_error() {
            name_in_error(&mut response, &id);
        }
        if let Ok(value) = http::HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-amz-request-id", value);
        }
        Ok(response)
    }

    async fn answer(self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if request.method() == http::Method::OPTIONS {
            return Ok(match request.headers().contains_key(http::header::ORIGIN) {
                false => error(
                    http::StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Insufficient information. Origin request header needed.",
                ),
                true => error(
                    http::StatusCode::FORBIDDEN,
                    "AccessForbidden",
                    "CORSResponse: CORS is not enabled for this bucket.",
                ),
            });
        }
        if let Some(expiry) = presigned_expiry(&request)
            && !expiry.is_ok_and(|secs| (0..=MAX_PRESIGNED_EXPIRY_SECS).contains(&secs))
        {
            return Ok(error(
                http::StatusCode::FORBIDDEN,
                "AccessDenied",
                "X-Amz-Expires must be a number of seconds from 0 to 604800",
            ));
        }
        let request = if has_unknown_length(&request) {
            match self.sized(request).await {
                Ok(request) => request,
                Err(refused) => return Ok(refused),
            }
        } else {
            request
        };
        self.s3s.call(request).await
    }

    /// `request` with its body read whole and its length set, within the budget.
    async fn sized(&self, request: HttpRequest) -> Result<HttpRequest, HttpResponse> {
        let budget = u32::try_from(MAX_UNSIZED_BODY_BYTES).unwrap_or(u32::MAX);
        let Ok(_room) = self.unsized_budget.acquire_many(budget).await else {
            let message = "the gateway is stopping";
            return Err(error(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                message,
            ));
        };
        let (mut parts, mut body) = request.into_parts();
        let bytes = body
            .store_all_limited(MAX_UNSIZED_BODY_BYTES)
            .await
            .map_err(|err| {
                let message = format!(
                    "a body sent without Content-Length is read whole first, up to \
                     {MAX_UNSIZED_BODY_BYTES} bytes (MAX_UNSIZED_BODY_BYTES); send \
                     Content-Length or use a multipart upload ({err})"
                );
                error(
                    http::StatusCode::LENGTH_REQUIRED,
                    "MissingContentLength",
                    &message,
                )
            })?;
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, bytes.len().into());
        Ok(HttpRequest::from_parts(parts, Body::from(bytes)))
    }
}

impl hyper::service::Service<http::Request<Incoming>> for Preflight {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        Box::pin(self.clone().serve(request.map(Body::from)))
    }
}

/// A presigned URL's `X-Amz-Expires`, parsed, if the URL has one.
fn presigned_expiry(request: &HttpRequest) -> Option<Result<i64, std::num::ParseIntError>> {
    let query = request.uri().query()?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "X-Amz-Expires")
        .map(|(_, value)| value.parse())
}

/// A chunked body with no length said anywhere: not an `aws-chunked` body, whose
/// decoded length s3s reads from `x-amz-decoded-content-length`.
fn has_unknown_length(request: &HttpRequest) -> bool {
    let headers = request.headers();
    let chunked = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        });
    chunked
        && !headers.contains_key(http::header::CONTENT_LENGTH)
        && !headers.contains_key("x-amz-decoded-content-length")
}

/// Writes `id` into an error's XML body, as S3 does.
fn name_in_error(response: &mut HttpResponse, id: &str) {
    let Some(body) = response.body().bytes() else {
        return; // streamed: not an error document
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return;
    };
    if let Some(end) = text.rfind("</Error>")
        && !text.contains("<RequestId>")
    {
        let named = format!(
            "{}<RequestId>{id}</RequestId>{}",
            &text[..end],
            &text[end..]
        );
        *response.body_mut() = Body::from(named);
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
}

/// S3's error response (s3s's own serializer is private to it). `message` is ours, with
/// nothing that needs escaping in XML.
fn error(status: http::StatusCode, code: &str, message: &str) -> HttpResponse {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut response = HttpResponse::new(Body::from(xml));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut builder = http::Request::builder().method("PUT").uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn expiries_are_read_from_presigned_urls_only() {
        let expiry = |uri| presigned_expiry(&request(uri, &[])).map(|e| e.ok());
        assert_eq!(
            expiry("/b/k?X-Amz-Expires=3600&X-Amz-Date=1"),
            Some(Some(3600))
        );
        assert_eq!(expiry("/b/k?a=1&X-Amz-Expires=-7"), Some(Some(-7)));
        assert_eq!(expiry("/b/k?X-Amz-Expires=soon"), Some(None));
        assert_eq!(expiry("/b/k?uploads"), None);
        assert_eq!(expiry("/b/k"), None);
    }

    /// s3s with no operations: it answers every request `NotImplemented`.
    struct Nothing;

    #[async_trait::async_trait]
    impl s3s::S3 for Nothing {}

    async fn answer(uri: &str, headers: &[(&str, &str)], body: Body) -> (u16, String) {
        let mut request = request(uri, headers);
        *request.body_mut() = body;
        let preflight = Preflight::new(s3s::service::S3ServiceBuilder::new(Nothing).build());
        let mut response = preflight.serve(request).await.unwrap();
        let body = response
            .body_mut()
            .store_all_limited(1 << 20)
            .await
            .unwrap();
        (
            response.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn expiries_outside_seven_days_are_denied_and_long_unsized_bodies_refused() {
        for expiry in ["-7", "604801", "609901", "never"] {
            let uri = format!("/b/k?X-Amz-Expires={expiry}&X-Amz-Signature=0");
            let (status, body) = answer(&uri, &[], Body::empty()).await;
            assert_eq!(status, 403, "{expiry}: {body}");
            assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        }
        let chunked = [("transfer-encoding", "chunked")];
        let over = Body::from(vec![0u8; MAX_UNSIZED_BODY_BYTES + 1]);
        let (status, body) = answer("/b/k", &chunked, over).await;
        assert_eq!(status, 411, "{body}");
        assert!(body.contains("MAX_UNSIZED_BODY_BYTES"), "{body}");
        // Within the limit, the body goes on to s3s, sized.
        let (status, body) = answer("/bucket/k", &chunked, Body::from("hello".to_owned())).await;
        assert_eq!(status, 501, "{body}");
        assert!(body.contains("NotImplemented"), "{body}");
    }

    #[tokio::test]
    async fn errors_name_their_request_id_and_options_is_no_cors() {
        let preflight = Preflight::new(s3s::service::S3ServiceBuilder::new(Nothing).build());
        let mut ids = Vec::new();
        for _ in 0..2 {
            let response = preflight
                .clone()
                .serve(request("/bucket/k", &[]))
                .await
                .unwrap();
            let id = response.headers()["x-amz-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = response
                .into_body()
                .store_all_limited(1 << 20)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            assert!(
                body.contains(&format!("<RequestId>{id}</RequestId></Error>")),
                "{body}"
            );
            ids.push(id);
        }
        assert_ne!(ids[0], ids[1]);
        let options = |headers: &[(&str, &str)]| {
            let mut request = request("/bucket/k", headers);
            *request.method_mut() = http::Method::OPTIONS;
            preflight.clone().serve(request)
        };
        assert_eq!(options(&[]).await.unwrap().status(), 400);
        let origin = [("origin", "https://example.com")];
        assert_eq!(options(&origin).await.unwrap().status(), 403);
    }

    #[test]
    fn only_chunked_bodies_without_any_length_are_unknown() {
        let chunked = ("transfer-encoding", "chunked");
        assert!(has_unknown_length(&request("/b/k", &[chunked])));
        assert!(!has_unknown_length(&request("/b/k", &[])));
        assert!(!has_unknown_length(&request(
            "/b/k",
            &[chunked, ("x-amz-decoded-content-length", "5")]
        )));
        assert!(!has_unknown_length(&request(
            "/b/k",
            &[chunked, ("content-length", "5")]
        )));
    }
}
