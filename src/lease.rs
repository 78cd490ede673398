//! A lease in a JetStream key-value bucket, so that a spatial shard started
//! on two machines has exactly one active instance: the holder renews its
//! key every [`RENEW`]; the bucket's age limit removes the key [`TTL`] after
//! the last renewal, so when the holder dies a standby takes the lease over
//! within a few seconds; a holder that cannot renew gives the lease up.

use std::time::Duration;

use anyhow::{anyhow, Result};
use async_nats::jetstream::{self, kv};
use tracing::{info, warn};

/// The bucket holding every lease.
pub const BUCKET: &str = "nvr_leases";
/// A lease not renewed for this long expires.
pub const TTL: Duration = Duration::from_secs(6);
/// How often the holder renews.
pub const RENEW: Duration = Duration::from_secs(2);

/// A lease held (or waited for) by `holder` on `key`.
pub struct Lease {
    /// The bucket.
    kv: kv::Store,
    /// The leased name, e.g. `spatial-lobby`.
    pub key: String,
    /// Who holds it: this node's id.
    pub holder: String,
    /// Revision of our latest write, while we hold it.
    revision: Option<u64>,
}

/// Opens (or creates) the lease bucket.
async fn bucket(js: &jetstream::Context, replicas: usize) -> Result<kv::Store> {
    if let Ok(s) = js.get_key_value(BUCKET).await {
        return Ok(s);
    }
    js.create_key_value(kv::Config {
        bucket: BUCKET.into(),
        description: "nvr: one active instance per spatial shard".into(),
        history: 1,
        max_age: TTL,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("lease bucket {BUCKET}: {e}"))
}

impl Lease {
    /// A lease on `key` for `holder`; nothing is taken yet.
    pub async fn new(
        js: &jetstream::Context,
        replicas: usize,
        key: &str,
        holder: &str,
    ) -> Result<Lease> {
        let kv = match bucket(js, replicas).await {
            Ok(kv) => kv,
            // Another node created it at the same moment.
            Err(_) => js
                .get_key_value(BUCKET)
                .await
                .map_err(|e| anyhow!("lease bucket {BUCKET}: {e}"))?,
        };
        Ok(Lease {
            kv,
            key: key.into(),
            holder: holder.into(),
            revision: None,
        })
    }

    /// Who holds the lease now, if anyone.
    pub async fn holder_now(&self) -> Option<String> {
        let v = self.kv.get(&self.key).await.ok()??;
        Some(String::from_utf8_lossy(&v).into_owned())
    }

    /// Takes the lease if nobody holds it; `true` when it is ours.
    pub async fn try_acquire(&mut self) -> bool {
        match self.kv.create(&self.key, self.holder.clone().into()).await {
            Ok(rev) => {
                self.revision = Some(rev);
                info!(lease = %self.key, holder = %self.holder, "lease acquired");
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until the lease is ours, trying every second.
    pub async fn acquire(&mut self) {
        let mut logged = false;
        loop {
            if self.try_acquire().await {
                return;
            }
            if !logged {
                info!(
                    lease = %self.key,
                    holder = ?self.holder_now().await,
                    "standby: another instance is active; taking over when its lease expires"
                );
                logged = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Renews the lease every [`RENEW`]; returns when it is lost (a renewal
    /// refused, or none possible for longer than the lease lasts).
    pub async fn hold(&mut self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW).await;
            let Some(rev) = self.revision else { return };
            match self
                .kv
                .update(&self.key, self.holder.clone().into(), rev)
                .await
            {
                Ok(r) => {
                    self.revision = Some(r);
                    last_ok = tokio::time::Instant::now();
                }
                Err(e) => {
                    let refused = matches!(e.kind(), kv::UpdateErrorKind::WrongLastRevision);
                    warn!(lease = %self.key, "lease renewal failed: {e}");
                    if refused || last_ok.elapsed() >= TTL {
                        self.revision = None;
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up (clean shutdown), so a standby takes over at once.
    pub async fn release(&mut self) {
        if let Some(rev) = self.revision.take() {
            let _ = self.kv.delete_expect_revision(&self.key, Some(rev)).await;
            info!(lease = %self.key, "lease released");
        }
    }
}
