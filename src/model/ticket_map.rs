//! The live tickets by id, one pointer a slot: the id is read from the ticket the slot points
//! at, so a table of a million tickets (2²¹ slots) takes 8 + 1 bytes a slot where a map from id
//! to ticket takes 16 + 1 (about 19 MB against 36).

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::protocol::TicketId;
use crate::protocol::entities::Ticket;

/// Tickets by id. Iteration order is the table's, as a hash map's is.
#[derive(Clone, Default)]
pub struct TicketMap {
    table: HashTable<Arc<Ticket>>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for TicketMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.table.iter().map(|t| (t.id, t)))
            .finish()
    }
}

impl PartialEq for TicketMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.values().all(|t| {
                other
                    .get(&t.id)
                    .is_some_and(|o| Arc::ptr_eq(t, o) || t == o)
            })
    }
}

impl TicketMap {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            table: HashTable::with_capacity(n),
            hasher: Default::default(),
        }
    }

    fn hash(&self, id: TicketId) -> u64 {
        self.hasher.hash_one(id)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get(&self, id: &TicketId) -> Option<&Arc<Ticket>> {
        self.table.find(self.hash(*id), |t| t.id == *id)
    }

    /// The ticket's slot, to change it (`Arc::make_mut`). Its id must stay as it is.
    pub fn get_mut(&mut self, id: &TicketId) -> Option<&mut Arc<Ticket>> {
        let hash = self.hash(*id);
        self.table.find_mut(hash, |t| t.id == *id)
    }

    pub fn contains_key(&self, id: &TicketId) -> bool {
        self.get(id).is_some()
    }

    /// Put `ticket` under its id; the ticket it replaces, if any.
    pub fn insert(&mut self, ticket: Arc<Ticket>) -> Option<Arc<Ticket>> {
        let id = ticket.id;
        let hash = self.hash(id);
        let hasher = &self.hasher;
        match self
            .table
            .entry(hash, |t| t.id == id, |t| hasher.hash_one(t.id))
        {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                Some(std::mem::replace(o.get_mut(), ticket))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(ticket);
                None
            }
        }
    }

    pub fn remove(&mut self, id: &TicketId) -> Option<Arc<Ticket>> {
        let hash = self.hash(*id);
        match self.table.find_entry(hash, |t| t.id == *id) {
            Ok(o) => Some(o.remove().0),
            Err(_) => None,
        }
    }

    pub fn reserve(&mut self, additional: usize) {
        let hasher = &self.hasher;
        self.table.reserve(additional, |t| hasher.hash_one(t.id));
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &Arc<Ticket>> + '_ {
        self.table.iter()
    }

    /// Every slot, to change the tickets in place. Their ids must stay as they are.
    pub fn values_mut(&mut self) -> impl ExactSizeIterator<Item = &mut Arc<Ticket>> + '_ {
        self.table.iter_mut()
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = TicketId> + '_ {
        self.table.iter().map(|t| t.id)
    }

    /// Keep the tickets `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Arc<Ticket>) -> bool) {
        self.table.retain(|t| keep(t));
    }

    pub fn into_values(self) -> impl ExactSizeIterator<Item = Arc<Ticket>> {
        self.table.into_iter()
    }
}

/// The ticket under `id`; panics if there is none, as a map's index does.
impl std::ops::Index<&TicketId> for TicketMap {
    type Output = Arc<Ticket>;

    fn index(&self, id: &TicketId) -> &Arc<Ticket> {
        self.get(id).unwrap_or_else(|| panic!("no ticket {id}"))
    }
}

impl FromIterator<Arc<Ticket>> for TicketMap {
    fn from_iter<I: IntoIterator<Item = Arc<Ticket>>>(iter: I) -> Self {
        let mut m = Self::default();
        m.extend(iter);
        m
    }
}

impl Extend<Arc<Ticket>> for TicketMap {
    fn extend<I: IntoIterator<Item = Arc<Ticket>>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        self.reserve(iter.size_hint().0);
        for t in iter {
            self.insert(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entities::TicketStatus;
    use crate::protocol::{LonLat, Priority, TicketCategory, TicketSource};

    fn ticket(id: TicketId, summary: &str) -> Arc<Ticket> {
        Arc::new(Ticket {
            id,
            category: TicketCategory::Repair,
            source: TicketSource::MiniProgram,
            priority: Priority::Low,
            pos: LonLat {
                lon: 106.5,
                lat: 38.6,
            },
            grid_id: None,
            status: TicketStatus::Opened,
            opened_at_ms: 0,
            sla_deadline_ms: 1,
            assignee: None,
            volunteer_id: None,
            satisfaction: None,
            summary: summary.into(),
            responsible_party: None,
            steps: Default::default(),
            supervised_at_ms: Default::default(),
        })
    }

    #[test]
    fn it_finds_replaces_and_removes_tickets_by_the_id_they_carry() {
        let mut m: TicketMap = (0..10_000).map(|i| ticket(i * 7919, "a")).collect();
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.get(&(42 * 7919)).map(|t| t.id), Some(42 * 7919));
        assert!(m.get(&1).is_none());
        let old = m.insert(ticket(42 * 7919, "b")).expect("it was there");
        assert_eq!(&*old.summary, "a");
        assert_eq!(&*m.get(&(42 * 7919)).unwrap().summary, "b");
        assert_eq!(m.len(), 10_000);
        assert!(m.remove(&(42 * 7919)).is_some());
        assert!(m.remove(&(42 * 7919)).is_none());
        assert!(!m.contains_key(&(42 * 7919)));
        assert_eq!(m.len(), 9_999);
        Arc::make_mut(m.get_mut(&0).unwrap()).sla_deadline_ms = 5;
        assert_eq!(m.get(&0).unwrap().sla_deadline_ms, 5);
        m.retain(|t| t.id % 2 == 0);
        assert!(m.keys().all(|id| id % 2 == 0));
        assert_eq!(m.values().count(), m.len());
        let mut ids: Vec<_> = m.clone().into_values().map(|t| t.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), m.len());
    }
}
