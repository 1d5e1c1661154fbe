//! The clock: connections that do not open or stall are dropped, and the
//! broker is asked again for holders while more could help. The machine
//! names the next moment one of these can happen
//! ([`Download::next_deadline`]) rather than being polled.

use super::holders::{Connection, Holder};
use super::{
    Action, Conn, Download, DropReason, CONNECT_TIMEOUT_MS, MAX_SOURCES, STALL_TIMEOUT_MS,
    WANT_RETRY_MS,
};

impl Download {
    /// The earliest time at which [`super::Input::Tick`] can change
    /// anything, if any: feed it then (or later). Changes with every
    /// input, so ask again after each.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.complete {
            return None;
        }
        let conns = self
            .holders
            .conns()
            .filter_map(|(conn, h, c)| self.timeout_of(&conn, h, c).map(|(at, _)| at));
        // A connection turning late matters only if another holder could
        // take its chunks over.
        let several = self.holders.len() > 1;
        let late = self
            .holders
            .conns()
            .filter_map(|(_, _, c)| c.late_at.filter(|_| several && c.open));
        let want = self.more_holders().map(|_| self.last_want + WANT_RETRY_MS);
        conns
            .chain(late)
            .chain(want)
            .chain(self.origin_deadline())
            .min()
    }

    /// When `c` times out if nothing happens before, and why.
    fn timeout_of(&self, conn: &Conn, h: &Holder, c: &Connection) -> Option<(u64, DropReason)> {
        // Strictly after the timeout has passed.
        if !c.open {
            Some((
                c.last_progress + CONNECT_TIMEOUT_MS + 1,
                DropReason::ConnectTimeout,
            ))
        } else if self.owes_data(conn, h, c) {
            Some((c.last_progress + STALL_TIMEOUT_MS + 1, DropReason::Stalled))
        } else {
            None
        }
    }

    pub(super) fn check_timeouts(&mut self, now: u64, out: &mut Vec<Action>) {
        let late: Vec<(Conn, bool, DropReason)> = self
            .holders
            .conns()
            .filter_map(|(conn, h, c)| {
                let (at, why) = self.timeout_of(&conn, h, c)?;
                (now >= at).then_some((conn, c.open, why))
            })
            .collect();
        for (conn, open, why) in late {
            if !self.holders.contains(&conn) {
                // Dropped with its holder, for its other connection.
                continue;
            }
            if conn.lane > 0 && !open {
                // A second connection that never opened: the first one
                // still serves.
                self.drop_conn(conn, Some(why), out);
            } else {
                // A stalled holder is not trusted again during this download.
                self.ban(conn.holder, why, now, out);
            }
        }
        // Connections that just turned late: their chunks may be asked of
        // idle holders (see `Download::endgame`). Each turns late once per
        // chunk, so the deadline is not named again.
        let mut late = false;
        for (_, h) in self.holders.map.iter_mut() {
            for (_, c) in h.conns.iter_mut() {
                if c.late_at.is_some_and(|at| now >= at) {
                    c.late_at = None;
                    late = true;
                }
            }
        }
        if late {
            self.schedule(now, out);
        }
        self.origin_tick(now, out);
        if now.saturating_sub(self.last_want) >= WANT_RETRY_MS {
            if let Some(n) = self.more_holders() {
                self.last_want = now;
                out.push(Action::Want(n));
            }
        }
    }

    /// How many more holders to ask the broker for, if any: one while we
    /// have none and some are online; for content of several chunks, as
    /// many as there are online holders we are not connected to (up to
    /// the cap). Holders that appear later are introduced by the broker on
    /// its own, so this only catches up with ones we missed.
    fn more_holders(&self) -> Option<u8> {
        let online = self.holders_online?;
        // Once it has the manifest, this peer counts itself as a holder.
        let others = online.saturating_sub(u32::from(self.manifest.is_some()));
        if self.holders.peer_count() == 0 {
            return (others > 0).then_some(1);
        }
        let many = self.manifest.as_ref().is_some_and(|m| m.chunk_count() > 1);
        // A holder with nothing useful gives its place to a new one (see
        // `Download::make_room`).
        let useful = self
            .holders
            .map
            .iter()
            .filter(|(id, h)| id.peer().is_some() && !self.is_useless(h))
            .count();
        let banned = self.holders.banned.iter().filter(|h| h.peer().is_some());
        let known = (self.holders.peer_count() + banned.count()) as u32;
        let room = (MAX_SOURCES - useful) as u32;
        let n = others.saturating_sub(known).min(room);
        (many && n > 0).then_some(n as u8)
    }

    fn owes_data(&self, conn: &Conn, h: &Holder, c: &Connection) -> bool {
        !c.in_flight.is_empty()
            || (h.asked_has && h.has.is_none())
            || (self.manifest.is_none() && self.manifest_from == Some(*conn))
    }
}
