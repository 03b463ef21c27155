#!/usr/bin/env bash
# System packages the test suite uses, installed by the project itself (idempotent, quick when present):
# - Mesa 25's Vulkan driver (lavapipe) from bookworm-backports, for WebGPU in Node through Dawn:
#   bookworm's own Mesa 22 is too old for Dawn (no adapter: "shaderUniform*ArrayDynamicIndexing required").
# - Debian's Chromium, for the browser WebGPU tests (driven by playwright-core; no browser download).
# Skips with a note where it cannot install at all (not root, no apt); fails when an install it tries fails.
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
if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
  # Reuse the mirror the machine is configured with: the `URIs:` line of a deb822 .sources file (its
  # first URL-looking lines may be comments naming another, unreachable archive) or a one-line `deb` entry.
  mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -oE 'https?://[^ ]+/debian/?' | head -n 1)
  [ -n "$mirror" ] || mirror=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v peftkit | grep -oE 'https?://[^ ]+/debian/?' | head -n 1)
  if ! grep -rhqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources || [ -f /etc/apt/sources.list.d/peftkit-backports.list ]; then
    echo "deb ${mirror:-http://deb.debian.org/debian} bookworm-backports main" > /etc/apt/sources.list.d/peftkit-backports.list
  fi
fi
echo "installing mesa-vulkan-drivers (Mesa 25, lavapipe) for WebGPU tests..." >&2
apt-get update -qq >/dev/null 2>&1
target=""
[ "${VERSION_CODENAME:-}" = "bookworm" ] && target="-t bookworm-backports"
status=0
# A set-up step that fails is an error, not a reason for tests to skip: a green run must mean they ran.
have_mesa25 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $target mesa-vulkan-drivers libvulkan1 >/dev/null \
  || { echo "error: installing mesa-vulkan-drivers (Mesa 25) failed; the WebGPU-in-Node tests need it" >&2; status=1; }
if ! have_chromium; then
  echo "installing chromium for the browser WebGPU tests..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || { echo "error: installing chromium failed; the browser tests need it" >&2; status=1; }
fi
exit $status
