//! The route table, one module per area; each exports `routes()`.

pub mod archive;
pub mod containers;
pub mod exec;
pub mod images;
pub mod observe;
pub mod system;
pub mod volumes;

use crate::api::Route;

/// Every route berthd serves.
pub fn all() -> Vec<Route> {
    [
        system::routes(),
        containers::routes(),
        exec::routes(),
        images::routes(),
        archive::routes(),
        volumes::routes(),
        observe::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
