//! Image garbage collection, as the kubelet's image GC manager does it: every five
//! minutes, when the file system images live on (CRI `ImageFsInfo`, measured with
//! statvfs) is at or above `--image-gc-high-threshold` percent full, images no container
//! uses are removed, least recently used first, until usage would be down to
//! `--image-gc-low-threshold`. Images first seen less than `--minimum-image-ttl-duration`
//! ago are left alone (they may be about to be used).
//!
//! Never removed: the sandbox image, images the runtime pins, and the images Keelson
//! imported (the project's pause and busybox images and everything from
//! `--image-import-dir`): on an air-gapped node no registry could bring them back.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use crate::cri::Runtime;

/// How often the kubelet checks (its `ImageGCPeriod`).
pub const GC_PERIOD: Duration = Duration::from_secs(300);

/// When to collect and how far.
#[derive(Debug, Clone)]
pub struct ImageGcPolicy {
    /// Collect at or above this usage (percent); 100 turns collection off.
    pub high_threshold_percent: u8,
    /// Collect down to this usage (percent).
    pub low_threshold_percent: u8,
    /// Images detected more recently than this are never collected.
    pub min_age: Duration,
}

impl ImageGcPolicy {
    /// The kubelet's checks of its flags.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.high_threshold_percent > 100 {
            anyhow::bail!("--image-gc-high-threshold must be between 0 and 100");
        }
        if self.low_threshold_percent > self.high_threshold_percent {
            anyhow::bail!("--image-gc-low-threshold must not exceed --image-gc-high-threshold");
        }
        Ok(())
    }

    /// Bytes to free on a file system of `capacity` bytes with `available` left, or
    /// `None` when usage is below the high threshold.
    pub fn bytes_to_free(&self, capacity: u64, available: u64) -> Option<u64> {
        if capacity == 0 || self.high_threshold_percent >= 100 {
            return None;
        }
        let available = available.min(capacity);
        let used_percent = (capacity - available) as u128 * 100 / capacity as u128;
        if used_percent < self.high_threshold_percent as u128 {
            return None;
        }
        let target_available = capacity as u128 * (100 - self.low_threshold_percent as u128) / 100;
        Some(target_available.saturating_sub(available as u128) as u64)
    }
}

/// What the collector remembers of an image between passes.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub size: u64,
    pub first_detected: Instant,
    pub last_used: Instant,
    /// In use now, or never to be collected.
    pub keep: bool,
}

/// The collector's state: a record per image ID, and the names it must never remove.
#[derive(Debug, Default)]
pub struct ImageGc {
    pub records: HashMap<String, ImageRecord>,
    protected: HashSet<String>,
}

impl ImageGc {
    /// `protected`: image names (or IDs) that are never collected.
    pub fn new(protected: impl IntoIterator<Item = String>) -> ImageGc {
        ImageGc {
            records: HashMap::new(),
            protected: protected.into_iter().collect(),
        }
    }

    /// Bring the records up to date with the runtime's images and the image
    /// references its containers hold (`in_use`: IDs or names). Images that are gone
    /// are forgotten; images in use get `last_used = now`.
    pub fn detect(&mut self, images: &[cri::Image], in_use: &HashSet<String>, now: Instant) {
        let mut seen = HashSet::new();
        for image in images {
            let names = || {
                std::iter::once(&image.id)
                    .chain(&image.repo_tags)
                    .chain(&image.repo_digests)
            };
            let used = names().any(|n| in_use.contains(n));
            let keep = used || image.pinned || names().any(|n| self.protected.contains(n));
            let r = self
                .records
                .entry(image.id.clone())
                .or_insert_with(|| ImageRecord {
                    size: image.size,
                    first_detected: now,
                    last_used: now,
                    keep,
                });
            r.size = image.size;
            r.keep = keep;
            if used {
                r.last_used = now;
            }
            seen.insert(image.id.clone());
        }
        self.records.retain(|id, _| seen.contains(id));
    }

    /// The images to remove to free `bytes`, least recently used first (then the
    /// earliest detected), skipping kept ones and ones younger than `min_age`. Stops as
    /// soon as enough is chosen; may fall short.
    pub fn select(&self, bytes: u64, now: Instant, min_age: Duration) -> Vec<String> {
        let mut candidates: Vec<(&String, &ImageRecord)> = self
            .records
            .iter()
            .filter(|(_, r)| !r.keep && now.saturating_duration_since(r.first_detected) >= min_age)
            .collect();
        candidates.sort_by(|a, b| {
            (a.1.last_used, a.1.first_detected, a.0).cmp(&(b.1.last_used, b.1.first_detected, b.0))
        });
        let mut freed = 0u64;
        let mut chosen = Vec::new();
        for (id, r) in candidates {
            if freed >= bytes {
                break;
            }
            freed = freed.saturating_add(r.size);
            chosen.push(id.clone());
        }
        chosen
    }

    /// One pass: detect, measure, remove. Returns the IDs removed.
    pub async fn collect_once(
        &mut self,
        runtime: &mut Runtime,
        policy: &ImageGcPolicy,
    ) -> anyhow::Result<Vec<String>> {
        let now = Instant::now();
        let images = runtime.list_images().await?;
        let mut in_use = HashSet::new();
        for c in runtime.list_containers().await? {
            in_use.insert(c.image_ref);
            if let Some(spec) = c.image {
                in_use.insert(spec.image);
            }
        }
        self.detect(&images, &in_use, now);
        let mut removed = Vec::new();
        for fs in runtime.image_fs_info().await? {
            let Some(mountpoint) = fs.fs_id.map(|f| f.mountpoint) else {
                continue;
            };
            let (capacity, available) = match fs_space(Path::new(&mountpoint)) {
                Ok(space) => space,
                Err(e) => {
                    tracing::warn!(%mountpoint, error = %e, "measuring the image file system");
                    continue;
                }
            };
            let Some(bytes) = policy.bytes_to_free(capacity, available) else {
                continue;
            };
            tracing::info!(%mountpoint, capacity, available, bytes, "image file system above the high threshold: removing unused images");
            let mut freed = 0u64;
            for id in self.select(bytes, now, policy.min_age) {
                match runtime.remove_image(&id).await {
                    Ok(()) => {
                        let size = self.records.remove(&id).map(|r| r.size).unwrap_or(0);
                        freed += size;
                        tracing::info!(image = %id, size, "removed unused image");
                        removed.push(id);
                    }
                    Err(e) => {
                        tracing::warn!(image = %id, error = %format!("{e:#}"), "removing an unused image")
                    }
                }
            }
            if freed < bytes {
                tracing::warn!(
                    wanted = bytes,
                    freed,
                    "image garbage collection freed less than needed"
                );
            }
        }
        Ok(removed)
    }
}

/// Capacity and available bytes of the file system holding `path`.
pub fn fs_space(path: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let frsize = s.f_frsize as u64;
    Ok((s.f_blocks as u64 * frsize, s.f_bavail as u64 * frsize))
}

/// Collect every [`GC_PERIOD`] until the agent stops; errors are logged, never fatal.
pub async fn run(mut runtime: Runtime, policy: ImageGcPolicy, protected: Vec<String>) {
    let mut gc = ImageGc::new(protected);
    loop {
        if let Err(e) = gc.collect_once(&mut runtime, &policy).await {
            tracing::warn!(error = %format!("{e:#}"), "image garbage collection");
        }
        tokio::time::sleep(GC_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, tag: &str, size: u64) -> cri::Image {
        cri::Image {
            id: id.into(),
            repo_tags: vec![tag.into()],
            size,
            ..Default::default()
        }
    }

    fn policy(high: u8, low: u8) -> ImageGcPolicy {
        ImageGcPolicy {
            high_threshold_percent: high,
            low_threshold_percent: low,
            min_age: Duration::ZERO,
        }
    }

    #[test]
    fn thresholds_as_the_kubelet_computes_them() {
        let p = policy(85, 80);
        // 84% used: nothing to do.
        assert_eq!(p.bytes_to_free(1000, 160), None);
        // 85% used: down to 80% means 200 available, 150 there.
        assert_eq!(p.bytes_to_free(1000, 150), Some(50));
        assert_eq!(p.bytes_to_free(1000, 0), Some(200));
        assert_eq!(
            policy(100, 80).bytes_to_free(1000, 0),
            None,
            "100 turns it off"
        );
        assert_eq!(p.bytes_to_free(0, 0), None);
        // More available than capacity (a racing measurement) is not an overflow.
        assert_eq!(p.bytes_to_free(1000, 5000), None);
        assert!(policy(101, 80).validate().is_err());
        assert!(policy(80, 85).validate().is_err());
        assert!(policy(85, 80).validate().is_ok());
    }

    #[test]
    fn least_recently_used_unused_images_go_first() {
        let t0 = Instant::now();
        let mut gc = ImageGc::new(["keelson.local/pause:1".to_string()]);
        let images = vec![
            image("sha256:pause", "keelson.local/pause:1", 100),
            image("sha256:old", "r/old:1", 10),
            image("sha256:mid", "r/mid:1", 20),
            image("sha256:new", "r/new:1", 30),
            image("sha256:busy", "r/busy:1", 40),
        ];
        // At t0 everything is seen; mid and new were used later.
        gc.detect(&images, &HashSet::new(), t0);
        gc.detect(
            &images,
            &HashSet::from(["sha256:mid".to_string()]),
            t0 + Duration::from_secs(1),
        );
        gc.detect(
            &images,
            &HashSet::from(["r/new:1".to_string()]),
            t0 + Duration::from_secs(2),
        );
        // busy is in use now (by name).
        let now = t0 + Duration::from_secs(3);
        gc.detect(&images, &HashSet::from(["r/busy:1".to_string()]), now);
        assert_eq!(gc.select(1, now, Duration::ZERO), ["sha256:old"]);
        assert_eq!(
            gc.select(11, now, Duration::ZERO),
            ["sha256:old", "sha256:mid"]
        );
        // Asking for everything never reaches the protected or the used image.
        assert_eq!(
            gc.select(u64::MAX, now, Duration::ZERO),
            ["sha256:old", "sha256:mid", "sha256:new"]
        );
        assert!(gc.select(0, now, Duration::ZERO).is_empty());
    }

    #[test]
    fn young_pinned_and_vanished_images_are_spared() {
        let t0 = Instant::now();
        let mut gc = ImageGc::new(Vec::<String>::new());
        let mut pinned = image("sha256:pinned", "r/pinned:1", 5);
        pinned.pinned = true;
        gc.detect(
            &[image("sha256:a", "r/a:1", 5), pinned.clone()],
            &HashSet::new(),
            t0,
        );
        let later = t0 + Duration::from_secs(60);
        gc.detect(
            &[
                image("sha256:a", "r/a:1", 5),
                image("sha256:b", "r/b:1", 5),
                pinned,
            ],
            &HashSet::new(),
            later,
        );
        // b is 0 s old, a is 60 s old: with a two-minute minimum age neither goes.
        assert!(gc
            .select(u64::MAX, later, Duration::from_secs(120))
            .is_empty());
        assert_eq!(
            gc.select(u64::MAX, later, Duration::from_secs(30)),
            ["sha256:a"]
        );
        // An image removed by someone else is forgotten.
        gc.detect(&[image("sha256:b", "r/b:1", 5)], &HashSet::new(), later);
        assert_eq!(gc.records.len(), 1);
        // A record keeps its first detection time across passes.
        assert_eq!(gc.records["sha256:b"].first_detected, later);
    }

    #[test]
    fn the_image_fs_is_measured() {
        let (capacity, available) = fs_space(Path::new("/")).unwrap();
        assert!(capacity > 0 && available <= capacity);
        assert!(fs_space(Path::new("/no/such/dir")).is_err());
    }
}
