#!/usr/bin/env bash
# Proves nvr-edge on arm64 (the Raspberry Pi's architecture) on an x86 machine, as root:
#
#   ./scripts/check-arm64.sh [--root DIR] [--seconds N] [--fresh]
#
#   1. an arm64 Debian 12 root made with debootstrap, run through qemu-user-static
#      (binfmt_misc is mounted and the qemu-aarch64 handler enabled if they are not);
#   2. the project installed into a venv inside it from pyproject.toml, with pip asked for
#      binary wheels only (the aarch64 wheels from PyPI: nothing is compiled), and a table
#      of which wheel came from where;
#   3. inside the root: `nvr-edge --version`, `check-config` on a valid config, `probe` and a
#      run of N seconds (default 60) against the camera simulator and a Mosquitto started on
#      this host with two cameras; events must reach the broker (scripts/check_arm64_run.py).
#
# Not part of the test suite. Emulated speed is meaningless: this checks that it works,
# not how fast. The root lives outside the checkout (default /var/tmp/nvr-edge-arm64/root)
# and is reused by the next run (--fresh makes it anew). The Debian mirror is the host's
# (from its apt sources), else debootstrap's default. Needs the dev setup (scripts/setup.sh)
# for the host side: mosquitto, the GStreamer simulator, .venv.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
BASE="/var/tmp/nvr-edge-arm64"
ROOT="$BASE/root"
SECONDS_RUN=60
FRESH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$2"; BASE="$(dirname "$ROOT")"; shift ;;
    --seconds) SECONDS_RUN="$2"; shift ;;
    --fresh) FRESH=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--root DIR] [--seconds N] [--fresh]" >&2; exit 2 ;;
  esac
  shift
done
case "$ROOT" in "$SRC"/*) echo "check-arm64: the root must live outside the checkout" >&2; exit 2 ;; esac
if [ "$(id -u)" -ne 0 ]; then
  echo "check-arm64: run as root (debootstrap, chroot and mounts need it)" >&2
  exit 1
fi

T0=$(date +%s)
step() { printf '\ncheck-arm64: [%4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }

# -- 1. tools, binfmt, the root ----------------------------------------------------------
step "host tools (debootstrap, qemu-user-static, binfmt-support)"
missing=()
for pkg in debootstrap qemu-user-static binfmt-support; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
  echo "check-arm64: warning: qemu-aarch64 is registered without the F flag: the chroot needs qemu inside it" >&2

MOUNTS=()
cleanup() {
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { # bind SOURCE TARGET-inside-root
  mkdir -p "$ROOT$2"
  mountpoint -q "$ROOT$2" || { mount "${@:3}" "$1" "$ROOT$2"; MOUNTS+=("$ROOT$2"); }
}

if [ "$FRESH" = 1 ] && [ -d "$ROOT" ]; then
  step "removing the old root ($ROOT)"
  for m in dev/pts dev proc sys; do umount -l "$ROOT/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$ROOT"
fi
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  mirror="$(sed -n 's/^URIs: *\(http[^ ]*\/debian\) *$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
  [ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
  step "debootstrap arm64 Debian 12 into $ROOT${mirror:+ (mirror of the host)}"
  mkdir -p "$BASE"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOT" ${mirror:+"$mirror"} >"$BASE/debootstrap.log" 2>&1 || {
    tail -20 "$BASE/debootstrap.log" >&2
    exit 1
  }
else
  step "reusing the root in $ROOT (--fresh to make it anew)"
fi
bind /proc /proc -t proc
bind /sys /sys -t sysfs
bind /dev /dev --bind
bind /dev/pts /dev/pts --bind
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
step "inside: $(in_root uname -m), $(in_root python3 --version), Debian $(cat "$ROOT/etc/debian_version")"
[ "$(in_root uname -m)" = aarch64 ] || { echo "check-arm64: the root does not run as aarch64" >&2; exit 1; }

# -- 2. the project, from pyproject.toml, wheels only ---------------------------------------
step "installing nvr-edge into /opt/nvr-edge/venv inside the root (binary wheels only)"
rm -rf "$ROOT/opt/src" && mkdir -p "$ROOT/opt/src"
cp -r "$SRC/edge" "$SRC/pyproject.toml" "$SRC/README.md" "$ROOT/opt/src/"
find "$ROOT/opt/src" -name __pycache__ -prune -exec rm -rf {} +
# pip inside trusts what pip here trusts (a proxy's CA, where there is one): the host's bundle.
bundle=""
for candidate in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$candidate" ] && [ -f "$candidate" ]; then bundle="$candidate"; break; fi
done
[ -z "$bundle" ] || cp -L "$bundle" "$ROOT/etc/ssl/certs/host-bundle.crt"
pip_in_root() {
  in_root ${bundle:+PIP_CERT=/etc/ssl/certs/host-bundle.crt} PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /opt/nvr-edge/venv/bin/python -m pip "$@"
}
in_root python3 -m venv /opt/nvr-edge/venv
pip_in_root install -q --upgrade pip
pip_in_root install -q --only-binary=:all: --report /opt/pip-report.json /opt/src
in_root /opt/nvr-edge/venv/bin/python - <<'EOF'
import json
from urllib.parse import urlsplit
report = json.load(open("/opt/pip-report.json"))
print(f"{'package':<26} {'version':<12} {'from':<14} file")
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    meta, info = item["metadata"], item["download_info"]
    url = info["url"]
    if url.startswith("file:"):
        where, name = "this checkout", "built from pyproject.toml"
    else:
        where, name = urlsplit(url).hostname, url.rsplit("/", 1)[-1]
    print(f"{meta['name']:<26} {meta['version']:<12} {where:<14} {name}")
wheels = [i for i in report["install"] if i["download_info"]["url"].endswith(".whl")]
print(f"{len(wheels)} binary wheels, {len(report['install']) - len(wheels)} built here (the project itself)")
EOF

# -- 3. run it ---------------------------------------------------------------------------
step "version, check-config, probe and a ${SECONDS_RUN} s run against this host's simulator and broker"
"$SRC/.venv/bin/python" "$SRC/scripts/check_arm64_run.py" --root "$ROOT" --seconds "$SECONDS_RUN"
step "done: nvr-edge works on arm64 (emulated)"
