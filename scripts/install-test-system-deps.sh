#!/usr/bin/env bash
# System packages the test suite uses, installed by the project itself (idempotent, quick when present):
# - Mesa 25's Vulkan driver (lavapipe) from bookworm-backports, for WebGPU in Node through Dawn:
#   bookworm's own Mesa 22 is too old for Dawn (no adapter: "shaderUniform*ArrayDynamicIndexing required").
# - Debian's Chromium, for the browser WebGPU tests (driven by playwright-core; no browser download).
# Skips with a note where it cannot install (not root, no apt): the WebGPU tests then skip with a reason.
set -u
if [ "${PEFTKIT_SKIP_SYSTEM_DEPS:-}" = "1" ]; then exit 0; fi
have_mesa25() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '^2[5-9]\.' && dpkg-query -W libvulkan1 >/dev/null 2>&1; }
have_chromium() { [ -x /usr/bin/chromium ]; }
if have_mesa25 && have_chromium; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: cannot install mesa-vulkan-drivers >= 25 or chromium (needs root and apt); WebGPU tests will skip" >&2
  exit 0
fi
. /etc/os-release 2>/dev/null || true
if [ "${VERSION_CODENAME:-}" = "bookworm" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # Reuse the mirror the machine is configured with.
  mirror=$(grep -rhoE 'https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -n 1)
  echo "deb ${mirror:-http://deb.debian.org/debian} bookworm-backports main" > /etc/apt/sources.list.d/peftkit-backports.list
fi
echo "installing mesa-vulkan-drivers (Mesa 25, lavapipe) for WebGPU tests..." >&2
apt-get update -qq >/dev/null 2>&1
target=""
[ "${VERSION_CODENAME:-}" = "bookworm" ] && target="-t bookworm-backports"
have_mesa25 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $target mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1 \
  || echo "note: installing mesa-vulkan-drivers failed; WebGPU-in-Node tests will skip" >&2
if ! have_chromium; then
  echo "installing chromium for the browser WebGPU tests..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || echo "note: installing chromium failed; browser tests will skip" >&2
fi
exit 0
