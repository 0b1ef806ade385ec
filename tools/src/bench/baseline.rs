//! The baselines fdw is measured against, each doing the plainest version of the same
//! job on the same machine:
//! - [`QuinnFloor`]: bare quinn request/response, data by reference: the transport
//!   floor, with the same TLS 1.3 mutual authentication fdw uses;
//! - [`put_s3`] / [`get_s3`]: plain aws-sdk-s3 `PutObject` (multipart above the part
//!   size) and `GetObject`, what a pipeline does without fdw;
//! - [`write_fsync`]: a local file written and fsynced.

use std::net::SocketAddr;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use fdw_net::transport::{self, ClusterCa, TransportTuning};

/// Bytes handed to quinn per write, as fdw's frames are.
const PIECE: usize = 64 << 10;

/// A bare quinn server on loopback and a connection to it. Each request is one stream:
/// an 8-byte little-endian reply length, then the payload; the server reads it all and
/// answers that many bytes.
pub struct QuinnFloor {
    connection: quinn::Connection,
}

impl QuinnFloor {
    /// Starts the server and connects to it.
    pub async fn start() -> anyhow::Result<Self> {
        let ca = ClusterCa::generate()?;
        let tuning = TransportTuning::default();
        let socket = transport::bind(([127, 0, 0, 1], 0).into())?;
        let endpoint = transport::server_endpoint(&ca.issue("floor")?, socket, &tuning)?;
        let addr: SocketAddr = endpoint.local_addr()?;
        let zeros = Bytes::from(vec![0u8; PIECE]);
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let zeros = zeros.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        tokio::spawn(serve(send, recv, zeros.clone()));
                    }
                });
            }
        });
        let client = transport::client_endpoint(
            &ca.issue("floor-client")?,
            ([127, 0, 0, 1], 0).into(),
            &tuning,
        )?;
        let connection = transport::connect(&client, "floor", addr).await?;
        Ok(Self { connection })
    }

    /// Sends `data` (by reference) and waits for an 8-byte answer: a put's floor.
    pub async fn put(&self, data: &Bytes) -> anyhow::Result<()> {
        self.round_trip(data, 8).await
    }

    /// Asks for `len` bytes and reads them all: a get's floor.
    pub async fn get(&self, len: u64) -> anyhow::Result<()> {
        self.round_trip(&Bytes::new(), len).await
    }

    async fn round_trip(&self, data: &Bytes, reply: u64) -> anyhow::Result<()> {
        let (mut send, mut recv) = self.connection.open_bi().await?;
        send.write_chunk(Bytes::copy_from_slice(&reply.to_le_bytes()))
            .await?;
        for at in (0..data.len()).step_by(PIECE) {
            send.write_chunk(data.slice(at..(at + PIECE).min(data.len())))
                .await?;
        }
        send.finish()?;
        let mut got = 0u64;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
            got += chunk.bytes.len() as u64;
        }
        anyhow::ensure!(got == reply, "quinn floor answered {got} of {reply} bytes");
        Ok(())
    }
}

async fn serve(mut send: quinn::SendStream, mut recv: quinn::RecvStream, zeros: Bytes) {
    let mut header = [0u8; 8];
    if recv.read_exact(&mut header).await.is_err() {
        return;
    }
    while let Ok(Some(_)) = recv.read_chunk(usize::MAX, false).await {}
    let mut left = u64::from_le_bytes(header);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        if send.write_chunk(zeros.slice(..n)).await.is_err() {
            return;
        }
        left -= n as u64;
    }
    let _ = send.finish();
}

/// Plain aws-sdk-s3: one `PutObject` up to `part_bytes`, a multipart upload of
/// `part_bytes` parts above it, every request with its CRC32, as a pipeline stage
/// would write without fdw.
pub async fn put_s3(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: &Bytes,
    part_bytes: usize,
) -> anyhow::Result<()> {
    let crc = |bytes: &[u8]| fdw_persist::crc32_header(crc32fast::hash(bytes));
    if data.len() <= part_bytes {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .checksum_crc32(crc(data))
            .body(ByteStream::from(data.clone()))
            .send()
            .await?;
        return Ok(());
    }
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
        .send()
        .await?;
    let id = upload.upload_id().unwrap_or_default().to_owned();
    let mut parts = Vec::new();
    for (i, start) in (0..data.len()).step_by(part_bytes).enumerate() {
        let piece = data.slice(start..(start + part_bytes).min(data.len()));
        let part = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(i as i32 + 1)
            .checksum_crc32(crc(&piece))
            .body(ByteStream::from(piece))
            .send()
            .await?;
        parts.push(
            CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(part.e_tag().unwrap_or_default())
                .set_checksum_crc32(part.checksum_crc32().map(str::to_owned))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// Plain aws-sdk-s3 uploads ([`put_s3`]) of `objects` to `bucket` under `prefix/n`,
/// `concurrency` objects at a time, parts in order within each: what draining them
/// takes without fdw. Returns the wall time.
pub async fn put_s3_all(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    objects: &[Bytes],
    part_bytes: usize,
    concurrency: usize,
) -> anyhow::Result<std::time::Duration> {
    let started = super::now();
    let mut uploads = tokio::task::JoinSet::new();
    for (n, data) in objects.iter().enumerate() {
        if uploads.len() == concurrency.max(1)
            && let Some(done) = uploads.join_next().await
        {
            done??;
        }
        let (client, data) = (client.clone(), data.clone());
        let (bucket, key) = (bucket.to_owned(), format!("{prefix}/{n}"));
        uploads.spawn(async move { put_s3(&client, &bucket, &key, &data, part_bytes).await });
    }
    while let Some(done) = uploads.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Plain aws-sdk-s3 `GetObject`, the body read to its end; returns its length.
pub async fn get_s3(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<u64> {
    let object = client.get_object().bucket(bucket).key(key).send().await?;
    let body = object.body.collect().await?;
    Ok(body.into_bytes().len() as u64)
}

/// Writes `data` to `path` and fsyncs it: the local-disk floor of a durable write.
pub fn write_fsync(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(data)?;
    file.sync_all()
}
