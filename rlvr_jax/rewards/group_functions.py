"""The built-in group reward functions (:mod:`rlvr_jax.rewards.group`), registered by name.

Each factory returns ``fn(batch: RewardBatch) -> GroupRewardResult``; the maths lives in the
pure modules (:mod:`.pseudo_labels`, :mod:`.code`, :mod:`.likelihood`), this module gathers
the group's strings and token rows, and scores rows under the policy in one batched call per
step (:meth:`~rlvr_jax.rewards.group.PolicyScorer.logprobs`).

==========  ===========================================================================
name        reward
==========  ===========================================================================
ttrl        TTRL majority vote (arXiv 2504.16084): ``1[a_i == majority(a_1..a_G)]``; no gold
co_reward   Co-rewarding-I (arXiv 2508.00410): ``1[a_i == majority(answers to q')]``, q' a
            rephrasing of the question, sampled under the policy; no gold
verpo       VeRPO (arXiv 2601.03525, experimental formula): difficulty-weighted unit-test passes
verifree    VeriFree (arXiv 2505.21493): ``pi(a* | x, z)``, plus its reward-weighted answer
            log-likelihood loss input (the ``verifree`` objective reads it)
rlpr        RLPR (arXiv 2506.18254): mean token probability of ``a*``, debiased, std filter
logprob     log-probability reward (arXiv 2602.03979): ``sum_i log pi(a*_i | x, z, a*_<i)``
sar         Self-Aligned Reward (arXiv 2509.05489): relative perplexity gain from the question
darl        DARL (arXiv 2601.14700, experimental combination): reference alignment plus a bonus
            for answers within a deviation range of the reference
==========  ===========================================================================

**Splicing the reference.** The likelihood rewards cut each completion after the first
``delimiter`` (VeriFree's ``"<answer"``; ``""`` means no reasoning: the reference follows the
prompt) and teacher-force ``template`` with ``{answer}`` replaced by the gold answer
(VeriFree's ``"> \\boxed{{answer}} </answer>"``; the default ``"{answer}"``). The cut is made on
the *sampled tokens*: the shortest token prefix whose text contains the delimiter; when that
prefix's last token runs past the delimiter (``"<answer>"`` as one token), the spliced text
starts after the characters it already holds, and a sample whose extra characters do not begin
the template is invalid. A sample without the delimiter, or truncated, is invalid (VeriFree:
``log p = -inf``, reward 0). Only the reference text is tokenised on its own.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rlvr_jax.rewards import code as code_lib
from rlvr_jax.rewards import group as group_lib
from rlvr_jax.rewards import likelihood
from rlvr_jax.rewards import math as math_lib
from rlvr_jax.rewards import pseudo_labels
from rlvr_jax.rewards import sandbox as sandbox_lib
from rlvr_jax.rewards import verifiers

RewardBatch = group_lib.RewardBatch
GroupRewardResult = group_lib.GroupRewardResult


# ---------------------------------------------------------------------------------------------
# Answers and votes (TTRL, Co-Reward).


def _whole(completion: str) -> Optional[str]:
  text = completion.strip()
  return text or None


EXTRACTORS: Dict[str, Callable[[str], Optional[str]]] = {
    "math": math_lib.extract_answer,
    "boxed": verifiers.extract_boxed,
    "answer_tag": verifiers.extract_answer_tag,
    "gsm8k": lambda c: verifiers.extract_gsm8k(c, flexible=True),
    "whole": _whole,
}

EQUALITIES: Dict[str, Optional[Callable[[str, str], bool]]] = {
    "exact": None,  # equality after strip(), pseudo_labels' default
    "math": math_lib.is_equivalent,
}


def _answer_fns(extractor: str, equality: str):
  if extractor not in EXTRACTORS:
    raise ValueError(f"extractor must be one of {sorted(EXTRACTORS)}, got {extractor!r}")
  if equality not in EQUALITIES:
    raise ValueError(f"equality must be one of {sorted(EQUALITIES)}, got {equality!r}")
  return EXTRACTORS[extractor], EQUALITIES[equality]


def _gold_codes(batch: RewardBatch, answers: Sequence[Sequence[Optional[str]]], equal
                ) -> np.ndarray:
  """``[P]`` the gold's code in each prompt's answer code space (a code of its own when no
  sampled answer equals it), for diagnostics only: the gold canonicalised as one more answer."""
  rows = [list(a) + [batch.examples[p].answer] for p, a in enumerate(answers)]
  return pseudo_labels.canonicalize_answers(rows, equal)[:, -1]


def _extract_all(completions: Sequence[Sequence[str]], extract) -> List[List[Optional[str]]]:
  return [[extract(c) for c in row] for row in completions]


def ttrl(*, extractor: str = "math", equality: str = "exact", label_metrics: bool = True):
  """TTRL majority-vote pseudo-rewards (arXiv 2504.16084; PRIME-RL/TTRL ``ttt_metrics.py``).

  ``r_i = 1[a_i == y_hat]`` with ``y_hat`` the most frequent answer of the group (ties: first
  seen), votes = the ``G`` trained samples (the paper votes with ``M = 64`` and trains on 32: set
  ``num_samples`` to the vote count). Answers come from ``extractor`` (``math``, ``boxed``,
  ``answer_tag``, ``gsm8k``, ``whole``) and are compared by ``equality`` (``exact`` or ``math``).
  The gold answer is never read for the reward; ``label_metrics`` reads it for diagnostics only
  (``label_accuracy``: ``y_hat`` equals the gold; ``reward_accuracy``: pseudo reward equals the
  verifier's correctness), besides ``majority_ratio = count(y_hat) / G``.
  """
  extract, equal = _answer_fns(extractor, equality)

  def fn(batch: RewardBatch) -> GroupRewardResult:
    answers = _extract_all(batch.completions, extract)
    ids = pseudo_labels.canonicalize_answers(answers, equal)
    rewards, ratio = pseudo_labels.majority_vote_reward(ids)
    rewards = np.asarray(rewards, np.float32)
    metrics = {"majority_ratio": float(np.mean(ratio)),
               "no_answer": float((ids < 0).mean())}
    if label_metrics:
      majority, _ = pseudo_labels.majority_vote(ids)
      gold = _gold_codes(batch, answers, equal)
      correct = (np.asarray(batch.verifier_rewards) >= 1.0).astype(np.float32)
      metrics.update({k: float(v) for k, v in pseudo_labels.label_metrics(
          majority, gold, rewards, correct).items()})
    return GroupRewardResult(rewards, metrics)

  return fn


_OPERANDS = re.compile(r"(-?\d+(?:\.\d+)?)(\s*)([+*])(\s*)(-?\d+(?:\.\d+)?)")


def swap_operands(prompt: Any) -> Optional[Any]:
  """A procedural rephrasing for arithmetic questions: the operands of the last ``a + b`` or
  ``a * b`` swapped (``"2+3="`` -> ``"3+2="``, ``"Calculate 55 + 3."`` -> ``"Calculate 3 + 55."``;
  the answer is unchanged). Chat prompts get it in their last user message. None when there is
  no commutative operation to swap."""
  if not isinstance(prompt, str):
    users = [i for i, m in enumerate(prompt) if m.get("role") == "user"]
    swapped = swap_operands(prompt[users[-1]]["content"]) if users else None
    if swapped is None:
      return None
    return [dict(m, content=swapped) if i == users[-1] else dict(m) for i, m in enumerate(prompt)]
  matches = list(_OPERANDS.finditer(prompt))
  if not matches:
    return None
  a, s1, op, s2, b = matches[-1].groups()
  m = matches[-1]
  return prompt[:m.start()] + f"{b}{s1}{op}{s2}{a}" + prompt[m.end():]


def _rephrasing(example: Any, rephrase: str) -> Any:
  if rephrase == "metadata":
    if "rephrased" not in example.metadata:
      raise ValueError("co_reward with rephrase='metadata' needs example.metadata['rephrased'] "
                       "(the rephrased prompt: text or chat messages)")
    return example.metadata["rephrased"]
  if rephrase == "swap_operands":
    return swap_operands(example.prompt)
  raise ValueError(f"rephrase must be 'metadata' or 'swap_operands', got {rephrase!r}")


def co_reward(*, extractor: str = "math", equality: str = "exact", rephrase: str = "metadata",
              label_metrics: bool = True):
  """Co-rewarding-I (arXiv 2508.00410; tmlr-group/Co-rewarding): cross-referenced labels.

  Each question ``q`` has a rephrasing ``q'`` (``rephrase="metadata"``: the task puts it in
  ``example.metadata["rephrased"]``, as the paper's ``rewrite_questions.py`` output;
  ``"swap_operands"``: :func:`swap_operands` for arithmetic tasks; a question it cannot rephrase
  is asked again unchanged, counted in ``unrephrased``). The hook samples
  ``G`` answers to every ``q'`` under the policy (one batched generation,
  :meth:`~rlvr_jax.rewards.group.PolicyScorer.sample`) and rewards ``r_i = 1[a_i ==
  majority(answers to q')]`` (an empty label rewards nothing; the ``2G`` answers of a prompt share
  one code space). Unlike the paper, the ``q'`` samples label ``q`` but are not trained on: put
  both phrasings in the data (each with the other as ``rephrased``) to train on both. The gold
  is never read for the reward; ``label_metrics`` as :func:`ttrl`'s, plus ``label_agreement``
  (``q`` and ``q'`` have the same majority answer).
  """
  extract, equal = _answer_fns(extractor, equality)

  def fn(batch: RewardBatch) -> GroupRewardResult:
    if batch.policy is None:
      raise ValueError("co_reward samples the rephrased questions: it needs batch.policy")
    p, g = batch.shape
    rephrased = [_rephrasing(e, rephrase) for e in batch.examples]
    # A question without a rephrasing is asked again as it is: its fresh samples still label it.
    twins = batch.policy.sample([e.prompt if q is None else q
                                 for e, q in zip(batch.examples, rephrased)], g)
    answers = _extract_all(batch.completions, extract)
    twin_answers = _extract_all(twins, extract)
    ids = pseudo_labels.canonicalize_answers(
        [a + b for a, b in zip(answers, twin_answers)], equal)
    rewards, _ = pseudo_labels.co_reward(ids[:, :g], ids[:, g:])
    rewards = np.asarray(rewards, np.float32)
    maj_q, _ = pseudo_labels.majority_vote(ids[:, :g])
    maj_twin, _ = pseudo_labels.majority_vote(ids[:, g:])
    maj_q, maj_twin = np.asarray(maj_q), np.asarray(maj_twin)
    metrics = {"label_agreement": float(((maj_q == maj_twin) & (maj_q >= 0)).mean()),
               "no_label": float((maj_twin < 0).mean()),
               "unrephrased": float(np.mean([q is None for q in rephrased]))}
    if label_metrics:
      gold = _gold_codes(batch, [a + b for a, b in zip(answers, twin_answers)], equal)
      correct = (np.asarray(batch.verifier_rewards) >= 1.0).astype(np.float32)
      metrics.update({k: float(v) for k, v in pseudo_labels.label_metrics(
          maj_twin, gold, rewards, correct).items()})
    return GroupRewardResult(rewards, metrics)

  return fn


# ---------------------------------------------------------------------------------------------
# VeRPO.


def verpo(*, lam: float = 1.0, combine: str = "add", timeout_s: float = 5.0,
          max_workers: int = 0):
  """VeRPO's group pass-matrix reward (arXiv 2601.03525), **experimental** formula
  (:func:`rlvr_jax.rewards.code.verpo_reward`: ``global + lam · local`` with per-test weights
  ``1 - rho_j`` from the group's pass rates).

  Runs every sample's last fenced Python block against its example's
  ``metadata["tests"]`` in the sandbox (one thread pool for the whole step, ``max_workers``
  threads, 0: the CPU count; ``timeout_s`` per test), packs ``passes [P, G, U]`` and scores
  them. A problem without tests scores 0. Metrics: ``pass_rate`` (mean test pass rate),
  ``all_pass`` (share of samples passing every test).
  """
  config = sandbox_lib.SandboxConfig(timeout_s=float(timeout_s))

  def fn(batch: RewardBatch) -> GroupRewardResult:
    p, g = batch.shape
    tests = [list(e.metadata.get("tests") or []) for e in batch.examples]
    programs = [code_lib.extract_code(c) for row in batch.completions for c in row]
    results = code_lib.run_tests_batch(programs, [tests[i // g] for i in range(p * g)],
                                       config=config, max_workers=max_workers or None)
    passes, test_mask = code_lib.pass_matrix([results[i * g:(i + 1) * g] for i in range(p)])
    if passes.shape[-1] == 0:  # no problem has tests: nothing to pass
      return GroupRewardResult(np.zeros((p, g), np.float32), {"pass_rate": 0.0, "all_pass": 0.0})
    rewards = np.asarray(code_lib.verpo_reward(passes, test_mask, lam=lam, combine=combine))
    valid = np.broadcast_to(test_mask[:, None, :], passes.shape)
    metrics = {"pass_rate": float(passes[valid].mean()) if valid.any() else 0.0,
               "all_pass": float(np.asarray(code_lib.all_pass_reward(passes, test_mask)).mean())}
    return GroupRewardResult(rewards.astype(np.float32), metrics)

  return fn


# ---------------------------------------------------------------------------------------------
# Likelihood rewards: the reference answer spliced after the sampled reasoning.


@dataclasses.dataclass(frozen=True)
class Splice:
  """Where each sample's reasoning ends and what is teacher-forced after it (``P·G`` rows).

  Attributes:
    valid: ``[P, G]`` bool: delimiter found, not truncated, the template fits the cut.
    cut: ``[P, G]`` int: tokens of the sampled completion kept as reasoning ``z``.
    contexts: ``P·G`` token lists ``x + z`` (prompt with BOS, then the kept tokens).
    answers: ``P·G`` token lists of the spliced reference (empty where invalid).
  """

  valid: np.ndarray
  cut: np.ndarray
  contexts: List[List[int]]
  answers: List[List[int]]


def _cut(policy, ids: Sequence[int], delimiter: str) -> Tuple[Optional[int], str]:
  """``(k, extra)``: the shortest prefix ``ids[:k]`` whose text contains ``delimiter`` and the
  text it holds past the delimiter's end; ``(None, "")`` when the completion lacks it."""
  if not delimiter:
    return 0, ""
  contains = lambda k: delimiter in policy.decode(ids[:k])
  if not contains(len(ids)):
    return None, ""
  lo, hi = 1, len(ids)
  while lo < hi:  # a longer prefix's text extends a shorter one's, so `contains` is monotone
    mid = (lo + hi) // 2
    if contains(mid):
      hi = mid
    else:
      lo = mid + 1
  text = policy.decode(ids[:lo])
  return lo, text[text.find(delimiter) + len(delimiter):]


def splice_reference(batch: RewardBatch, *, delimiter: str, template: str) -> Splice:
  """The rows that teacher-force ``template`` (``{answer}`` = the gold) after each sample's
  reasoning (see the module docstring)."""
  if batch.policy is None:
    raise ValueError("likelihood rewards score under the policy: they need batch.policy")
  p, g = batch.shape
  valid = np.zeros((p, g), bool)
  cut = np.zeros((p, g), np.int64)
  contexts, answers = [], []
  for i in range(p):
    prompt = batch.prompt_ids(i)
    suffix = template.replace("{answer}", str(batch.examples[i].answer))
    for j in range(g):
      ids = batch.completion_ids(i, j)
      k, extra = (None, "") if batch.truncated[i, j] else _cut(batch.policy, ids, delimiter)
      ok = k is not None and suffix.startswith(extra) and len(suffix) > len(extra)
      answer = batch.policy.encode(suffix[len(extra):]) if ok else []
      valid[i, j], cut[i, j] = ok and bool(answer), k or 0
      contexts.append(prompt + list(ids[:k or 0]))
      answers.append(answer)
  return Splice(valid, cut, contexts, answers)


def _padded(rows: Sequence[Sequence[float]], n: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
  out = np.zeros((n, max(width, 1)), np.float32)
  mask = np.zeros((n, max(width, 1)), np.float32)
  for r, row in enumerate(rows):
    out[r, :len(row)] = row
    mask[r, :len(row)] = 1.0
  return out, mask


def _score(batch: RewardBatch, contexts, continuations) -> Tuple[np.ndarray, np.ndarray]:
  """Teacher-forced log-probs ``[N, L]`` and their mask, in one batched call; ``L`` a power of
  two (the jit'd reward maths then compiles once per bucket, not per step)."""
  lp = batch.policy.logprobs(contexts, continuations)
  width = 1 << max(0, max([len(c) for c in continuations] + [1]) - 1).bit_length()
  mask = _padded([[1.0] * len(c) for c in continuations], len(continuations), width)[0]
  out = np.zeros_like(mask)
  out[:, :lp.shape[1]] = lp
  return out * mask, mask


def _stats(lp: np.ndarray, mask: np.ndarray, valid: np.ndarray, p: int, g: int):
  stats = likelihood.answer_logprob_stats(lp.reshape(p, g, -1), mask.reshape(p, g, -1), valid)
  return {k: np.asarray(v) for k, v in stats.items()}


def verifree(*, delimiter: str = "<answer", template: str = "> \\boxed{{answer}} </answer>",
             answer_term: bool = True):
  """VeriFree (arXiv 2505.21493; sail-sg/VeriFree @718b363): ``R = pi(a* | x, z) =
  exp(sum_i log p_i)``, 0 where invalid.

  With ``answer_term`` the trained sequence becomes ``z + a*`` (the sampled answer is dropped,
  as in VeriFree): the columns replace ``tokens``, ``lengths`` and ``logprobs`` (the reference's
  behaviour log-probs are its teacher-forced ones), set ``mask`` to the reasoning tokens (the
  policy gradient acts on ``z`` only) and add ``answer_mask`` ``[P, G, T]`` and
  ``answer_weights`` ``[P, G]`` = ``R``, which the ``verifree`` objective's answer term reads:
  ``-R_i · sum_{answer tokens} log pi`` (:mod:`rlvr_jax.objectives.answer_likelihood`). A
  spliced sequence longer than ``max_new_tokens`` keeps its reward but gets no answer term;
  invalid samples keep their sampled sequence.
  """

  def fn(batch: RewardBatch) -> GroupRewardResult:
    p, g = batch.shape
    splice = splice_reference(batch, delimiter=delimiter, template=template)
    lp, mask = _score(batch, splice.contexts, splice.answers)
    stats = _stats(lp, mask, splice.valid, p, g)
    rewards = stats["prob"].astype(np.float32)
    metrics = {"valid": float(splice.valid.mean()),
               "answer_logprob": float(stats["sum_logp"][splice.valid].mean())
               if splice.valid.any() else 0.0}
    columns = _answer_columns(batch, splice, lp, rewards) if answer_term else {}
    return GroupRewardResult(rewards, metrics, columns=columns)

  fn.scores_all_positions = answer_term  # the answer term reads positions outside the mask
  return fn


def _answer_columns(batch: RewardBatch, splice: Splice, lp: np.ndarray, rewards: np.ndarray
                    ) -> Dict[str, np.ndarray]:
  """VeriFree's trained sequences ``z + a*`` and the answer term's inputs (see :func:`verifree`)."""
  p, g, t = batch.tokens.shape
  tokens = np.array(batch.tokens)
  mask = np.array(batch.mask, np.float32)
  lengths = mask.sum(-1).astype(np.int32)
  logprobs = np.zeros((p, g, t), np.float32) if batch.logprobs is None else np.array(
      batch.logprobs, np.float32)
  answer_mask = np.zeros((p, g, t), np.float32)
  weights = np.zeros((p, g), np.float32)
  for i in range(p):
    for j in range(g):
      if not splice.valid[i, j]:
        continue
      k, answer = int(splice.cut[i, j]), splice.answers[i * g + j]
      mask[i, j] = 0.0
      mask[i, j, :k] = 1.0
      if k + len(answer) > t:
        continue
      tokens[i, j, k:] = batch.pad_id
      tokens[i, j, k:k + len(answer)] = answer
      logprobs[i, j, k:] = 0.0
      logprobs[i, j, k:k + len(answer)] = lp[i * g + j, :len(answer)]
      answer_mask[i, j, k:k + len(answer)] = 1.0
      lengths[i, j] = k + len(answer)
      weights[i, j] = rewards[i, j]
  return {"tokens": tokens, "mask": mask, "logprobs": logprobs, "lengths": lengths,
          "answer_mask": answer_mask, "answer_weights": weights}


def logprob(*, delimiter: str = "<answer", template: str = "{answer}",
            invalid_reward: Optional[float] = None):
  """Log-probability reward (arXiv 2602.03979): ``R = sum_i log pi(a*_i | x, z, a*_<i)``.

  Invalid samples get ``invalid_reward``, by default their group's lowest valid reward (0 when
  the whole group is invalid; :func:`rlvr_jax.rewards.likelihood.logprob_reward`). Whether the
  paper also trains the answer tokens (the exact gradient's second term) was not confirmed; the
  ``verifree`` objective's answer term can be combined by hand.
  """

  def fn(batch: RewardBatch) -> GroupRewardResult:
    p, g = batch.shape
    splice = splice_reference(batch, delimiter=delimiter, template=template)
    lp, mask = _score(batch, splice.contexts, splice.answers)
    rewards = likelihood.logprob_reward(lp.reshape(p, g, -1), mask.reshape(p, g, -1),
                                        splice.valid, invalid_reward=invalid_reward)
    return GroupRewardResult(np.asarray(rewards, np.float32), {"valid": float(splice.valid.mean())})

  return fn


def rlpr(*, delimiter: str = "<answer", template: str = "{answer}", debias: bool = True,
         format_weight: float = 0.1, std_filter: bool = True, std_threshold: float = 0.5,
         momentum: float = 0.99):
  """RLPR (arXiv 2506.18254): probability reward, debiased, with a format term and std filter.

  ``r = (1/L) sum_i pi(a*_i | x, z, a*_<i)`` (mean token probability); with ``debias``,
  ``r_hat = clip(r - r', 0, 1)`` where ``r'`` scores ``a*`` right after the prompt (no
  reasoning), computed here under the current policy in the same batched call (the paper
  precomputes it once with the base model); ``R = (1 - w) r_hat + w · fmt`` with ``fmt = 1``
  where the delimiter was found (``w = format_weight``, 0.1). With ``std_filter``, groups whose
  reward std is below ``beta`` leave the loss; ``beta`` starts at ``std_threshold`` and follows
  ``beta <- m beta + (1 - m) mean_std`` after every call (``m = momentum``; ``beta`` is the
  function's ``state``, which the trainer checkpoints and restores on resume). Format weight,
  filter and EMA defaults come from a third-party reimplementation [UNVERIFIED against the
  official code]. Metrics: ``std_threshold``, ``kept_groups``, ``valid``.
  """
  state = {"beta": float(std_threshold)}

  def fn(batch: RewardBatch) -> GroupRewardResult:
    p, g = batch.shape
    splice = splice_reference(batch, delimiter=delimiter, template=template)
    contexts, answers = list(splice.contexts), list(splice.answers)
    if debias:
      contexts += [batch.prompt_ids(i) for i in range(p)]
      answers += [batch.policy.encode(template.replace("{answer}", str(e.answer)))
                  for e in batch.examples]
    lp, mask = _score(batch, contexts, answers)
    n = p * g
    stats = _stats(lp[:n], mask[:n], splice.valid, p, g)
    base = None
    if debias:
      base_lp, base_mask = lp[n:], mask[n:]
      base = ((np.exp(base_lp) * base_mask).sum(-1) / np.maximum(base_mask.sum(-1), 1.0))[:, None]
    fmt = splice.valid.astype(np.float32) if format_weight else None
    rewards = np.asarray(likelihood.rlpr_reward(stats["mean_prob"], base, fmt,
                                                alpha=format_weight), np.float32)
    metrics = {"valid": float(splice.valid.mean()), "std_threshold": state["beta"]}
    drop = None
    if std_filter:
      keep, mean_std = likelihood.std_filter_mask(rewards, state["beta"])
      drop = ~np.asarray(keep)
      state["beta"] = float(likelihood.update_std_threshold(state["beta"], mean_std,
                                                            momentum=momentum))
      metrics["kept_groups"] = float((~drop).sum())
    return GroupRewardResult(rewards, metrics, drop_groups=drop)

  fn.state = state
  return fn


def _empty_user(prompt: Any) -> Any:
  """SAR's ``q0``: the prompt with every user message emptied (system messages kept), or ``""``
  for a plain-text prompt."""
  if isinstance(prompt, str):
    return ""
  return [dict(m, content="") if m.get("role") == "user" else dict(m) for m in prompt]


def sar(*, eps: float = 1e-9, clip_min: float = -1.0):
  """Self-Aligned Reward (arXiv 2509.05489; amazon-science code @08892d0):
  ``R_SA = max((ppl(a) - ppl(a|q)) / (ppl(a) + eps), clip_min)``.

  ``ppl(a|q)`` scores the sampled response after its prompt, ``ppl(a)`` after ``q0``, the chat
  template with an empty user message (system prompt kept; ``""`` for a plain-text prompt), both
  teacher-forced under the current policy in one batched call. The paper adds it to the
  verifiable reward with weight 0.2: ``combine="add"``, ``weight=0.2`` (the ``sar`` recipe).
  """

  def fn(batch: RewardBatch) -> GroupRewardResult:
    if batch.policy is None:
      raise ValueError("sar scores under the policy: it needs batch.policy")
    p, g = batch.shape
    responses = [batch.completion_ids(i, j) for i in range(p) for j in range(g)]
    uncond = [batch.policy.encode_prompt(_empty_user(e.prompt)) for e in batch.examples]
    contexts = ([batch.prompt_ids(i) for i in range(p) for _ in range(g)]
                + [uncond[i] for i in range(p) for _ in range(g)])
    lp, mask = _score(batch, contexts, responses + responses)
    n = p * g
    rewards = likelihood.sar_reward(lp[:n].reshape(p, g, -1), lp[n:].reshape(p, g, -1),
                                    mask[:n].reshape(p, g, -1), eps=eps, clip_min=clip_min)
    rewards = np.asarray(rewards, np.float32)
    return GroupRewardResult(rewards, {"positive": float((rewards > 0).mean())})

  return fn


def darl(*, delimiter: str = "<answer", template: str = "{answer}", lam: float = 1.0,
         tau: float = 0.2):
  """DARL (arXiv 2601.14700), **experimental**: reference alignment plus a diversity bonus.

  ``r(y) = (1/|y|) sum_i pi(y_i | x, z, y_<i)`` (mean token probability) of the reference
  ``y*`` (spliced as above) and of the sampled answer ``y`` (the sampled tokens after the cut,
  stop token excluded), both under the current policy in one batched call; the deviation
  ``dr = max(r(y*) - r(y), 0)`` follows the paper (as summarised by a third party; the paper's
  text was not available). The combination is a reconstruction [UNVERIFIED]:
  ``R = r(y*) + lam · 1[dr <= tau]`` (a bonus for answers within the deviation range of the
  reference, however they are worded); 0 where invalid. Metrics: ``deviation`` (mean ``dr``
  over valid samples), ``within_range``.
  """

  def fn(batch: RewardBatch) -> GroupRewardResult:
    p, g = batch.shape
    splice = splice_reference(batch, delimiter=delimiter, template=template)
    generated = []
    for i in range(p):
      for j in range(g):
        ids = batch.completion_ids(i, j)
        end = len(ids) - (0 if batch.truncated[i, j] else 1)  # drop the stop token
        generated.append(ids[int(splice.cut[i, j]):end] if splice.valid[i, j] else [])
    valid = splice.valid & np.asarray([len(y) > 0 for y in generated]).reshape(p, g)
    lp, mask = _score(batch, splice.contexts + splice.contexts, splice.answers + generated)
    n = p * g
    ref = _stats(lp[:n], mask[:n], valid, p, g)["mean_prob"]
    gen = _stats(lp[n:], mask[n:], valid, p, g)["mean_prob"]
    deviation = np.maximum(ref - gen, 0.0)
    within = valid & (deviation <= tau)
    rewards = np.where(valid, ref + lam * within, 0.0).astype(np.float32)
    metrics = {"deviation": float(deviation[valid].mean()) if valid.any() else 0.0,
               "within_range": float(within.mean()), "valid": float(valid.mean())}
    return GroupRewardResult(rewards, metrics)

  return fn


for _name, _factory in (("ttrl", ttrl), ("co_reward", co_reward), ("verpo", verpo),
                        ("verifree", verifree), ("logprob", logprob), ("rlpr", rlpr),
                        ("sar", sar), ("darl", darl)):
  group_lib.register(_name, _factory)
