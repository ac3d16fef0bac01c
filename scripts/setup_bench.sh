#!/usr/bin/env bash
# Installs what the benchmarks need beyond scripts/setup.sh: Debian's `motion` (the
# peer scripts/bench_cameras.py compares against) and ffmpeg (the decode floor).
# Idempotent: a second run installs nothing. Debian's motion package enables a system
# service on its default config; the benchmark runs its own motion with its own
# config, so that service is stopped and disabled where systemd runs.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

APT_PACKAGES=(motion ffmpeg)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup_bench: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now motion.service >/dev/null 2>&1 || true
  fi
fi
