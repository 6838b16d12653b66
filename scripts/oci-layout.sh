# shellcheck shell=bash
# oci-layout.sh — sourced helpers for writing OCI image layouts by hand (with coreutils and
# jq, not berth's code), shared by registry-fixture.sh and bench-pull.sh.

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
