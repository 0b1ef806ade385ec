//! The local-directory under-store, the embedded default: one file per object under the
//! store's directory, its key as the relative path.
//!
//! An object is written through io_uring straight from its buffers (pool chunks): open
//! a temporary file, one write per buffer at its offset (all submitted together), fsync,
//! close, rename into place, fsync the directory. A crash leaves either the old file or
//! the new one, never a torn one, and a temporary file is never visible under its key.
//! A write's fdw version is an extended attribute of the file (`user.fdw.version`), set
//! before the fsync. The check of a write's [`Fence`] and its rename (or a delete's
//! check and unlink) happen under one lock, an `flock` on the work directory that every
//! node and process sharing the directory takes, so an older version never replaces a
//! newer one.
//! Each write runs on a blocking-pool thread with a ring of its own (one per thread,
//! kept), so uploads in flight do not wait for each other's fsyncs.
//!
//! Reads, listing and deletes use plain file calls on the blocking pool: they are not
//! on the persist path.

use std::ffi::CString;
use std::hash::BuildHasher;
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};

use crate::under_store::{
    CompletedPart, Expect, FailureKind, Fence, Payload, StoredObject, UnderStore, UnderStoreError,
};

/// Entries per ring; larger batches of writes are submitted in turns.
const RING_ENTRIES: u32 = 64;
/// Temporary files and open multipart uploads live under this directory of the root,
/// which listings skip.
const WORK_DIR: &str = ".fdw-tmp";
/// Temporary files older than this are leftovers of a crash, removed at start-up. Younger
/// ones may belong to another node sharing the directory, mid-write.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);
/// The extended attribute that holds a file's fdw version.
const VERSION_XATTR: &str = "user.fdw.version";
/// The extended attribute that holds a file's CRC32, as the writer computed it.
const CRC_XATTR: &str = "user.fdw.crc32";
/// fdw's ETag of the object, as text.
const ETAG_XATTR: &str = "user.fdw.etag";
/// The object's headers, one `name: value` line each (see [`headers_text`]).
const HEADERS_XATTR: &str = "user.fdw.headers";
/// Room for the headers' text: fdw's metadata limit (3 KiB) with its separators fits.
const HEADERS_XATTR_BYTES: usize = 8192;
/// In a multipart upload's directory, the headers' text until completion.
const HEADERS_FILE: &str = "headers";
/// The lock file, in the work directory.
const LOCK_FILE: &str = "lock";

/// A directory of objects.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: Arc<PathBuf>,
    /// Random per instance: several nodes (or processes) may share the directory, and
    /// their temporary files must never collide.
    instance: u64,
    next_tmp: Arc<AtomicU64>,
    lock: Arc<DirLock>,
}

/// Serialises check-and-replace in the directory: a mutex among this instance's
/// threads (an `flock` is per open file, so it would not exclude them), and an `flock`
/// among instances and processes.
#[derive(Debug)]
struct DirLock {
    file: std::sync::Mutex<std::fs::File>,
}

impl DirLock {
    fn open(work: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(work.join(LOCK_FILE))?;
        Ok(Self {
            file: std::sync::Mutex::new(file),
        })
    }

    fn hold<T>(&self, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        use rustix::fs::{FlockOperation, flock};
        let file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        flock(&*file, FlockOperation::LockExclusive)?;
        let result = f();
        flock(&*file, FlockOperation::Unlock)?;
        result
    }
}

/// A write that found something other than it expected.
#[derive(Debug, thiserror::Error)]
#[error("the key is not what the write expected: {0}")]
struct Conflict(String);

/// A number kept in an extended attribute, as decimal text; `None` if absent.
fn number_xattr(path: &Path, name: &str) -> io::Result<Option<u64>> {
    Ok(text_xattr(path, name, 64)?.and_then(|v| v.parse().ok()))
}

fn set_number_xattr(path: &Path, name: &str, value: u64) -> io::Result<()> {
    set_text_xattr(path, name, &value.to_string())
}

/// Text of at most `capacity` bytes kept in an extended attribute; `None` if absent.
fn text_xattr(path: &Path, name: &str, capacity: usize) -> io::Result<Option<String>> {
    let mut value = vec![0u8; capacity];
    match rustix::fs::getxattr(path, name, &mut value[..]) {
        Ok(n) => Ok(std::str::from_utf8(&value[..n]).ok().map(str::to_owned)),
        Err(rustix::io::Errno::NODATA) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn set_text_xattr(path: &Path, name: &str, text: &str) -> io::Result<()> {
    rustix::fs::setxattr(path, name, text.as_bytes(), rustix::fs::XattrFlags::empty())
        .map_err(io::Error::from)
}

/// Headers as text, one `name: value` line each: names are HTTP tokens (no `:`) and
/// values have no line breaks, as the gateway checks them.
fn headers_text(headers: &[(String, String)]) -> String {
    headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect()
}

/// The headers [`headers_text`] wrote; a line without `: ` is skipped.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// The file of a key that ends in `/` (a "directory" object, as consoles and FUSE
/// clients make) is the directory's name with this suffix, beside it: so `a/`, `a` and
/// `a/b` can all be stored, and the mapping reverses in [`key_of`].
const DIR_OBJECT_SUFFIX: &str = ".fdw-dir";
/// The longest file name (`NAME_MAX` on Linux).
const MAX_FILE_NAME_BYTES: usize = 255;

/// The path of `key` under the root, or why no file can be its: the mapping is
/// one-to-one, so components that a path would fold (`.`, `..`, an empty one) or that
/// the store uses itself (its work directory, [`DIR_OBJECT_SUFFIX`]) are refused, as
/// are names longer than a file name can be.
fn relative_path(key: &str) -> Result<PathBuf, String> {
    let (body, dir_object) = match key.strip_suffix('/') {
        Some(body) => (body, true),
        None => (key, false),
    };
    let names: Vec<&str> = body.split('/').collect();
    let mut path = PathBuf::new();
    for (at, name) in names.iter().enumerate() {
        let file = if dir_object && at + 1 == names.len() {
            format!("{name}{DIR_OBJECT_SUFFIX}")
        } else {
            (*name).to_owned()
        };
        match *name {
            "" => return Err("an empty path component (a leading `/` or `//`)".to_owned()),
            "." | ".." => return Err(format!("a path component {name:?}")),
            WORK_DIR => return Err(format!("the path component {WORK_DIR:?}, the store's own")),
            _ if name.ends_with(DIR_OBJECT_SUFFIX) => {
                return Err(format!(
                    "a path component ending in {DIR_OBJECT_SUFFIX:?}, which the store uses \
                     for keys that end in `/`"
                ));
            }
            _ if file.len() > MAX_FILE_NAME_BYTES => {
                return Err(format!(
                    "a path component of {} bytes, over a file name's {MAX_FILE_NAME_BYTES}",
                    file.len()
                ));
            }
            _ => path.push(file),
        }
    }
    Ok(path)
}

/// The key whose file is at `relative` ([`relative_path`] reversed).
fn key_of(relative: &Path) -> String {
    let path = relative.to_string_lossy();
    match path.strip_suffix(DIR_OBJECT_SUFFIX) {
        Some(dir) => format!("{dir}/"),
        None => path.into_owned(),
    }
}

/// What is stored at `path`, as `head` tells it, `None` if nothing. Its tag changes with
/// every replace (a new inode, modification time and version).
fn stored_at(path: &Path, key: &str) -> io::Result<Option<StoredObject>> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let version = number_xattr(path, VERSION_XATTR)?;
    let crc = number_xattr(path, CRC_XATTR)?.and_then(|c| u32::try_from(c).ok());
    let tag = format!(
        "{:x}-{:x}.{:x}-{}",
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        version.map_or("none".to_owned(), |v| v.to_string())
    );
    Ok(Some(StoredObject {
        key: key.to_owned(),
        len: meta.len(),
        crc,
        version,
        etag: text_xattr(path, ETAG_XATTR, 64)?,
        headers: text_xattr(path, HEADERS_XATTR, HEADERS_XATTR_BYTES)?
            .map(|text| parse_headers(&text))
            .unwrap_or_default(),
        tag: Some(tag),
    }))
}

/// Fails with [`Conflict`] unless what is at `path` is what `expect` says.
fn check_expected(path: &Path, expect: Option<&Expect>) -> io::Result<()> {
    let Some(expect) = expect else {
        return Ok(());
    };
    let current = stored_at(path, "")?.and_then(|stored| stored.tag);
    match (expect, current) {
        (Expect::Absent, None) => Ok(()),
        (Expect::Tag(want), Some(tag)) if *want == tag => Ok(()),
        (_, found) => Err(io::Error::other(Conflict(format!(
            "expected {expect:?}, found {}",
            found.unwrap_or_else(|| "nothing".to_owned())
        )))),
    }
}

impl LocalDir {
    /// The store under `root`, created if missing. Temporary files a crash left behind
    /// (older than an hour) are removed.
    pub fn new(root: &Path) -> io::Result<Self> {
        let work = root.join(WORK_DIR);
        std::fs::create_dir_all(&work)?;
        remove_leftovers(&work, LEFTOVER_AGE)?;
        Ok(Self {
            root: Arc::new(root.to_path_buf()),
            instance: std::hash::RandomState::new().hash_one(std::process::id()),
            next_tmp: Arc::new(AtomicU64::new(0)),
            lock: Arc::new(DirLock::open(&work)?),
        })
    }

    /// Where `key` lives, or why it cannot live here ([`relative_path`]).
    fn path(&self, key: &str) -> Result<PathBuf, String> {
        relative_path(key).map(|relative| self.root.join(relative))
    }

    /// [`path`](Self::path) for a write: a key that cannot be a file is a permanent
    /// failure (the door refuses such keys, see [`UnderStore::refuses_key`]).
    fn write_path(&self, operation: &'static str, key: &str) -> Result<PathBuf, UnderStoreError> {
        self.path(key).map_err(|reason| {
            UnderStoreError::new(
                FailureKind::Permanent,
                operation,
                key,
                format!("the key cannot be a file under the store's directory: {reason}"),
            )
        })
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(WORK_DIR)
            .join(format!("{what}-{:016x}-{n}", self.instance))
    }

    /// Writes `payload` durably at `path` (see the module docs), on the blocking pool,
    /// if `fence` allows.
    async fn write_durably(
        &self,
        operation: &'static str,
        key: &str,
        path: PathBuf,
        payload: Payload,
        fence: &Fence,
    ) -> Result<(), UnderStoreError> {
        let tmp = self.tmp_path("object");
        let (fence, lock) = (fence.clone(), self.lock.clone());
        let result = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            RING.with(|ring| {
                let mut ring = ring.borrow_mut();
                let ring = match ring.as_mut() {
                    Some(ring) => ring,
                    None => ring.insert(IoUring::new(RING_ENTRIES)?),
                };
                write_file(
                    ring,
                    &tmp,
                    &path,
                    payload.pieces(),
                    payload.crc(),
                    &fence,
                    &lock,
                )
            })
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(io_failure(operation, key, err)),
            Err(join) => Err(UnderStoreError::new(
                FailureKind::Retryable,
                operation,
                key,
                format!("the writer thread failed: {join}"),
            )),
        }
    }

    fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join(WORK_DIR).join(upload_id)
    }
}

/// Removes what in `work` was last modified more than `age` ago.
fn remove_leftovers(work: &Path, age: std::time::Duration) -> io::Result<()> {
    for entry in std::fs::read_dir(work)? {
        let entry = entry?;
        if entry.file_name() == LOCK_FILE {
            continue; // never stale, and shared: a second lock file would not exclude
        }
        let old = entry
            .metadata()?
            .modified()?
            .elapsed()
            .is_ok_and(|elapsed| elapsed > age);
        if old {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(path)?;
            } else {
                std::fs::remove_file(path)?;
            }
        }
    }
    Ok(())
}

thread_local! {
    /// The ring of this blocking-pool thread, made on its first write.
    static RING: std::cell::RefCell<Option<IoUring>> = const { std::cell::RefCell::new(None) };
}

fn io_failure(operation: &'static str, key: &str, err: io::Error) -> UnderStoreError {
    let kind = match err.kind() {
        _ if err.get_ref().is_some_and(|inner| inner.is::<Conflict>()) => FailureKind::Conflict,
        io::ErrorKind::NotFound => FailureKind::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => FailureKind::Permanent,
        // Full disks, I/O errors, interrupted calls: an operator can fix these, and the
        // pipeline tries again.
        _ => FailureKind::Retryable,
    };
    UnderStoreError::new(kind, operation, key, err.to_string())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// Submits `entries` and waits for all of them, returning each one's result in order.
fn run(ring: &mut IoUring, entries: &[io_uring::squeue::Entry]) -> io::Result<Vec<i32>> {
    let mut results = vec![0; entries.len()];
    for (batch_index, batch) in entries.chunks(RING_ENTRIES as usize).enumerate() {
        for (i, entry) in batch.iter().enumerate() {
            let entry = entry
                .clone()
                .user_data((batch_index * RING_ENTRIES as usize + i) as u64);
            // SAFETY: every pointer in the entries (paths, buffers) is owned by the
            // caller and outlives this call, which waits for all completions below.
            unsafe { ring.submission().push(&entry) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        ring.submit_and_wait(batch.len())?;
        let mut seen = 0;
        while seen < batch.len() {
            for completion in ring.completion() {
                results[completion.user_data() as usize] = completion.result();
                seen += 1;
            }
            if seen < batch.len() {
                ring.submit_and_wait(batch.len() - seen)?;
            }
        }
    }
    Ok(results)
}

fn check(result: i32) -> io::Result<i32> {
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result))
    } else {
        Ok(result)
    }
}

/// Opens `path` through the ring.
fn open(ring: &mut IoUring, path: &Path, flags: i32) -> io::Result<types::Fd> {
    let name = c_path(path)?;
    let entry = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), name.as_ptr())
        .flags(flags | libc::O_CLOEXEC)
        .mode(0o644)
        .build();
    Ok(types::Fd(check(run(ring, &[entry])?[0])?))
}

fn fsync_and_close(ring: &mut IoUring, fd: types::Fd) -> io::Result<()> {
    let synced = run(ring, &[opcode::Fsync::new(fd).build()])?[0];
    let closed = run(ring, &[opcode::Close::new(fd).build()])?[0];
    check(synced)?;
    check(closed).map(drop)
}

/// The durable write: temporary file with its version, writes, fsync, then (under the
/// lock) the fence's check and the rename, then the directory's fsync.
fn write_file(
    ring: &mut IoUring,
    tmp: &Path,
    path: &Path,
    pieces: &[Bytes],
    crc: u32,
    fence: &Fence,
    lock: &DirLock,
) -> io::Result<()> {
    let fd = open(ring, tmp, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC)?;
    // Set before the fsync, which makes them durable with the bytes.
    let labelled =
        set_number_xattr(tmp, CRC_XATTR, crc.into()).and_then(|()| match fence.version {
            Some(version) => set_number_xattr(tmp, VERSION_XATTR, version),
            None => Ok(()),
        });
    let labelled = labelled.and_then(|()| match &fence.etag {
        Some(etag) => set_text_xattr(tmp, ETAG_XATTR, etag),
        None => Ok(()),
    });
    let labelled = labelled.and_then(|()| match fence.headers.is_empty() {
        true => Ok(()),
        false => set_text_xattr(tmp, HEADERS_XATTR, &headers_text(&fence.headers)),
    });
    let written = labelled.and_then(|()| write_all(ring, fd, pieces));
    let synced = written.and_then(|()| fsync_and_close(ring, fd));
    if let Err(err) = synced {
        let _ = run(ring, &[opcode::Close::new(fd).build()]);
        let _ = std::fs::remove_file(tmp);
        return Err(err);
    }
    let (from, to) = (c_path(tmp)?, c_path(path)?);
    let rename = opcode::RenameAt::new(
        types::Fd(libc::AT_FDCWD),
        from.as_ptr(),
        types::Fd(libc::AT_FDCWD),
        to.as_ptr(),
    )
    .build();
    let renamed = lock.hold(|| {
        check_expected(path, fence.expect.as_ref())?;
        check(run(ring, &[rename])?[0]).map(drop)
    });
    if let Err(err) = renamed {
        let _ = std::fs::remove_file(tmp);
        return Err(err);
    }
    // The rename is durable once the directory is.
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dir = open(ring, dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
    fsync_and_close(ring, dir)
}

/// Writes every piece at its offset, all submitted together; short writes are
/// finished in further rounds.
fn write_all(ring: &mut IoUring, fd: types::Fd, pieces: &[Bytes]) -> io::Result<()> {
    // (offset in file, remaining bytes of the piece)
    let mut pending: Vec<(u64, &[u8])> = Vec::with_capacity(pieces.len());
    let mut offset = 0u64;
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        pending.push((offset, piece));
        offset += piece.len() as u64;
    }
    while !pending.is_empty() {
        let entries: Vec<_> = pending
            .iter()
            .map(|(at, bytes)| {
                opcode::Write::new(
                    fd,
                    bytes.as_ptr(),
                    bytes.len().min(u32::MAX as usize) as u32,
                )
                .offset(*at)
                .build()
            })
            .collect();
        let results = run(ring, &entries)?;
        let mut next = Vec::new();
        for ((at, bytes), result) in pending.into_iter().zip(results) {
            let n = check(result)? as usize;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            if n < bytes.len() {
                next.push((at + n as u64, &bytes[n..]));
            }
        }
        pending = next;
    }
    Ok(())
}

/// Runs a plain file operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    operation: &'static str,
    key: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, UnderStoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| io_failure(operation, key, e)),
        Err(join) => Err(UnderStoreError::new(
            FailureKind::Retryable,
            operation,
            key,
            join.to_string(),
        )),
    }
}

impl UnderStore for LocalDir {
    fn refuses_key(&self, key: &str) -> Option<String> {
        relative_path(key).err()
    }

    fn puts_any_size(&self) -> bool {
        true
    }

    async fn put_object(
        &self,
        key: &str,
        payload: Payload,
        fence: &Fence,
    ) -> Result<(), UnderStoreError> {
        let path = self.write_path("PutObject", key)?;
        self.write_durably("PutObject", key, path, payload, fence)
            .await
    }

    async fn create_multipart(&self, key: &str, fence: &Fence) -> Result<String, UnderStoreError> {
        self.write_path("CreateMultipartUpload", key)?;
        let dir = self.tmp_path("upload");
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key_owned = key.to_owned();
        let (version, etag) = (fence.version, fence.etag.clone());
        let headers = headers_text(&fence.headers);
        blocking("CreateMultipartUpload", key, move || {
            std::fs::create_dir_all(&dir)?;
            if let Some(version) = version {
                std::fs::write(dir.join("version"), version.to_string())?;
            }
            if let Some(etag) = etag {
                std::fs::write(dir.join("etag"), etag)?;
            }
            std::fs::write(dir.join(HEADERS_FILE), headers)?;
            std::fs::write(dir.join("key"), key_owned)
        })
        .await?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        payload: Payload,
    ) -> Result<CompletedPart, UnderStoreError> {
        let dir = self.upload_dir(upload_id);
        if !dir.is_dir() {
            return Err(UnderStoreError::new(
                FailureKind::NotFound,
                "UploadPart",
                key,
                format!("no upload {upload_id}"),
            ));
        }
        let crc = payload.crc();
        let path = dir.join(format!("{number:05}"));
        self.write_durably("UploadPart", key, path, payload, &Fence::default())
            .await?;
        Ok(CompletedPart {
            number,
            etag: format!("{crc:08x}"),
            crc,
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        crc: u32,
        len: u64,
        fence: &Fence,
    ) -> Result<(), UnderStoreError> {
        let dir = self.upload_dir(upload_id);
        let path = self.write_path("CompleteMultipartUpload", key)?;
        let files: Vec<_> = parts
            .iter()
            .map(|p| dir.join(format!("{:05}", p.number)))
            .collect();
        // Read the parts back and check them as a whole before anything is in place.
        let (pieces, actual, (version, etag, headers)) =
            blocking("CompleteMultipartUpload", key, move || {
                let recorded = |name: &str| match std::fs::read_to_string(dir.join(name)) {
                    Ok(v) => Ok(Some(v)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                };
                let version = recorded("version")?.and_then(|v| v.parse().ok());
                let etag = recorded("etag")?;
                let headers = parse_headers(&recorded(HEADERS_FILE)?.unwrap_or_default());
                let mut pieces = Vec::with_capacity(files.len());
                let mut hasher = crc32fast::Hasher::new();
                for file in files {
                    let bytes = std::fs::read(file)?;
                    hasher.update(&bytes);
                    pieces.push(Bytes::from(bytes));
                }
                Ok((pieces, hasher.finalize(), (version, etag, headers)))
            })
            .await?;
        let payload = Payload::new(pieces, actual);
        if actual != crc || payload.len() != len {
            return Err(UnderStoreError::new(
                FailureKind::Permanent,
                "CompleteMultipartUpload",
                key,
                format!(
                    "the parts hold {} bytes with CRC32 {actual:08x}; expected {len} bytes with {crc:08x}",
                    payload.len()
                ),
            ));
        }
        let fence = Fence {
            version,
            etag,
            headers,
            expect: fence.expect.clone(),
        };
        self.write_durably("CompleteMultipartUpload", key, path, payload, &fence)
            .await?;
        self.abort_multipart(key, upload_id).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UnderStoreError> {
        let dir = self.upload_dir(upload_id);
        blocking(
            "AbortMultipartUpload",
            key,
            move || match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        )
        .await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, UnderStoreError> {
        let path = self.path(key).map_err(|reason| {
            UnderStoreError::new(
                FailureKind::NotFound,
                "GetObject",
                key,
                format!("no such object: {reason}"),
            )
        })?;
        blocking("GetObject", key, move || {
            use std::os::unix::fs::FileExt;
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            let range = range.unwrap_or(0..len);
            if range.end > len || range.start > range.end {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("range {range:?} is outside the object's {len} bytes"),
                ));
            }
            let mut buf = vec![0; (range.end - range.start) as usize];
            file.read_exact_at(&mut buf, range.start)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<StoredObject>, UnderStoreError> {
        // A key no file can be is a key this store does not hold.
        let Ok(path) = self.path(key) else {
            return Ok(None);
        };
        let key_owned = key.to_owned();
        blocking("HeadObject", key, move || stored_at(&path, &key_owned)).await
    }

    async fn delete(&self, key: &str, expect: Option<&Expect>) -> Result<(), UnderStoreError> {
        let Ok(path) = self.path(key) else {
            return Ok(());
        };
        let (expect, lock) = (expect.cloned(), self.lock.clone());
        blocking("DeleteObject", key, move || {
            let removed = lock.hold(|| {
                if stored_at(&path, "")?.is_none() {
                    return Ok(false);
                }
                check_expected(&path, expect.as_ref())?;
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                    other => other.map(|()| true),
                }
            })?;
            if !removed {
                return Ok(());
            }
            // The removal is durable once the directory is.
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, UnderStoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking("ListObjects", &prefix.clone(), move || {
            let mut out = Vec::new();
            let mut dirs = vec![root.to_path_buf()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?;
                    let path = entry.path();
                    let Ok(relative) = path.strip_prefix(&*root) else {
                        continue;
                    };
                    if relative == Path::new(WORK_DIR) {
                        continue;
                    }
                    let key = key_of(relative);
                    let kind = entry.file_type()?;
                    if kind.is_dir() {
                        dirs.push(path);
                    } else if kind.is_file() && key.starts_with(&prefix) {
                        out.push(StoredObject {
                            key,
                            len: entry.metadata()?.len(),
                            ..StoredObject::default()
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, UnderStoreError> {
        let work = self.root.join(WORK_DIR);
        let prefix = prefix.to_owned();
        blocking("ListMultipartUploads", &prefix.clone(), move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(work)? {
                let entry = entry?;
                if !entry.file_type()?.is_dir() {
                    continue;
                }
                let key = std::fs::read_to_string(entry.path().join("key"))?;
                if key.starts_with(&prefix) {
                    out.push((key, entry.file_name().to_string_lossy().into_owned()));
                }
            }
            Ok(out)
        })
        .await
    }
}
