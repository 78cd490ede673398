//! Undoing a handoff that was someone else's. While no camera sees an
//! identity, the first camera track that joins it (a handoff across a
//! blind gap) moves it to where that track is and teaches it that track's
//! motion and looks. When the track was another person's, the rules that
//! check bindings take it away again within a few cycles (it disagrees
//! with the identity, or another camera gives that floor point another
//! identity). The identity would then stay where the other person was,
//! with their motion and looks, and its own person, coming back near where
//! they vanished, would no longer find it. So an identity handed off while
//! unseen keeps what it was before, and goes back to that when every
//! camera track bound to it since has been taken away within
//! [`UNDO_HANDOFF_CYCLES`].

use super::{BeforeHandoff, Global, SpatialTracker, UNDO_HANDOFF_CYCLES};

impl Global {
    /// Notes that a camera track bound to this identity was taken away
    /// from it (not ended by its camera's tracker).
    pub(super) fn revoke_handoff(&mut self) {
        if let Some(b) = self.before_handoff.as_mut() {
            b.revoked = true;
        }
    }
}

impl SpatialTracker {
    /// Keeps identity `gid` as it is now, before a camera track joins it
    /// while no camera sees it. A handoff still open from the last
    /// [`UNDO_HANDOFF_CYCLES`] keeps the state before it instead.
    pub(super) fn remember_before_handoff(&mut self, gid: u64) {
        let cycle = self.stats.cycles;
        let Some(g) = self.globals.get_mut(&gid) else {
            return;
        };
        if g.before_handoff
            .as_ref()
            .is_some_and(|b| cycle.saturating_sub(b.cycle) <= UNDO_HANDOFF_CYCLES)
        {
            return;
        }
        g.before_handoff = None;
        let global = g.clone();
        g.before_handoff = Some(Box::new(BeforeHandoff {
            cycle,
            revoked: false,
            global,
        }));
    }

    /// Puts back every identity whose handoff was taken away again (see
    /// the module doc) and forgets the handoffs older than
    /// [`UNDO_HANDOFF_CYCLES`].
    pub(super) fn undo_revoked_handoffs(&mut self) {
        let cycle = self.stats.cycles;
        let mut expired = Vec::new();
        let mut undo = Vec::new();
        for (gid, g) in self.globals.iter() {
            let Some(b) = g.before_handoff.as_ref() else {
                continue;
            };
            if cycle.saturating_sub(b.cycle) > UNDO_HANDOFF_CYCLES {
                expired.push(*gid);
            } else if b.revoked
                && !g
                    .sources
                    .iter()
                    .any(|k| self.sources.get(k).is_some_and(|s| s.observed))
            {
                undo.push(*gid);
            }
        }
        for gid in expired {
            if let Some(g) = self.globals.get_mut(&gid) {
                g.before_handoff = None;
            }
        }
        for gid in undo {
            self.undo_handoff(gid);
        }
    }

    /// Identity `gid` goes back to what it was before its open handoff,
    /// keeping the lost camera tracks it holds now and taking back those it
    /// held then that no other identity has taken since.
    fn undo_handoff(&mut self, gid: u64) {
        let Some(g) = self.globals.get_mut(&gid) else {
            return;
        };
        let Some(before) = g.before_handoff.take() else {
            return;
        };
        let mut sources = std::mem::take(&mut g.sources);
        for k in &before.global.sources {
            if let Some(s) = self.sources.get_mut(k) {
                if s.bound == Some(gid) || (s.bound.is_none() && !s.observed) {
                    s.bound = Some(gid);
                    sources.insert(*k);
                }
            }
        }
        *g = before.global;
        g.sources = sources;
        self.updated.remove(&gid);
        self.stats.handoffs_undone += 1;
    }
}
