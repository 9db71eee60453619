//! Times with a key each (a ticket's id, or nothing), sorted by (time, key) in blocks of at most
//! `2 × BLOCK`. A block holds its times as 4-byte offsets from a base of its own, so an entry
//! takes 4 bytes and its key (12 with a ticket id, where a B-tree of (time, id) takes about
//! 24). A block spans at most `u32::MAX` ms (49 days); a time that fits no block starts one.
//!
//! The gateway's index of open tickets' time limits and the analytics' roll-ups (deadlines,
//! overdue intervals) keep a million entries each at city scale.

/// Entries per block (a block splits at twice this).
const BLOCK: usize = 512;

/// A multiset of (time, key), answering "how many at or before `t`" in a few binary searches
/// and walking the entries between two times in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeBlocks<K> {
    blocks: Vec<Block<K>>,
    len: usize,
}

impl<K> Default for TimeBlocks<K> {
    fn default() -> Self {
        Self {
            blocks: Vec::new(),
            len: 0,
        }
    }
}

/// Entries `(base + offs[i], keys[i])` in order, never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Block<K> {
    base: i64,
    offs: Vec<u32>,
    keys: Vec<K>,
}

/// The first index in `0..n` where `below` is false (`below` true then false along it).
fn first_not(n: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

impl<K: Copy + Ord> Block<K> {
    /// From sorted entries that fit one block's span.
    fn of(items: &[(i64, K)]) -> Self {
        let base = items[0].0;
        Self {
            base,
            offs: items.iter().map(|&(t, _)| (t - base) as u32).collect(),
            keys: items.iter().map(|&(_, k)| k).collect(),
        }
    }

    /// `t` as an offset from the base, if it is one.
    fn off(&self, t: i64) -> Option<u32> {
        t.checked_sub(self.base).and_then(|d| u32::try_from(d).ok())
    }

    fn time(&self, i: usize) -> i64 {
        self.base + i64::from(self.offs[i])
    }

    fn last(&self) -> (i64, K) {
        let i = self.offs.len() - 1;
        (self.time(i), self.keys[i])
    }

    /// The first entry at or after (`base + d`, `k`).
    fn lower(&self, d: u32, k: K) -> usize {
        first_not(self.offs.len(), |i| (self.offs[i], self.keys[i]) < (d, k))
    }

    /// Put (`t`, `k`) in, rebasing the block if `t` is below its base; false if it does not
    /// fit the block's span.
    fn insert(&mut self, t: i64, k: K) -> bool {
        if let Some(d) = self.off(t) {
            let i = self.lower(d, k);
            self.offs.insert(i, d);
            self.keys.insert(i, k);
            return true;
        }
        let fits = t < self.base
            && self
                .last()
                .0
                .checked_sub(t)
                .is_some_and(|span| u32::try_from(span).is_ok());
        if !fits {
            return false;
        }
        let shift = (self.base - t) as u32;
        for o in &mut self.offs {
            *o += shift;
        }
        self.offs.insert(0, 0);
        self.keys.insert(0, k);
        self.base = t;
        true
    }

    /// Entries with a time at most `t`.
    fn count_le(&self, t: i64) -> usize {
        match t.checked_sub(self.base) {
            Some(d) if d >= 0 => match u32::try_from(d) {
                Ok(d) => self.offs.partition_point(|&o| o <= d),
                Err(_) => self.offs.len(),
            },
            _ => 0,
        }
    }

    /// Splits off its second half if it has grown past twice [`BLOCK`].
    fn split(&mut self) -> Option<Self> {
        if self.offs.len() <= 2 * BLOCK {
            return None;
        }
        let offs = self.offs.split_off(BLOCK);
        let keys = self.keys.split_off(BLOCK);
        self.offs.shrink_to_fit();
        self.keys.shrink_to_fit();
        let first = offs[0];
        Some(Self {
            base: self.base + i64::from(first),
            offs: offs.into_iter().map(|o| o - first).collect(),
            keys,
        })
    }
}

impl<K: Copy + Ord> TimeBlocks<K> {
    /// From entries in any order.
    pub fn from_unsorted(mut v: Vec<(i64, K)>) -> Self {
        v.sort_unstable();
        let len = v.len();
        let mut blocks = Vec::new();
        let mut rest = &v[..];
        while let Some(&(first, _)) = rest.first() {
            // As many as fit a block's span, up to BLOCK.
            let n = rest[..rest.len().min(BLOCK)].partition_point(|&(t, _)| {
                t.checked_sub(first)
                    .is_some_and(|d| d <= i64::from(u32::MAX))
            });
            blocks.push(Block::of(&rest[..n]));
            rest = &rest[n..];
        }
        Self { blocks, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block an entry belongs in: the first whose last entry is not below it.
    fn block_of(&self, t: i64, k: K) -> usize {
        self.blocks.partition_point(|b| b.last() < (t, k))
    }

    pub fn insert(&mut self, t: i64, k: K) {
        self.len += 1;
        let Some(last) = self.blocks.len().checked_sub(1) else {
            self.blocks.push(Block::of(&[(t, k)]));
            return;
        };
        let b = self.block_of(t, k).min(last);
        let at = if self.blocks[b].insert(t, k) {
            b
        } else if b > 0 && t <= self.blocks[b].base && self.blocks[b - 1].insert(t, k) {
            // (At the end of the block before: its last entry is below this one.)
            b - 1
        } else {
            // Too far from its neighbours' bases: a block of its own, in order.
            let at = if t < self.blocks[b].base { b } else { b + 1 };
            self.blocks.insert(at, Block::of(&[(t, k)]));
            at
        };
        if let Some(tail) = self.blocks[at].split() {
            self.blocks.insert(at + 1, tail);
        }
    }

    /// Whether (`t`, `k`) is in.
    pub fn contains(&self, t: i64, k: K) -> bool {
        let Some(block) = self.blocks.get(self.block_of(t, k)) else {
            return false;
        };
        block.off(t).is_some_and(|d| {
            let i = block.lower(d, k);
            block.offs.get(i) == Some(&d) && block.keys.get(i) == Some(&k)
        })
    }

    /// Put (`t`, `k`) in unless it is already (a set's insert); whether it was put in.
    pub fn insert_new(&mut self, t: i64, k: K) -> bool {
        let new = !self.contains(t, k);
        if new {
            self.insert(t, k);
        }
        new
    }

    /// Take one (`t`, `k`) out; false if there is none.
    pub fn remove(&mut self, t: i64, k: K) -> bool {
        let b = self.block_of(t, k);
        let Some(block) = self.blocks.get_mut(b) else {
            return false;
        };
        let Some(d) = block.off(t) else {
            return false;
        };
        let i = block.lower(d, k);
        if block.offs.get(i) != Some(&d) || block.keys.get(i) != Some(&k) {
            return false;
        }
        block.offs.remove(i);
        block.keys.remove(i);
        if block.offs.is_empty() {
            self.blocks.remove(b);
        }
        self.len -= 1;
        true
    }

    /// How many entries have a time at most `t`.
    pub fn count_le(&self, t: i64) -> usize {
        let b = self.blocks.partition_point(|b| b.last().0 <= t);
        let whole: usize = self.blocks[..b].iter().map(|b| b.offs.len()).sum();
        whole + self.blocks.get(b).map_or(0, |x| x.count_le(t))
    }

    /// How many entries have a time below `t`.
    pub fn count_lt(&self, t: i64) -> usize {
        t.checked_sub(1).map_or(0, |t| self.count_le(t))
    }

    /// The entries with a time in `from..=to`, in order.
    pub fn between(&self, from: i64, to: i64) -> impl Iterator<Item = (i64, K)> + '_ {
        let b = self.blocks.partition_point(|b| b.last().0 < from);
        self.blocks[b..]
            .iter()
            .flat_map(|block| (0..block.offs.len()).map(|i| (block.time(i), block.keys[i])))
            .skip_while(move |&(t, _)| t < from)
            .take_while(move |&(t, _)| t <= to)
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, K)> + '_ {
        self.between(i64::MIN, i64::MAX)
    }
}

impl<K: Copy + Ord> FromIterator<(i64, K)> for TimeBlocks<K> {
    fn from_iter<I: IntoIterator<Item = (i64, K)>>(iter: I) -> Self {
        Self::from_unsorted(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rng::Rng;

    /// Every block within its bounds, in order, and the count kept.
    fn check<K: Copy + Ord + std::fmt::Debug>(set: &TimeBlocks<K>) {
        assert!(set.blocks.iter().all(|b| {
            !b.offs.is_empty() && b.offs.len() <= 2 * BLOCK && b.offs.len() == b.keys.len()
        }));
        let all: Vec<_> = set.iter().collect();
        assert!(all.windows(2).all(|w| w[0] <= w[1]), "out of order");
        assert_eq!(all.len(), set.len());
    }

    #[test]
    fn times_count_like_a_sorted_list_through_inserts_and_removals() {
        let mut rng = Rng::new(5);
        let mut set = TimeBlocks::default();
        let mut model: Vec<i64> = Vec::new();
        // Few distinct values (many duplicates, across block edges) and enough to split blocks.
        for step in 0..20_000 {
            let v = rng.range_u32(0, 3_000) as i64 - 1_500;
            if rng.chance(0.35) && !model.is_empty() {
                let v = model[rng.index(model.len())];
                assert!(set.remove(v, ()));
                let at = model.iter().position(|&x| x == v).unwrap();
                model.remove(at);
            } else {
                set.insert(v, ());
                model.push(v);
            }
            if step % 997 == 0 {
                assert!(!set.remove(10_000, ()), "absent values are not removed");
                for t in [
                    -2_000,
                    -1_500,
                    -1,
                    0,
                    1,
                    777,
                    1_499,
                    5_000,
                    i64::MIN,
                    i64::MAX,
                ] {
                    let le = model.iter().filter(|&&x| x <= t).count();
                    let lt = model.iter().filter(|&&x| x < t).count();
                    assert_eq!((set.count_le(t), set.count_lt(t)), (le, lt), "at {t}");
                }
            }
        }
        assert!(set.blocks.len() > 2, "blocks split: {}", set.blocks.len());
        check(&set);
        model.sort_unstable();
        let times = |s: &TimeBlocks<()>| s.iter().map(|(t, _)| t).collect::<Vec<_>>();
        assert_eq!(times(&set), model);
        let built: TimeBlocks<()> = model.iter().map(|&t| (t, ())).collect();
        assert_eq!(times(&built), model);
        while let Some(v) = model.pop() {
            assert!(set.remove(v, ()));
        }
        assert!(set.is_empty() && set.blocks.is_empty());
    }

    #[test]
    fn times_far_apart_keep_blocks_of_their_own_and_keys_order_equal_times() {
        let mut rng = Rng::new(9);
        let mut set = TimeBlocks::default();
        let mut model = std::collections::BTreeSet::new();
        // Times minutes apart around moments years apart and at the ends of the i64 range,
        // with ids that make equal times distinct entries.
        const DAY: i64 = 86_400_000;
        let moments = [
            i64::MIN,
            -400 * DAY,
            0,
            3 * DAY,
            60 * DAY,
            800 * DAY,
            i64::MAX,
        ];
        for step in 0..12_000 {
            let m = moments[rng.index(moments.len())];
            let t = m.saturating_add(rng.range_u32(0, 2_000) as i64 * 60_000 - 60_000_000);
            let id = u64::from(rng.range_u32(0, 50));
            if rng.chance(0.3) && !model.is_empty() {
                let &(t, id) = model.iter().nth(rng.index(model.len())).unwrap();
                assert!(set.remove(t, id));
                model.remove(&(t, id));
            } else {
                assert_eq!(set.insert_new(t, id), model.insert((t, id)), "({t}, {id})");
            }
            if step % 499 == 0 {
                assert!(
                    !set.remove(DAY / 2 + 1, 7),
                    "absent entries are not removed"
                );
                for &m in &moments {
                    let probes = [m, m.saturating_sub(1), m.saturating_add(1_800_000)];
                    for t in probes.into_iter().chain([m.saturating_sub(50 * DAY)]) {
                        let le = model.range(..=(t, u64::MAX)).count();
                        let lt = model.range(..(t, 0)).count();
                        assert_eq!((set.count_le(t), set.count_lt(t)), (le, lt), "at {t}");
                        let from = t.saturating_sub(3_600_000);
                        let want: Vec<_> =
                            model.range((from, 0)..=(t, u64::MAX)).copied().collect();
                        assert_eq!(
                            set.between(from, t).collect::<Vec<_>>(),
                            want,
                            "{from}..={t}"
                        );
                    }
                }
                assert!(set.iter().eq(model.iter().copied()));
                assert!(model.iter().all(|&(t, id)| set.contains(t, id)));
                check(&set);
            }
        }
        // No block spans more than an offset holds.
        assert!(set.blocks.iter().all(|b| b.off(b.last().0).is_some()));
        let built: TimeBlocks<u64> = model.iter().copied().collect();
        assert!(built.iter().eq(model.iter().copied()));
        assert!(built.blocks.iter().all(|b| b.off(b.last().0).is_some()));
        check(&built);
    }
}
