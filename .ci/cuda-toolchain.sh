#!/usr/bin/env bash
# A CUDA build toolchain without a CUDA toolkit: nvcc and the CUDA headers from PyPI's NVIDIA
# wheels, unpacked into a local folder, plus link-time stub libraries for the CUDA libraries
# that cudarc links (libcuda, libcublas, libcublasLt, libcurand, libnvrtc), generated from
# cudarc's own symbol lists. Enough for `cargo check` and `cargo build --features cuda` on a
# machine with no GPU, no driver and no CUDA install; the binary loads the GPU machine's real
# libraries by their SONAMEs at run time.
#
#   .ci/cuda-toolchain.sh [--prefix DIR] [--cuda X.Y] [--compute-cap N]
#   eval "$(.ci/cuda-toolchain.sh)"          # or: source DIR/env.sh afterwards
#
# Progress goes to stderr; the `export` lines to use go to stdout (and to DIR/env.sh).
#
#   --prefix DIR       where to install (default: target/cuda-toolchain in this repository;
#                      also CUDA_TOOLCHAIN_PREFIX). Nothing else is installed, apart from
#                      pip's download cache, cargo's registry and the apt-get fallback below.
#   --cuda X.Y         the CUDA release to install (default 13.0; also CUDA_TOOLCHAIN_VERSION).
#                      Pick the "CUDA Version" that `nvidia-smi` prints on the GPU machine, or an
#                      older release: the driver JIT-compiles the kernels' PTX, and a driver
#                      refuses PTX from a newer nvcc. 13.0 is pinned to tested wheel versions;
#                      another 13.Y takes the newest wheels of that series (see README, Devices).
#                      CUDA 12 is not offered: PyPI's CUDA 12 nvcc wheels hold ptxas, not nvcc.
#   --compute-cap N    the GPU's compute capability without the dot (default 90: H100/H200;
#                      also CUDA_COMPUTE_CAP). `nvidia-smi --query-gpu=compute_cap --format=csv`.
#
#   CUDA_TOOLCHAIN_WHEELS="pkg==ver ..."   overrides the wheel list entirely.
#
# Needs: bash, python3 (with pip, or venv to make one; on Debian/Ubuntu as root it installs
# python3-venv with apt-get when neither works), a C/C++ compiler (nvcc's host compiler, and cc
# for the stubs), cargo, network access to PyPI and crates.io.
set -euo pipefail

say() { printf '%s\n' "cuda-toolchain: $*" >&2; }
die() { printf '%s\n' "cuda-toolchain: error: $*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${CUDA_TOOLCHAIN_PREFIX:-$repo/target/cuda-toolchain}
cuda=${CUDA_TOOLCHAIN_VERSION:-13.0}
cap=${CUDA_COMPUTE_CAP:-90}
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --cuda) cuda=${2:?--cuda needs a version like 13.0}; shift 2 ;;
    --cuda=*) cuda=${1#*=}; shift ;;
    --compute-cap) cap=${2:?--compute-cap needs a number like 90}; shift 2 ;;
    --compute-cap=*) cap=${1#*=}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[[ $cuda =~ ^([0-9]+)\.([0-9]+)$ ]] || die "--cuda takes MAJOR.MINOR, like 13.0 (got '$cuda')"
major=${BASH_REMATCH[1]}
[[ $cap =~ ^[0-9]+[a-z]?$ ]] || die "--compute-cap takes a number like 90 or 80 (got '$cap')"
[ -n "$prefix" ] && [ "$prefix" != / ] || die "refusing --prefix '$prefix'"
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
home=$prefix/cuda   # becomes CUDA_HOME

# ---- which wheels ------------------------------------------------------------------------------
# CUDA 13 splits the compiler over five wheels that install into nvidia/cu13/. nvidia-cuda-nvcc
# depends on nvidia-nvvm without a version, so pip alone would pair nvcc 13.0 with the newest
# nvvm, whose PTX ptxas 13.0 rejects: everything is pinned and installed with --no-deps.
if [ -n "${CUDA_TOOLCHAIN_WHEELS:-}" ]; then
  read -r -a wheels <<<"$CUDA_TOOLCHAIN_WHEELS"
elif [ "$cuda" = 13.0 ]; then
  wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
          nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
elif [ "$major" = 13 ]; then
  wheels=("nvidia-cuda-nvcc==$cuda.*" "nvidia-cuda-crt==$cuda.*" "nvidia-nvvm==$cuda.*"
          "nvidia-cuda-runtime==$cuda.*" "nvidia-cuda-cccl==$cuda.*")
else
  die "CUDA $cuda: PyPI has nvcc itself only in the CUDA 13 wheels (the CUDA 12 nvcc wheels hold ptxas alone); use a CUDA toolkit, or give wheels that hold bin/nvcc in CUDA_TOOLCHAIN_WHEELS"
fi

# SONAMEs of the real libraries, which the binary will ask for at run time: libcuda.so.1 and
# libcurand.so.10 always, the others carry the CUDA major version.
so_rt=$major so_nvrtc=$major so_blas=$major

# ---- nvcc and headers from the wheels ------------------------------------------------------------
py=${PYTHON:-python3}
command -v "$py" >/dev/null || die "python3 not found (set PYTHON to one)"

pip_cmd=()
find_pip() {
  if "$py" -m pip --version >/dev/null 2>&1; then pip_cmd=("$py" -m pip); return; fi
  local venv=$prefix/venv
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    say "no pip for $py; making a virtual environment in $venv"
    if ! "$py" -m venv "$venv" >&2; then
      rm -rf "$venv"
      if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        say "installing python3-venv with apt-get"
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2 \
          || die "apt-get install python3-venv failed"
        "$py" -m venv "$venv" >&2 || die "python3 -m venv still fails after installing python3-venv"
      else
        die "$py has no pip and cannot make a venv: install python3-pip or python3-venv"
      fi
    fi
  fi
  pip_cmd=("$venv/bin/python" -m pip)
}

stamp="cuda=$cuda wheels=${wheels[*]}"
if [ -x "$home/bin/nvcc" ] && [ -f "$home/.wheels" ] && [ "$(cat "$home/.wheels")" = "$stamp" ] \
   && "$home/bin/nvcc" --version >/dev/null 2>&1; then
  say "nvcc already installed in $home (${wheels[*]})"
else
  find_pip
  say "downloading ${wheels[*]}"
  rm -rf "$prefix/wheels" "$prefix/stage" "$home"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "${pip_cmd[@]}" download --no-deps --only-binary=:all: \
    --no-input --dest "$prefix/wheels" "${wheels[@]}" >&2 \
    || die "pip download failed (are these versions on PyPI? list them with: $py -m pip index versions nvidia-cuda-nvcc)"
  # Unpack keeping the files' permission bits (python's zipfile CLI drops them); no unzip needed.
  "$py" - "$prefix/stage" "$prefix"/wheels/*.whl <<'EOF'
import os, sys, zipfile
dest = sys.argv[1]
for whl in sys.argv[2:]:
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            path = z.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)
EOF
  # Merge every nvidia/<package>/ tree (one, cu13/, for CUDA 13) into one CUDA_HOME.
  mkdir -p "$home"
  for d in "$prefix"/stage/nvidia/*/; do
    cp -a "$d." "$home/"
  done
  rm -rf "$prefix/stage"
  [ -x "$home/bin/nvcc" ] || die "the wheels hold no bin/nvcc (wheels: ${wheels[*]})"
  # Unversioned names for the linker (-lcudart), as a toolkit has them.
  for f in "$home"/lib/lib*.so.*; do
    [ -e "$f" ] || continue
    base=${f%%.so.*}.so
    [ -e "$base" ] || ln -s "$(basename "$f")" "$base"
  done
  printf '%s\n' "$stamp" >"$home/.wheels"
fi

version_line=$("$home/bin/nvcc" --version | grep -o 'release [0-9.]*' || true)
say "nvcc: $version_line ($home/bin/nvcc)"
if [ -z "${CUDA_TOOLCHAIN_WHEELS:-}" ] && [ "$version_line" != "release $cuda" ]; then
  die "nvcc reports '$version_line', expected release $cuda"
fi

# Self-test: a kernel with fp16/bf16 through cicc and ptxas, for the asked compute capability.
# Catches missing headers, an nvvm that does not match ptxas, or an unsupported host compiler.
t=$prefix/selftest
rm -rf "$t"; mkdir -p "$t"
cat >"$t/k.cu" <<'EOF'
#include <cuda_fp16.h>
#include <cuda_bf16.h>
extern "C" __global__ void k(__nv_bfloat16 *b, __half *h, float *f, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) f[i] = __bfloat162float(b[i]) + __half2float(h[i]);
}
EOF
"$home/bin/nvcc" -cubin -arch="sm_$cap" -o "$t/k.cubin" "$t/k.cu" >&2 \
  || die "nvcc could not compile a test kernel for sm_$cap (if it names the host compiler: set NVCC_CCBIN to a supported g++)"
"$home/bin/nvcc" -ptx -arch="compute_$cap" -o "$t/k.ptx" "$t/k.cu" >&2 \
  || die "nvcc could not compile a test kernel to PTX for compute_$cap"
rm -rf "$t"

# ---- link-time stubs from cudarc's symbol lists ---------------------------------------------------
# The cudarc that Cargo.lock pins, wherever cargo unpacked it (cargo metadata downloads it if
# needed; a plain look in the registry is the fallback).
lock_ver=$(awk '/^name = "cudarc"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$repo/Cargo.lock")
[ -n "$lock_ver" ] || die "no cudarc in $repo/Cargo.lock"
cudarc=
if meta=$(cd "$repo" && cargo metadata --format-version 1 --locked --no-default-features \
      --features cuda 2>/dev/null) \
   && manifest=$(printf '%s' "$meta" | "$py" -c '
import json, sys
ver = sys.argv[1]
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc" and p["version"] == ver:
        print(p["manifest_path"]); break
' "$lock_ver") && [ -n "$manifest" ]; then
  cudarc=$(dirname "$manifest")
else
  for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$lock_ver"; do
    [ -d "$d" ] && cudarc=$d
  done
fi
[ -n "$cudarc" ] && [ -d "$cudarc/src" ] \
  || die "the sources of cudarc $lock_ver are not in ${CARGO_HOME:-$HOME/.cargo}/registry/src: run 'cargo fetch' in $repo first"
say "stubs from cudarc $lock_ver ($cudarc)"

stubs=$home/lib/stubs
rm -rf "$stubs"; mkdir -p "$stubs/src"
cc=${CC:-cc}
gen() { # module library soname
  local list=$cudarc/src/$1/sys/mod.rs c=$stubs/src/$2.c
  [ -f "$list" ] || die "$list not found: cudarc's layout changed?"
  # Every `fn name(` of the extern "C" blocks; a few extra names (methods) do no harm.
  sed -nE 's/^[[:space:]]+(pub )?fn ([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\(.*/\2/p' "$list" \
    | sort -u | sed 's/.*/int &(void) { return 0; }/' >"$c"
  [ -s "$c" ] || die "no functions found in $list"
  "$cc" -shared -fPIC -o "$stubs/lib$2.so" -Wl,-soname,"$3" "$c"
  say "  lib$2.so ($3): $(wc -l <"$c") symbols"
}
gen driver cuda libcuda.so.1
gen nvrtc nvrtc "libnvrtc.so.$so_nvrtc"
gen curand curand libcurand.so.10
gen cublas cublas "libcublas.so.$so_blas"
gen cublaslt cublasLt "libcublasLt.so.$so_blas"

# ---- the environment ---------------------------------------------------------------------------
# cudarc also searches $CUDA_HOME/lib and $CUDA_HOME/lib/stubs; LIBRARY_PATH makes the same
# folders known to the linker for everything else (candle-kernels' -lcudart).
cat >"$prefix/env.sh" <<EOF
export CUDA_HOME="$home"
export PATH="$home/bin:\$PATH"
export CUDA_COMPUTE_CAP="$cap"
export LIBRARY_PATH="$stubs:$home/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
EOF
say "ready. At run time the GPU machine's libcuda.so.1 (the driver's), libcudart.so.$so_rt, libcublas.so.$so_blas (with libcublasLt.so.$so_blas) and libcurand.so.10 must be on the loader's path, e.g. LD_LIBRARY_PATH=/usr/local/cuda-$cuda/targets/x86_64-linux/lib"
say "export these (or: source $prefix/env.sh):"
cat "$prefix/env.sh"
