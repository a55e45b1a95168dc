r"""LLM-judge rewards from a config: a correctness judge behind its defences, its soft variant,
RLBFF, Rubric Anchors, OpenRS, CM2, RLVRR's style check and Search-Gen-V, each one argument.

  python -m experiments.train --config=experiments/configs/judges.py:judge \
      --config.model.hf_dir=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf --workdir=/tmp/judge

``<method>`` is the SmolLM2 arithmetic recipe (``smollm2_arithmetic.py``) with
``config.rl.stages.group_rewards`` set by :func:`apply`. The judge is the policy itself (its
weights, re-keyed in the judge's cache every step); another checkpoint judges with
``--config.rl.stages.group_rewards.functions.<method>.model=/path/to/judge.gguf``. ``judge`` and
``judge_soft`` replace the verifier's reward (every defence on, the example's own verifier as
the cascade's rule); the rubric methods add their reward to it with weight 0.5, on a rubric
written for arithmetic (``{answer}`` is each example's answer; an example's
``metadata["rubric"]`` takes precedence). ``<method>,tiny`` is the same method on the toy run of
``tiny.py`` (character tokenizer, the random 1-layer policy as a tiny judge), what CI runs:

  python -m experiments.train --config=experiments/configs/judges.py:rlbff,tiny \
      --workdir=/tmp/rlbff_tiny

``docs/judges.md`` describes the judge, the defences and their measured effect.
"""

import ml_collections

from experiments.configs import smollm2_arithmetic
from experiments.configs import tiny as tiny_lib

# Every defence (docs/judges.md); the cascade asks each example's own verifier.
DEFENSES = dict(hardened_prompt=True, master_key_filter=True, injection_filter=True,
                answer_gate=True, cascade="positives")
FILTERS = dict(hardened_prompt=True, master_key_filter=True, injection_filter=True)
PRINCIPLES = ({"text": "The response states one final number.", "weight": 1.0},
              {"text": "The response's final number is {answer}.", "weight": 3.0,
               "critical": True})
CRITERIA = ({"text": "The final answer is {answer}.", "weight": 3.0, "critical": True},
            {"text": "The response is one short sentence.", "weight": 1.0})
CHECKLIST = ({"text": "The response gives {answer} as the result.", "weight": 0.75,
              "evidence": "The answer is {answer}."},
             {"text": "The response ends with 'The answer is <number>.'", "weight": 0.25})
STYLE = ({"text": "The response is a single sentence.", "weight": 0.5},
         {"text": "The response ends with 'The answer is <number>.'", "weight": 0.5})
NUGGETS = ({"text": "The result of the calculation is {answer}.", "weight": 1.0},)

# method -> (combine, weight, the function's settings).
METHODS = {
    "judge": ("replace", 1.0, dict(DEFENSES, few_shot_negatives=2)),
    "judge_soft": ("replace", 1.0, dict(DEFENSES)),
    "rlbff": ("add", 0.5, dict(FILTERS, rubric=PRINCIPLES)),
    "rubric_anchors": ("add", 0.5, dict(FILTERS, rubric=CRITERIA, kappa=0.0)),
    "openrs": ("add", 0.5, dict(FILTERS, rubric=CRITERIA)),
    "cm2_judge": ("add", 0.5, dict(FILTERS, rubric=CHECKLIST)),
    "rlvrr_style": ("add", 0.5, dict(FILTERS, rubric=STYLE)),
    "search_gen_v": ("add", 0.5, dict(FILTERS, rubric=NUGGETS, max_new_tokens=48)),
}
# The toy run: characters are tokens (prompts of hundreds), replies of a few characters, and
# chunks of 4 rows (a step asks a few dozen questions; attention over 1024 positions dominates).
TINY = dict(prompt_buckets=(512, 1024), batch_size=4, max_new_tokens=8, cache_size=1024)


def apply(config: ml_collections.ConfigDict, method: str, *, tiny: bool = False
          ) -> ml_collections.ConfigDict:
  """Switches on ``method``'s judge reward in ``config`` (in place; also returned)."""
  if method not in METHODS:
    raise ValueError(f"unknown judge method {method!r}; known: {sorted(METHODS)}")
  combine, weight, settings = METHODS[method]
  spec = dict(settings, weight=weight)
  if tiny:
    spec.update(TINY)
  stage = config.rl.stages.group_rewards
  stage.enabled = True
  stage.combine = combine
  stage.functions = {method: spec}
  return config


def get_config(arg: str = "judge") -> ml_collections.ConfigDict:
  """``arg`` = ``"<method>"`` (the SmolLM2 arithmetic recipe) or ``"<method>,tiny"``."""
  method, _, variant = arg.partition(",")
  if variant not in ("", "tiny"):
    raise ValueError(f"the variant after the comma must be 'tiny', got {variant!r}")
  if variant:
    config = tiny_lib.tiny_config()
    # Judge prompts are hundreds of characters: room for them and a reply.
    config.model.overrides = dict(config.model.overrides, max_position_embeddings=2048)
  else:
    config = smollm2_arithmetic.get_config()
  return apply(config, method, tiny=bool(variant))
