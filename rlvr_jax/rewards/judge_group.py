"""The LLM-judge rewards as group reward functions of the trainer's hook.

Registered in :mod:`rlvr_jax.rewards.group` (``config.rl.stages.group_rewards.functions``):

================  ==================================================  ==================
name              reward                                              template / parser
================  ==================================================  ==================
``judge``         reference-based correctness behind the defences     correctness/yes_no
``judge_soft``    Su et al.'s soft reward (verdict words 1 / 0)       soft_binary/soft
``rlbff``         RLBFF principles, weighted mean of P(yes)            principle/yes_no
``rubric_anchors``  Rubric Anchors, 0-10 per criterion, veto          rubric_score/number
``openrs``        OpenRS pairwise against the reference, +1/0/-1      pairwise/pairwise
``cm2_judge``     CM2 checklist score, items decided by the judge     checklist/yes_no
``rlvrr_style``   RLVRR style points, ``sum_k w_k 1[P_k >= 0.5]``     style/yes_no
``search_gen_v``  Search-Gen-V nugget labels, weighted mean           nuggets/labels
================  ==================================================  ==================

(:mod:`rlvr_jax.rewards.judge_rewards` has the formulas and what could not be confirmed.)

Every factory takes the same keyword arguments (a config entry's keys):

* the judge: ``model`` (``"policy"``: the policy itself, sharing its weights, re-keyed in the
  cache every step; or an HF directory / ``.gguf`` path, loaded once per process), ``dtype``,
  ``add_bos``, ``template`` and ``parser`` (default: the table's), ``yes_words``, ``no_words``,
  ``batch_size``, ``prompt_buckets``, ``max_new_tokens``, ``cache_size``, ``min_verdict_mass``,
  ``number_range`` (:class:`rlvr_jax.rewards.judge.Judge`);
* the defences (:class:`rlvr_jax.rewards.judge_defenses.Defenses`): ``hardened_prompt``,
  ``master_key_filter`` and ``injection_filter`` for every method; ``answer_gate``,
  ``answer_kind``, ``cascade``, ``cascade_verifier`` (``""``: each example's own verifier) and
  ``few_shot_negatives`` for ``judge`` and ``judge_soft`` only;
* ``rubric``: the criteria / principles / checklist items / style points / nuggets used when an
  example has no ``metadata["rubric"]`` (strings or dicts, :func:`~.judge_rewards.parse_rubric`;
  ``{answer}`` in a text is replaced by the example's answer);
* the method's own: ``kappa`` (``rubric_anchors``; 0: no saturation), ``min_score`` and
  ``margin`` (``openrs``), ``threshold`` (``cm2_judge``, ``rlvrr_style``), ``soft``
  (``rlvrr_style``).

The question shown to the judge is the example's last user message (its prompt text for plain
prompts); the reference is ``example.answer``. Metrics, logged as ``<instance>/<key>``: the
judge's ``items``, ``cache_hits``, ``parse_failures``, ``seconds``, ``tokens_per_s`` and, for
``judge``/``judge_soft``, the defences' ``gated``, ``master_keys``, ``injections``,
``verifier_decided``, ``judged`` and ``mean_score``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from rlvr_jax.rewards import group as group_lib
from rlvr_jax.rewards import judge as judge_lib
from rlvr_jax.rewards import judge_defenses as defenses_lib
from rlvr_jax.rewards import judge_parsers as parsers
from rlvr_jax.rewards import judge_rewards as jr

METHODS: Dict[str, Dict[str, Any]] = {
    "judge": dict(template="correctness", parser="yes_no"),
    "judge_soft": dict(template="soft_binary", parser="soft", yes_words=("1",), no_words=("0",)),
    "rlbff": dict(template="principle", parser="yes_no"),
    "rubric_anchors": dict(template="rubric_score", parser="number"),
    "openrs": dict(template="pairwise", parser="pairwise"),
    "cm2_judge": dict(template="checklist", parser="yes_no"),
    "rlvrr_style": dict(template="style", parser="yes_no"),
    "search_gen_v": dict(template="nuggets", parser="labels"),
}
_CORRECTNESS = ("judge", "judge_soft")
_METHOD_ARGS = {"rubric_anchors": ("kappa",), "openrs": ("min_score", "margin"),
                "cm2_judge": ("threshold",), "rlvrr_style": ("threshold", "soft")}
_LOADED: Dict[Tuple[str, str, bool], judge_lib.JudgeModel] = {}


def question_text(prompt: Any) -> str:
  """The judge's question: the last user message of chat messages, else the prompt text."""
  if isinstance(prompt, str):
    return prompt
  users = [m["content"] for m in prompt if m.get("role") == "user"]
  return users[-1] if users else str(prompt[-1]["content"])


def _plain(value: Any) -> Any:
  """ml_collections values as plain Python (ConfigDicts, FieldReferences, tuples of them)."""
  if hasattr(value, "to_dict"):
    return value.to_dict()
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


class JudgeReward:
  """A judge reward for the group hook: ``fn(batch) -> GroupRewardResult`` (module docstring).

  Args:
    method: a name of :data:`METHODS`.
    model: ``"policy"`` or a checkpoint path.
    dtype, add_bos: how a checkpoint is loaded.
    defenses: the switches (validated against the method).
    rubric: the default rubric.
    judge_kwargs: :class:`~rlvr_jax.rewards.judge.Judge` arguments.
    method_kwargs: the method's own arguments.
  """

  def __init__(self, method: str, *, model: str, dtype: str, add_bos: bool,
               defenses: defenses_lib.Defenses, rubric: Sequence[Any],
               judge_kwargs: Dict[str, Any], method_kwargs: Dict[str, Any]):
    if method not in _CORRECTNESS:
      extra = [k for k in ("answer_gate", "few_shot_negatives")
               if getattr(defenses, k) != getattr(defenses_lib.Defenses(), k)]
      if defenses.cascade != "off":
        extra.append("cascade")
      if extra:
        raise ValueError(f"{method} takes only the filters and the hardened prompt among the "
                         f"defences; got {extra}")
    bad = sorted(set(method_kwargs) - set(_METHOD_ARGS.get(method, ())))
    if bad:
      raise ValueError(f"{method} has no arguments {bad}")
    self.method, self.defenses = method, defenses
    self.rubric = jr.parse_rubric(_plain(rubric))
    self.judge_kwargs, self.method_kwargs = judge_kwargs, method_kwargs
    self.model_path, self.dtype, self.add_bos = model, dtype, add_bos
    self.judge: Optional[judge_lib.Judge] = None
    self.guarded: Optional[jr.GuardedJudge] = None
    if model != "policy":
      key = (model, dtype, bool(add_bos))
      if key not in _LOADED:
        _LOADED[key] = judge_lib.load_judge_model(model, dtype=dtype, add_bos=add_bos)
      self._build(_LOADED[key])

  def _build(self, model: judge_lib.JudgeModel) -> None:
    self.judge = jr.judge_for(model, self.defenses, **self.judge_kwargs)
    if self.method in _CORRECTNESS:
      self.guarded = jr.GuardedJudge(self.judge, self.defenses)

  def _rubrics(self, examples) -> list:
    """Each example's ``metadata["rubric"]``, else the default rubric with ``{answer}`` replaced
    by the example's answer (in texts and evidence)."""
    out = []
    for e in examples:
      spec = (getattr(e, "metadata", None) or {}).get("rubric")
      if spec:
        out.append(jr.parse_rubric(spec))
      else:
        fill = lambda text, answer=str(e.answer): text.replace("{answer}", answer)
        out.append(tuple(dataclasses.replace(item, text=fill(item.text),
                                             evidence=fill(item.evidence))
                         for item in self.rubric))
    return out

  def __call__(self, batch: group_lib.RewardBatch) -> group_lib.GroupRewardResult:
    """Rewards ``[P, G]`` and the judge's metrics for one step's groups."""
    params, version = None, ""
    if self.model_path == "policy":
      if batch.policy is None:
        raise ValueError("a policy judge needs the batch's policy handle")
      config, params, tokenizer, add_bos = batch.policy.model()
      if self.judge is None:
        self._build(judge_lib.policy_judge_model(config, tokenizer, add_bos=add_bos))
      version = f"step-{batch.step}"
    p, g = batch.shape
    flat = lambda values: [v for v in values for _ in range(g)]
    questions = flat([question_text(e.prompt) for e in batch.examples])
    references = flat([str(e.answer) for e in batch.examples])
    responses = [c for row in batch.completions for c in row]
    common = dict(defenses=self.defenses, params=params, version=version)
    if self.method in _CORRECTNESS:
      verifiers = (None if self.defenses.cascade_verifier
                   else flat([getattr(e, "verifier", "") for e in batch.examples]))
      rewards = self.guarded(questions, responses, references, verifiers=verifiers,
                             params=params, version=version)
      metrics = self.guarded.pop_metrics()
    else:
      rubrics = flat(self._rubrics(batch.examples))
      m = self.method
      if m == "rlbff":
        rewards = jr.rlbff_rewards(self.judge, questions, responses, rubrics, **common)
      elif m == "rubric_anchors":
        kappa = float(self.method_kwargs.get("kappa", 0.0)) or None
        rewards = jr.rubric_anchor_rewards(self.judge, questions, responses, references,
                                           rubrics, kappa=kappa, **common)
      elif m == "openrs":
        rewards = jr.openrs_rewards(self.judge, questions, responses, references, rubrics,
                                    **self.method_kwargs, **common)
      elif m == "cm2_judge":
        rewards = jr.cm2_rewards(self.judge, questions, responses, rubrics,
                                 **self.method_kwargs, **common)
      elif m == "rlvrr_style":
        rewards = jr.rlvrr_style_rewards(self.judge, questions, responses, rubrics,
                                         **self.method_kwargs, **common)
      else:
        rewards = jr.search_gen_v_rewards(self.judge, questions, responses, rubrics, **common)
      metrics = self.judge.pop_metrics()
    metrics = {k.split("/", 1)[1]: v for k, v in metrics.items()}
    return group_lib.GroupRewardResult(np.asarray(rewards, np.float64).reshape(p, g), metrics)


def make(method: str, *, model: str = "policy", dtype: str = "float32", add_bos: bool = False,
         template: str = "", parser: str = "", yes_words: Sequence[str] = (),
         no_words: Sequence[str] = (), batch_size: int = 16,
         prompt_buckets: Sequence[int] = (256, 512, 1024), max_new_tokens: int = 32,
         cache_size: int = 4096, min_verdict_mass: float = 1e-3,
         number_range: Sequence[float] = (0.0, 10.0), hardened_prompt: bool = False,
         master_key_filter: bool = False, injection_filter: bool = False,
         answer_gate: bool = False, answer_kind: str = "number", cascade: str = "off",
         cascade_verifier: str = "", few_shot_negatives: int = 0, rubric: Sequence[Any] = (),
         **method_kwargs) -> JudgeReward:
  """A :class:`JudgeReward` for ``method`` from a config entry's keys (module docstring)."""
  if method not in METHODS:
    raise ValueError(f"unknown judge method {method!r}; known: {sorted(METHODS)}")
  defaults = METHODS[method]
  judge_kwargs = dict(
      template=template or defaults["template"], parser=parser or defaults["parser"],
      yes_words=tuple(yes_words) or defaults.get("yes_words", parsers.YES_WORDS),
      no_words=tuple(no_words) or defaults.get("no_words", parsers.NO_WORDS),
      batch_size=int(batch_size), prompt_buckets=tuple(int(b) for b in prompt_buckets),
      max_new_tokens=int(max_new_tokens), cache_size=int(cache_size),
      min_verdict_mass=float(min_verdict_mass),
      number_range=tuple(float(x) for x in number_range))
  defenses = defenses_lib.Defenses(
      answer_gate=bool(answer_gate), answer_kind=answer_kind,
      master_key_filter=bool(master_key_filter), injection_filter=bool(injection_filter),
      cascade=cascade, cascade_verifier=cascade_verifier, hardened_prompt=bool(hardened_prompt),
      few_shot_negatives=int(few_shot_negatives))
  return JudgeReward(method, model=model, dtype=dtype, add_bos=bool(add_bos), defenses=defenses,
                     rubric=rubric, judge_kwargs=judge_kwargs, method_kwargs=method_kwargs)


def _factory(method: str):
  def factory(**kwargs) -> JudgeReward:
    return make(method, **kwargs)
  factory.__doc__ = f"The ``{method}`` judge reward (:func:`make`)."
  return factory


for _name in METHODS:
  group_lib.register(_name, _factory(_name))
