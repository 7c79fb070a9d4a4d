//! Model files downloaded for users who are online: from the Hugging Face hub's file
//! layout (`<endpoint>/<repo>/resolve/main/<file>`, which redirects to a CDN), into the
//! models directory, before the model loads.
//!
//! - **Resumable**: bytes arrive in `<file>.part`; a later attempt asks for the rest
//!   with a `Range` request (and starts over when the server answers with the whole file).
//! - **Checked before it is moved into place**: a `206` must say (`Content-Range`) that
//!   it continues the part at its length, with the known total; a part larger than the
//!   known size, a `416`, or a `Content-Range` that does not fit discards the part and
//!   starts over once with a plain GET. The final length must be the known size; a GGUF
//!   file must start with the magic `GGUF` and an HTML page (a captive portal, an error
//!   page) is refused on its `Content-Type`; the sha256 (computed as the bytes arrive,
//!   the part already on disk first) must match. Any of these failing removes the part.
//! - **Bounded**: a server that sends nothing for `ORION_DOWNLOAD_TIMEOUT_MS` fails the
//!   download, and so does one that has not finished by the deadline
//!   (`ORION_DOWNLOAD_DEADLINE_MS`, else 10 minutes plus 4 s per MiB still to come: a
//!   trickle cannot hold a load for ever; the part stays to resume). Nothing is written
//!   past the known size, or without one past `ORION_DOWNLOAD_MAX_BYTES` (64 GiB).
//! - **Confined**: the file goes under its root (the models directory), and a symbolic
//!   link there that leads elsewhere is refused; the part is opened without following a
//!   link. Names are checked when registered (`crate::paths::check_relative`,
//!   [`check_hub`]).
//! - **Deduplicated across processes**: `<file>.lock`, created exclusively and holding the
//!   owner's pid. Another process waits for it (or takes it over when its owner died).
//!   Within a process, the loader already shares one load per key.
//! - **Cancellable**: `cancel` is checked while waiting for data; the part stays for a
//!   later resume.
//! - **One HTTP stack**: the process's client (`crate::net::http`, reqwest), the one
//!   remote servers use too; this thread waits on its runtime.

use crate::error::{OrionError, Result};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the hub is: `ORION_HF_ENDPOINT`, else `HF_ENDPOINT` (the hub's own variable),
/// else huggingface.co.
pub(crate) const ENDPOINT_ENV: &str = "ORION_HF_ENDPOINT";
/// Milliseconds without data after which a download fails (default 30 s).
pub(crate) const TIMEOUT_ENV: &str = "ORION_DOWNLOAD_TIMEOUT_MS";
/// Milliseconds one download attempt may take in all (default: [`default_deadline`]).
pub(crate) const DEADLINE_ENV: &str = "ORION_DOWNLOAD_DEADLINE_MS";
/// The most bytes written for a file whose size the registry does not give.
pub(crate) const MAX_BYTES_ENV: &str = "ORION_DOWNLOAD_MAX_BYTES";
const DEFAULT_MAX_BYTES: u64 = 64 << 30;
/// `1`: download registry files that have no sha256 (checked then only by size and
/// the GGUF magic). Without it such a file is not downloaded.
pub(crate) const UNVERIFIED_ENV: &str = "ORION_ALLOW_UNVERIFIED_DOWNLOADS";

/// Whether the user opted in to downloads without a digest ([`UNVERIFIED_ENV`]).
pub(crate) fn unverified_allowed() -> Result<bool> {
    match std::env::var(UNVERIFIED_ENV).as_deref().map(str::trim) {
        Err(_) | Ok("" | "0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(v) => Err(OrionError::InvalidOption(format!(
            "environment variable {UNVERIFIED_ENV}={:?} must be 1 (or 0); fix or unset it",
            bounded(v)
        ))),
    }
}

/// The hub's download address of `file` in `repo` (both checked by [`check_hub`]).
pub(crate) fn hub_url(repo: &str, file: &str) -> String {
    let endpoint = std::env::var(ENDPOINT_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "https://huggingface.co".into());
    // A mirror's query string (a key some mirrors take there) stays after the path.
    crate::net::with_path(&endpoint, &format!("/{repo}/resolve/main/{file}"))
}

/// Why `repo` and `file` cannot name a file on the hub, if they cannot. The URL is built
/// from them: a `..`, an absolute file, or a `?`/`#`/`%` would change which repository
/// (or which server path) is asked, and the file's name is where it lands on disk.
pub(crate) fn check_hub(repo: &str, file: &str) -> std::result::Result<(), String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if plain(owner) && plain(name) => {}
        _ => return Err(format!("hubRepo {:?} is not `owner/name`", bounded(repo))),
    }
    crate::paths::check_relative(file)
        .map_err(|why| format!("hubFile {:?}: {why}", bounded(file)))?;
    if file
        .chars()
        .any(|c| matches!(c, '?' | '#' | '%') || c.is_control())
    {
        return Err(format!(
            "hubFile {:?} has a character that changes a URL (`?`, `#`, `%` or a control character)",
            bounded(file)
        ));
    }
    Ok(())
}

/// At most 200 characters of a name from a descriptor, for a message.
pub(crate) fn bounded(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}

fn timeout() -> Duration {
    crate::config::env_u64(TIMEOUT_ENV)
        .ok()
        .flatten()
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(30), Duration::from_millis)
}

/// 10 minutes, plus 4 s per MiB to come (256 KiB/s): generous for a slow line, finite
/// for a server that trickles. The part stays, so the next attempt resumes.
fn default_deadline(remaining: u64) -> Duration {
    Duration::from_secs(600 + (remaining >> 20).saturating_mul(4))
}

fn deadline(remaining: u64) -> Duration {
    // A malformed value was refused where the download started (`fetch_into`).
    crate::config::env_u64(DEADLINE_ENV)
        .ok()
        .flatten()
        .filter(|ms| *ms > 0)
        .map_or_else(|| default_deadline(remaining), Duration::from_millis)
}

/// What to fetch.
pub(crate) struct Source<'a> {
    pub(crate) url: &'a str,
    pub(crate) sha256: Option<&'a str>,
    pub(crate) size: Option<u64>,
    /// What the file is for, which frames the errors.
    pub(crate) purpose: Purpose<'a>,
    /// The `Accept` header to send (an index's JSON form), when the server needs one.
    pub(crate) accept: Option<&'a str>,
    /// How long a silent server is waited for; `ORION_DOWNLOAD_TIMEOUT_MS` (else 30 s)
    /// when not given.
    pub(crate) timeout: Option<Duration>,
}

impl<'a> Source<'a> {
    /// A model's file from `url`; `pull` is the id `npx orion-native models pull` takes.
    pub(crate) fn model(
        url: &'a str,
        sha256: Option<&'a str>,
        size: Option<u64>,
        pull: Option<&'a str>,
    ) -> Self {
        Source {
            url,
            sha256,
            size,
            purpose: Purpose::Model { pull },
            accept: None,
            timeout: None,
        }
    }
}

/// Who asked for a download, which decides what its errors say.
#[derive(Clone, Copy)]
pub(crate) enum Purpose<'a> {
    /// A file a model load needs: errors are `MODEL_NOT_FOUND` with a models-directory
    /// remedy. `pull`: the id `npx orion-native models pull` takes for it, when it has one.
    Model { pull: Option<&'a str> },
    /// A file the package's model fetch asked for by URL (a model package, an index page):
    /// errors are `DOWNLOAD_FAILED`, naming the URL and the reason.
    File,
}

/// Holds `<file>.lock` until dropped.
struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(unix)]
fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists; no signal is sent.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

#[cfg(windows)]
fn pid_alive(pid: i32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    let Ok(pid) = u32::try_from(pid) else {
        return false;
    };
    // SAFETY: OpenProcess takes plain values and returns a handle or null.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        // No such process, or one we may not query: either way not ours to wait for.
        return false;
    }
    let mut code = 0u32;
    // SAFETY: `process` is a valid handle opened above, `code` a writable u32; the handle
    // is closed once, here.
    unsafe {
        let ok = GetExitCodeProcess(process, std::ptr::addr_of_mut!(code)) != 0;
        CloseHandle(process);
        ok && code == STILL_ACTIVE as u32
    }
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
    if crate::lifecycle::is_shut_down() {
        OrionError::ShutDown
    } else {
        OrionError::Aborted
    }
}

fn offline(dest: &Path, src: &Source<'_>, why: &str) -> OrionError {
    let pull = match src.purpose {
        Purpose::Model { pull } => pull,
        Purpose::File => {
            return OrionError::DownloadFailed {
                url: crate::net::shown(src.url),
                why: why.to_string(),
            }
        }
    };
    let pull = pull.map_or_else(String::new, |id| {
        format!(", fetch it ahead of time with `npx orion-native models pull {id}`")
    });
    OrionError::ModelNotFound {
        what: format!(
            "model file `{}` (not on disk, and downloading it from {} failed: {why}; retry \
             online (a partial download resumes){pull}, or put the file there by hand)",
            dest.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            crate::net::shown(src.url)
        ),
        searched: dest
            .parent()
            .map_or_else(String::new, |p| p.display().to_string()),
    }
}

/// Download `src` to `dest` unless it is there, into `dest`'s own directory; a file
/// named `*.gguf` must be a GGUF file. [`fetch_in`] with that directory as the root.
pub(crate) fn fetch(
    src: &Source<'_>,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
    cancel: &dyn Fn() -> bool,
) -> Result<()> {
    let root = dest.parent().unwrap_or_else(|| Path::new("."));
    let gguf = dest
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    fetch_in(src, root, dest, gguf, progress, cancel)
}

/// Download `src` to `dest`, which must stay under `root` (the models directory) once
/// symbolic links are followed, unless it is there. `gguf`: it must start with the GGUF
/// magic. `progress(done, total)` is called as bytes arrive. Blocking: call it off the
/// JS thread. A directory it had to create is removed again when the download fails
/// with nothing to resume.
pub(crate) fn fetch_in(
    src: &Source<'_>,
    root: &Path,
    dest: &Path,
    gguf: bool,
    progress: &mut dyn FnMut(u64, Option<u64>),
    cancel: &dyn Fn() -> bool,
) -> Result<()> {
    let dir = dest.parent().filter(|d| !d.exists()).map(Path::to_path_buf);
    let result = fetch_into(src, root, dest, gguf, progress, cancel);
    if result.is_err() {
        // An empty part is nothing to resume.
        let part = with_suffix(dest, ".part");
        if std::fs::symlink_metadata(&part).is_ok_and(|m| m.is_file() && m.len() == 0) {
            let _ = std::fs::remove_file(&part);
        }
        if let Some(dir) = dir {
            // Only if empty: a partial file to resume keeps it.
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

/// How one request ended.
enum Attempt {
    /// The part holds the whole file, with this sha256.
    Done(String),
    /// The part does not fit what the server has: discard it and start over.
    Restart(String),
}

fn fetch_into(
    src: &Source<'_>,
    root: &Path,
    dest: &Path,
    gguf: bool,
    progress: &mut dyn FnMut(u64, Option<u64>),
    cancel: &dyn Fn() -> bool,
) -> Result<()> {
    if dest.exists() {
        return Ok(());
    }
    let escapes = || {
        OrionError::InvalidOption(format!(
            "{} leads out of the models directory {} (through a symbolic link); a download \
             only writes inside it: remove the link, or give the model a path that has none",
            dest.display(),
            root.display()
        ))
    };
    if !crate::paths::resolves_within(root, dest) {
        return Err(escapes());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            OrionError::ModelLoadFailed(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    // Again: a link could have been made while the directories were.
    if !crate::paths::resolves_within(root, dest) {
        return Err(escapes());
    }
    let Some(_lock) = lock(dest, cancel)? else {
        return Ok(());
    };
    if dest.exists() {
        return Ok(());
    }
    let part = with_suffix(dest, ".part");
    let limit = match src.size {
        Some(size) => size,
        None => crate::config::env_u64(MAX_BYTES_ENV)?
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_BYTES),
    };
    // Malformed settings are refused before any byte is fetched.
    crate::config::env_u64(DEADLINE_ENV)?;
    let mut deadline_at = None;
    let mut restarted = false;
    loop {
        let job = Job {
            src,
            dest,
            part: &part,
            gguf,
            limit,
        };
        match job.attempt(&mut deadline_at, progress, cancel)? {
            Attempt::Done(digest) => return verify_and_move(&part, dest, src, &digest),
            Attempt::Restart(why) => {
                let _ = std::fs::remove_file(&part);
                if restarted {
                    return Err(offline(
                        dest,
                        src,
                        &format!("{why}, again after starting over; the partial file was removed"),
                    ));
                }
                restarted = true;
            }
        }
    }
}

/// What a reply's status and headers say.
enum Reply {
    /// A `206` that continues the part; the file's whole size.
    Continues(Option<u64>),
    /// A `200`: the whole file (the part is emptied first); its size when given.
    Whole(Option<u64>),
    /// The part does not fit what the server has.
    Restart(String),
}

/// One download, as each attempt sees it.
struct Job<'a> {
    src: &'a Source<'a>,
    dest: &'a Path,
    part: &'a Path,
    gguf: bool,
    /// No byte is written past this: the known size, else `ORION_DOWNLOAD_MAX_BYTES`.
    limit: u64,
}

impl Job<'_> {
    /// The download fails for `why`, and the part (which cannot be right) goes.
    fn discard(&self, why: &str) -> OrionError {
        let _ = std::fs::remove_file(self.part);
        offline(
            self.dest,
            self.src,
            &format!("{why}; the partial file was removed"),
        )
    }

    /// `Err` unless `head` (the file's first bytes) can begin the file. Never shows
    /// them: the message says what is wrong, not what is there.
    fn check_head(&self, head: &[u8], complete: bool) -> Result<()> {
        if self.gguf && (head.len() >= 4 || complete) && !head.starts_with(b"GGUF") {
            return Err(self.discard(
                "what the server sent is not a GGUF file (it does not start with the GGUF magic)",
            ));
        }
        Ok(())
    }

    /// What a reply's status and headers say, before a byte of its body is written.
    /// `have`: the length of the part it answers.
    fn judge(&self, response: &reqwest::Response, have: u64) -> Result<Reply> {
        let (src, dest) = (self.src, self.dest);
        let headers = response.headers();
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let length = header(reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let reply = match response.status().as_u16() {
            206 => {
                let range = header(reqwest::header::CONTENT_RANGE);
                match range.and_then(parse_content_range) {
                    Some((start, end, total))
                        if start == have
                            && length.is_none_or(|l| l == end - start + 1)
                            && total.is_none_or(|t| t == end + 1)
                            && src.size.is_none_or(|s| s == end + 1) =>
                    {
                        Reply::Continues(Some(end + 1))
                    }
                    _ => {
                        return Ok(Reply::Restart(format!(
                            "the server answered a request for bytes {have}- with \
                             Content-Range {:?}",
                            bounded(range.unwrap_or("(none)"))
                        )))
                    }
                }
            }
            200 => Reply::Whole(length),
            416 => {
                return Ok(Reply::Restart(format!(
                    "the server refused the range {have}- (HTTP 416)"
                )))
            }
            404 => return Err(offline(dest, src, "HTTP 404, the server has no such file")),
            s => return Err(offline(dest, src, &format!("HTTP {s}"))),
        };
        if header(reqwest::header::CONTENT_TYPE)
            .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"))
        {
            return Err(self.discard(
                "the server sent an HTML page (Content-Type text/html), not the file: a login \
                 or error page in the way",
            ));
        }
        let (Reply::Continues(total) | Reply::Whole(total)) = &reply else {
            return Ok(reply);
        };
        match (src.size, *total) {
            (Some(size), Some(total)) if total != size => Err(self.discard(&format!(
                "the server's file is {total} bytes, the registry says {size}"
            ))),
            (None, Some(total)) if total > self.limit => Err(self.discard(&format!(
                "the server's file is {total} bytes, more than {MAX_BYTES_ENV} ({}): give the \
                 model's `size`, or raise {MAX_BYTES_ENV}",
                self.limit
            ))),
            _ => Ok(reply),
        }
    }

    /// The server sent more than the limit: nothing past it is written.
    fn too_much(&self) -> OrionError {
        let allowed = if self.src.size.is_some() {
            "the registry's size for it".to_string()
        } else {
            format!("{MAX_BYTES_ENV}; give the model's `size`, or raise it")
        };
        self.discard(&format!(
            "the server sent more than {} bytes ({allowed})",
            self.limit
        ))
    }

    /// The deadline passed; the part stays.
    fn late(&self, allowed: Duration) -> OrionError {
        offline(
            self.dest,
            self.src,
            &format!(
                "not finished within {} ms ({DEADLINE_ENV}); the next attempt resumes",
                allowed.as_millis()
            ),
        )
    }

    /// One request: resume the part (or start it), append what arrives.
    fn attempt(
        &self,
        deadline_at: &mut Option<(Instant, Duration)>,
        progress: &mut dyn FnMut(u64, Option<u64>),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Attempt> {
        let (src, dest) = (self.src, self.dest);
        let io = |what: &str, e: std::io::Error| {
            OrionError::ModelLoadFailed(format!("{what} {}: {e}", self.part.display()))
        };
        let mut file = open_part(self.part).map_err(|e| io("cannot open", e))?;
        // The part already on disk counts toward the digest.
        let (mut hasher, mut have, mut head) =
            hash_existing(&mut file).map_err(|e| io("cannot read", e))?;
        if have > self.limit {
            return Ok(Attempt::Restart(format!(
                "the partial file holds {have} bytes, more than the {} expected",
                self.limit
            )));
        }
        if have > 0 && src.size == Some(have) {
            // Whole already (an earlier attempt stopped before moving it): nothing to ask.
            self.check_head(&head, true)?;
            return Ok(Attempt::Done(hex(&hasher.finalize())));
        }
        let t = src.timeout.unwrap_or_else(timeout);
        // The process's one HTTP client; this thread waits on its runtime.
        let (rt, client) = crate::net::http()?;
        let mut request = client.get(src.url);
        if let Some(accept) = src.accept {
            request = request.header(reqwest::header::ACCEPT, accept);
        }
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let total = rt.block_on(async {
            let response = match wait(t, cancel, request.send()).await? {
                Some(reply) => reply.map_err(|e| offline(dest, src, &crate::net::describe(&e)))?,
                None => return Err(offline(dest, src, &format!("no answer in {}", seconds(t)))),
            };
            let total = match self.judge(&response, have)? {
                Reply::Restart(why) => return Ok(Err(why)),
                Reply::Continues(total) => total,
                Reply::Whole(total) => {
                    // The whole file again (no range support, or the file changed): start over.
                    file.set_len(0).map_err(|e| io("cannot truncate", e))?;
                    hasher = Sha256::new();
                    have = 0;
                    head.clear();
                    total
                }
            };
            // Set by the first reply, for the whole download (a restart included).
            let (deadline_at, allowed) = *deadline_at.get_or_insert_with(|| {
                let remaining = total.unwrap_or(self.limit).saturating_sub(have);
                let allowed = deadline(remaining);
                (Instant::now() + allowed, allowed)
            });
            let total = total.or(src.size);
            progress(have, total);
            let mut response = response;
            loop {
                let left = deadline_at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.late(allowed));
                }
                let chunk = match wait(t.min(left), cancel, response.chunk()).await? {
                    Some(Ok(Some(c))) => c,
                    Some(Ok(None)) => return Ok(Ok(total)),
                    Some(Err(e)) => {
                        let why = crate::net::describe(&e);
                        return Err(offline(dest, src, &format!("interrupted ({why})")));
                    }
                    None if Instant::now() >= deadline_at => return Err(self.late(allowed)),
                    None => {
                        let why = format!("no data for {}", seconds(t));
                        return Err(offline(dest, src, &format!("interrupted ({why})")));
                    }
                };
                if have + chunk.len() as u64 > self.limit {
                    return Err(self.too_much());
                }
                if head.len() < 4 {
                    let n = (4 - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..n]);
                    // Before a byte is written: an error page is not saved as the model.
                    self.check_head(&head, false)?;
                }
                file.write_all(&chunk).map_err(|e| io("cannot write", e))?;
                hasher.update(&chunk);
                have += chunk.len() as u64;
                progress(have, total);
            }
        })?;
        let total = match total {
            Ok(total) => total,
            Err(why) => return Ok(Attempt::Restart(why)),
        };
        file.sync_all().map_err(|e| io("cannot write", e))?;
        drop(file);
        if let Some(size) = total {
            if have != size {
                return Err(offline(dest, src, &format!("got {have} of {size} bytes")));
            }
        }
        self.check_head(&head, true)?;
        Ok(Attempt::Done(hex(&hasher.finalize())))
    }
}

/// `Content-Range: bytes <start>-<end>/<total or *>` as numbers.
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let (range, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.parse::<u64>().ok()?, end.parse::<u64>().ok()?);
    let total = match total {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    // `end + 1` (the length it implies) must be a number too.
    (start <= end && end < u64::MAX).then_some((start, end, total))
}

/// The part, for reading and appending; never through a symbolic link (a link put in
/// its place must not redirect the writes).
fn open_part(part: &Path) -> std::io::Result<std::fs::File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    options.open(part)
}

/// Check the digest of the finished part, then move it into place.
fn verify_and_move(part: &Path, dest: &Path, src: &Source<'_>, digest: &str) -> Result<()> {
    if let Some(want) = src.sha256 {
        if !digest.eq_ignore_ascii_case(want) {
            let _ = std::fs::remove_file(part);
            if let Purpose::File = src.purpose {
                return Err(OrionError::DownloadFailed {
                    url: crate::net::shown(src.url),
                    why: format!(
                        "sha256 {digest}, expected {want}: the download is corrupt or not the \
                         one pinned; the partial file was removed"
                    ),
                });
            }
            return Err(OrionError::ModelLoadFailed(format!(
                "the download of {} from {} has sha256 {digest} but the registry expects {want}; \
                 the partial file was removed",
                dest.display(),
                crate::net::shown(src.url)
            )));
        }
    }
    std::fs::rename(part, dest)
        .map_err(|e| OrionError::ModelLoadFailed(format!("cannot move {}: {e}", part.display())))
}

/// The digest of what `file` already holds, its length and its first 4 bytes.
fn hash_existing(file: &mut std::fs::File) -> std::io::Result<(Sha256, u64, Vec<u8>)> {
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let mut head = Vec::with_capacity(4);
    let mut buf = vec![0u8; 1 << 20];
    file.seek(SeekFrom::Start(0))?;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hasher, have, head));
        }
        let take = (4 - head.len()).min(n);
        head.extend_from_slice(&buf[..take]);
        hasher.update(&buf[..n]);
        have += n as u64;
    }
}

/// `d` as a person reads it: "30 s", "0.5 s".
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!(
            "{} s",
            format!("{:.3}", d.as_secs_f64()).trim_end_matches('0')
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_in_seconds() {
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.25 s");
    }

    #[test]
    fn content_ranges_parse_and_nonsense_does_not() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, 199, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, 9, None)));
        for bad in [
            "",
            "bytes */200",
            "bytes 10-5/200",
            "items 0-9/10",
            "bytes 0-9",
            "bytes -1-9/10",
            "bytes 0-99999999999999999999/1",
            "bytes 0-18446744073709551615/*",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn hub_names_cannot_change_the_url_or_leave_the_directory() {
        assert!(check_hub("org/repo-1.0_x", "dir/file.Q4_K_M.gguf").is_ok());
        for (repo, file) in [
            ("org", "f.gguf"),
            ("org/repo/x", "f.gguf"),
            ("../repo", "f.gguf"),
            ("org/..", "f.gguf"),
            ("org/re po", "f.gguf"),
            ("org/repo", "../f.gguf"),
            ("org/repo", "/f.gguf"),
            ("org/repo", "f.gguf?download=1"),
            ("org/repo", "f%2e.gguf"),
            ("org/repo", "f\n.gguf"),
        ] {
            assert!(check_hub(repo, file).is_err(), "{repo} {file:?}");
        }
    }

    #[test]
    fn the_default_deadline_grows_with_the_size_and_is_finite() {
        assert_eq!(default_deadline(0), Duration::from_secs(600));
        // 4 GiB at 256 KiB/s: 4.6 hours, plus the 10 minutes.
        assert_eq!(
            default_deadline(4 << 30),
            Duration::from_secs(600 + 4 * 4096)
        );
        assert!(default_deadline(u64::MAX) < Duration::MAX);
    }
}
