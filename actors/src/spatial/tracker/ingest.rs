//! Ingest of camera tracks: each `CameraTracks` message updates its
//! camera's sources (state, box, appearance with the camera's bias taken
//! out, foot point on the floor) and releases the tracks it no longer
//! holds. Matching waits for the next cycle (`step`).

use nvr_subjects::{CameraTracks, Track, TrackState};

use super::{appearance, detection_score, foot, IngestError, Source, SourceKey, SpatialTracker};

impl SpatialTracker {
    /// Records the latest observations of one camera. Camera tracks absent
    /// from the message have ended and are released. On a per-track error
    /// (wrong embedding dimension) the other tracks are still taken, the
    /// message is counted as rejected and the first error is returned.
    pub fn ingest(&mut self, msg: &CameraTracks) -> Result<(), IngestError> {
        let Some(&ci) = self.cam_index.get(&msg.camera) else {
            self.stats.rejected_messages += 1;
            return Err(IngestError::UnknownCamera(msg.camera.clone()));
        };
        if let Some(last) = self.cams[ci].last_ts {
            if msg.ts_ns < last {
                self.stats.rejected_messages += 1;
                return Err(IngestError::OutOfOrder {
                    camera: msg.camera.clone(),
                    ts_ns: msg.ts_ns,
                    last_ns: last,
                });
            }
        }
        if let Some(last) = self.cams[ci].last_ts {
            self.cams[ci].frames.record(msg.ts_ns - last);
        }
        self.cams[ci].last_ts = Some(msg.ts_ns);
        self.cams[ci].size = Some((msg.width, msg.height));
        let mut first_err = None;
        let mut present: Vec<u64> = msg.tracks.iter().map(|t| t.track_id).collect();
        present.sort_unstable();
        self.release_ended(ci, &present);
        for t in &msg.tracks {
            if let Err(e) = self.take_track(ci, msg, t) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => {
                self.stats.rejected_messages += 1;
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Releases camera `ci`'s tracks that are absent from its latest
    /// message (`present`: the track ids it holds, sorted): they ended.
    fn release_ended(&mut self, ci: usize, present: &[u64]) {
        let ended: Vec<SourceKey> = self
            .sources
            .range((ci, 0)..=(ci, u64::MAX))
            .filter(|(k, _)| present.binary_search(&k.1).is_err())
            .map(|(k, _)| *k)
            .collect();
        for k in ended {
            if let Some(s) = self.sources.remove(&k) {
                if let Some(g) = s.bound.and_then(|gid| self.globals.get_mut(&gid)) {
                    g.sources.remove(&k);
                }
            }
        }
    }

    /// Records track `t` of camera `ci`'s message `msg`: its state, box and
    /// appearance, and, when confirmed, its foot point on the floor. A
    /// track whose embedding has the wrong dimension is left out.
    fn take_track(&mut self, ci: usize, msg: &CameraTracks, t: &Track) -> Result<(), IngestError> {
        if let (Some(e), Some(d)) = (&t.embedding, self.params.embedding_dim) {
            if d != e.len() {
                return Err(IngestError::EmbeddingDimension {
                    camera: msg.camera.clone(),
                    track_id: t.track_id,
                    expected: d,
                    got: e.len(),
                });
            }
        }
        let src = self
            .sources
            .entry((ci, t.track_id))
            .or_insert_with(|| Source {
                pos: None,
                raw_pos: None,
                obs_ts: msg.ts_ns,
                fresh: false,
                observed: false,
                emb: None,
                label: t.label.clone(),
                score: detection_score(t.score),
                hits: 0,
                frames: 0,
                detected_frames: 0,
                bound: None,
                bad_cycles: 0,
                prev_bound: None,
                first_ts: msg.ts_ns,
                bbox: t.bbox,
            });
        src.bbox = t.bbox;
        src.frames = src.frames.saturating_add(1);
        if t.hits > src.hits {
            src.detected_frames = src.detected_frames.saturating_add(1);
        }
        src.hits = t.hits;
        src.label.clone_from(&t.label);
        src.observed = t.state != TrackState::Lost;
        if let Some(e) = &t.embedding {
            if e.iter().all(|x| x.is_finite()) && !e.is_empty() {
                let learn = t.state == TrackState::Confirmed;
                // Written in place: this runs for every track of every message.
                let v = src.emb.get_or_insert_with(Vec::new);
                if self.params.camera_debias {
                    self.cams[ci].debias(e, learn, v);
                } else {
                    v.clear();
                    v.extend_from_slice(e);
                    appearance::normalise(v);
                }
            }
        }
        if t.state != TrackState::Confirmed || t.bbox.iter().any(|x| !x.is_finite()) {
            return Ok(());
        }
        let (w, h) = (msg.width as f64, msg.height as f64);
        let hom = &self.cams[ci].geom.homography;
        if let Some(p) = foot::foot_point(hom, t.bbox, w, h, self.params.foot_offset_m) {
            src.raw_pos = Some(p);
            src.pos = Some(if self.params.learn_offsets {
                self.offsets.correct(ci, p)
            } else {
                p
            });
            src.obs_ts = msg.ts_ns;
            src.fresh = true;
            src.score = detection_score(t.score);
        }
        Ok(())
    }
}
