//! Model files downloaded for users who are online: from the Hugging Face hub's file
//! layout (`<endpoint>/<repo>/resolve/main/<file>`, which redirects to a CDN), into the
//! models directory, before the model loads.
//!
//! - **Resumable**: bytes arrive in `<file>.part`; a later attempt asks for the rest
//!   with a `Range` request (and starts over when the server answers with the whole file).
//! - **Verified**: the sha256 is computed as the bytes arrive (the part already on disk
//!   first) and checked before the file is moved into place; a mismatch removes the part.
//! - **Deduplicated across processes**: `<file>.lock`, created exclusively and holding the
//!   owner's pid. Another process waits for it (or takes it over when its owner died).
//!   Within a process, the loader already shares one load per key.
//! - **Cancellable**: `cancel` is checked while waiting for data; the part stays for a
//!   later resume.
//! - **One HTTP stack**: the process's client (`crate::runtime::http`, reqwest), the one
//!   remote servers use too; this thread waits on its runtime.
//! - **Bounded**: a server that sends nothing for the read timeout fails the download.

use crate::error::{OrionError, Result};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the hub is: `ORION_HF_ENDPOINT`, else `HF_ENDPOINT` (the hub's own variable),
/// else huggingface.co.
pub(crate) const ENDPOINT_ENV: &str = "ORION_HF_ENDPOINT";
/// Seconds without data after which a download fails (default 30).
pub(crate) const TIMEOUT_ENV: &str = "ORION_DOWNLOAD_TIMEOUT_MS";

/// The hub's download address of `file` in `repo`.
pub(crate) fn hub_url(repo: &str, file: &str) -> String {
    let endpoint = std::env::var(ENDPOINT_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "https://huggingface.co".into());
    format!(
        "{}/{repo}/resolve/main/{file}",
        endpoint.trim_end_matches('/')
    )
}

fn timeout() -> Duration {
    crate::config::env_u64(TIMEOUT_ENV)
        .ok()
        .flatten()
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(30), Duration::from_millis)
}

/// What to fetch.
pub(crate) struct Source<'a> {
    pub(crate) url: &'a str,
    pub(crate) sha256: Option<&'a str>,
    pub(crate) size: Option<u64>,
    /// The id that `npx orion-native models pull` takes for it, when it has one.
    pub(crate) pull: Option<&'a str>,
}

/// Holds `<file>.lock` until dropped.
struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists; no signal is sent.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Take `<dest>.lock`, waiting while a live process holds it. `None` when `dest` appeared
/// meanwhile (that process downloaded it).
fn lock(dest: &Path, cancel: &dyn Fn() -> bool) -> Result<Option<Lock>> {
    let path = with_suffix(dest, ".lock");
    loop {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                let _ = write!(f, "{}", std::process::id());
                return Ok(Some(Lock(path)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                // A lock whose owner died (or that is still empty a moment after its
                // creation) is stale: take it over.
                if owner.is_some_and(|p| !pid_alive(p)) {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                if owner.is_none() {
                    std::thread::sleep(Duration::from_millis(100));
                    if std::fs::read_to_string(&path).is_ok_and(|s| s.trim().is_empty()) {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                }
                if cancel() {
                    return Err(stopped());
                }
                std::thread::sleep(Duration::from_millis(200));
                if dest.exists() && !path.exists() {
                    return Ok(None);
                }
            }
            Err(e) => {
                return Err(OrionError::ModelLoadFailed(format!(
                    "cannot create {}: {e}",
                    path.display()
                )))
            }
        }
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn stopped() -> OrionError {
    if crate::runtime::is_shut_down() {
        OrionError::ShutDown
    } else {
        OrionError::Aborted
    }
}

fn offline(dest: &Path, src: &Source<'_>, why: &str) -> OrionError {
    let pull = src.pull.map_or_else(String::new, |id| {
        format!(", fetch it ahead of time with `npx orion-native models pull {id}`")
    });
    OrionError::ModelNotFound {
        what: format!(
            "model file `{}` (not on disk, and downloading it from {} failed: {why}; retry \
             online (a partial download resumes){pull}, or put the file there by hand)",
            dest.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            src.url
        ),
        searched: dest
            .parent()
            .map_or_else(String::new, |p| p.display().to_string()),
    }
}

/// Download `src` to `dest` unless it is there. `progress(done, total)` is called as
/// bytes arrive. Blocking: call it off the JS thread. A directory it had to create is
/// removed again when the download fails with nothing to resume.
pub(crate) fn fetch(
    src: &Source<'_>,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
    cancel: &dyn Fn() -> bool,
) -> Result<()> {
    let dir = dest.parent().filter(|d| !d.exists()).map(Path::to_path_buf);
    let result = fetch_into(src, dest, progress, cancel);
    if result.is_err() {
        // An empty part is nothing to resume.
        let part = with_suffix(dest, ".part");
        if std::fs::metadata(&part).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&part);
        }
        if let Some(dir) = dir {
            // Only if empty: a partial file to resume keeps it.
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

fn fetch_into(
    src: &Source<'_>,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
    cancel: &dyn Fn() -> bool,
) -> Result<()> {
    if dest.exists() {
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            OrionError::ModelLoadFailed(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    let Some(_lock) = lock(dest, cancel)? else {
        return Ok(());
    };
    if dest.exists() {
        return Ok(());
    }
    let part = with_suffix(dest, ".part");
    let io = |what: &str, e: std::io::Error| {
        OrionError::ModelLoadFailed(format!("{what} {}: {e}", part.display()))
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&part)
        .map_err(|e| io("cannot open", e))?;
    // The part already on disk counts toward the digest.
    let (mut hasher, mut have) = hash_existing(&mut file).map_err(|e| io("cannot read", e))?;
    let t = timeout();
    // The process's one HTTP client; this thread waits on its runtime.
    let (rt, client) = crate::runtime::http()?;
    let mut request = client.get(src.url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let copied = rt.block_on(async {
        let response = match wait(t, cancel, request.send()).await? {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(offline(dest, src, &crate::remote::describe(&e))),
            None => {
                return Err(offline(
                    dest,
                    src,
                    &format!("no answer in {} ms", t.as_millis()),
                ))
            }
        };
        let status = response.status().as_u16();
        match status {
            206 => {}
            200 => {
                // The whole file again (no range support, or the file changed): start over.
                file.set_len(0).map_err(|e| io("cannot truncate", e))?;
                hasher = Sha256::new();
                have = 0;
            }
            416 if src.size == Some(have) => {}
            404 => {
                return Err(offline(dest, src, "HTTP 404, the server has no such file"));
            }
            s => return Err(offline(dest, src, &format!("HTTP {s}"))),
        }
        let total = response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|n| n + have)
            .or(src.size);
        progress(have, total);
        if status == 416 {
            return Ok(total);
        }
        let mut response = response;
        loop {
            let chunk = match wait(t, cancel, response.chunk()).await? {
                Some(Ok(Some(c))) => Ok(c),
                Some(Ok(None)) => return Ok(total),
                Some(Err(e)) => Err(crate::remote::describe(&e)),
                None => Err(format!("no data for {} ms", t.as_millis())),
            }
            .map_err(|why| offline(dest, src, &format!("interrupted ({why})")))?;
            file.write_all(&chunk).map_err(|e| io("cannot write", e))?;
            hasher.update(&chunk);
            have += chunk.len() as u64;
            progress(have, total);
        }
    });
    let total = copied?;
    file.sync_all().map_err(|e| io("cannot write", e))?;
    drop(file);
    if let Some(size) = src.size.or(total) {
        if have != size {
            return Err(offline(dest, src, &format!("got {have} of {size} bytes")));
        }
    }
    verify_and_move(&part, dest, src, &hex(&hasher.finalize()))
}

/// Check the digest of the finished part, then move it into place.
fn verify_and_move(part: &Path, dest: &Path, src: &Source<'_>, digest: &str) -> Result<()> {
    if let Some(want) = src.sha256 {
        if !digest.eq_ignore_ascii_case(want) {
            let _ = std::fs::remove_file(part);
            return Err(OrionError::ModelLoadFailed(format!(
                "the download of {} from {} has sha256 {digest} but the registry expects {want}; \
                 the partial file was removed",
                dest.display(),
                src.url
            )));
        }
    }
    std::fs::rename(part, dest)
        .map_err(|e| OrionError::ModelLoadFailed(format!("cannot move {}: {e}", part.display())))
}

/// The digest of what `file` already holds, and its length.
fn hash_existing(file: &mut std::fs::File) -> std::io::Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    file.seek(SeekFrom::Start(0))?;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hasher, have));
        }
        hasher.update(&buf[..n]);
        have += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `fut`, or `None` once `limit` passes; `ABORTED` (or `SHUT_DOWN`) as soon as `cancel()`
/// says so, checked every 50 ms: a stalled server never holds a cancelled download.
async fn wait<F: std::future::Future>(
    limit: Duration,
    cancel: &dyn Fn() -> bool,
    fut: F,
) -> Result<Option<F::Output>> {
    let watch = async {
        loop {
            if cancel() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        out = tokio::time::timeout(limit, fut) => Ok(out.ok()),
        () = watch => Err(stopped()),
    }
}
