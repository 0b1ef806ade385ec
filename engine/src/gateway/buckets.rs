//! Buckets as cluster state: created, listed and deleted through any gateway.
//!
//! A bucket is configured (`[buckets]`, `[gateway.buckets]`: it always exists and cannot
//! be deleted) or created with CreateBucket. A created bucket is one fdw object,
//! `fdw.buckets/<name>`, whose body is a [`Record`] (the access key that created it, its
//! location constraint) and whose version is its creation time. So every gateway of the cluster sees the same
//! buckets, a created bucket is replicated and persisted as objects are, and a request to
//! a bucket nobody created is `NoSuchBucket`, as in S3, never a silent success.

use fdw_client::ErrorKind;
use fdw_net::wire::Replication;
use futures_util::StreamExt;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result, s3_error};

use super::names::{committed_at, s3_error};
use super::objects::FdwS3;

/// The bucket holding one record per created bucket. Its name has a dot, which fdw's
/// own names never need; CreateBucket refuses it.
pub(super) const REGISTRY: &str = "fdw.buckets";

/// Records asked of the cluster per ListBuckets round.
const BATCH: u32 = 1000;
/// Records read at once to learn their owners.
const READS: usize = 16;

/// The owner of configured buckets, which no key created.
const CLUSTER_OWNER: &str = "fdw";

/// What a created bucket's record holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Record {
    /// The access key that created it.
    pub(super) owner: String,
    /// The `LocationConstraint` it was created with, which GetBucketLocation answers.
    #[serde(default)]
    pub(super) location: Option<String>,
}

impl Record {
    fn decode(body: &[u8], bucket: &str) -> S3Result<Self> {
        serde_json::from_slice(body).map_err(|e| {
            S3Error::with_message(
                S3ErrorCode::InternalError,
                format!("the record of bucket {bucket} is unreadable: {e}"),
            )
        })
    }
}

/// Who a request comes from: the access key it was signed with.
pub(super) fn requester<T>(req: &S3Request<T>) -> String {
    req.credentials
        .as_ref()
        .map_or_else(|| "anonymous".to_owned(), |c| c.access_key.clone())
}

impl FdwS3 {
    /// Refuses a bucket that does not exist: neither configured nor created.
    pub(super) async fn check_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.shared.config.buckets.contains_key(bucket) {
            return Ok(());
        }
        if !creatable_name(bucket) {
            return Err(no_such_bucket(bucket));
        }
        match self.shared.client.head(REGISTRY, bucket).await {
            Ok(_) => Ok(()),
            Err(err) if gone(err.kind()) => Err(no_such_bucket(bucket)),
            Err(err) => Err(s3_error(&err)),
        }
    }

    /// The bucket's record: who owns it, where it is. `NoSuchBucket` if it has none.
    pub(super) async fn bucket_record(&self, bucket: &str) -> S3Result<Record> {
        if self.shared.config.buckets.contains_key(bucket) {
            return Ok(Record {
                owner: CLUSTER_OWNER.to_owned(),
                location: None,
            });
        }
        if !creatable_name(bucket) {
            return Err(no_such_bucket(bucket));
        }
        // One read: a record that is not there is a bucket that is not there.
        match self.shared.client.get(REGISTRY, bucket).await {
            Ok(body) => Record::decode(&body, bucket),
            Err(err) if gone(err.kind()) => Err(no_such_bucket(bucket)),
            Err(err) => Err(s3_error(&err)),
        }
    }

    /// An SDK error of a read in `bucket` as S3 says it: a key not found in a bucket
    /// that does not exist is `NoSuchBucket`. The bucket is checked only then, so reads
    /// of keys that are there cost no second lookup.
    pub(super) async fn read_error(&self, bucket: &str, err: &fdw_client::Error) -> S3Error {
        if gone(err.kind())
            && let Err(missing) = self.check_bucket(bucket).await
        {
            return missing;
        }
        s3_error(err)
    }

    /// How bucket records are written: every member up to three holds one (a bucket must
    /// outlive any one worker), a majority acknowledges, persisted as the defaults say.
    fn registry_replication(&self) -> S3Result<Replication> {
        let default = self.shared.config.default;
        let members = u8::try_from(self.shared.client.members().len()).unwrap_or(u8::MAX);
        let replicas = members.min(3).max(default.replicas);
        Replication::new(default.write_type, replicas, replicas / 2 + 1)
            .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))
    }
}

/// Whether `bucket` could be a created bucket's name: valid, and not the registry's.
fn creatable_name(bucket: &str) -> bool {
    fdw_net::BucketName::new(bucket).is_ok() && bucket != REGISTRY
}

fn gone(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::NotFound | ErrorKind::Deleted)
}

fn no_such_bucket(bucket: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchBucket,
        format!("bucket {bucket} does not exist on this fdw cluster"),
    )
}

/// CreateBucket. As S3 in us-east-1: creating a bucket you own again succeeds; one that
/// another key owns is `BucketAlreadyExists`.
pub(super) async fn create(
    s3: &FdwS3,
    req: S3Request<CreateBucketInput>,
) -> S3Result<CreateBucketOutput> {
    let owner = requester(&req);
    let name = req.input.bucket.clone();
    fdw_net::BucketName::new(name.as_str())
        .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidBucketName, e.to_string()))?;
    if name == REGISTRY {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidBucketName,
            format!("{REGISTRY} is reserved for fdw's own records of buckets"),
        ));
    }
    let config = &s3.shared.config;
    if config.buckets.contains_key(&name) {
        return Ok(CreateBucketOutput::default());
    }
    if !config.create_buckets {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            format!(
                "bucket {name} is not configured, and this cluster has no default \
                 under-store location ([persist] default) to persist new buckets in"
            ),
        ));
    }
    let location = req
        .input
        .create_bucket_configuration
        .and_then(|c| c.location_constraint)
        .map(|l| l.as_str().to_owned())
        .filter(|l| !l.is_empty());
    let client = &s3.shared.client;
    match client.get(REGISTRY, &name).await {
        Ok(body) if Record::decode(&body, &name)?.owner == owner => {
            return Ok(CreateBucketOutput::default());
        }
        Ok(_) => {
            return Err(S3Error::with_message(
                S3ErrorCode::BucketAlreadyExists,
                format!("bucket {name} exists and belongs to another access key"),
            ));
        }
        Err(err) if gone(err.kind()) => {}
        Err(err) => return Err(s3_error(&err)),
    }
    let record = serde_json::to_vec(&Record { owner, location })
        .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
    client
        .put_with(REGISTRY, &name, &record, s3.registry_replication()?)
        .await
        .map_err(|e| s3_error(&e))?;
    Ok(CreateBucketOutput {
        location: Some(format!("/{name}")),
    })
}

/// DeleteBucket: only a created bucket with no objects; its multipart uploads in
/// progress go with it, as in S3.
pub(super) async fn delete(s3: &FdwS3, input: DeleteBucketInput) -> S3Result<()> {
    let name = input.bucket.as_str();
    if s3.shared.config.buckets.contains_key(name) {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!("bucket {name} is configured on this cluster and cannot be deleted"),
        ));
    }
    s3.check_bucket(name).await?;
    let first = super::listing::page(s3, name, "", None, None, 1).await?;
    if !first.contents.is_empty() {
        return Err(s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty"
        ));
    }
    let everything = super::names::now() + std::time::Duration::from_secs(365 * 24 * 3600);
    super::multipart::sweep(s3, name, everything).await;
    s3.shared
        .client
        .delete_with(REGISTRY, name, s3.registry_replication()?)
        .await
        .map_err(|e| s3_error(&e))?;
    Ok(())
}

/// One page of ListBuckets: the configured buckets and those `owner` created, under
/// `prefix` after the continuation token `after`, at most `max`, and the next page's
/// token. Only the records in the page's range are read (16 at once) to learn their
/// owners, and reading stops once the page is full, so a page costs its own size, not
/// the number of buckets the cluster has.
pub(super) async fn list(
    s3: &FdwS3,
    owner: &str,
    prefix: Option<&str>,
    after: Option<&str>,
    max: Option<i32>,
) -> S3Result<(Vec<Bucket>, Option<String>)> {
    let client = &s3.shared.client;
    let in_range =
        |name: &str| name.starts_with(prefix.unwrap_or_default()) && after.is_none_or(|a| name > a);
    let mut buckets: Vec<Bucket> = s3
        .shared
        .config
        .buckets
        .keys()
        .filter(|name| in_range(name))
        .map(|name| Bucket {
            name: Some(name.clone()),
            creation_date: Some(s3.shared.started.into()),
            ..Bucket::default()
        })
        .collect();
    // A page holds at most this many created buckets, however the configured ones fall.
    let wanted = page_size(max)? + 1;
    let mut created = 0;
    let mut cursor = after.map(str::to_owned);
    while s3.shared.config.create_buckets && created < wanted {
        let batch = client
            .list(
                REGISTRY,
                prefix.unwrap_or_default(),
                cursor.as_deref(),
                BATCH,
            )
            .await
            .map_err(|e| s3_error(&e))?;
        // The owner is in the body; a record deleted since it was listed is skipped.
        let owners: Vec<_> = futures_util::stream::iter(batch.entries)
            .map(|entry| async move {
                let owner = client.get(REGISTRY, entry.key.as_str()).await;
                (entry, owner)
            })
            .buffered(READS)
            .collect()
            .await;
        for (entry, found) in owners {
            match found {
                Ok(body) if Record::decode(&body, entry.key.as_str())?.owner == owner => {
                    created += 1;
                    buckets.push(Bucket {
                        name: Some(entry.key.as_str().to_owned()),
                        creation_date: Some(committed_at(entry.version)),
                        ..Bucket::default()
                    });
                }
                Ok(_) => {}
                Err(err) if gone(err.kind()) => {}
                Err(err) => return Err(s3_error(&err)),
            }
        }
        match batch.next_start_after {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    page(buckets, prefix, after, max)
}

/// Most buckets one ListBuckets page shows, as in S3.
const MAX_BUCKETS: i32 = 10_000;

/// `max-buckets` as asked: 1 to [`MAX_BUCKETS`], that many if not asked.
fn page_size(max: Option<i32>) -> S3Result<usize> {
    match max {
        None => Ok(MAX_BUCKETS as usize),
        Some(n) if (1..=MAX_BUCKETS).contains(&n) => Ok(n as usize),
        Some(n) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("max-buckets {n} is not 1 to {MAX_BUCKETS}"),
        )),
    }
}

/// One page of ListBuckets from `all` (sorted by name): those under `prefix` after the
/// continuation token (the last name of the page before), at most `max`; and the token
/// of the next page, if there is one.
fn page(
    all: Vec<Bucket>,
    prefix: Option<&str>,
    after: Option<&str>,
    max: Option<i32>,
) -> S3Result<(Vec<Bucket>, Option<String>)> {
    let max = page_size(max)?;
    let mut shown: Vec<Bucket> = all
        .into_iter()
        .filter(|b| {
            let name = b.name.as_deref().unwrap_or_default();
            name.starts_with(prefix.unwrap_or_default()) && after.is_none_or(|a| name > a)
        })
        .take(max + 1)
        .collect();
    let next = (shown.len() > max).then(|| {
        shown.truncate(max);
        shown
            .last()
            .and_then(|b| b.name.clone())
            .unwrap_or_default()
    });
    Ok((shown, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_pages_resume_after_their_last_name() {
        let all: Vec<Bucket> = ["a1", "a2", "b1", "b2"]
            .map(|n| Bucket {
                name: Some(n.into()),
                ..Bucket::default()
            })
            .into();
        let names = |page: &[Bucket]| -> Vec<String> {
            page.iter().filter_map(|b| b.name.clone()).collect()
        };
        let (first, token) = page(all.clone(), None, None, Some(3)).unwrap();
        assert_eq!(names(&first), ["a1", "a2", "b1"]);
        let (rest, end) = page(all.clone(), None, token.as_deref(), Some(3)).unwrap();
        assert_eq!((names(&rest), end), (vec!["b2".to_owned()], None));
        let (b, _) = page(all.clone(), Some("b"), None, None).unwrap();
        assert_eq!(names(&b), ["b1", "b2"]);
        assert!(page(all, None, None, Some(0)).is_err());
    }
}
