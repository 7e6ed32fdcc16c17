//! The manifest: fetched from the control plane and cached in the data dir,
//! so that after a restart during an outage the socket and the workspace's
//! commands still start.
//!
//! The cache is the manifest's protobuf encoding (`manifest.binpb`, 0600),
//! replaced with `warden_fsutil::write_atomically` (a private temporary file,
//! fsynced, renamed over the old one, the directory fsynced), so a
//! crash leaves either the old or the new manifest, never a torn one.

use std::path::{Path, PathBuf};

use prost::Message;
use tokio_util::sync::CancellationToken;
use warden_proto::domain::Manifest;
use warden_proto::wire::agentapi;

use crate::control::{CallError, ControlPlane, Retry, RetryPolicy};

/// How long the first `GetManifest` may take before the cache is used.
const FIRST_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(10);

/// File name of the cached manifest inside the data dir.
pub const CACHE_FILE: &str = "manifest.binpb";

/// The on-disk copy of the last manifest the control plane sent.
#[derive(Clone, Debug)]
pub struct ManifestCache {
    path: PathBuf,
}

impl ManifestCache {
    /// The cache in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        ManifestCache {
            path: data_dir.join(CACHE_FILE),
        }
    }

    /// The cached manifest; `None` when there is none or it is unreadable
    /// (logged: the agent then waits for the control plane).
    pub fn load(&self) -> Option<Manifest> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the cached manifest");
                return None;
            }
        };
        let decoded = agentapi::Manifest::decode(bytes.as_slice())
            .map_err(|e| e.to_string())
            .and_then(|m| Manifest::try_from(m).map_err(|e| e.to_string()));
        match decoded {
            Ok(manifest) => Some(manifest),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "ignoring a corrupt cached manifest: {e}");
                None
            }
        }
    }

    /// Replaces the cached manifest atomically.
    pub fn store(&self, manifest: &Manifest) -> std::io::Result<()> {
        let bytes = agentapi::Manifest::from(manifest).encode_to_vec();
        warden_fsutil::write_atomically(&self.path, &bytes)
    }
}

/// Where the manifest the agent runs with came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestSource {
    /// Fetched now.
    ControlPlane,
    /// Read from the cache (the control plane did not answer).
    Cache,
}

/// Gets the manifest: from the control plane when it answers, otherwise
/// from the cache (and keeps trying the control plane in the background to
/// refresh it), otherwise by retrying until the control plane answers.
/// `None` when `shutdown` fires first. The background refresh stops when
/// `background` fires.
pub async fn obtain(
    control: &ControlPlane,
    cache: &ManifestCache,
    policy: RetryPolicy,
    shutdown: &CancellationToken,
    background: &CancellationToken,
) -> Option<(Manifest, ManifestSource)> {
    // A control plane that accepts connections but does not answer must
    // not hold up a start from the cache for the whole call timeout.
    let first = tokio::select! {
        () = shutdown.cancelled() => return None,
        result = tokio::time::timeout(FIRST_ATTEMPT, control.manifest()) => {
            result.unwrap_or_else(|_| Err(CallError::Unavailable {
                code: tonic::Code::DeadlineExceeded,
                message: format!("no answer within {FIRST_ATTEMPT:?}"),
            }))
        }
    };
    match first {
        Ok(manifest) => {
            save(cache, &manifest, None);
            Some((manifest, ManifestSource::ControlPlane))
        }
        Err(error) => {
            if let Some(cached) = cache.load() {
                tracing::warn!(
                    workspace = %cached.workspace_name,
                    "starting from the cached manifest ({error})"
                );
                let (control, cache, shutdown) =
                    (control.clone(), cache.clone(), background.clone());
                let known = cached.clone();
                tokio::spawn(async move {
                    if let Some(fresh) = fetch(&control, policy, &error, &shutdown).await {
                        save(&cache, &fresh, Some(&known));
                    }
                });
                return Some((cached, ManifestSource::Cache));
            }
            tracing::warn!(
                "no cached manifest; waiting for the control plane before starting the socket"
            );
            let manifest = fetch(control, policy, &error, shutdown).await?;
            save(cache, &manifest, None);
            Some((manifest, ManifestSource::ControlPlane))
        }
    }
}

/// Retries `GetManifest` after `first_error` until it succeeds.
async fn fetch(
    control: &ControlPlane,
    policy: RetryPolicy,
    first_error: &CallError,
    shutdown: &CancellationToken,
) -> Option<Manifest> {
    let mut retry = Retry::new(policy);
    let mut delay = retry.delay_after(first_error);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        let result = tokio::select! {
            () = shutdown.cancelled() => return None,
            result = control.manifest() => result,
        };
        match result {
            Ok(manifest) => return Some(manifest),
            Err(error) => delay = retry.delay_after(&error),
        }
    }
}

fn save(cache: &ManifestCache, manifest: &Manifest, previous: Option<&Manifest>) {
    if let Some(previous) = previous
        && previous != manifest
    {
        tracing::warn!(
            "the control plane sent a different manifest than the cached one; \
             it applies from the next start"
        );
    }
    if let Err(e) = cache.store(manifest) {
        tracing::warn!(path = %cache.path.display(), error = %e, "cannot cache the manifest");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_round_trips_and_ignores_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ManifestCache::new(dir.path());
        assert_eq!(cache.load(), None);
        let manifest = Manifest {
            workspace_id: uuid::Uuid::new_v4(),
            workspace_name: "ws".into(),
            owner_name: "alice".into(),
            agent_id: uuid::Uuid::new_v4(),
            agent_name: "main".into(),
            startup_script: "echo hi".into(),
        };
        cache.store(&manifest).unwrap();
        assert_eq!(cache.load(), Some(manifest));
        let mode = std::os::unix::fs::MetadataExt::mode(
            &std::fs::metadata(dir.path().join(CACHE_FILE)).unwrap(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(CACHE_FILE), b"\xff\xff\xff").unwrap();
        assert_eq!(cache.load(), None);
    }
}
