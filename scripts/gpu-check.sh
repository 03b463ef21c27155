#!/usr/bin/env bash
# gpu-check.sh: peftkit's WebGPU path on an NVIDIA GPU machine that has NO network and no `pnpm install`.
#
# Two halves:
#   scripts/gpu-check.sh --prepare [--no-build] [--no-node]      HERE, with the npm registry and apt
#   scripts/gpu-check.sh [--icd nvidia|lavapipe|FILE.json] [...] THERE, in the repo root (or here, --icd lavapipe)
#
# --prepare builds one payload, .peftkit/gpu-carry/payload.tar.xz (about 32 MiB; ignored by git), holding
#   everything the checks need that a bare GPU machine may lack:
#   - app/: the bench (packages/bench/dist/main.js), the conformance runner and an adapter probe, each
#     bundled by esbuild into one ESM file (scripts/gpu-check/bundle.mjs), so no node_modules travel
#     (the workspace's node_modules is ~500 MB, far over the 64 MiB a device call carries); beside them
#     app/node_modules/webgpu: the `webgpu` package's index.js and its Linux x64 Dawn addon (dawn.node).
#   - node/bin/node: this machine's Node 20 (skip with --no-node where the GPU machine has Node >= 20).
#   - sysroot/: Debian packages fetched with `apt-get download` and unpacked with `dpkg -x`: libvulkan1
#     (the Vulkan loader: dawn.node dlopens libvulkan.so.1; its only other needs are glibc and libstdc++)
#     and what NVIDIA's Vulkan ICD library (libGLX_nvidia.so.0) loads that a headless image may not have:
#     libglvnd0 (libGLdispatch), libx11-6, libxext6, libxcb1, libxau6, libxdmcp6, libbsd0, libmd0, and
#     the glvnd front ends libegl1 libglx0 libgl1 libopengl0 libgles2. At run time only those whose
#     soname the machine lacks are put on LD_LIBRARY_PATH (PEFTKIT_GPU_CARRIED_LIBS=all: every one).
#   NOT carried, and cannot be: the NVIDIA driver's own libraries (libGLX_nvidia.so.0, libnvidia-*), which
#   must match the kernel module. The ICD file (nvidia_icd.json) normally comes with the driver, in
#   /usr/share/vulkan/icd.d/, /etc/vulkan/icd.d/ or /usr/local/nvidia/share/vulkan/icd.d/ (container
#   images); where none exists but libGLX_nvidia.so.0 (or libEGL_nvidia.so.0) does, the run writes one.
#   tfjs-backend-wasm's .wasm files are not carried: only the webgpu backend and tfjs's plain CPU
#   backend (the conformance reference) run there.
#   --prepare runs `tsc -b` first (the bundles are made from the built dist/ folders); --no-build skips it.
#
# What to carry in the device call: `.peftkit/gpu-carry` and nothing else (the working tree travels by
# itself: this script, scripts/gpu-check/*.mjs, packages/bench/python/lora_reference.py). For example:
#   run(carry=[".peftkit/gpu-carry"], timeout_s=540,
#       command="bash scripts/gpu-check.sh --shapes stories260K,wide --steps 5 --warmup 2 --ratio-seconds 0")
#
# The run, in order, each step logged, and the summary printed and written as it goes:
#   0. unpacks the payload into .peftkit/gpu-run/ (tar + xz, or python3's tarfile where xz is missing);
#   1. Vulkan: picks the ICD (--icd, else $PEFTKIT_GPU_ICD, else nvidia), checks that its library and all
#      that library needs resolve (ldd), sets VK_DRIVER_FILES and VK_ICD_FILENAMES to that one file and
#      LD_LIBRARY_PATH to the carried libraries the machine lacks;
#   2. asks Dawn for its adapter (the same default request the bench makes): which one, on which backend
#      (vendor, architecture, device, description, which holds the driver version; nvidia-smi's driver
#      too). With --icd nvidia it fails unless that is an NVIDIA hardware adapter on Vulkan;
#   3. the WebGPU conformance suite (as packages/backend-webgpu/test/Conformance.test.ts, without vitest);
#   4. `node packages/bench/dist/main.js --backends webgpu --no-torch` (bundled), with the bench flags
#      given here (--shapes, --steps, --warmup, --ratio-seconds; --quick = stories260K, 2 steps, 1 warm-up,
#      no ratio rounds);
#   5. the PyTorch reference (packages/bench/python/lora_reference.py --device cuda, LoRA and COLA, same
#      shapes and steps) with $PEFTKIT_GPU_PYTHON or python3, when that imports a torch that sees CUDA.
#      --torch auto (default): otherwise say why and skip; --torch require: otherwise fail; --torch skip.
#      PEFTKIT_GPU_TORCH_DEVICE=cpu runs it on the CPU instead (to test this step without a GPU).
# Outputs go to --out DIR, else $OUT, else reports/gpu-check/: summary.txt, adapter.log, conformance.log,
# bench.log, bench.md, bench.json, torch.log, torch.json (8 files: what a device call brings back at most).
# Exit status: 0 when every step that ran passed; 1 with a one-line "gpu-check: FAIL: ..." when anything
# needed is missing or a check fails (a failed conformance case does not stop the bench: both are reported).
#
# Tested without a GPU: `--prepare`, then `--icd lavapipe --quick` (Mesa's software Vulkan driver, as
# scripts/install-test-system-deps.sh installs it), also from a scratch copy of the working tree that has
# only the payload (no node_modules, no dist/). See packages/backend-webgpu/README.md.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 1

say() { printf 'gpu-check: %s\n' "$*" >&2; }
die() {
  printf 'gpu-check: FAIL: %s\n' "$*" >&2
  if [ -n "${summary:-}" ]; then printf 'FAIL: %s\n' "$*" >>"$summary"; fi
  exit 1
}

carry="${PEFTKIT_GPU_CARRY:-.peftkit/gpu-carry}"
work="${PEFTKIT_GPU_WORK:-.peftkit/gpu-run}"
debs=(libvulkan1 libglvnd0 libegl1 libglx0 libgl1 libopengl0 libgles2 libx11-6 libx11-data libxext6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0)

# ---------------------------------------------------------------------------------------------- prepare
prepare() {
  local build=1 with_node=1
  for arg in "$@"; do
    case "$arg" in
      --no-build) build=0 ;;
      --no-node) with_node=0 ;;
      *) die "--prepare takes --no-build and --no-node, not '$arg'" ;;
    esac
  done
  [ "$(uname -m)" = "x86_64" ] || die "--prepare must run on x86_64 (the GPU machine is x86_64): the Node binary and Dawn addon are carried as they are here"
  command -v node >/dev/null || die "no node here"
  command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "--prepare needs apt-get and dpkg (Debian/Ubuntu)"
  command -v xz >/dev/null || die "--prepare needs xz (apt-get install xz-utils)"
  [ -d node_modules ] || die "no node_modules: run \`npx --yes pnpm@10.34.9 install\` first"
  if [ "$build" = 1 ]; then
    say "building (tsc -b)"
    node_modules/.bin/tsc -b || die "tsc -b failed"
  fi
  for f in packages/bench/dist/main.js packages/conformance/dist/index.js packages/backend-webgpu/dist/index.js packages/backend-cpu/dist/index.js; do
    [ -f "$f" ] || die "$f is missing: run \`pnpm build\` (or drop --no-build)"
  done
  local webgpu
  webgpu=$(cd packages/backend-webgpu && node -e 'process.stdout.write(require("node:path").dirname(require.resolve("webgpu/package.json")))' 2>/dev/null) \
    || die "the webgpu package (Dawn) is not installed under packages/backend-webgpu"
  [ -f "$webgpu/dist/linux-x64/dawn.node" ] || die "$webgpu/dist/linux-x64/dawn.node is missing"

  stage=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-prepare.XXXXXX") || die "mktemp failed" # global: the EXIT trap reads it
  trap 'rm -rf "$stage"' EXIT
  local payload="$stage/payload"
  mkdir -p "$payload/app/node_modules/webgpu/dist/linux-x64" "$payload/sysroot" "$stage/debs"

  say "bundling the bench, the conformance runner and the adapter probe (esbuild)"
  node scripts/gpu-check/bundle.mjs "$payload/app" || die "bundling failed"
  cp "$webgpu/package.json" "$webgpu/index.js" "$payload/app/node_modules/webgpu/" || die "copying webgpu failed"
  cp "$webgpu/dist/linux-x64/dawn.node" "$payload/app/node_modules/webgpu/dist/linux-x64/" || die "copying dawn.node failed"
  [ -f "$webgpu/LICENSE" ] && cp "$webgpu/LICENSE" "$payload/app/node_modules/webgpu/"

  if [ "$with_node" = 1 ]; then
    local node_bin
    node_bin=$(readlink -f "$(command -v node)")
    if ldd "$node_bin" | grep -qE 'libnode|libuv|libicu'; then
      die "$node_bin links shared libnode/libuv/icu (a distribution build): carry an official Node build, or use --no-node"
    fi
    mkdir -p "$payload/node/bin"
    cp "$node_bin" "$payload/node/bin/node" || die "copying node failed"
  fi

  say "fetching ${debs[*]} (apt-get download)"
  if ! (cd "$stage/debs" && apt-get download "${debs[@]}" >/dev/null 2>&1); then
    apt-get update -qq >/dev/null 2>&1
    (cd "$stage/debs" && apt-get download "${debs[@]}" >/dev/null) || die "apt-get download ${debs[*]} failed"
  fi
  local deb
  for deb in "$stage"/debs/*.deb; do
    dpkg -x "$deb" "$payload/sysroot" || die "dpkg -x $deb failed"
  done
  rm -rf "$payload/sysroot/usr/share/doc" "$payload/sysroot/usr/share/lintian" "$payload/sysroot/usr/share/bug"

  {
    echo "peftkit gpu-check payload, made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-linux}") $(uname -m)"
    echo "repo commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- packages 2>/dev/null || echo ' (packages/ with uncommitted changes)')"
    if [ "$with_node" = 1 ]; then echo "node: $(node --version) ($(readlink -f "$(command -v node)"))"; else echo "node: not carried (--no-node)"; fi
    echo "webgpu: $(node -p "require('$webgpu/package.json').version") (dawn.node $(stat -c %s "$webgpu/dist/linux-x64/dawn.node") bytes)"
    echo "debs:"
    for deb in "$stage"/debs/*.deb; do echo "  $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"; done
  } >"$payload/MANIFEST.txt"

  say "compressing (xz)"
  mkdir -p "$carry"
  rm -f "$carry"/payload.tar.xz "$carry"/MANIFEST.txt
  tar -C "$payload" -cf - . | xz -T1 -6 >"$carry/payload.tar.xz.part" || die "tar | xz failed"
  mv "$carry/payload.tar.xz.part" "$carry/payload.tar.xz"
  cp "$payload/MANIFEST.txt" "$carry/MANIFEST.txt"
  git check-ignore -q "$carry/payload.tar.xz" || say "warning: $carry is not ignored by git: add it to .gitignore"
  cat "$carry/MANIFEST.txt" >&2
  say "payload: $carry/payload.tar.xz, $(du -h "$carry/payload.tar.xz" | cut -f1) (unpacked $(du -sh "$payload" | cut -f1)); carry \`$carry\` in the device call"
}

# ---------------------------------------------------------------------------------------------- run
icd_mode="${PEFTKIT_GPU_ICD:-nvidia}"
torch_mode=auto
out=""
bench_args=()
shapes=""
steps=""
warmup=""
run_conformance=1
run_bench=1

usage() { sed -n '2,9p' "$0" >&2; exit 2; }

if [ "${1:-}" = "--prepare" ]; then
  shift
  prepare "$@"
  exit 0
fi

while [ $# -gt 0 ]; do
  case "$1" in
    --icd) icd_mode="${2:?--icd needs nvidia, lavapipe or a .json path}"; shift 2 ;;
    --torch) torch_mode="${2:?--torch needs auto, require or skip}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --quick) shapes=stories260K; steps=2; warmup=1; bench_args+=(--ratio-seconds 0); shift ;;
    --shapes) shapes="${2:?}"; shift 2 ;;
    --steps) steps="${2:?}"; shift 2 ;;
    --warmup) warmup="${2:?}"; shift 2 ;;
    --ratio-seconds) bench_args+=(--ratio-seconds "${2:?}"); shift 2 ;;
    --no-conformance) run_conformance=0; shift ;;
    --no-bench) run_bench=0; shift ;;
    -h|--help) usage ;;
    *) die "unknown option '$1' (see the header of scripts/gpu-check.sh)" ;;
  esac
done
case "$torch_mode" in auto|require|skip) ;; *) die "--torch must be auto, require or skip, not '$torch_mode'" ;; esac

out="${out:-${OUT:-reports/gpu-check}}"
mkdir -p "$out" || die "cannot create $out"
out=$(cd "$out" && pwd)
summary="$out/summary.txt"
: >"$summary"
note() { printf '%s\n' "$*" | tee -a "$summary"; }
status=0

[ "$(uname -m)" = "x86_64" ] || die "this machine is $(uname -m); the payload is x86_64"

# 0. the payload ------------------------------------------------------------------------------------
[ -f "$carry/payload.tar.xz" ] || die "no payload at $carry/payload.tar.xz: run \`scripts/gpu-check.sh --prepare\` where there is a network, and carry $carry"
stamp="$(stat -c %s-%Y "$carry/payload.tar.xz")"
if [ "$(cat "$work/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$work"
  mkdir -p "$work/payload" || die "cannot create $work"
  if command -v xz >/dev/null; then
    xz -dc "$carry/payload.tar.xz" | tar -x -C "$work/payload" || die "unpacking $carry/payload.tar.xz failed"
  elif command -v python3 >/dev/null; then
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$carry/payload.tar.xz" "$work/payload" \
      || die "unpacking $carry/payload.tar.xz with python3 failed"
  else
    die "cannot unpack $carry/payload.tar.xz: neither xz nor python3 is here"
  fi
  echo "$stamp" >"$work/.stamp"
fi
work=$(cd "$work" && pwd)
app="$work/payload/app"
note "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname 2>/dev/null || echo '?'); payload: $(head -n 2 "$work/payload/MANIFEST.txt" | tail -n 1)"

node_ok() { "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; }
if [ -x "$work/payload/node/bin/node" ] && node_ok "$work/payload/node/bin/node"; then
  node="$work/payload/node/bin/node"
elif command -v node >/dev/null && node_ok "$(command -v node)"; then
  node=$(command -v node)
else
  die "no Node >= 20.19: none in the payload (made with --no-node?) and $(command -v node >/dev/null && echo "this one is $(node --version)" || echo "none on PATH")"
fi
note "node: $("$node" --version) ($node)"

# 1. Vulkan: the loader, the ICD, the libraries ----------------------------------------------------
ldpath_dirs() { printf "%s\n" $(echo "${LD_LIBRARY_PATH:-}" | tr ":" " ") /usr/local/nvidia/lib64 /usr/local/nvidia/lib; }
# The path of a library by soname or file name, as the dynamic loader would find it (LD_LIBRARY_PATH first).
find_lib() {
  local name="$1" d
  while read -r d; do
    [ -n "$d" ] && [ -e "$d/$name" ] && { echo "$d/$name"; return 0; }
  done < <(ldpath_dirs)
  ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n && /x86-64/ { print $NF; exit }' | grep . && return 0
  for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
    [ -e "$d/$name" ] && { echo "$d/$name"; return 0; }
  done
  return 1
}

# The PyTorch step runs with the environment as it came: carried libraries are for Dawn's process only.
orig_ld_library_path="${LD_LIBRARY_PATH-}"
# Carried libraries the machine lacks (or all of them) go into one folder at the front of LD_LIBRARY_PATH.
libdir="$work/lib"
rm -rf "$libdir" && mkdir -p "$libdir"
carried=()
for f in "$work"/payload/sysroot/usr/lib/x86_64-linux-gnu/lib*.so.[0-9]*; do
  [ -e "$f" ] || continue
  name=$(basename "$f")
  [[ "$name" =~ ^lib.*\.so\.[0-9]+$ ]] || continue # sonames only (libX.so.1), not libX.so.1.2.3
  if [ "${PEFTKIT_GPU_CARRIED_LIBS:-missing}" = "all" ] || ! find_lib "$name" >/dev/null; then
    ln -s "$(readlink -f "$f")" "$libdir/$name"
    carried+=("$name")
  fi
done
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/usr/local/nvidia/lib64"
note "carried libraries in use: ${carried[*]:-none (the machine has them all)}"
loader=$(find_lib libvulkan.so.1) || die "no Vulkan loader (libvulkan.so.1), neither here nor in the payload"
note "Vulkan loader: $loader"

icd_dirs=(/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/nvidia/icd.d)
find_icd() { # $1: file name pattern
  local d f
  for f in $(echo "${VK_DRIVER_FILES:-}:${VK_ICD_FILENAMES:-}" | tr ":" " "); do
    case "$(basename "$f")" in $1) [ -f "$f" ] && { echo "$f"; return 0; } ;; esac
  done
  for d in "${icd_dirs[@]}"; do
    for f in "$d"/$1; do [ -f "$f" ] && { echo "$f"; return 0; }; done
  done
  return 1
}
case "$icd_mode" in
  nvidia)
    if command -v nvidia-smi >/dev/null; then
      note "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
    else
      note "nvidia-smi: not found"
    fi
    if ! icd=$(find_icd 'nvidia_icd*.json'); then
      icd=$(find / -maxdepth 7 -xdev \( -path /proc -o -path /sys -o -path "$root" \) -prune -o -name 'nvidia_icd*.json' -print 2>/dev/null | head -n 1)
    fi
    if [ -z "$icd" ]; then
      nvlib=$(find_lib libGLX_nvidia.so.0 || find_lib libEGL_nvidia.so.0) \
        || die "no NVIDIA Vulkan driver: no nvidia_icd.json (looked in ${icd_dirs[*]} and /) and no libGLX_nvidia.so.0 or libEGL_nvidia.so.0; the driver's graphics libraries cannot be carried (they must match its kernel module)"
      icd="$work/nvidia_icd.json"
      printf '{ "file_format_version": "1.0.0", "ICD": { "library_path": "%s", "api_version": "1.3.0" } }\n' "$nvlib" >"$icd"
      note "no nvidia_icd.json on this machine: wrote $icd for $nvlib"
    fi
    egl_vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [ -f "$egl_vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl_vendor"
    ;;
  lavapipe|lvp)
    icd_mode=lavapipe
    icd=$(find_icd 'lvp_icd*.json') || die "no lavapipe ICD (lvp_icd*.json in ${icd_dirs[*]}): apt-get install mesa-vulkan-drivers (>= 25, see scripts/install-test-system-deps.sh)"
    ;;
  *)
    [ -f "$icd_mode" ] || die "--icd '$icd_mode': not nvidia, lavapipe or an existing ICD .json file"
    icd=$(readlink -f "$icd_mode")
    icd_mode=any
    ;;
esac
icd_lib=$("$node" -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(j.ICD?.library_path ?? "")' "$icd" 2>/dev/null)
[ -n "$icd_lib" ] || die "$icd names no ICD.library_path"
case "$icd_lib" in
  /*) icd_lib_path="$icd_lib" ;;
  */*) icd_lib_path="$(dirname "$icd")/$icd_lib" ;;
  *) icd_lib_path=$(find_lib "$icd_lib") || icd_lib_path="" ;;
esac
[ -n "$icd_lib_path" ] && [ -e "$icd_lib_path" ] || die "the ICD $icd names $icd_lib, which is not on this machine (LD_LIBRARY_PATH, ldconfig, /usr/local/nvidia/lib64)"
# Its folder on LD_LIBRARY_PATH unless the loader searches it anyway (a system folder there would also
# change what other programs load, e.g. a pyenv Python's libpython).
case "$(dirname "$icd_lib_path")" in
  /lib|/usr/lib|/lib64|/usr/lib64|/lib/x86_64-linux-gnu|/usr/lib/x86_64-linux-gnu) ;;
  *) case ":$LD_LIBRARY_PATH:" in *":$(dirname "$icd_lib_path"):"*) ;; *) export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$icd_lib_path")" ;; esac ;;
esac
missing=$(ldd "$icd_lib_path" 2>&1 | awk '/not found/ { print $1 }' | sort -u | tr '\n' ' ')
[ -z "$missing" ] || die "the Vulkan driver $icd_lib_path needs ${missing}which neither this machine nor the payload has (add its Debian package to debs=() in scripts/gpu-check.sh and --prepare again)"
export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
unset VK_ADD_DRIVER_FILES
note "Vulkan ICD ($icd_mode): $icd -> $icd_lib_path"

# 2. the adapter -----------------------------------------------------------------------------------
( cd "$app" && VK_LOADER_DEBUG=error,warn timeout 120 "$node" adapter.mjs >"$work/adapter.json" 2>"$out/adapter.log" )
{ echo "--- probe result"; cat "$work/adapter.json"; } >>"$out/adapter.log"
adapter_lines=$("$node" scripts/gpu-check/summary.mjs adapter "$work/adapter.json" "$icd_mode")
adapter_rc=$?
if [ $adapter_rc -ne 0 ]; then
  reason=${adapter_lines#FAIL: }
  hint=$(grep -m 1 -iE 'error|cannot|failed' "$out/adapter.log" | cut -c1-200)
  die "${reason}${hint:+ (first loader message: $hint)}"
fi
note "$adapter_lines"

# 3. conformance -----------------------------------------------------------------------------------
if [ "$run_conformance" = 1 ]; then
  say "conformance suite on webgpu (log: $out/conformance.log)"
  ( cd "$app" && timeout 900 "$node" conformance.mjs ) >"$out/conformance.log" 2>&1
  lines=$("$node" scripts/gpu-check/summary.mjs conformance "$out/conformance.log") || status=1
  note "$lines"
else
  note "conformance: not run (--no-conformance)"
fi

# 4. bench -----------------------------------------------------------------------------------------
[ -n "$shapes" ] && bench_args+=(--shapes "$shapes")
[ -n "$steps" ] && bench_args+=(--steps "$steps")
[ -n "$warmup" ] && bench_args+=(--warmup "$warmup")
if [ "$run_bench" = 1 ]; then
  say "bench --backends webgpu --no-torch ${bench_args[*]} (log: $out/bench.log)"
  rm -rf "$work/bench"
  ( cd "$app" && "$node" bench.mjs --backends webgpu --no-torch --out "$work/bench" "${bench_args[@]}" ) >"$out/bench.md" 2>"$out/bench.log"
  bench_rc=$?
  [ -f "$work/bench/latest.json" ] && cp "$work/bench/latest.json" "$out/bench.json"
  lines=$("$node" scripts/gpu-check/summary.mjs bench "$out/bench.json") || status=1
  note "$lines"
  [ $bench_rc -eq 0 ] || { note "FAIL: the bench exited with $bench_rc (see bench.log)"; status=1; }
else
  note "bench: not run (--no-bench)"
fi

# 5. PyTorch reference -----------------------------------------------------------------------------
torch_device="${PEFTKIT_GPU_TORCH_DEVICE:-cuda}"
if [ -n "$orig_ld_library_path" ]; then export LD_LIBRARY_PATH="$orig_ld_library_path"; else unset LD_LIBRARY_PATH; fi
unset VK_DRIVER_FILES VK_ICD_FILENAMES
python="${PEFTKIT_GPU_PYTHON:-python3}"
torch_skip() { # $1: why
  if [ "$torch_mode" = require ]; then note "FAIL: pytorch reference required (--torch require), but $1"; status=1; else note "pytorch reference: SKIPPED: $1"; fi
}
if [ "$torch_mode" = skip ]; then
  note "pytorch reference: not run (--torch skip)"
elif ! command -v "$python" >/dev/null; then
  torch_skip "no $python here"
elif ! probe=$("$python" -c 'import torch; print(torch.__version__, torch.cuda.is_available(), torch.version.cuda)' 2>&1); then
  torch_skip "$python cannot import torch ($(echo "$probe" | tail -n 1))"
elif [ "${torch_device#cuda}" != "$torch_device" ] && [ "$(echo "$probe" | tail -n 1 | cut -d' ' -f2)" != "True" ]; then
  torch_skip "torch $(echo "$probe" | tail -n 1 | cut -d' ' -f1) under $python has no CUDA device (torch.cuda.is_available() is False; CUDA build: $(echo "$probe" | tail -n 1 | cut -d' ' -f3))"
else
  specs=()
  for shape in $(echo "${shapes:-stories260K,wide,smollm135M}" | tr ',' ' '); do
    case "$shape" in stories260K) w=3 s=15 ;; wide) w=2 s=9 ;; smollm135M) w=1 s=3 ;; *) w=1 s=3 ;; esac
    specs+=(--shape "$shape:${warmup:-$w}:${steps:-$s}")
  done
  say "pytorch reference on $torch_device: ${specs[*]} (log: $out/torch.log)"
  PYTHONUNBUFFERED=1 "$python" packages/bench/python/lora_reference.py --device "$torch_device" "${specs[@]}" >"$out/torch.json" 2>"$out/torch.log"
  lines=$("$node" scripts/gpu-check/summary.mjs torch "$out/torch.json" "$out/bench.json") || status=1
  note "$lines"
fi

if [ $status -eq 0 ]; then note "gpu-check: PASS (outputs in $out)"; else note "gpu-check: FAIL (see above; outputs in $out)"; fi
exit $status
