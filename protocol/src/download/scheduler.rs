//! Which chunks to ask which holder for.
//!
//! Policy: rarest first; among equally rare chunks, blocks (about 1 MiB of
//! neighbouring chunks) that no connected holder has started, in a random
//! order per download, each block front to back. A holder that has
//! everything is asked only for what no connected partial holder has.
//!
//! * Rarest first (fewest connected holders have it): a chunk that only
//!   the original sharer has is fetched before chunks that other downloaders
//!   could also serve, so copies spread through the swarm and a flash crowd
//!   draws on each other instead of all pulling the same chunks from the
//!   first holder. It also fetches a chunk that may soon vanish (its only
//!   holder leaving) while it still can.
//! * Untouched blocks in a random order: downloaders that begin together
//!   with the same single seeder ask it for different blocks, and one that
//!   reaches a block another has started turns to a fresh one instead of
//!   following the other's frontier chunk for chunk (which a shared
//!   direction, e.g. every download counting up from its own start,
//!   would do).
//! * Front to back within a block: the holder reads its file or store a
//!   block at a time (see the browser peer's store), so neighbours are
//!   served from one read.
//! * The full holder (typically the seeder, the scarcest upload in a flash
//!   crowd) is left the chunks nobody else connected has; the rest come
//!   from partial holders. With only full holders connected, all of them
//!   share the work.
//! * Sequential order is not needed for display: content is shown only once
//!   every chunk is verified. The first few chunks still come first, along
//!   with the manifest (`Request::Manifest::prefetch`), so a small page
//!   arrives in one round trip.

use crate::availability::Availability;

/// In what order equally rare, equally held blocks come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Drawn from this seed: downloaders that start together spread out.
    Shuffled(u32),
    /// Front to back: content that a page uses as it arrives (a streamed
    /// response) gets its beginning first.
    Sequential,
}

/// Picks up to `want` chunks for a holder that has `has`, among those
/// `open(i)` says still need a holder: rarest first by `rarity` (how many
/// connected holders have each chunk), then by block (`block` chunks
/// each): least held blocks first, in `order`, each front to back.
pub fn pick(
    has: &Availability,
    rarity: &[u16],
    order: Order,
    block: u32,
    want: usize,
    open: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let n = has.len();
    if want == 0 || n == 0 {
        return Vec::new();
    }
    let block = block.max(1);
    // How much of each block connected holders have.
    let held: Vec<u32> = rarity
        .chunks(block as usize)
        .map(|b| b.iter().map(|&r| u32::from(r)).sum())
        .collect();
    let mut candidates: Vec<(u16, u32, u32, u32)> = (0..n)
        .filter(|&i| has.contains(i) && open(i))
        .map(|i| {
            let b = i / block;
            let place = match order {
                Order::Shuffled(seed) => shuffle(b, seed),
                Order::Sequential => b,
            };
            (rarity[i as usize], held[b as usize], place, i)
        })
        .collect();
    if candidates.len() > want {
        candidates.select_nth_unstable(want - 1);
        candidates.truncate(want);
    }
    candidates.sort_unstable();
    candidates.into_iter().map(|(.., i)| i).collect()
}

/// A block's place in this download's random order.
pub(super) fn shuffle(block: u32, seed: u32) -> u32 {
    // splitmix32-style mixing: neighbouring blocks land far apart.
    let mut x = block.wrapping_mul(0x9e37_79b9) ^ seed;
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^ (x >> 16)
}

/// Merges chunk indices (ascending) into `[start, end)` ranges.
pub fn ranges(indices: impl IntoIterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for i in indices {
        match out.last_mut() {
            Some((_, end)) if *end == i => *end += 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(len: u32, members: &[u32]) -> Availability {
        let mut a = Availability::none(len);
        for &i in members {
            a.insert(i);
        }
        a
    }

    #[test]
    fn rarest_chunks_come_first() {
        let has = Availability::all(6);
        // Chunks 4 and 1 are held by one holder only.
        let rarity = [3, 1, 2, 2, 1, 3];
        let mut first = pick(&has, &rarity, Order::Shuffled(0), 1, 2, |_| true);
        first.sort_unstable();
        assert_eq!(first, vec![1, 4]);
    }

    #[test]
    fn equally_rare_chunks_come_a_block_at_a_time_in_a_random_block_order() {
        let has = Availability::all(64);
        let rarity = [1; 64];
        let order = pick(&has, &rarity, Order::Shuffled(7), 4, 64, |_| true);
        // Each block front to back, blocks not in index order.
        for run in order.chunks(4) {
            assert_eq!(run[0] % 4, 0);
            assert_eq!(run, [run[0], run[0] + 1, run[0] + 2, run[0] + 3]);
        }
        let blocks: Vec<u32> = order.chunks(4).map(|r| r[0] / 4).collect();
        assert_ne!(blocks, (0..16).collect::<Vec<_>>());
        // Another download's order differs.
        assert_ne!(
            pick(&has, &rarity, Order::Shuffled(8), 4, 64, |_| true),
            order
        );
    }

    #[test]
    fn sequential_blocks_come_in_index_order() {
        let has = Availability::all(16);
        let order = pick(&has, &[1; 16], Order::Sequential, 4, 16, |_| true);
        assert_eq!(order, (0..16).collect::<Vec<_>>());
        // Rarest first still wins.
        let mut rarity = [2; 16];
        rarity[9] = 1;
        assert_eq!(pick(&has, &rarity, Order::Sequential, 4, 1, |_| true), [9]);
    }

    #[test]
    fn blocks_others_started_wait_for_untouched_ones() {
        let has = Availability::all(16);
        // Another holder has chunk 8: block 2 is started.
        let mut rarity = [1; 16];
        rarity[8] = 2;
        let order = pick(&has, &rarity, Order::Shuffled(3), 4, 16, |_| true);
        // Its missing chunks come after every untouched block; chunk 8 last.
        assert_eq!(&order[12..], &[9, 10, 11, 8]);
    }

    #[test]
    fn only_chunks_the_holder_has_and_that_are_still_needed() {
        let has = set(8, &[1, 2, 3, 6]);
        let rarity = [1; 8];
        let mut some = pick(&has, &rarity, Order::Shuffled(0), 1, 8, |i| i != 2);
        some.sort_unstable();
        assert_eq!(some, vec![1, 3, 6]);
        assert!(pick(&has, &rarity, Order::Shuffled(0), 1, 0, |_| true).is_empty());
        assert!(pick(&set(8, &[]), &rarity, Order::Shuffled(0), 1, 4, |_| true).is_empty());
    }

    #[test]
    fn ranges_merge_neighbours() {
        assert_eq!(ranges([0, 1, 2, 5, 7, 8]), vec![(0, 3), (5, 6), (7, 9)]);
        assert!(ranges([]).is_empty());
    }
}
