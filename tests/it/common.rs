//! Shared fixtures: the bundled county and scratch folders.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datawall::model::County;
use datawall::model::county::default_pack_dir;

/// The bundled Pingluo pack, loaded once per test binary.
pub fn county() -> Arc<County> {
    static COUNTY: OnceLock<Arc<County>> = OnceLock::new();
    COUNTY
        .get_or_init(|| Arc::new(County::load(&default_pack_dir()).expect("bundled pack loads")))
        .clone()
}

/// A fresh, empty scratch folder under the system temp dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("datawall-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
