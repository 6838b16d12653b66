//! berth-image: the seed's layered images. An image is a manifest, a config and ordered
//! layers, each a tar diff, kept in a content-addressed store; a container's rootfs is the
//! image's layers as read-only overlay lowerdirs under a private read-write upper.

pub mod archive;
pub mod config;
pub mod content;
pub mod digest;
pub mod gc;
pub mod images;
pub mod layer;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
