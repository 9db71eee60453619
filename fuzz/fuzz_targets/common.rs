//! Shared by the fuzz targets that apply events: the bundled county, loaded once.

use std::sync::{Arc, OnceLock};

use datawall::model::County;

pub fn county() -> Arc<County> {
    static COUNTY: OnceLock<Arc<County>> = OnceLock::new();
    COUNTY
        .get_or_init(|| {
            Arc::new(
                County::load(&datawall::model::county::default_pack_dir())
                    .expect("the bundled pack loads"),
            )
        })
        .clone()
}
