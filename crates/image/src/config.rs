//! The image config (Docker's `application/vnd.docker.container.image.v1+json`, OCI's
//! `application/vnd.oci.image.config.v1+json`): what a container of the image runs and the
//! diff ids of its layers. Field names are Docker's; fields not modelled are kept in
//! `extra` maps, so a config berth edits and writes back (commit, build) loses nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::manifest::{from_json, null_as_default, FormatError, Manifest};

/// An image config.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// RFC 3339, as written (kept as text so it round-trips exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// Fields not modelled above (`container_config`, `docker_version`, `os.version`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a container of the image runs, with Docker's field names.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// `None` (not set) differs from `Some([])` (set to nothing): `ENTRYPOINT []` clears.
    /// Like Docker, a single string is read as a one-element list.
    #[serde(
        default,
        deserialize_with = "str_slice",
        skip_serializing_if = "Option::is_none"
    )]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "str_slice",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// `"80/tcp"`, ...: JSON's `{"80/tcp": {}}`.
    #[serde(default, with = "key_set", skip_serializing_if = "BTreeSet::is_empty")]
    pub exposed_ports: BTreeSet<String>,
    /// Paths: JSON's `{"/data": {}}`.
    #[serde(default, with = "key_set", skip_serializing_if = "BTreeSet::is_empty")]
    pub volumes: BTreeSet<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    #[serde(
        default,
        deserialize_with = "str_slice",
        skip_serializing_if = "Option::is_none"
    )]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    /// Fields not modelled above (`Hostname`, `Tty`, `Image`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Docker's health check. Durations are nanoseconds (Go's `time.Duration`); 0 means
/// "inherit / default".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`; empty: inherit.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The layers' uncompressed digests, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One build step; steps with `empty_layer` made no layer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    /// Parses a config blob, naming the field at fault on error.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, FormatError> {
        from_json("image config", bytes)
    }

    /// Checks the config fits `manifest`: rootfs type `layers` and one diff id per layer.
    pub fn validate(&self, manifest: &Manifest) -> Result<(), FormatError> {
        if self.rootfs.kind != "layers" {
            return Err(FormatError::RootfsType(self.rootfs.kind.clone()));
        }
        if self.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(FormatError::LayerCount {
                diff_ids: self.rootfs.diff_ids.len(),
                layers: manifest.layers.len(),
            });
        }
        Ok(())
    }
}

/// The chain ids of a stack of layers (OCI): the first is the first diff id, each next one
/// `sha256(previous chain id + " " + diff id)`. A layer's chain id names it together with
/// everything below it, so it names the unpacked layer in the store.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Docker's `StrSlice`: `null`, a list of strings, or one string (a list of one).
fn str_slice<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a string or a list of strings")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

/// A set of strings as Docker writes it: a JSON object whose values are all `{}`.
mod key_set {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::de::IgnoredAny;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(serde::Serialize)]
    struct Empty {}

    pub fn serialize<S: Serializer>(set: &BTreeSet<String>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(set.iter().map(|k| (k, Empty {})))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<String>, D::Error> {
        let map = Option::<BTreeMap<String, IgnoredAny>>::deserialize(d)?;
        Ok(map.unwrap_or_default().into_keys().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse_any, Parsed};

    /// Docker Hub busybox's config, as `docker build` wrote it (legacy builder).
    const BUSYBOX_CONFIG: &str = r##"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"Image":"sha256:9d9b6b3a6aae5d3c6a0b1e1a4b0d9e0c73e7f2d5b1c1e5d7cbd5e8a3f0f1f2e3","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"container":"f1e3b5c2d8a7","container_config":{"Hostname":"f1e3b5c2d8a7","Cmd":["/bin/sh","-c","#(nop) ","CMD [\"sh\"]"]},"created":"2023-07-18T23:19:33.655005962Z","docker_version":"20.10.23","history":[{"created":"2023-07-18T23:19:33.538571854Z","created_by":"/bin/sh -c #(nop) ADD file:7e9002edaafd4e4579b65c8f0aaabde1aeb7fd3f8d95579f7fd3443cef785fd1 in / "},{"created":"2023-07-18T23:19:33.655005962Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:3d24ee258efc3bfe4066a1a9fb83febf6dc0b1548dfe896161533668281c9f4f"]}}"##;

    /// Every modelled field set, as BuildKit writes an nginx-like image's config.
    const FULL_CONFIG: &str = r#"{"architecture":"arm64","os":"linux","variant":"v8","created":"2024-10-02T17:55:35Z","author":"NGINX Docker Maintainers","config":{"User":"101:101","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","NGINX_VERSION=1.27.2"],"Cmd":["nginx","-g","daemon off;"],"Entrypoint":["/docker-entrypoint.sh"],"WorkingDir":"/srv","ExposedPorts":{"443/tcp":{},"80/tcp":{}},"Volumes":{"/var/cache/nginx":{}},"Labels":{"maintainer":"NGINX Docker Maintainers"},"StopSignal":"SIGQUIT","Healthcheck":{"Test":["CMD-SHELL","curl -f http://localhost/ || exit 1"],"Interval":30000000000,"Timeout":5000000000,"StartPeriod":10000000000,"Retries":3},"OnBuild":["RUN echo child"],"Shell":["/bin/bash","-c"],"ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"]},"history":[{"created":"2024-10-02T17:55:35Z","created_by":"ADD rootfs.tar.xz / # buildkit","comment":"buildkit.dockerfile.v0"},{"created":"2024-10-02T17:55:35Z","created_by":"EXPOSE map[80/tcp:{}]","author":"NGINX Docker Maintainers","comment":"buildkit.dockerfile.v0","empty_layer":true},{"created":"2024-10-02T17:55:36Z","created_by":"RUN /bin/sh -c set -x # buildkit","comment":"buildkit.dockerfile.v0"}]}"#;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const D2: &str = "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
    const D3: &str = "sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";

    fn digest(s: &str) -> Digest {
        s.parse().unwrap()
    }

    fn manifest_with_layers(n: usize) -> Manifest {
        let layer = format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D1}","size":1}}"#
        );
        let layers = vec![layer; n].join(",");
        let text = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D2}","size":1}},"layers":[{layers}]}}"#
        );
        match parse_any(None, text).unwrap() {
            Parsed::Manifest(doc) => doc.into_value(),
            other => panic!("{other:?}"),
        }
    }

    fn error(text: &str) -> String {
        ImageConfig::parse(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn busybox_config_reads_as_docker_means_it() {
        let c = ImageConfig::parse(BUSYBOX_CONFIG.as_bytes()).unwrap();
        assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", "amd64"));
        assert_eq!(c.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(c.config.entrypoint, None);
        assert!(c.config.volumes.is_empty() && c.config.labels.is_empty());
        assert_eq!(c.config.env.len(), 1);
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert_eq!(c.history.len(), 2);
        assert!(!c.history[0].empty_layer && c.history[1].empty_layer);
        assert_eq!(c.config.extra["Hostname"], "");
        assert!(c.extra.contains_key("container_config"));
        c.validate(&manifest_with_layers(1)).unwrap();
        // Written back, nothing we don't model is lost.
        let again = ImageConfig::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.extra["docker_version"], "20.10.23");
    }

    #[test]
    fn every_field_round_trips_exactly() {
        let c = ImageConfig::parse(FULL_CONFIG.as_bytes()).unwrap();
        let cc = &c.config;
        assert_eq!(cc.user, "101:101");
        assert_eq!(cc.working_dir, "/srv");
        assert_eq!(
            cc.exposed_ports.iter().collect::<Vec<_>>(),
            ["443/tcp", "80/tcp"]
        );
        assert!(cc.volumes.contains("/var/cache/nginx"));
        assert_eq!(cc.stop_signal, "SIGQUIT");
        let hc = cc.healthcheck.as_ref().unwrap();
        assert_eq!(
            (hc.interval, hc.timeout, hc.start_period, hc.retries),
            (30_000_000_000, 5_000_000_000, 10_000_000_000, 3)
        );
        assert_eq!(hc.test[0], "CMD-SHELL");
        assert_eq!(
            cc.shell.as_deref(),
            Some(&["/bin/bash".to_string(), "-c".to_string()][..])
        );
        assert!(cc.args_escaped);
        assert_eq!(
            c.history[1].author.as_deref(),
            Some("NGINX Docker Maintainers")
        );
        let original: Value = serde_json::from_str(FULL_CONFIG).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), original);
    }

    #[test]
    fn a_single_string_command_is_a_list_of_one() {
        let c = ImageConfig::parse(br#"{"os":"linux","config":{"Entrypoint":"/init","Cmd":[]},"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        assert_eq!(c.config.entrypoint, Some(vec!["/init".to_string()]));
        assert_eq!(c.config.cmd, Some(vec![]));
    }

    #[test]
    fn malformed_configs_name_the_field() {
        let bad_diff_id = FULL_CONFIG.replace(&D2[..20], "sha256:NOT-HEX");
        let negative = FULL_CONFIG.replace("\"Retries\":3", "\"Retries\":-3");
        let cmd_number = BUSYBOX_CONFIG.replace("\"Cmd\":[\"sh\"]", "\"Cmd\":7");
        let ports_list = FULL_CONFIG.replace(r#"{"443/tcp":{},"80/tcp":{}}"#, r#"["80/tcp"]"#);
        for (text, want) in [
            (
                bad_diff_id.as_str(),
                "invalid image config: rootfs.diff_ids[1]: invalid digest",
            ),
            (
                negative.as_str(),
                "config.Healthcheck.Retries: invalid value: integer `-3`",
            ),
            (
                cmd_number.as_str(),
                "config.Cmd: a string or a list of strings",
            ),
            (
                ports_list.as_str(),
                "config.ExposedPorts: invalid type: sequence",
            ),
            (r#"{"os":"linux"}"#, "missing field `rootfs`"),
            ("not json", "invalid image config: expected ident"),
        ] {
            let e = error(text);
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn validate_matches_diff_ids_to_layers() {
        let c = ImageConfig::parse(FULL_CONFIG.as_bytes()).unwrap();
        c.validate(&manifest_with_layers(2)).unwrap();
        assert_eq!(
            c.validate(&manifest_with_layers(3))
                .unwrap_err()
                .to_string(),
            "image config lists 2 layer diff_ids but the manifest has 3 layers"
        );
        let mut other = c.clone();
        other.rootfs.kind = "layered".to_string();
        let e = other.validate(&manifest_with_layers(2)).unwrap_err();
        assert!(e.to_string().contains("\"layered\""), "{e}");
    }

    #[test]
    fn chain_ids_match_values_computed_by_hand() {
        // printf 'sha256:e3b0... sha256:ca97...' | sha256sum, and so on.
        let c2 = "sha256:54310b28337ccdbb5477f2808753d5b0e7c87d84187cee28a330a3e71f6c16fc";
        let c3 = "sha256:6e249d38c8038b0aefaa44893301e44ac47d767db1cb1a6cf4f2993a680add77";
        let ids = chain_ids(&[digest(D1), digest(D2), digest(D3)]);
        assert_eq!(ids, [digest(D1), digest(c2), digest(c3)]);
        assert_eq!(chain_ids(&[digest(D2)]), [digest(D2)]);
        assert!(chain_ids(&[]).is_empty());
    }
}
