//! Files the agent writes: rendered secrets and token sinks.
//!
//! Every write is atomic (a temporary file in the same directory, written, fsynced, renamed over
//! the destination, then the directory fsynced), so a reader sees the old content or the new,
//! never half of either. Template destinations are also confined to an allowed base directory:
//! `..` components, absolute paths elsewhere, and symbolic links at the destination or along
//! the way are refused (the CVE-2020-8567 class of path traversal).

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rand::Rng;

/// Why a file could not be placed or written.
#[derive(Debug)]
pub enum FsError {
    /// The destination escapes the allowed directory or contains `..`.
    OutsideAllowedDir { path: PathBuf, base: PathBuf },
    /// The destination (or a directory on the way) is a symbolic link.
    Symlink { path: PathBuf },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::OutsideAllowedDir { path, base } => write!(
                f,
                "destination {} is outside the allowed directory {}",
                path.display(),
                base.display()
            ),
            FsError::Symlink { path } => {
                write!(f, "destination {} is a symbolic link", path.display())
            }
            FsError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for FsError {}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FsError + '_ {
    move |error| FsError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Resolves a template destination against the allowed base directory, lexically: a relative
/// path is taken inside `base`; an absolute one must already be inside it; `..` is refused
/// anywhere. Symbolic links are checked when writing, since they can appear later.
pub fn confine(base: &Path, destination: &Path) -> Result<PathBuf, FsError> {
    let outside = || FsError::OutsideAllowedDir {
        path: destination.to_path_buf(),
        base: base.to_path_buf(),
    };
    if destination
        .components()
        .any(|component| matches!(component, Component::ParentDir))
    {
        return Err(outside());
    }
    let joined = if destination.is_absolute() {
        destination.to_path_buf()
    } else {
        base.join(destination)
    };
    if !joined.starts_with(base) || joined == base || joined.file_name().is_none() {
        return Err(outside());
    }
    Ok(joined)
}

/// Writes `contents` to `destination` atomically with the given mode, refusing to write through
/// a symbolic link. When `base` is given, the destination's real parent directory must lie
/// inside it (the base itself is canonicalised by the caller).
pub fn write_atomic(
    destination: &Path,
    contents: &[u8],
    mode: u32,
    base: Option<&Path>,
) -> Result<(), FsError> {
    let parent = destination
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(parent).map_err(io_error(parent))?;
    if let Some(base) = base {
        let real_parent = parent.canonicalize().map_err(io_error(parent))?;
        if !real_parent.starts_with(base) {
            return Err(FsError::Symlink {
                path: parent.to_path_buf(),
            });
        }
    }
    match fs::symlink_metadata(destination) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            return Err(FsError::Symlink {
                path: destination.to_path_buf(),
            })
        }
        Ok(metadata) if metadata.is_dir() => {
            return Err(FsError::Io {
                path: destination.to_path_buf(),
                error: std::io::Error::other("is a directory"),
            })
        }
        _ => {}
    }
    let file_name = destination
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::thread_rng().gen();
    let temporary = parent.join(format!(".{file_name}.ward-tmp-{suffix:016x}"));
    let result = write_new_file(&temporary, contents, mode)
        .and_then(|()| fs::rename(&temporary, destination).map_err(io_error(destination)));
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
        return result;
    }
    // The rename is durable only once the directory entry is on disk.
    if let Ok(directory) = fs::File::open(parent) {
        let _ = directory.sync_all();
    }
    Ok(())
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    // O_NOFOLLOW is a second fence: the temporary name is random and created exclusively.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_error(path))?;
    // The umask may have narrowed the mode given to open; set exactly what was asked for.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_error(path))?;
    file.write_all(contents).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    Ok(())
}

/// Removes a rendered file (not following a symbolic link); a missing file is fine.
pub fn remove(destination: &Path) -> Result<(), FsError> {
    match fs::remove_file(destination) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(FsError::Io {
            path: destination.to_path_buf(),
            error,
        }),
    }
}

/// Parses a file mode written in octal ("0600", "600", "0o640").
pub fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_refuses_escapes() {
        let base = Path::new("/secrets");
        assert_eq!(
            confine(base, Path::new("api_key")).ok(),
            Some(PathBuf::from("/secrets/api_key"))
        );
        assert!(confine(base, Path::new("/secrets/sub/key")).is_ok());
        assert!(confine(base, Path::new("../etc/passwd")).is_err());
        assert!(confine(base, Path::new("/secrets/../etc/passwd")).is_err());
        assert!(confine(base, Path::new("/etc/passwd")).is_err());
        assert!(confine(base, Path::new("/secretsx/key")).is_err());
        assert!(confine(base, Path::new("/secrets")).is_err());
    }

    #[test]
    fn atomic_write_sets_mode_and_refuses_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical");
        let target = base.join("a/b/secret.txt");
        write_atomic(&target, b"one", 0o600, Some(&base)).expect("write");
        write_atomic(&target, b"two", 0o640, Some(&base)).expect("rewrite");
        assert_eq!(fs::read(&target).expect("read"), b"two");
        let mode = fs::metadata(&target).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        let leftovers: Vec<_> = fs::read_dir(base.join("a/b"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().contains("ward-tmp"))
            .collect();
        assert!(leftovers.is_empty());

        let link = base.join("link");
        std::os::unix::fs::symlink("/etc/hostname", &link).expect("symlink");
        assert!(matches!(
            write_atomic(&link, b"x", 0o600, Some(&base)),
            Err(FsError::Symlink { .. })
        ));

        let outside = tempfile::tempdir().expect("tempdir");
        let dir_link = base.join("escape");
        std::os::unix::fs::symlink(outside.path(), &dir_link).expect("symlink");
        assert!(matches!(
            write_atomic(&dir_link.join("f"), b"x", 0o600, Some(&base)),
            Err(FsError::Symlink { .. })
        ));
        assert!(!outside.path().join("f").exists());
    }

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("0600"), Some(0o600));
        assert_eq!(parse_mode("640"), Some(0o640));
        assert_eq!(parse_mode("9"), None);
    }
}
