//! In-memory [`FleetTable`] for tests: a map of items, and a switch that makes every call fail
//! (a table outage).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{FleetTable, Member, TableError};

/// (service, task) → heartbeat counter.
type Items = BTreeMap<(String, String), u64>;

#[derive(Default)]
pub struct MemoryTable {
    items: Mutex<Items>,
    down: AtomicBool,
}

impl MemoryTable {
    pub fn new() -> MemoryTable {
        MemoryTable::default()
    }

    /// While `down`, every call fails.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn up(&self) -> Result<std::sync::MutexGuard<'_, Items>, TableError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TableError("table unreachable (test)".into()));
        }
        Ok(self.items.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl FleetTable for MemoryTable {
    async fn ensure(&self) -> Result<(), TableError> {
        self.up().map(|_| ())
    }

    async fn heartbeat(
        &self,
        service: &str,
        task: &str,
        beat: u64,
        _expires: u64,
    ) -> Result<(), TableError> {
        self.up()?.insert((service.into(), task.into()), beat);
        Ok(())
    }

    async fn members(&self, service: &str) -> Result<Vec<Member>, TableError> {
        Ok(self
            .up()?
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|((_, task), beat)| Member {
                task: task.clone(),
                beat: *beat,
            })
            .collect())
    }

    async fn leave(&self, service: &str, task: &str) -> Result<(), TableError> {
        self.up()?.remove(&(service.into(), task.into()));
        Ok(())
    }
}
