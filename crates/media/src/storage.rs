//! Where uploads and artifacts live: the local file system under the data directory by
//! default, or any S3-compatible store, both through `object_store`.
//!
//! ffmpeg needs a file. On the local file system it reads the stored object in place; from S3
//! the object is first copied to a scratch file ([`Storage::local_copy`]).

use anyhow::Context as _;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Parts of a multipart write in flight at once: bounds the memory an upload holds to about
/// this many 5 MiB parts, whatever the file's size.
const UPLOAD_CONCURRENCY: usize = 2;

/// Makes ring the process's TLS provider. reqwest is built with rustls but without a provider
/// of its own (the S3 client needs TLS; ring is what the rest of the tree uses), so every
/// process that makes an HTTP client calls this first. Calling it again does nothing.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Which store, from configuration.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// A directory on the local file system.
    Local {
        /// The directory (created when missing).
        root: PathBuf,
    },
    /// An S3-compatible bucket. Credentials come from the usual `AWS_*` environment variables.
    S3 {
        /// The bucket.
        bucket: String,
        /// The endpoint, for stores other than AWS (`http://minio:9000`).
        endpoint: Option<String>,
        /// The region (`us-east-1` when unsure).
        region: Option<String>,
    },
}

/// The store of uploads and artifacts.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    local: Option<Arc<LocalFileSystem>>,
}

impl Storage {
    /// Opens the configured store.
    pub fn open(config: &StorageConfig) -> anyhow::Result<Self> {
        match config {
            StorageConfig::Local { root } => {
                std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
                let local = Arc::new(
                    LocalFileSystem::new_with_prefix(root)
                        .with_context(|| format!("opening {}", root.display()))?
                        .with_automatic_cleanup(true),
                );
                Ok(Self {
                    store: local.clone(),
                    local: Some(local),
                })
            }
            StorageConfig::S3 {
                bucket,
                endpoint,
                region,
            } => {
                install_tls_provider();
                let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = region {
                    builder = builder.with_region(region);
                }
                let store = builder.build().context("configuring S3 storage")?;
                Ok(Self {
                    store: Arc::new(store),
                    local: None,
                })
            }
        }
    }

    /// Starts writing the object `key` from a stream of chunks. Nothing is visible under `key`
    /// until [`ObjectWriter::finish`]; [`ObjectWriter::abort`] leaves nothing behind.
    pub async fn writer(&self, key: &str) -> anyhow::Result<ObjectWriter> {
        let upload = self
            .store
            .put_multipart(&ObjectPath::from(key))
            .await
            .with_context(|| format!("starting to store {key}"))?;
        Ok(ObjectWriter {
            inner: WriteMultipart::new(upload),
        })
    }

    /// Stores the file at `path` as `key`.
    pub async fn put_file(&self, key: &str, path: &Path) -> anyhow::Result<u64> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let mut writer = self.writer(key).await?;
        let mut chunks = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        let mut size = 0;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.with_context(|| format!("reading {}", path.display()))?;
            size += chunk.len() as u64;
            writer.write(chunk).await?;
        }
        writer.finish().await?;
        Ok(size)
    }

    /// The object `key` as a stream of chunks, and its size.
    pub async fn read(
        &self,
        key: &str,
    ) -> anyhow::Result<(u64, impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static)> {
        let result = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .with_context(|| format!("reading {key}"))?;
        let size = result.meta.size;
        Ok((size, result.into_stream().map_err(std::io::Error::other)))
    }

    /// Removes the object `key`; an object that is already gone is fine.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(anyhow::Error::new(error).context(format!("deleting {key}"))),
        }
    }

    /// The object `key` as a file ffmpeg can read: the stored file itself on the local file
    /// system, else a copy written into `scratch`.
    pub async fn local_copy(&self, key: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
        if let Some(local) = &self.local {
            return local
                .path_to_filesystem(&ObjectPath::from(key))
                .with_context(|| format!("locating {key}"));
        }
        let target = scratch.join("source");
        let mut file = tokio::fs::File::create(&target)
            .await
            .with_context(|| format!("creating {}", target.display()))?;
        let (_, mut chunks) = self.read(key).await?;
        while let Some(chunk) = chunks.next().await {
            file.write_all(&chunk.with_context(|| format!("downloading {key}"))?)
                .await
                .with_context(|| format!("writing {}", target.display()))?;
        }
        file.flush().await?;
        Ok(target)
    }
}

/// An object being written; see [`Storage::writer`].
pub struct ObjectWriter {
    inner: WriteMultipart,
}

impl ObjectWriter {
    /// Adds a chunk, waiting while too many parts are in flight.
    pub async fn write(&mut self, chunk: Bytes) -> anyhow::Result<()> {
        self.inner
            .wait_for_capacity(UPLOAD_CONCURRENCY)
            .await
            .context("storing a part")?;
        self.inner.put(chunk);
        Ok(())
    }

    /// Completes the object.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.inner.finish().await.context("completing the stored object")?;
        Ok(())
    }

    /// Abandons the object: nothing stays behind.
    pub async fn abort(self) -> anyhow::Result<()> {
        self.inner.abort().await.context("abandoning the stored object")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_aborted_write_leaves_nothing_and_a_finished_one_reads_back() {
        let root = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(&StorageConfig::Local {
            root: root.path().to_owned(),
        })
        .expect("open");
        let mut writer = storage.writer("assets/aborted").await.expect("writer");
        writer.write(Bytes::from_static(b"half a video")).await.expect("write");
        writer.abort().await.expect("abort");
        let left: Vec<_> = walk(root.path());
        assert!(left.is_empty(), "nothing left behind: {left:?}");

        let mut writer = storage.writer("assets/kept").await.expect("writer");
        writer.write(Bytes::from_static(b"a whole ")).await.expect("write");
        writer.write(Bytes::from_static(b"video")).await.expect("write");
        writer.finish().await.expect("finish");
        let (size, chunks) = storage.read("assets/kept").await.expect("read");
        let bytes: Vec<Bytes> = chunks.try_collect().await.expect("chunks");
        assert_eq!(size, 13);
        assert_eq!(bytes.concat(), b"a whole video");
        let path = storage.local_copy("assets/kept", root.path()).await.expect("path");
        assert_eq!(std::fs::read(path).expect("file"), b"a whole video");
        storage.delete("assets/kept").await.expect("delete");
        storage.delete("assets/kept").await.expect("deleting twice is fine");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
