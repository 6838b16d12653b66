#!/usr/bin/env bash
# make-busybox-rootfs.sh DIR — build a minimal container root filesystem in DIR
# from Debian's static busybox (package busybox-static, installed if missing).
#
# DIR gets:
#   bin/busybox            a copy of the host's static /bin/busybox
#   bin/<applet>           a relative symlink to busybox for EVERY applet, so
#                          /bin/sh, /bin/ps, /bin/head, /bin/id ... all exist
#   sbin/ usr/bin/ usr/sbin/<applet>
#                          the same links at the places `busybox --list-full`
#                          gives (e.g. /usr/bin/env for #! lines)
#   etc/passwd, etc/group  root (0) and nobody/nogroup (65534)
#   proc sys dev run root(0700) tmp(1777)   empty mount points / dirs
#
# Idempotent and safe to call concurrently with the same DIR: a complete,
# up-to-date DIR is left alone; otherwise the tree is built in a temporary
# directory beside DIR and renamed into place under a lock, so nobody ever sees
# a half-built rootfs. An existing DIR that is neither empty nor a rootfs this
# script made is never replaced.
set -euo pipefail

# shellcheck source=scripts/deps.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

# Bump when the layout below changes, so existing trees get rebuilt.
ROOTFS_LAYOUT_VERSION=1
STAMP=etc/berth-busybox-rootfs

usage() {
    echo "usage: ${0##*/} DIR" >&2
    exit 2
}

[[ $# -eq 1 && -n $1 ]] || usage
case $1 in -h | --help) usage ;; esac

need_debian_packages busybox-static
need_commands flock:util-linux

BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found although busybox-static is installed"
# The dynamic `busybox` package also ships /bin/busybox; ours must be static.
owner=$(dpkg-query -S "$BUSYBOX" 2>/dev/null | cut -d: -f1 || true)
[[ $owner == busybox-static ]] ||
    die "$BUSYBOX belongs to '${owner:-no package}', not busybox-static: run 'apt-get install busybox-static'"

mkdir -p -- "$1"
dir=$(cd -- "$1" && pwd -P)
[[ $dir != / ]] || die "refusing to build a rootfs in /"
parent=$(dirname -- "$dir")
name=$(basename -- "$dir")

busybox_sum=$(sha256sum "$BUSYBOX" | cut -d' ' -f1)
stamp_text="layout=$ROOTFS_LAYOUT_VERSION busybox-sha256=$busybox_sum"

# up_to_date D — D is a complete rootfs of this layout from this busybox.
up_to_date() {
    local d=$1 f
    [[ -f $d/$STAMP && $(<"$d/$STAMP") == "$stamp_text" ]] || return 1
    cmp -s "$BUSYBOX" "$d/bin/busybox" || return 1
    for f in sh ps cat hostname id sleep true dd head env; do
        [[ -L $d/bin/$f ]] || return 1
    done
    [[ -f $d/etc/passwd && -f $d/etc/group ]]
}

up_to_date "$dir" && exit 0

# Serialise builders of rootfs trees in the same parent directory.
exec 9<"$parent"
flock 9
up_to_date "$dir" && exit 0 # somebody else built it while we waited

if [[ -n $(ls -A -- "$dir") && ! -f $dir/$STAMP ]]; then
    die "$dir is not empty and was not made by this script; refusing to replace it"
fi

tmp=$(mktemp -d -- "$parent/.$name.tmp.XXXXXX")
old=""
cleanup() {
    [[ -z $tmp ]] || rm -rf -- "$tmp"
    [[ -z $old ]] || rm -rf -- "$old"
}
trap cleanup EXIT

chmod 0755 "$tmp"
install -d -m 0755 "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run}
install -d -m 0700 "$tmp/root"
install -d -m 1777 "$tmp/tmp"
install -m 0755 "$BUSYBOX" "$tmp/bin/busybox"

# Every applet in /bin ...
while IFS= read -r applet; do
    case $applet in busybox | linuxrc | */* | "") continue ;; esac
    ln -s busybox "$tmp/bin/$applet"
done < <("$BUSYBOX" --list)

# ... and at its usual place too (sbin/ifconfig, usr/bin/env, ...).
while IFS= read -r path; do
    case $path in
        sbin/* | usr/bin/* | usr/sbin/*) ;;
        *) continue ;; # bin/ is done; skip top-level linuxrc
    esac
    case $path in
        sbin/*) target=../bin/busybox ;;
        *) target=../../bin/busybox ;;
    esac
    [[ -e $tmp/$path || -L $tmp/$path ]] || ln -s "$target" "$tmp/$path"
done < <("$BUSYBOX" --list-full)

cat >"$tmp/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$tmp/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
chmod 0644 "$tmp/etc/passwd" "$tmp/etc/group"
printf '%s\n' "$stamp_text" >"$tmp/$STAMP"

# Swap the new tree in. `mv` of a directory onto an existing one isn't
# possible, so move the old one aside first (we hold the lock).
if [[ -e $dir ]]; then
    old=$(mktemp -d -- "$parent/.$name.old.XXXXXX")
    mv -T -- "$dir" "$old"
fi
mv -T -- "$tmp" "$dir"
tmp=""
