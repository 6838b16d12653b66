# shellcheck shell=bash
# Helpers for berth's scripts. Source it, don't run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/deps.sh"
#   need_debian_packages busybox-static python3
#
# A fresh Debian 12 machine has none of the packages the scripts use, so every
# script installs what it needs through these functions. They are idempotent:
# packages that are already installed are skipped without touching apt, and
# `apt-get update` runs at most once per invocation (the flag is exported, so
# scripts called from a script that already updated don't update again).

# Root's tools (runc, unshare, ...) live in sbin, which a plain PATH may lack.
case ":$PATH:" in
    *:/usr/sbin:*) ;;
    *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac
export PATH

# die MESSAGE... — print an error to stderr and exit 1.
die() {
    printf '%s: error: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# info MESSAGE... — progress note on stderr (stdout stays for results).
info() {
    printf '==> %s\n' "$*" >&2
}

# debian_package_installed PKG — true when dpkg reports PKG as installed.
debian_package_installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) || return 1
    [[ $status == installed ]]
}

# apt_get ARGS... — apt-get as root, non-interactive, waiting for a dpkg lock
# held by another apt instead of failing at once.
apt_get() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 ||
            die "installing Debian packages needs root (or sudo): run as root, or install them first: $*"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"
}

# need_debian_packages PKG... — install the packages that aren't installed yet.
need_debian_packages() {
    local pkg missing=()
    command -v dpkg-query >/dev/null 2>&1 ||
        die "dpkg-query not found: these scripts expect Debian 12 (bookworm)"
    for pkg in "$@"; do
        debian_package_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]} > 0)) || return 0

    if [[ ${BERTH_APT_UPDATED:-} != 1 ]]; then
        info "apt-get update (to install: ${missing[*]})"
        apt_get update -q || die "apt-get update failed"
        export BERTH_APT_UPDATED=1
    fi
    info "installing Debian packages: ${missing[*]}"
    apt_get install -y -q --no-install-recommends "${missing[@]}" ||
        die "could not install Debian packages: ${missing[*]}"
    for pkg in "${missing[@]}"; do
        debian_package_installed "$pkg" || die "package $pkg is still not installed after apt-get install"
    done
}

# need_commands CMD:PKG... — for each pair, install PKG unless CMD is already
# on PATH (whatever installed it).
need_commands() {
    local pair cmd pkgs=()
    for pair in "$@"; do
        cmd=${pair%%:*}
        command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${pair#*:}")
    done
    ((${#pkgs[@]} == 0)) || need_debian_packages "${pkgs[@]}"
    for pair in "$@"; do
        cmd=${pair%%:*}
        command -v "$cmd" >/dev/null 2>&1 || die "command '$cmd' not found even after installing ${pair#*:}"
    done
}

# need_cargo — cargo must come with the machine (rustup); it can't be installed
# from here. The native libraries the build links are installed here, so every
# script that builds gets them: libseccomp-dev (berth-runtime compiles seccomp
# profiles with libseccomp).
need_cargo() {
    need_debian_packages libseccomp-dev
    if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        export PATH
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: a Rust toolchain (rustup, stable) must be installed and on PATH"
}

# repo_root — absolute path of the repository (the parent of scripts/).
repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
}
