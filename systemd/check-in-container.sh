#!/usr/bin/env bash
# Runs nvr-edge under real systemd, as installed by scripts/install.sh, in a throwaway
# container: this machine's own OS tree (Debian 12) booted by systemd-nspawn through an
# overlay whose writes go to a tmpfs, with a private network. Nothing on the host
# changes: the overlay lives in a mount namespace of its own and goes with the container.
#
#   sudo systemd/check-in-container.sh        # about 2 minutes; needs systemd-container
#
# Checks, each printed as PASS or FAIL: the installer (twice: the second run changes
# nothing), the service starting as Type=notify with the whole sandbox on, `nvr-edge
# health` answering ok with two simulated cameras, the online security score, a daemon
# frozen with SIGSTOP killed by the watchdog and restarted, and a clean stop.
# Needs the dev setup (scripts/setup.sh: mosquitto, the GStreamer camera simulator,
# .venv for the test clips) and PyPI for a wheelhouse the container installs from.

# Commands for the container are single-quoted on purpose: they expand in there; the
# cleanup function is run by the trap.
# shellcheck disable=SC2016,SC2329
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "needs systemd-nspawn: apt-get install systemd-container" >&2; exit 1; }

W="$(mktemp -d /tmp/nvr-edge-container.XXXXXX)"
NSPAWN_PID=""
FAILED=0
cleanup() {
  if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    kill "$NSPAWN_PID" 2>/dev/null || true # nspawn powers the container off on SIGTERM
    for _ in $(seq 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -rf "$W"
}
trap cleanup EXIT
check() { # check NAME COMMAND...: PASS or FAIL, never stops the run
  if "${@:2}"; then echo "PASS $1"; else echo "FAIL $1"; FAILED=1; fi
}

echo "== wheelhouse and clips"
/usr/bin/python3 -m venv "$W/pyenv"
"$W/pyenv/bin/pip" wheel -q --disable-pip-version-check -w "$W/wheels" "$SRC" 'setuptools>=68' wheel
rm -f "$W"/wheels/nvr_edge-*.whl
mapfile -t CLIPS < <(cd "$SRC" && .venv/bin/python -c \
  'from harness.clips import ensure_clips; c = ensure_clips(); print(c["walkers"]); print(c["static"])')

echo "== booting the container"
cat >"$W/boot.sh" <<EOF
set -euo pipefail
mkdir -p $W/ovl $W/root
mount -t tmpfs -o size=4G tmpfs $W/ovl
mkdir -p $W/ovl/upper $W/ovl/work
mount -t overlay overlay -o lowerdir=/,upperdir=$W/ovl/upper,workdir=$W/ovl/work $W/root
M=$W/root
# Only what the check needs starts: the host's other services stay off.
find \$M/etc/systemd/system/multi-user.target.wants -mindepth 1 ! -name mosquitto.service -delete
for unit in getty@tty1 console-getty systemd-timesyncd; do ln -sf /dev/null \$M/etc/systemd/system/\$unit.service; done
mkdir -p \$M/root/nvr-src \$M/root/clips \$M/opt/wheels
cp -r $SRC/edge $SRC/config $SRC/systemd $SRC/scripts $SRC/pyproject.toml $SRC/README.md \$M/root/nvr-src/
find \$M/root/nvr-src -name __pycache__ -prune -exec rm -rf {} +
cp $W/wheels/*.whl \$M/opt/wheels/
cp ${CLIPS[0]} \$M/root/clips/walkers.mp4
cp ${CLIPS[1]} \$M/root/clips/static.mp4
exec systemd-nspawn -D \$M --private-network --register=no --keep-unit -b --console=read-only \
  --machine=nvr-edge-check
EOF
unshare -m --propagation private bash "$W/boot.sh" >"$W/boot.log" 2>&1 &
NSPAWN_PID=$!
PID1=""
for _ in $(seq 100); do
  PID1="$(pgrep -P "$NSPAWN_PID" -x systemd || true)"
  [ -n "$PID1" ] && break
  sleep 0.3
done
[ -n "$PID1" ] || { tail -20 "$W/boot.log"; echo "FAIL container did not boot"; exit 1; }
in_container() {
  nsenter -t "$PID1" -a /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/wheels /bin/bash -c "$1"
}
for _ in $(seq 30); do # until the container's systemd answers
  in_container 'systemctl is-system-running --wait' >/dev/null 2>&1 && break
  sleep 0.5
done

echo "== installer"
check "installer runs" in_container 'cd /root/nvr-src && ./scripts/install.sh'
check "installer again changes nothing" in_container \
  'cd /root/nvr-src && ./scripts/install.sh | tail -1 | grep -qx "install: nothing changed"'
check "user, config and password file" in_container \
  '[ "$(stat -c "%a %U %G" /etc/nvr-edge/mqtt-password)" = "640 root nvr-edge" ] &&
   [ "$(stat -c "%a %U %G" /etc/nvr-edge)" = "750 root nvr-edge" ] &&
   getent passwd nvr-edge | grep -q ":/usr/sbin/nologin$"'

echo "== the service, two simulated cameras, a local broker"
in_container 'cd /root/nvr-src && (setsid /usr/bin/python3 scripts/camsim.py --port 8554 \
  --mount gate-1=/root/clips/walkers.mp4 --mount lane-1=/root/clips/static.mp4 >/root/camsim.log 2>&1 </dev/null &)
  printf "s3cret\n" >/etc/nvr-edge/mqtt-password
  printf "%s\n" "box: {id: container-check}" \
    "mqtt: {host: 127.0.0.1, port: 1883, username: container-check, password_file: /etc/nvr-edge/mqtt-password}" \
    "cameras:" "  gate-1: {url: \"rtsp://127.0.0.1:8554/gate-1\"}" "  lane-1: {url: \"rtsp://127.0.0.1:8554/lane-1\"}" \
    >/etc/nvr-edge/edge.yaml
  sleep 3'
check "starts (READY=1 reached systemd)" in_container 'systemctl start nvr-edge && systemctl is-active -q nvr-edge &&
  [ "$(systemctl show -p StatusText --value nvr-edge)" = "2 camera(s) started" ]'
sleep 15
check "health ok under the sandbox" in_container \
  '/opt/nvr-edge/venv/bin/nvr-edge health --config /etc/nvr-edge/edge.yaml --timeout 10 >/dev/null'
check "recordings written by nvr-edge" in_container \
  '[ -n "$(find /var/lib/nvr-edge/recordings -name "*.mp4" -user nvr-edge | head -1)" ]'
in_container 'systemd-analyze security --no-pager nvr-edge.service | tail -1'
check "no warnings or errors logged" in_container \
  '! journalctl -u nvr-edge -o cat --no-pager | grep -E "\"level\": \"(warning|error|critical)\""'

echo "== watchdog: the daemon frozen with SIGSTOP"
in_container 'kill -STOP "$(systemctl show -p MainPID --value nvr-edge)"'
check "killed by the watchdog and restarted" in_container \
  'for _ in $(seq 60); do [ "$(systemctl show -p NRestarts --value nvr-edge)" = 1 ] && break; sleep 1; done
   for _ in $(seq 20); do systemctl is-active -q nvr-edge && break; sleep 0.5; done
   journalctl -u nvr-edge --no-pager | grep -q "Watchdog timeout" && systemctl is-active -q nvr-edge'
in_container 'journalctl -u nvr-edge --no-pager -o cat | grep -E "^nvr-edge.service: (Watchdog|Killing|Main process|Scheduled)"'
sleep 5
check "clean stop" in_container 'systemctl stop nvr-edge && [ "$(systemctl show -p Result --value nvr-edge)" = success ]'

[ "$FAILED" = 0 ] && echo "all checks passed" || echo "some checks FAILED"
exit "$FAILED"
