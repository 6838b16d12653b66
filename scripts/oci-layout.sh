# shellcheck shell=bash
# oci-layout.sh — sourced helpers for writing OCI image layouts by hand (with coreutils and
# jq, not berth's code), shared by registry-fixture.sh and bench-pull.sh.

# Media types, for the scripts that source this.
# shellcheck disable=SC2034
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
OCI_CONFIG=application/vnd.oci.image.config.v1+json
OCI_LAYER_GZIP=application/vnd.oci.image.layer.v1.tar+gzip

sha256_of() {
    sha256sum -- "$1" | cut -d' ' -f1
}

# put_blob LAYOUT FILE — move FILE into LAYOUT's blobs; prints "HEX SIZE".
put_blob() {
    local hex size
    hex=$(sha256_of "$2")
    size=$(stat -c %s -- "$2")
    mkdir -p -- "$1/blobs/sha256"
    mv -f -- "$2" "$1/blobs/sha256/$hex"
    echo "$hex $size"
}

# write_manifest LAYOUT CONFIG_HEX CONFIG_SIZE — the OCI manifest of LAYOUT/.layers (lines
# "DIFFID HEX SIZE" of gzip layers); prints "HEX SIZE" of the manifest blob.
write_manifest() {
    jq -cn --arg cfg "sha256:$2" --argjson cfgsize "$3" --rawfile layers "$1/.layers" \
        --arg mt "$OCI_MANIFEST" --arg cmt "$OCI_CONFIG" --arg lmt "$OCI_LAYER_GZIP" '
        {
          schemaVersion: 2,
          mediaType: $mt,
          config: {mediaType: $cmt, digest: $cfg, size: $cfgsize},
          layers: [$layers | splits("\n") | select(. != "") | split(" ")
                   | {mediaType: $lmt, digest: ("sha256:" + .[1]), size: (.[2] | tonumber)}]
        }' >"$1/manifest.json"
    put_blob "$1" "$1/manifest.json"
}
