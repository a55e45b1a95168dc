r"""Group-level and likelihood rewards from a config: TTRL, Co-Reward, VeRPO, VeriFree, RLPR, the
log-probability reward, SAR and DARL, each one argument of this file.

  python -m experiments.train --config=experiments/configs/group_rewards.py:ttrl \
      --config.model.hf_dir=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf --workdir=/tmp/ttrl

``<method>`` is the SmolLM2 arithmetic recipe (``smollm2_arithmetic.py``: chat prompts asking for
"The answer is <number>.") with ``config.rl.stages.group_rewards`` set by :func:`apply`;
``<method>,tiny`` is the same method on the toy run of ``tiny.py`` (char tokenizer, random
1-layer model, completions that are the bare answer: no reasoning, so the likelihood rewards
score the reference right after the prompt), what the CI wiring tests run:

  python -m experiments.train --config=experiments/configs/group_rewards.py:rlpr,tiny \
      --workdir=/tmp/rlpr_tiny

The likelihood rewards cut each completion after ``"The answer is"`` and teacher-force
``" <gold>."`` there (VeriFree's own format is ``delimiter="<answer"``, ``template="> \boxed{
{answer}} </answer>"``). ``verifree`` also switches the objective to the ``verifree`` preset
(RLOO + REINFORCE on the reasoning + the reward-weighted answer log-likelihood). ``verpo`` needs a
code task: records with ``metadata.tests`` (``--config.task.kind=files
--config.task.files.train=...``); on arithmetic every sample scores 0. ``docs/reward_design.md``
("Group-level rewards") describes each method and what could not be confirmed.
"""

import ml_collections

from experiments.configs import smollm2_arithmetic
from experiments.configs import tiny as tiny_lib
# Registers the `verifree` objective (a user objective: registered by the config file that uses it).
from rlvr_jax.objectives import answer_likelihood  # pylint: disable=unused-import

# The recipe's answers end in "The answer is <number>.": the likelihood rewards' splice point.
DELIMITER, TEMPLATE = "The answer is", " {answer}."
# method -> (objective, combine, {instance: function settings}); the toy run's overrides below.
METHODS = {
    "ttrl": ("grpo", "replace", {"ttrl": dict(extractor="gsm8k")}),
    "co_reward": ("grpo", "replace", {"co_reward": dict(extractor="gsm8k",
                                                        rephrase="swap_operands")}),
    "verpo": ("grpo", "replace", {"verpo": dict(lam=1.0)}),
    "verifree": ("verifree", "replace", {"verifree": dict(delimiter=DELIMITER,
                                                          template=TEMPLATE)}),
    # The filter's start is a field of its own, to override from flags (small models: lower).
    "rlpr": ("grpo", "replace", {"rlpr": dict(delimiter=DELIMITER, template=TEMPLATE,
                                              std_threshold=0.5)}),
    "logprob": ("grpo", "replace", {"logprob": dict(delimiter=DELIMITER, template=TEMPLATE)}),
    # SAR: R = R_verifiable + 0.2 R_SA (the paper's reward_factors [1, 0.2]).
    "sar": ("grpo", "add", {"sar": dict(weight=0.2)}),
    "darl": ("grpo", "replace", {"darl": dict(delimiter=DELIMITER, template=TEMPLATE)}),
}
# The toy task's completions are the bare answer: whole-text answers, no reasoning to cut.
TINY = {"extractor": "whole", "delimiter": "", "template": "{answer}"}


def apply(config: ml_collections.ConfigDict, method: str, *, tiny: bool = False
          ) -> ml_collections.ConfigDict:
  """Switches on ``method``'s group reward in ``config`` (in place; also returned): the stage's
  functions and ``combine``. The objective is set by :func:`get_config` (``verifree`` needs its
  own preset). ``tiny`` uses the toy task's answer format (:data:`TINY`; RLPR without its
  debiasing, which is 0 when there is no reasoning)."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; known: {sorted(METHODS)}")
  _, combine, functions = METHODS[method]
  functions = {name: dict(spec) for name, spec in functions.items()}
  if tiny:
    for spec in functions.values():
      spec.update({k: v for k, v in TINY.items() if k in spec})
    if method == "rlpr":
      functions["rlpr"]["debias"] = False
  stage = config.rl.stages.group_rewards
  stage.enabled = True
  stage.combine = combine
  stage.functions = functions
  return config


def get_config(arg: str = "ttrl") -> ml_collections.ConfigDict:
  """``arg`` = ``"<method>"`` (the SmolLM2 arithmetic recipe) or ``"<method>,tiny"``."""
  method, _, variant = arg.partition(",")
  if variant not in ("", "tiny"):
    raise ValueError(f"the variant after the comma must be 'tiny', got {variant!r}")
  objective = METHODS[method][0] if method in METHODS else "grpo"
  if variant:
    config = tiny_lib.tiny_config(objective)
  else:
    config = smollm2_arithmetic.get_config(objective)
  return apply(config, method, tiny=bool(variant))
