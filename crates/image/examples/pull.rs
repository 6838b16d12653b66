//! `pull ROOT REFERENCE`: pull an image into the image store at ROOT and print its id.
//! Loopback registries are reached over plain HTTP. The berth side of
//! `scripts/bench-pull.sh`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use berth_image::digest::Digest;
use berth_image::images::ImageStore;
use berth_image::manifest::Platform;
use berth_image::reference::Reference;
use berth_image::registry::{ClientOptions, RegistryClient};

fn main() -> ExitCode {
    match run() {
        Ok(image_id) => {
            println!("{image_id}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pull: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<Digest> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, reference] = args.as_slice() else {
        bail!("usage: pull ROOT REFERENCE");
    };
    let reference = Reference::parse_normalized(reference)?;
    let store = ImageStore::open(Path::new(root))?;
    let client = RegistryClient::new(ClientOptions::default());
    store.pull(&client, &reference, &Platform::host(), &|_| {})
}
