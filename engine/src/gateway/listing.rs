//! ListObjectsV2 and ListObjects over the cluster's merged listing.
//!
//! fdw lists keys in byte order, as S3 does, `after` a key. A delimiter folds keys into
//! common prefixes here; once a prefix is folded, the next batch starts past every key
//! under it, so a "directory" of a million keys costs one listing call, not a thousand.
//! A continuation token says which of the two it resumes after.

use fdw_net::wire::ListEntry;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::multipart::is_staging;
use super::names::{committed_at, etag, s3_error};
use super::objects::FdwS3;

/// Keys asked of the cluster per call.
const BATCH: u32 = 1000;
/// The most keys S3 returns per page.
const MAX_KEYS: i32 = 1000;

/// Where a page resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resume {
    /// After this key.
    Key(String),
    /// After every key under this common prefix.
    Prefix(String),
}

impl Resume {
    fn token(&self) -> String {
        match self {
            Resume::Key(key) => format!("k{key}"),
            Resume::Prefix(prefix) => format!("p{prefix}"),
        }
    }

    fn from_token(token: &str) -> S3Result<Self> {
        match token.split_at_checked(1) {
            Some(("k", key)) => Ok(Resume::Key(key.to_owned())),
            Some(("p", prefix)) => Ok(Resume::Prefix(prefix.to_owned())),
            _ => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "The continuation token provided is incorrect",
            )),
        }
    }

    /// The key or common prefix a V1 marker names.
    fn marker(&self) -> &str {
        match self {
            Resume::Key(k) | Resume::Prefix(k) => k,
        }
    }

    /// What to ask the cluster to list after: past every key under a prefix, whose
    /// next character can be at most U+10FFFF.
    fn start_after(&self) -> String {
        match self {
            Resume::Key(key) => key.clone(),
            Resume::Prefix(prefix) => format!("{prefix}\u{10FFFF}"),
        }
    }
}

/// The owner listings show for a bucket's objects: the bucket's (fdw keeps no owner per
/// object, and only a bucket's owner writes to it unless it is configured).
async fn owner(s3: &FdwS3, bucket: &str) -> S3Result<Owner> {
    let record = s3.bucket_record(bucket).await?;
    Ok(Owner {
        display_name: Some(record.owner.clone()),
        id: Some(record.owner),
    })
}

/// One page of a listing.
#[derive(Default)]
pub(super) struct Page {
    pub(super) contents: Vec<ListEntry>,
    pub(super) prefixes: Vec<String>,
    /// Where the next page starts, when there is one.
    next: Option<Resume>,
}

/// Up to `max_keys` keys and common prefixes of `bucket` under `prefix` after `resume`,
/// leaving out the gateway's staging keys.
pub(super) async fn page(
    s3: &FdwS3,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    mut resume: Option<Resume>,
    max_keys: usize,
) -> S3Result<Page> {
    let mut page = Page::default();
    let mut after = resume.as_ref().map(Resume::start_after);
    loop {
        let batch = s3
            .shared
            .client
            .list(bucket, prefix, after.as_deref(), BATCH)
            .await
            .map_err(|e| s3_error(&e))?;
        for entry in batch.entries {
            let key = entry.key.as_str().to_owned();
            if is_staging(&key) {
                resume = Some(Resume::Key(key));
                continue;
            }
            let item = match fold(&key, prefix, delimiter) {
                Some(common) if resume == Some(Resume::Prefix(common.clone())) => continue,
                Some(common) => Resume::Prefix(common),
                None => Resume::Key(key),
            };
            if page.contents.len() + page.prefixes.len() >= max_keys {
                page.next = resume;
                return Ok(page);
            }
            match &item {
                Resume::Prefix(common) => page.prefixes.push(common.clone()),
                Resume::Key(_) => page.contents.push(entry),
            }
            resume = Some(item);
        }
        // The cluster's page may end before its entries do (deleted keys, a member's
        // byte budget): go on from the later of where it ended and what was folded.
        let Some(next) = batch.next_start_after else {
            return Ok(page);
        };
        let folded = resume.as_ref().map(Resume::start_after);
        after = Some(folded.filter(|f| *f > next).unwrap_or(next));
    }
}

/// The common prefix `key` folds into: `prefix` and the rest up to and including the
/// first `delimiter` after it, if there is one.
pub(super) fn fold(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(d)
        .map(|at| key[..prefix.len() + at + d.len()].to_owned())
}

/// A page's size as asked in the parameter `name` (`max-keys`, `max-uploads`): at most
/// 1000, as in S3.
pub(super) fn page_size(asked: Option<i32>, name: &str) -> S3Result<usize> {
    match asked {
        Some(n) if n < 0 => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("{name} must not be negative"),
        )),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
        None => Ok(MAX_KEYS as usize),
    }
}

/// Keys and prefixes as the client asked them encoded: `encoding-type=url` percent-
/// encodes what XML 1.0 could not carry.
pub(super) struct Encoding(bool);

impl Encoding {
    pub(super) fn new(asked: Option<&EncodingType>) -> Self {
        Self(asked.is_some_and(|e| e.as_str() == EncodingType::URL))
    }

    pub(super) fn apply(&self, text: &str) -> String {
        if !self.0 {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }

    pub(super) fn echo(&self) -> Option<EncodingType> {
        self.0.then(|| EncodingType::from_static(EncodingType::URL))
    }
}

fn objects(entries: Vec<ListEntry>, encoding: &Encoding, owner: Option<&Owner>) -> Vec<Object> {
    entries
        .into_iter()
        .map(|entry| Object {
            owner: owner.cloned(),
            key: Some(encoding.apply(entry.key.as_str())),
            size: Some(entry.len as i64),
            e_tag: Some(etag(entry.digest)),
            last_modified: Some(committed_at(entry.version)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Object::default()
        })
        .collect()
}

/// The delimiter as a listing echoes it: an empty one is no delimiter, and not echoed.
fn echo_delimiter(delimiter: Option<&str>, encoding: &Encoding) -> Option<String> {
    delimiter
        .filter(|d| !d.is_empty())
        .map(|d| encoding.apply(d))
}

pub(super) fn common_prefixes(prefixes: Vec<String>, encoding: &Encoding) -> Vec<CommonPrefix> {
    prefixes
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(encoding.apply(&p)),
        })
        .collect()
}

pub(super) async fn list_v2(
    s3: &FdwS3,
    input: ListObjectsV2Input,
) -> S3Result<ListObjectsV2Output> {
    let prefix = input.prefix.clone().unwrap_or_default();
    // An empty token is no token (as S3 treats it), and is echoed as sent.
    let token = input
        .continuation_token
        .as_deref()
        .filter(|t| !t.is_empty());
    let resume = match (token, &input.start_after) {
        (Some(token), _) => Some(Resume::from_token(token)?),
        (None, Some(after)) => Some(Resume::Key(after.clone())),
        (None, None) => None,
    };
    let max = page_size(input.max_keys, "max-keys")?;
    let found = page(
        s3,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        resume,
        max,
    )
    .await?;
    let encoding = Encoding::new(input.encoding_type.as_ref());
    let key_count = (found.contents.len() + found.prefixes.len()) as i32;
    let owner = match input.fetch_owner {
        Some(true) => Some(owner(s3, &input.bucket).await?),
        _ => None,
    };
    Ok(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(encoding.apply(&prefix)),
        delimiter: echo_delimiter(input.delimiter.as_deref(), &encoding),
        start_after: input.start_after.as_deref().map(|s| encoding.apply(s)),
        max_keys: Some(max as i32),
        key_count: Some(key_count),
        continuation_token: input.continuation_token,
        is_truncated: Some(found.next.is_some()),
        next_continuation_token: found.next.as_ref().map(Resume::token),
        contents: Some(objects(found.contents, &encoding, owner.as_ref())),
        common_prefixes: Some(common_prefixes(found.prefixes, &encoding)),
        encoding_type: encoding.echo(),
        ..ListObjectsV2Output::default()
    })
}

pub(super) async fn list_v1(s3: &FdwS3, input: ListObjectsInput) -> S3Result<ListObjectsOutput> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = page_size(input.max_keys, "max-keys")?;
    let resume = marker_resume(input.marker.as_ref(), input.delimiter.as_deref());
    // V1 shows every object's owner, as S3 does; `NoSuchBucket` before any listing.
    let owner = owner(s3, &input.bucket).await?;
    let found = page(
        s3,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        resume,
        max,
    )
    .await?;
    let encoding = Encoding::new(input.encoding_type.as_ref());
    let next_marker = found
        .next
        .as_ref()
        .map(|next| encoding.apply(next.marker()));
    Ok(ListObjectsOutput {
        // Not encoded in V1: S3's clients (botocore) do not decode it there.
        prefix: Some(prefix),
        name: Some(input.bucket),
        delimiter: echo_delimiter(input.delimiter.as_deref(), &encoding),
        marker: Some(encoding.apply(input.marker.as_deref().unwrap_or_default())),
        max_keys: Some(max as i32),
        is_truncated: Some(found.next.is_some()),
        next_marker,
        contents: Some(objects(found.contents, &encoding, Some(&owner))),
        common_prefixes: Some(common_prefixes(found.prefixes, &encoding)),
        encoding_type: encoding.echo(),
        ..ListObjectsOutput::default()
    })
}

/// Where a V1 marker (or a versions listing's key marker) resumes. A marker is a key:
/// resuming after a common prefix, the key of the prefix itself sorts before everything
/// under it, so skip past it as V2 does.
fn marker_resume(marker: Option<&String>, delimiter: Option<&str>) -> Option<Resume> {
    marker.map(|marker| match delimiter {
        Some(d) if !d.is_empty() && marker.ends_with(d) => Resume::Prefix(marker.clone()),
        _ => Resume::Key(marker.clone()),
    })
}

/// The version id of every object: fdw keeps one version of a key, as an S3 bucket with
/// versioning never enabled does, whose objects S3 lists with this id.
pub(super) const NULL_VERSION: &str = "null";

/// ListObjectVersions: each key's one version, `null`, the latest. Tools that clean a
/// bucket (the AWS CLI, the Ceph suite) list versions whatever the bucket's versioning.
pub(super) async fn list_versions(
    s3: &FdwS3,
    input: ListObjectVersionsInput,
) -> S3Result<ListObjectVersionsOutput> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = page_size(input.max_keys, "max-keys")?;
    if let Some(marker) = &input.version_id_marker {
        if input.key_marker.is_none() {
            let message = "A version-id marker cannot be specified without a key marker.";
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, message));
        }
        check_version_id(marker)?;
    }
    let resume = marker_resume(input.key_marker.as_ref(), input.delimiter.as_deref());
    let owner = owner(s3, &input.bucket).await?;
    let found = page(
        s3,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        resume,
        max,
    )
    .await?;
    let encoding = Encoding::new(input.encoding_type.as_ref());
    let versions = objects(found.contents, &encoding, Some(&owner))
        .into_iter()
        .map(|object| ObjectVersion {
            owner: object.owner,
            key: object.key,
            size: object.size,
            e_tag: object.e_tag,
            last_modified: object.last_modified,
            is_latest: Some(true),
            version_id: Some(NULL_VERSION.to_owned()),
            storage_class: Some(ObjectVersionStorageClass::from_static(
                ObjectVersionStorageClass::STANDARD,
            )),
            ..ObjectVersion::default()
        })
        .collect();
    Ok(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(encoding.apply(&prefix)),
        delimiter: echo_delimiter(input.delimiter.as_deref(), &encoding),
        key_marker: input.key_marker.as_deref().map(|m| encoding.apply(m)),
        version_id_marker: input.version_id_marker,
        max_keys: Some(max as i32),
        is_truncated: Some(found.next.is_some()),
        next_version_id_marker: match &found.next {
            Some(Resume::Key(_)) => Some(NULL_VERSION.to_owned()),
            _ => None,
        },
        next_key_marker: found
            .next
            .as_ref()
            .map(|next| encoding.apply(next.marker())),
        versions: Some(versions),
        common_prefixes: Some(common_prefixes(found.prefixes, &encoding)),
        encoding_type: encoding.echo(),
        ..ListObjectVersionsOutput::default()
    })
}

/// Refuses a version id other than [`NULL_VERSION`]: acting on the one version fdw keeps
/// when another was named would be a silent wrong answer.
pub(super) fn check_version_id(version_id: &str) -> S3Result<()> {
    if version_id == NULL_VERSION {
        Ok(())
    } else {
        Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!(
                "Invalid version id specified: fdw keeps one version of a key, \
                 {NULL_VERSION:?}, not {version_id:?}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        for resume in [Resume::Key("a/b".into()), Resume::Prefix("a/".into())] {
            assert_eq!(Resume::from_token(&resume.token()).expect("valid"), resume);
        }
        assert!(Resume::from_token("").is_err());
        assert!(Resume::from_token("x-junk").is_err());
    }

    proptest::proptest! {
        /// A continuation token comes back from the client: any string is either a
        /// resume point that round-trips or a clean error.
        #[test]
        fn any_token_is_safe(token in "\\PC{0,64}") {
            if let Ok(resume) = Resume::from_token(&token) {
                proptest::prop_assert_eq!(resume.token(), token);
            }
        }
    }

    #[test]
    fn a_prefix_resumes_past_every_key_under_it() {
        let after = Resume::Prefix("a/".into()).start_after();
        for key in ["a/", "a/b", "a/\u{10FFFE}zzz"] {
            assert!(key < after.as_str(), "{key}");
        }
        assert!("a0" > after.as_str());
    }

    #[test]
    fn url_encoding_keeps_slashes() {
        assert_eq!(Encoding(true).apply("a b/é"), "a%20b/%C3%A9");
        assert_eq!(Encoding(false).apply("a b"), "a b");
    }
}
