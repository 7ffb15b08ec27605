//! Development secrets that outlive the process.
//!
//! Without `KEYFRAME_JWT_SECRET` and `KEYFRAME_MASTER_KEY`, development would otherwise use
//! random keys per process, and a restart would end every token and make every sealed API key
//! and TOTP secret unreadable (a user with a second factor could no longer log in). Instead each
//! is generated once into `<data dir>/secrets/` (the directory 0700, the files 0600) and read
//! back on every start. Production never uses these: it refuses to start without real secrets.

use anyhow::Context as _;
use base64::Engine as _;
use rand::RngCore as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The development JWT secret in `data_dir`, generated on first use.
pub fn jwt_secret(data_dir: &Path) -> anyhow::Result<String> {
    load_or_create(data_dir, "jwt-secret", "KEYFRAME_JWT_SECRET")
}

/// The development master key (base64 of 32 bytes) in `data_dir`, generated on first use.
pub fn master_key(data_dir: &Path) -> anyhow::Result<String> {
    load_or_create(data_dir, "master-key", "KEYFRAME_MASTER_KEY")
}

/// The secret in `<data_dir>/secrets/<name>`: 32 random bytes, base64, made the first time.
fn load_or_create(data_dir: &Path, name: &str, variable: &str) -> anyhow::Result<String> {
    let dir = data_dir.join("secrets");
    let path = dir.join(name);
    if let Some(secret) = read(&path)? {
        tracing::info!(path = %path.display(), "no {variable}: using the development secret kept here");
        warn_if_readable_by_others(&path);
        return Ok(secret);
    }
    create_private_dir(&dir)?;
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
    // Written aside, then linked into place, which fails if the name exists: two processes
    // starting at once keep one secret, and nobody ever reads a half-written file.
    let aside = dir.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
    let written = write_private(&aside, &secret).and_then(|()| {
        std::fs::hard_link(&aside, &path).or_else(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            // A file system without hard links: a rename, which a second process starting at
            // the very same moment could replace (development only; both keys work once read).
            _ => std::fs::rename(&aside, &path),
        })
    });
    let _ = std::fs::remove_file(&aside);
    written.with_context(|| format!("keeping a development secret at {}", path.display()))?;
    let secret = read(&path)?.with_context(|| format!("{} vanished after it was written", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "no {variable}: generated a development secret and kept it here (set {variable} in production)"
    );
    Ok(secret)
}

/// The secret in `path`, or `None` when there is no such file.
fn read(path: &PathBuf) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => anyhow::bail!("{} is empty: delete it to have a new secret made", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Creates `dir` (0700) inside its parent, which is made as usual if missing: only the secrets'
/// own directory is private, not the data directory the worker shares.
/// Says so when the secret's file can be read by others than its owner (copied in by hand, say).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "a development secret is readable by others: chmod 600 it");
        }
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!("keyframe-dev-secrets-{}", uuid::Uuid::now_v7().simple()))
    }

    #[test]
    fn a_secret_is_made_once_and_read_back_after_a_restart() {
        let dir = scratch();
        let first = jwt_secret(&dir).expect("made");
        assert_eq!(jwt_secret(&dir).expect("read"), first);
        let key = master_key(&dir).expect("made");
        assert_ne!(key, first, "each secret is its own");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&key)
                .expect("base64")
                .len(),
            32
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |path: PathBuf| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
            assert_eq!(mode(dir.join("secrets/jwt-secret")), 0o600);
            assert_eq!(mode(dir.join("secrets/master-key")), 0o600);
            assert_eq!(mode(dir.join("secrets")), 0o700);
        }
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }

    #[test]
    fn processes_starting_at_once_keep_one_secret() {
        let dir = scratch();
        let made: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| jwt_secret(&dir).expect("made")))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("joined"))
                .collect()
        });
        assert!(made.iter().all(|secret| *secret == made[0]), "{made:?}");
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
