//! Client of the OCI distribution API (registry v2): manifests and blobs pulled and pushed,
//! anonymous, bearer-token and basic auth, plain HTTP only for loopback and insecure
//! registries, every digest verified, credentials sent only to the registry's own host.
//!
//! It is synchronous and streaming: [`RegistryClient::get_blob`] returns a [`BlobReader`]
//! that verifies the digest as the bytes pass, so a caller can decompress and untar while
//! downloading, on as many threads as it likes with one shared client.

mod auth;
mod blob;
mod client;
mod endpoint;
mod error;
mod exchange;

pub use auth::Credentials;
pub use blob::BlobReader;
pub use client::{ClientOptions, ManifestHead, ManifestResponse, RegistryClient};
pub use endpoint::Repository;
pub use error::RegistryError;
