//! Checking a model file against the sha256 its registry entry gives, at load time:
//! a file that is truncated, corrupted on disk or silently replaced by another build
//! must not load and generate as if it were the model the registry names.

use crate::error::{OrionError, Result};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Big enough that a multi-GB file costs few syscalls, small enough to stay off the
/// memory budget the loader is keeping to.
const CHUNK: usize = 4 << 20;

/// What identifies one version of a file on disk. Size and mtime are what a rewrite
/// or a fresh download changes; on Unix the inode and ctime also catch a replacement
/// that preserved the old mtime (`cp -p`, `rsync -t`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    size: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64, i64, i64),
}

impl Version {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            size: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The digest computed for one version of a file.
type Memo = Option<(Version, String)>;

/// The digests computed so far, by canonical path. The process's one is owned by its
/// model loader (the runtime builds one `LlmService`, hence one loader): hashing a
/// multi-GB model costs seconds, so it is paid once per file version per process.
/// Tests build their own. Each file has its own lock so that concurrent loads of the
/// same file wait for one hash instead of each doing it, while different files hash in
/// parallel.
#[derive(Default)]
pub(crate) struct Integrity {
    verified: Mutex<HashMap<PathBuf, Arc<Mutex<Memo>>>>,
}

/// How [`Integrity::verify`] knew the digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The file was read and hashed now.
    Hashed,
    /// This version of the file was hashed before in this process.
    Remembered,
}

impl Integrity {
    /// Fail with `MODEL_LOAD_FAILED` unless the file at `path` has the sha256 `expected`
    /// (hex, any case). Blocking: reads the whole file the first time it sees it.
    pub(crate) fn verify(&self, path: &Path, expected: &str) -> Result<Checked> {
        let unreadable = |e: std::io::Error| {
            if crate::lifecycle::is_shut_down() {
                return OrionError::ShutDown;
            }
            OrionError::ModelLoadFailed(format!(
                "cannot read {} to check its sha256: {e}",
                path.display()
            ))
        };
        let canonical = std::fs::canonicalize(path).map_err(unreadable)?;
        let cell = self
            .verified
            .lock()
            .entry(canonical.clone())
            .or_default()
            .clone();
        let mut memo = cell.lock();
        let mut file = std::fs::File::open(&canonical).map_err(unreadable)?;
        // Taken from the open handle, so that it describes the bytes about to be read.
        let version = Version::of(&file.metadata().map_err(unreadable)?);
        let (actual, checked) = match memo.as_ref() {
            Some((v, digest)) if *v == version => (digest.clone(), Checked::Remembered),
            _ => {
                let digest = sha256_of(&mut file).map_err(unreadable)?;
                *memo = Some((version, digest.clone()));
                (digest, Checked::Hashed)
            }
        };
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(OrionError::ModelLoadFailed(format!(
                "{} has sha256 {actual} but the registry expects {}: the file is corrupt, \
             incomplete or a different build",
                path.display(),
                expected.to_ascii_lowercase()
            )));
        }
        Ok(checked)
    }
}

fn sha256_of(file: &mut std::fs::File) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        // A multi-gigabyte file takes seconds: the process's exit does not wait for it.
        if crate::lifecycle::is_shut_down() {
            return Err(std::io::Error::other("the process is exiting"));
        }
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut hex = String::with_capacity(64);
    for b in hasher.finalize() {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // sha256 of "hello\n" and of "world\n".
    const HELLO: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const WORLD: &str = "e258d248fda94c63753607f7c4494ee0fcbe92f1a76bfdac795c9d84101eb317";

    fn temp_file(name: &str, content: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "orion-integrity-{}-{name}.gguf",
            std::process::id()
        ));
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn the_right_digest_passes_and_is_remembered() {
        let integrity = Integrity::default();
        let p = temp_file("right", b"hello\n");
        assert_eq!(integrity.verify(&p, HELLO).unwrap(), Checked::Hashed);
        assert_eq!(integrity.verify(&p, HELLO).unwrap(), Checked::Remembered);
        assert_eq!(
            integrity.verify(&p, &HELLO.to_ascii_uppercase()).unwrap(),
            Checked::Remembered
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_wrong_digest_fails_naming_the_file_and_both_digests() {
        let integrity = Integrity::default();
        let p = temp_file("wrong", b"hello\n");
        let e = integrity.verify(&p, WORLD).unwrap_err();
        assert_eq!(e.code(), "MODEL_LOAD_FAILED");
        let m = e.to_string();
        assert!(m.contains(HELLO) && m.contains(WORLD), "{m}");
        assert!(m.contains(&p.display().to_string()), "{m}");
        assert!(m.contains("delete it"), "{m}");
        // The memo holds the actual digest, so asking again does not re-read the file.
        assert!(integrity.verify(&p, WORLD).is_err());
        assert_eq!(integrity.verify(&p, HELLO).unwrap(), Checked::Remembered);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_changed_file_is_hashed_again() {
        let integrity = Integrity::default();
        let p = temp_file("changed", b"hello\n");
        assert_eq!(integrity.verify(&p, HELLO).unwrap(), Checked::Hashed);
        let set_mtime = |t: SystemTime| {
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(t).unwrap();
        };
        // Same size, another mtime.
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::fs::write(&p, b"world\n").unwrap();
        set_mtime(mtime + Duration::from_secs(1));
        let e = integrity.verify(&p, HELLO).unwrap_err();
        assert!(e.to_string().contains(WORLD), "{e}");
        assert_eq!(integrity.verify(&p, WORLD).unwrap(), Checked::Remembered);
        // Same size and the mtime put back, as `cp -p` does: the ctime still moved.
        #[cfg(unix)]
        {
            // Kernels stamp ctime from a clock that ticks every few ms.
            std::thread::sleep(Duration::from_millis(30));
            std::fs::write(&p, b"hello\n").unwrap();
            set_mtime(mtime + Duration::from_secs(1));
            assert_eq!(integrity.verify(&p, HELLO).unwrap(), Checked::Hashed);
        }
        // Another size.
        std::fs::write(&p, b"hello\nhello\n").unwrap();
        assert_eq!(
            integrity.verify(&p, HELLO).unwrap_err().code(),
            "MODEL_LOAD_FAILED"
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn each_memo_is_its_own() {
        let p = temp_file("own", b"hello\n");
        let (a, b) = (Integrity::default(), Integrity::default());
        assert_eq!(a.verify(&p, HELLO).unwrap(), Checked::Hashed);
        assert_eq!(b.verify(&p, HELLO).unwrap(), Checked::Hashed);
        assert_eq!(a.verify(&p, HELLO).unwrap(), Checked::Remembered);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_missing_file_is_a_load_failure_naming_it() {
        let integrity = Integrity::default();
        let p = std::env::temp_dir().join("orion-integrity-no-such-file.gguf");
        let e = integrity.verify(&p, HELLO).unwrap_err();
        assert_eq!(e.code(), "MODEL_LOAD_FAILED");
        assert!(e.to_string().contains("no-such-file"), "{e}");
    }

    #[test]
    fn concurrent_checks_of_one_file_hash_it_once() {
        let integrity = Integrity::default();
        let p = temp_file("concurrent", &vec![7u8; 8 << 20]);
        let expected = {
            let mut f = std::fs::File::open(&p).unwrap();
            sha256_of(&mut f).unwrap()
        };
        let hashed = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| integrity.verify(&p, &expected).unwrap()))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|c| *c == Checked::Hashed)
                .count()
        });
        assert_eq!(hashed, 1);
        std::fs::remove_file(&p).unwrap();
    }
}
