#!/usr/bin/env bash
# Installs nvr-edge as a systemd service on Debian 12 / Raspberry Pi OS bookworm (64-bit),
# from this checkout. Run as root (as a user with sudo it asks sudo itself; on a Debian
# without sudo, run it from a root shell: `su -`, then ./scripts/install.sh):
#
#   sudo ./scripts/install.sh            # install or upgrade; the service is enabled, not started
#   sudo ./scripts/install.sh --start    # ... and start it (restart it if this run changed it)
#
# What it sets up, each step only when it is not already so (a second run changes
# nothing and says "unchanged" for every step):
#   - Debian packages needed at run time: python3, python3-venv, ca-certificates. FFmpeg,
#     OpenCV and OpenBLAS come inside the PyAV, OpenCV and NumPy wheels: no system ffmpeg.
#   - the system user and group nvr-edge (no login shell, no home directory; its state
#     directory /var/lib/nvr-edge is created by systemd, StateDirectory=).
#   - /opt/nvr-edge/venv with nvr-edge and its dependencies, reinstalled when the
#     checkout's sources differ from the ones installed; /usr/local/bin/nvr-edge links to it.
#   - /etc/nvr-edge (root:nvr-edge 0750) with edge.yaml copied from config/edge.example.yaml
#     only when absent (an edited config is never touched), and mqtt-password created
#     empty, root:nvr-edge 0640 (readable by the service, writable by root only).
#   - /etc/systemd/system/nvr-edge.service, enabled. Started only with --start, and only
#     when systemd runs (not in a container or chroot).
#
# --root DIR installs into DIR as a staging root instead of / (tests, image builds): no
# apt-get, the user is added to DIR/etc/passwd when that file exists, ownership uses
# DIR's ids, the unit is enabled with `systemctl --root`, nothing is started.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ARGS=("$@")
ROOT=""
START=0
PYTHON="${PYTHON:-/usr/bin/python3}"
SERVICE_USER=nvr-edge
UNIT=nvr-edge.service
APT_PACKAGES=(python3 python3-venv ca-certificates)

usage() {
  echo "usage: $0 [--start] [--root DIR]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --start) START=1 ;;
    --root)
      [ $# -ge 2 ] || usage
      ROOT="$(cd "$2" && pwd)"
      shift
      ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    exec sudo "$0" "${ARGS[@]}" # as setup.sh does: sudo only where it is needed and present
  fi
  echo "install: run as root: sudo is not installed, so from a root shell (su -), then $0" >&2
  exit 1
fi

OPT="$ROOT/opt/nvr-edge"
VENV="$OPT/venv"
ETC="$ROOT/etc/nvr-edge"
UNIT_DIR="$ROOT/etc/systemd/system"
CHANGED=0
CONFIG_CREATED=0

report() { # report changed|unchanged|skipped WHAT
  [ "$1" = changed ] && CHANGED=1
  printf 'install: %-9s %s\n' "$1" "$2"
}

# -- Debian packages -----------------------------------------------------------------
if [ -n "$ROOT" ]; then
  report skipped "Debian packages (--root)"
else
  arch="$(dpkg --print-architecture)"
  case "$arch" in
    amd64 | arm64) ;;
    *)
      echo "install: $arch is not supported: PyAV and OpenCV publish wheels for amd64 and arm64" \
        "(on a Raspberry Pi use the 64-bit Raspberry Pi OS)" >&2
      exit 1
      ;;
  esac
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    report changed "Debian packages: installed ${missing[*]}"
  else
    report unchanged "Debian packages (${APT_PACKAGES[*]})"
  fi
fi

# -- system user ---------------------------------------------------------------------
if [ -n "$ROOT" ] && [ ! -f "$ROOT/etc/passwd" ]; then
  report skipped "user $SERVICE_USER ($ROOT/etc/passwd does not exist)"
elif grep -q "^$SERVICE_USER:" "$ROOT/etc/passwd"; then
  report unchanged "user $SERVICE_USER"
else
  useradd ${ROOT:+--root "$ROOT"} --system --user-group --no-create-home --home-dir /var/lib/nvr-edge \
    --shell /usr/sbin/nologin --comment "nvr-edge CCTV daemon" "$SERVICE_USER"
  report changed "user $SERVICE_USER (system user, no login)"
fi
GID="$(awk -F: -v name="$SERVICE_USER" '$1 == name { print $3 }' "$ROOT/etc/group" 2>/dev/null || true)"
GID="${GID:-0}" # a staging root without the user: root's group

# -- files: each compared before it is written -----------------------------------------
ensure_dir() { # ensure_dir PATH MODE GID
  if [ ! -d "$1" ]; then
    install -d -m "$2" -o 0 -g "$3" "$1"
    report changed "$1/ ($2)"
    return
  fi
  if [ "$(stat -c '%a %u %g' "$1")" != "${2#0} 0 $3" ]; then
    chmod "$2" "$1" && chown "0:$3" "$1"
    report changed "$1/ (owner and mode set to root:$3 $2)"
  else
    report unchanged "$1/"
  fi
}

ensure_dir "$OPT" 0755 0
ensure_dir "$ETC" 0750 "$GID"

if [ -e "$ETC/edge.yaml" ]; then
  report unchanged "$ETC/edge.yaml (kept as it is)"
else
  install -m 0640 -o 0 -g "$GID" "$SRC/config/edge.example.yaml" "$ETC/edge.yaml"
  CONFIG_CREATED=1
  report changed "$ETC/edge.yaml (from config/edge.example.yaml: edit it)"
fi

if [ -e "$ETC/mqtt-password" ]; then
  report unchanged "$ETC/mqtt-password (kept as it is)"
else
  install -m 0640 -o 0 -g "$GID" /dev/null "$ETC/mqtt-password"
  report changed "$ETC/mqtt-password (empty, root:$SERVICE_USER 0640)"
fi

# -- virtual environment ---------------------------------------------------------------
# Reinstalled when the sources differ from the ones it was built from (a stamp of
# their hashes), so an upgrade is `git pull && sudo ./scripts/install.sh`.
source_stamp() {
  (cd "$SRC" && find edge pyproject.toml README.md -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
stamp="$(source_stamp)"
if [ -x "$VENV/bin/nvr-edge" ] && [ "$(cat "$VENV/.nvr-edge-source" 2>/dev/null)" = "$stamp" ]; then
  report unchanged "$VENV"
else
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  # Build from a copy: pip must not leave build/ or *.egg-info behind in the checkout.
  cp -r "$SRC/edge" "$SRC/pyproject.toml" "$SRC/README.md" "$build/"
  pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  "${pip[@]}" "$build"                                # dependencies as needed
  "${pip[@]}" --no-deps --force-reinstall "$build"    # this checkout, even at an unchanged version
  echo "$stamp" >"$VENV/.nvr-edge-source"
  report changed "$VENV (nvr-edge $("$VENV/bin/nvr-edge" --version | cut -d' ' -f2) and dependencies)"
fi

# -- the command on the PATH -----------------------------------------------------------------
# README's `sudo nvr-edge health` and friends: /usr/local/bin is on root's and sudo's PATH.
LINK="$ROOT/usr/local/bin/nvr-edge"
TARGET=/opt/nvr-edge/venv/bin/nvr-edge
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "$TARGET" ]; then
  report unchanged "$LINK -> $TARGET"
elif [ -e "$LINK" ] && [ ! -L "$LINK" ]; then
  report skipped "$LINK (a file that is not ours is there; run $TARGET)"
else
  install -d -m 0755 "$ROOT/usr/local/bin"
  ln -sfn "$TARGET" "$LINK"
  report changed "$LINK -> $TARGET"
fi

# -- systemd unit --------------------------------------------------------------------------
SYSTEMD_RUNNING=0
[ -z "$ROOT" ] && [ -d /run/systemd/system ] && SYSTEMD_RUNNING=1
unit_changed=0
if cmp -s "$SRC/systemd/$UNIT" "$UNIT_DIR/$UNIT"; then
  report unchanged "$UNIT_DIR/$UNIT"
else
  install -D -m 0644 -o 0 -g 0 "$SRC/systemd/$UNIT" "$UNIT_DIR/$UNIT"
  unit_changed=1
  report changed "$UNIT_DIR/$UNIT"
  [ "$SYSTEMD_RUNNING" = 1 ] && systemctl daemon-reload
fi
if ! command -v systemctl >/dev/null; then
  report skipped "enable $UNIT (no systemctl)"
elif [ "$(systemctl ${ROOT:+--root="$ROOT"} is-enabled "$UNIT" 2>/dev/null || true)" = enabled ]; then
  report unchanged "$UNIT enabled"
else
  out="$(systemctl ${ROOT:+--root="$ROOT"} enable "$UNIT" 2>&1)" || {
    echo "$out" >&2
    exit 1
  }
  report changed "$UNIT enabled"
fi

# -- start -----------------------------------------------------------------------------
if [ "$START" = 1 ]; then
  if [ "$SYSTEMD_RUNNING" = 0 ]; then
    report skipped "start (systemd is not running here${ROOT:+, or --root})"
  elif ! systemctl is-active -q "$UNIT"; then
    systemctl start "$UNIT"
    report changed "$UNIT started"
  elif [ "$CHANGED" = 1 ] || [ "$unit_changed" = 1 ]; then
    systemctl restart "$UNIT"
    report changed "$UNIT restarted (this run changed it)"
  else
    report unchanged "$UNIT running"
  fi
fi

if [ "$CHANGED" = 0 ]; then
  echo "install: nothing changed"
  exit 0
fi
echo "install: done"
if [ "$CONFIG_CREATED" = 1 ]; then
  echo "next: edit $ETC/edge.yaml (sudoedit), then check it and try the cameras:"
  echo "  sudo nvr-edge check-config --config $ETC/edge.yaml"
  echo "  sudo nvr-edge probe --config $ETC/edge.yaml"
fi
if [ "$START" = 0 ] || [ "$SYSTEMD_RUNNING" = 0 ]; then
  echo "start it with: sudo systemctl start $UNIT"
fi
echo "is it working? sudo nvr-edge health; its log: journalctl -u $UNIT -f"
