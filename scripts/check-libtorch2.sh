#!/usr/bin/env bash
# Builds and tests alexnet-ts against libtorch 2.x without a GPU: Debian 13 ("trixie") ships libtorch-dev 2.6,
# python3-torch 2.6, python3-torchvision 0.21, python3-onnx and nodejs 20, which need trixie's C library, so they run
# in a trixie root made with debootstrap. The script makes that root (or reuses it), copies this working tree into
# it, runs scripts/setup.sh --test there (the Debian packages, npm ci, the addon against libtorch 2.6, the
# TypeScript build) and then the whole test suite, the parity tests against PyTorch 2.6 included.
#
# Needs: root (debootstrap, chroot, mounts), Debian's registry and npm's. About 4 GB of disk for the root.
# Usage: bash scripts/check-libtorch2.sh [-- ARGS for npm test]
#   TRIXIE_ROOT=DIR   where the root lives (default /var/tmp/alexnet-trixie; kept between runs)
#   MIRROR=URL        the Debian mirror (default http://deb.debian.org/debian)
# Exit status: the test suite's (0 when every test passed), 2 for a usage error, 1 when the setup failed, 128+N
# when stopped by signal N (Ctrl-C: 130). However it ends, nothing stays mounted (see "Cleanup").
set -euo pipefail
self=$(readlink -f "$0")
args=("$@")
cd "$(dirname "$self")/.."
ROOT=${TRIXIE_ROOT:-/var/tmp/alexnet-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
say() { printf '\033[1m[libtorch2]\033[0m %s\n' "$*"; }

test_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; test_args=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "check-libtorch2.sh: unknown option '$1' (expected -- followed by npm test's arguments)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "check-libtorch2.sh: needs root (debootstrap and chroot); run it as root or with sudo" >&2
  exit 2
fi

# The run gets a mount namespace of its own, private (nothing propagates to or from this machine's mounts): what it
# mounts, and what the tests mount inside the root (ip netns's run/netns and its namespaces), is never seen outside
# and goes with the run's last process, even if the script is killed with SIGKILL (which leaves the tests running
# until they end: only a catchable signal lets the cleanup below stop them). Where unshare cannot make one, the run
# mounts in this machine's namespace and relies on the cleanup.
if [ -z "${ALEXNET_LIBTORCH2_NS:-}" ] && unshare --mount --propagation private true 2>/dev/null; then
  ALEXNET_LIBTORCH2_NS=1 exec unshare --mount --propagation private bash "$self" "${args[@]}"
fi

# One run at a time per root: a second would stack its mounts on the first's and unmount them under it.
mkdir -p "$(dirname "$ROOT")"
ROOT=$(realpath -m "$ROOT")
exec 9>"$ROOT.lock"
if ! flock -n 9; then
  echo "check-libtorch2.sh: another run is using $ROOT (lock $ROOT.lock)" >&2
  exit 2
fi

# Cleanup on every exit (the end, an error, Ctrl-C, SIGTERM, SIGHUP): stop what runs in the root (its own process
# group, see inside()), then unmount everything at or under the root, latest first (lazily: a mount still in use is
# detached now and freed when its last user goes): this run's mounts and those made inside it (run/netns), found in
# /proc/self/mountinfo rather than remembered, so none is missed.
child=
mounts_under_root() {
  local _id _parent _dev _fsroot m _rest
  while read -r _id _parent _dev _fsroot m _rest; do
    m=${m//\\040/ } m=${m//\\011/$'\t'} m=${m//\\012/$'\n'} m=${m//\\134/\\}
    if [ "$m" = "$ROOT" ] || [[ $m == "$ROOT"/* ]]; then printf '%s\n' "$m"; fi
  done </proc/self/mountinfo
}
cleanup() {
  if [ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null; then
    for _ in {1..50}; do
      kill -0 -- "-$child" 2>/dev/null || break
      # The group's leader is this script's child: until reaped, it counts as alive.
      if [[ $(ps -o stat= -p "$child" 2>/dev/null) == Z* ]]; then wait "$child" 2>/dev/null; fi
      sleep 0.1
    done
    kill -KILL -- "-$child" 2>/dev/null || true
  fi
  local mounts i
  mapfile -t mounts < <(mounts_under_root)
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  if [ -n "$(mounts_under_root)" ]; then echo "check-libtorch2.sh: still mounted under $ROOT:" "$(mounts_under_root)" >&2; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The trixie root, made once. debootstrap's marker: a finished root has /etc/debian_version and our stamp.
if [ ! -f "$ROOT/.alexnet-root-ready" ]; then
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  fi
  say "making a Debian 13 root in $ROOT (minutes; kept for later runs)"
  cleanup # an earlier debootstrap's proc and sys, if it was stopped (rm -rf must not go into them)
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  debootstrap --variant=minbase --include=ca-certificates trixie "$ROOT" "$MIRROR"
  touch "$ROOT/.alexnet-root-ready"
fi

# 2. Mounts for the chroot (undone by cleanup). First the root onto itself: the chroot's / is then a mount point,
#    which `ip netns exec` needs (it makes / a slave in the namespace it enters; the two-hosts test skips without).
mount_in() { # mount_in TARGET ARGS...
  local target="$ROOT$1"
  shift
  mkdir -p "$target"
  mount "$@" "$target"
}
mount_in "" --bind "$ROOT"
mount_in /proc -t proc proc
mount_in /sys -t sysfs sysfs
mount_in /dev --bind /dev
mount_in /dev/pts --bind /dev/pts
mount_in /dev/shm -t tmpfs tmpfs
mount_in /tmp -t tmpfs -o size=8g tmpfs
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

# 3. This working tree (tracked and untracked files that git does not ignore) into the root; node_modules, build/
#    and dist/ stay from the last run there, so a second run rebuilds only what changed.
dest="$ROOT/opt/alexnet-ts"
mkdir -p "$dest"
say "copying the working tree to $dest"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -C "$dest" -xf -

# 4. Setup and tests inside. DEBIAN_FRONTEND keeps apt quiet; HOME for npm's cache; this machine's proxy settings
#    and its own certificate authorities (a registry reached through an inspecting proxy) go in with them. The
#    command runs in a session of its own, waited for in the background, so that a signal to this script runs its
#    trap at once and cleanup can stop the whole process tree inside (setsid: one process group to signal).
inside() {
  setsid chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive CI="${CI:-}" ALEXNET_REQUIRE_ORACLE="${ALEXNET_REQUIRE_ORACLE:-}" \
    JOBS="${JOBS:-}" ${ALEXNET_CPU_CACHE_MB:+ALEXNET_CPU_CACHE_MB=$ALEXNET_CPU_CACHE_MB} NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    http_proxy="${http_proxy:-}" https_proxy="${https_proxy:-}" no_proxy="${no_proxy:-}" bash -c "$1" &
  child=$!
  local status=0
  wait "$child" || status=$?
  child=
  return "$status"
}
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  inside "update-ca-certificates >/dev/null"
fi
say "setting up inside (Debian 13 packages, npm ci, the addon against libtorch 2.6, TypeScript)"
inside "cd /opt/alexnet-ts && bash scripts/setup.sh --test"
inside "dpkg-query -W -f='\${Package} \${Version}\n' libtorch-dev python3-torch python3-torchvision python3-onnx nodejs"
say "running the test suite against libtorch 2.6"
set +e
inside "cd /opt/alexnet-ts && npm test -- ${test_args[*]:-}"
status=$?
set -e
say "test suite exit status: $status"
exit "$status"
