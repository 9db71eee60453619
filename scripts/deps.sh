#!/usr/bin/env bash
# Installs what Datawall needs on Debian 12 when it is missing (sourced by scripts/run and
# scripts/test). Safe to run repeatedly: it only touches packages that are not installed.
set -euo pipefail

# Packages: a C toolchain for crates that build C, pkg-config, and the X11/Vulkan runtime
# the wall renders through (Mesa lavapipe where there is no GPU; Xvfb where there is no
# display).
DATAWALL_APT_PACKAGES=(
  build-essential pkg-config
  libvulkan1 mesa-vulkan-drivers libx11-6 libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2
  xvfb xauth
)

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
}
