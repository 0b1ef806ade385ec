//! A real S3 server in the process, for tests and benchmarks: the s3s protocol layer
//! over a local directory (s3s-fs), served over HTTP on loopback with SigV4
//! authentication, so aws-sdk-s3 talks to it exactly as it talks to S3.
//!
//! In front of s3s-fs it adds what the persist tests need and s3s-fs lacks:
//! - it verifies the CRC32 of every PUT, every part and every completed multipart upload
//!   before anything is stored, refusing a mismatch with `BadDigest` as S3 does (s3s-fs
//!   checks only single PUTs, and only after storing them);
//! - it tracks open multipart uploads (`ListMultipartUploads`), so a test can check that
//!   none is left behind;
//! - it injects faults on request: `500 InternalError`, `503 SlowDown`, delays, and
//!   connections reset (RST) as soon as they are accepted, and connections reset in the
//!   middle of a request body;
//! - it can emulate a cloud object store ([`CloudEmulation`]): first-byte latency,
//!   jitter, a bandwidth cap per connection and throttling errors.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use s3s_fs::FileSystem;

use crate::S3Config;
use crate::emulation::{CloudEmulation, Link, draw};
use crate::under_store::{crc32_header, parse_crc32_header};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "FDWTESTACCESSKEY";
/// Its secret.
pub const SECRET_KEY: &str = "fdw-test-secret-key";

/// A fault the server injects into the next matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 InternalError`.
    InternalError,
    /// `503 SlowDown` (throttling).
    SlowDown,
    /// The request waits this long before it is served.
    Delay(Duration),
}

#[derive(Default)]
struct State {
    /// Faults to inject, per operation name (`"*"` for any).
    faults: BTreeMap<&'static str, VecDeque<Fault>>,
    /// Open multipart uploads: upload id → (bucket, key).
    uploads: BTreeMap<String, (String, String)>,
    /// Requests served, per operation.
    requests: BTreeMap<&'static str, u64>,
    /// The full-object CRC32 of objects made by multipart uploads, by (bucket, key):
    /// S3 returns it on `HeadObject`, s3s-fs does not keep it.
    multipart_crcs: BTreeMap<(String, String), String>,
    /// For each of the next new connections, how many request bytes to read before
    /// resetting it (0: at once).
    resets: VecDeque<u64>,
    /// What every request and connection gets, and the draws for its jitter and errors.
    emulation: Option<(CloudEmulation, fastrand::Rng)>,
}

/// The running server. Dropping it stops accepting connections.
pub struct S3Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl S3Server {
    /// Serves the buckets under `root` (each a directory) on a free loopback port.
    pub async fn start(root: &Path) -> std::io::Result<Self> {
        Self::start_emulating(root, CloudEmulation::none()).await
    }

    /// As [`start`](Self::start), behaving like a cloud object store as `emulation` says.
    pub async fn start_emulating(root: &Path, emulation: CloudEmulation) -> std::io::Result<Self> {
        let bandwidth = emulation.connection_bytes_per_sec;
        let state = Arc::new(Mutex::new(State {
            emulation: (!emulation.is_none())
                .then(|| (emulation.clone(), fastrand::Rng::with_seed(emulation.seed))),
            ..State::default()
        }));
        let fs = FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let checked = Checked {
            fs: Arc::new(fs),
            root: root.canonicalize()?,
            state: state.clone(),
            writes: Arc::default(),
        };
        let mut builder = s3s::service::S3ServiceBuilder::new(checked);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let resets = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let reset_after = resets.lock().expect("server state").resets.pop_front();
                if reset_after.is_some() {
                    // Zero linger: closing sends RST, as a crashed peer or a middlebox does.
                    let _ = stream.set_zero_linger();
                }
                if reset_after == Some(0) {
                    drop(stream);
                    continue;
                }
                let stream = Link::new(stream, reset_after, bandwidth);
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client configuration for it.
    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(format!("http://{}", self.addr)),
            region: "us-east-1".to_owned(),
            path_style: true,
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
            session_token: None,
            attempt_timeout: Duration::from_secs(10),
        }
    }

    /// Injects `fault` into the next `count` requests of `operation` (an S3 operation
    /// name such as `"UploadPart"`, or `"*"` for any).
    pub fn inject(&self, operation: &'static str, fault: Fault, count: usize) {
        let mut state = self.state.lock().expect("server state");
        let queue = state.faults.entry(operation).or_default();
        queue.extend(std::iter::repeat_n(fault, count));
    }

    /// Resets the next `count` connections as soon as they are accepted.
    pub fn reset_connections(&self, count: usize) {
        self.reset_connections_after(count, 0);
    }

    /// Resets the next `count` connections once each has read `bytes` bytes of
    /// requests: in the middle of a body larger than that.
    pub fn reset_connections_after(&self, count: usize, bytes: u64) {
        let mut state = self.state.lock().expect("server state");
        state.resets.extend(std::iter::repeat_n(bytes, count));
    }

    /// Drops every fault not yet injected.
    pub fn clear_faults(&self) {
        let mut state = self.state.lock().expect("server state");
        state.faults.clear();
        state.resets.clear();
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_uploads(&self) -> Vec<(String, String)> {
        let state = self.state.lock().expect("server state");
        state.uploads.values().cloned().collect()
    }

    /// Requests of `operation` served so far (faults included).
    pub fn requests(&self, operation: &str) -> u64 {
        let state = self.state.lock().expect("server state");
        state.requests.get(operation).copied().unwrap_or(0)
    }
}

struct Checked {
    fs: Arc<FileSystem>,
    root: PathBuf,
    state: Arc<Mutex<State>>,
    /// Held from a write's conditions check to its end, as S3 makes conditional writes
    /// atomic (s3s-fs checks, then writes).
    writes: Arc<tokio::sync::Mutex<()>>,
}

impl Checked {
    /// Counts the request and plays the next fault queued for it.
    async fn admit(&self, operation: &'static str) -> S3Result<()> {
        let fault = {
            let mut state = self.state.lock().expect("server state");
            *state.requests.entry(operation).or_default() += 1;
            let specific = state
                .faults
                .get_mut(operation)
                .and_then(VecDeque::pop_front);
            let fault =
                specific.or_else(|| state.faults.get_mut("*").and_then(VecDeque::pop_front));
            let emulated = state.emulation.as_mut().map(|(e, rng)| draw(e, rng));
            match (fault, emulated) {
                (Some(fault), _) => Some(fault),
                (None, Some((_, true))) => Some(Fault::SlowDown),
                (None, Some((wait, false))) if !wait.is_zero() => Some(Fault::Delay(wait)),
                (None, _) => None,
            }
        };
        match fault {
            None => Ok(()),
            Some(Fault::InternalError) => Err(s3_error!(InternalError, "injected fault")),
            Some(Fault::SlowDown) => Err(s3_error!(SlowDown, "injected throttling")),
            Some(Fault::Delay(wait)) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
        }
    }

    fn forget_multipart_crc(&self, object: (String, String)) {
        let mut state = self.state.lock().expect("server state");
        state.multipart_crcs.remove(&object);
    }

    fn upload_is_open(&self, upload_id: &str) -> bool {
        let state = self.state.lock().expect("server state");
        state.uploads.contains_key(upload_id)
    }
}

/// Runs a write to its end even if the client goes away meanwhile (which drops the
/// request's future), as S3 finishes a request it has received whole.
async fn to_the_end<T: Send + 'static>(
    write: impl std::future::Future<Output = S3Result<T>> + Send + 'static,
) -> S3Result<T> {
    tokio::spawn(write)
        .await
        .map_err(|e| s3_error!(InternalError, "the write failed: {e}"))?
}

/// Reads a request body whole (this is a test server) and checks it against the CRC32
/// the client sent, if any; returns it, to pass on.
async fn checked_body(
    body: Option<StreamingBlob>,
    expected: Option<&str>,
) -> S3Result<StreamingBlob> {
    let mut body = body.ok_or_else(|| s3_error!(IncompleteBody))?;
    let mut all = BytesMut::new();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| s3_error!(IncompleteBody, "reading the body: {e}"))?;
        all.extend_from_slice(&piece);
    }
    let all = all.freeze();
    if let Some(expected) = expected {
        let actual = crc32fast::hash(&all);
        if parse_crc32_header(expected) != Some(actual) {
            return Err(s3_error!(
                BadDigest,
                "x-amz-checksum-crc32 {expected} does not match the body's {}",
                crc32_header(actual)
            ));
        }
    }
    Ok(StreamingBlob::from(s3s::Body::from(all)))
}

#[async_trait::async_trait]
impl S3 for Checked {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.admit("CreateBucket").await?;
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.admit("HeadBucket").await?;
        self.fs.head_bucket(req).await
    }

    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.admit("PutObject").await?;
        // s3s-fs checks the CRC32 only after the object is in place, and leaves it there
        // on a mismatch; S3 stores nothing. So check first.
        let expected = req.input.checksum_crc32.clone();
        let body = checked_body(req.input.body.take(), expected.as_deref()).await?;
        req.input.body = Some(body);
        let object = (req.input.bucket.clone(), req.input.key.clone());
        let (fs, state, writes) = (self.fs.clone(), self.state.clone(), self.writes.clone());
        // The whole body is here: finish even if the client goes away (s3s-fs renames
        // the object into place before it records its checksum).
        to_the_end(async move {
            let _write = writes.lock().await;
            let put = fs.put_object(req).await?;
            state
                .lock()
                .expect("server state")
                .multipart_crcs
                .remove(&object);
            Ok(put)
        })
        .await
    }

    async fn get_object(
        &self,
        mut req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.admit("GetObject").await?;
        // s3s-fs seeks before the file's start for a suffix longer than the object and
        // answers 500; S3 answers the whole object, as a range. Parquet readers ask for
        // such suffixes to read a small file's footer.
        if let Some(Range::Suffix { length }) = req.input.range {
            let path = self.root.join(&req.input.bucket).join(&req.input.key);
            if let Ok(meta) = tokio::fs::metadata(&path).await
                && length >= meta.len()
            {
                req.input.range = Some(Range::Int {
                    first: 0,
                    last: None,
                });
            }
        }
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.admit("HeadObject").await?;
        let object = (req.input.bucket.clone(), req.input.key.clone());
        // Not halfway through a write: a completed upload shows with its CRC at once.
        let _write = self.writes.lock().await;
        let mut head = self.fs.head_object(req).await?;
        // s3s-fs may still report the CRC of a single PUT the upload replaced.
        let state = self.state.lock().expect("server state");
        if let Some(crc) = state.multipart_crcs.get(&object) {
            head.output.checksum_crc32 = Some(crc.clone());
        }
        Ok(head)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.admit("DeleteObject").await?;
        let _write = self.writes.lock().await;
        // s3s-fs ignores `If-Match` on a delete; S3 honours it.
        if let Some(expected) = req.input.if_match.as_ref().and_then(|c| c.as_etag()) {
            let head = S3Request {
                input: HeadObjectInput {
                    bucket: req.input.bucket.clone(),
                    key: req.input.key.clone(),
                    ..Default::default()
                },
                method: req.method.clone(),
                uri: req.uri.clone(),
                headers: req.headers.clone(),
                extensions: Default::default(),
                credentials: req.credentials.clone(),
                region: req.region.clone(),
                service: req.service.clone(),
                trailing_headers: None,
            };
            let current = self.fs.head_object(head).await?.output.e_tag;
            if !current.is_some_and(|tag| tag.strong_cmp(expected)) {
                return Err(s3_error!(PreconditionFailed, "ETag does not match"));
            }
        }
        let object = (req.input.bucket.clone(), req.input.key.clone());
        let deleted = self.fs.delete_object(req).await?;
        self.forget_multipart_crc(object);
        Ok(deleted)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.admit("ListObjectsV2").await?;
        self.fs.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.admit("CreateMultipartUpload").await?;
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let created = self.fs.create_multipart_upload(req).await?;
        if let Some(id) = &created.output.upload_id {
            let mut state = self.state.lock().expect("server state");
            state.uploads.insert(id.clone(), (bucket, key));
        }
        Ok(created)
    }

    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.admit("UploadPart").await?;
        if !self.upload_is_open(&req.input.upload_id) {
            return Err(s3_error!(NoSuchUpload));
        }
        let expected = req.input.checksum_crc32.clone();
        let body = checked_body(req.input.body.take(), expected.as_deref()).await?;
        req.input.body = Some(body);
        let mut uploaded = self.fs.upload_part(req).await?;
        uploaded.output.checksum_crc32 = expected;
        Ok(uploaded)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.admit("CompleteMultipartUpload").await?;
        let upload_id = req.input.upload_id.clone();
        if !self.upload_is_open(&upload_id) {
            return Err(s3_error!(NoSuchUpload));
        }
        let path = self.root.join(&req.input.bucket).join(&req.input.key);
        let object = (req.input.bucket.clone(), req.input.key.clone());
        let expected = req.input.checksum_crc32.clone();
        let (fs, state, writes) = (self.fs.clone(), self.state.clone(), self.writes.clone());
        // s3s-fs forgets the upload before it writes the object: a completion cut short
        // would leave an upload that is neither open nor complete.
        to_the_end(async move {
            let _write = writes.lock().await;
            let mut completed = fs.complete_multipart_upload(req).await?;
            state
                .lock()
                .expect("server state")
                .uploads
                .remove(&upload_id);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| s3_error!(InternalError, "reading back the object: {e}"))?;
            let actual = crc32_header(crc32fast::hash(&bytes));
            if let Some(expected) = expected
                && expected != actual
            {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(s3_error!(
                    BadDigest,
                    "full-object x-amz-checksum-crc32 {expected} does not match the parts' {actual}"
                ));
            }
            state
                .lock()
                .expect("server state")
                .multipart_crcs
                .insert(object, actual.clone());
            completed.output.checksum_crc32 = Some(actual);
            completed.output.checksum_type =
                Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
            Ok(completed)
        })
        .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.admit("AbortMultipartUpload").await?;
        let upload_id = req.input.upload_id.clone();
        let aborted = self.fs.abort_multipart_upload(req).await?;
        self.state
            .lock()
            .expect("server state")
            .uploads
            .remove(&upload_id);
        Ok(aborted)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.admit("ListMultipartUploads").await?;
        let prefix = req.input.prefix.clone().unwrap_or_default();
        let state = self.state.lock().expect("server state");
        let uploads = state
            .uploads
            .iter()
            .filter(|(_, (bucket, key))| *bucket == req.input.bucket && key.starts_with(&prefix))
            .map(|(id, (_, key))| MultipartUpload {
                key: Some(key.clone()),
                upload_id: Some(id.clone()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(req.input.bucket.clone()),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}
