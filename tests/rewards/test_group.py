"""Group reward functions: combination and failure policy, the TRL adapter, and each built-in
design against a numpy reference written from its formula, on a fake policy."""

import dataclasses
import warnings

import numpy as np
import pytest

from rlvr_jax.rewards import group
from rlvr_jax.rewards import group_functions as gf


class _Example:
  """An example whose gold answer may be forbidden (reading it raises)."""

  def __init__(self, prompt, answer=None, metadata=None):
    self.prompt, self._answer, self.metadata = prompt, answer, metadata or {}

  @property
  def answer(self):
    if self._answer is None:
      raise AssertionError("the gold answer was read")
    return self._answer


# One token per character, except MULTI: one token whose text is "<answer>" (a delimiter that
# ends inside a token).
MULTI, MULTI_TEXT = 1000, "<answer>"


class FakePolicy(group.PolicyScorer):
  """Character tokens; ``log pi(c | context, c_<i)`` a fixed function of the token, its position
  and the context length, so a reference can recompute every score."""

  def __init__(self):
    self.calls, self.sampled = 0, []

  @staticmethod
  def token_logprob(token: int, position: int, context_len: int) -> float:
    return -0.05 * (token % 7) - 0.02 * position - 0.01 * (context_len % 5) - 0.01

  def logprobs(self, contexts, continuations):
    self.calls += 1
    width = max([len(c) for c in continuations] + [0])
    out = np.zeros((len(contexts), width), np.float32)
    for r, (ctx, cont) in enumerate(zip(contexts, continuations)):
      for i, tok in enumerate(cont):
        out[r, i] = self.token_logprob(tok, i, len(ctx))
    return out

  def encode(self, text):
    return [ord(c) for c in text]

  def decode(self, ids):
    return "".join(MULTI_TEXT if i == MULTI else chr(i) for i in ids)

  def encode_prompt(self, prompt):
    text = prompt if isinstance(prompt, str) else "|".join(m["content"] for m in prompt)
    return [1] + self.encode(text)  # 1 = BOS

  def sample(self, prompts, num_samples):
    self.sampled.append(list(prompts))
    return [[f"{p[::-1]}{k % 2}" for k in range(num_samples)] for p in prompts]


def make_batch(completions, examples, *, verifier=None, truncated=None, policy=None, t=None,
               token_rows=None):
  """A RewardBatch of character-token completions (``token_rows`` overrides the tokens)."""
  p, g = len(completions), len(completions[0])
  rows = token_rows or [[[ord(c) for c in s] + [0] for s in row] for row in completions]
  t = t or max(len(r) for row in rows for r in row)
  tokens = np.zeros((p, g, t), np.int32)
  mask = np.zeros((p, g, t), np.float32)
  for i in range(p):
    for j in range(g):
      tokens[i, j, :len(rows[i][j])] = rows[i][j]
      mask[i, j, :len(rows[i][j])] = 1.0
  policy = policy or FakePolicy()
  prompts = [policy.encode_prompt(e.prompt) for e in examples]
  width = max(len(x) for x in prompts)
  prompt_tokens = np.zeros((p, width), np.int32)
  prompt_mask = np.zeros((p, width), bool)
  for i, x in enumerate(prompts):
    prompt_tokens[i, width - len(x):] = x
    prompt_mask[i, width - len(x):] = True
  return group.RewardBatch(
      examples=examples, prompts=[e.prompt for e in examples], completions=completions,
      tokens=tokens, mask=mask,
      verifier_rewards=np.zeros((p, g), np.float32) if verifier is None else np.asarray(
          verifier, np.float32),
      truncated=np.zeros((p, g), np.float32) if truncated is None else np.asarray(
          truncated, np.float32),
      prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, logprobs=-0.5 * mask, pad_id=0,
      policy=policy)


# --- combination, failure policy, adapter -------------------------------------------------------


def _fn(value):
  return lambda batch: value


def test_weighted_combination_token_rewards_and_metrics():
  batch = make_batch([["ab", "c"]], [_Example("q")])  # mask rows: 3 and 2 tokens, T = 3
  seq = np.array([[1.0, np.nan]])
  tok = np.array([[[0.5, 0.25, 0.0], [1.0, 2.0, 9.0]]])  # 9.0 sits past the mask: ignored
  out = group.compute_group_rewards(
      [group.GroupRewardFunction("a", _fn(seq), 2.0),
       group.GroupRewardFunction("b", _fn(group.GroupRewardResult(tok, {"x": 3.0})), 0.5)],
      batch)
  sums = np.array([0.75, 3.0])
  np.testing.assert_allclose(out.per_function["b"][0], sums)
  np.testing.assert_allclose(out.total[0], [2.0 * 1.0 + 0.5 * 0.75, 0.5 * 3.0])  # NaN -> 0
  np.testing.assert_allclose(out.token_rewards[0], 0.5 * np.array([[0.5, 0.25, 0], [1, 2, 0]]))
  assert out.metrics["b/x"] == 3.0
  assert out.metrics["rewards/a/missing"] == 1.0 and out.metrics["rewards/a/mean"] == 1.0


def test_failure_policy_costs_only_the_failing_function():
  batch = make_batch([["a", "b"]], [_Example("q")])

  def boom(batch):
    raise RuntimeError("judge down")

  def bad_shape(batch):
    return np.zeros(3)

  seen = []
  with pytest.warns(RuntimeWarning):
    out = group.compute_group_rewards(
        [group.GroupRewardFunction("boom", boom), group.GroupRewardFunction("shape", bad_shape),
         group.GroupRewardFunction("ok", _fn(np.array([[1.0, np.inf]])))],
        batch, on_error=lambda name, msg: seen.append(name))
  assert seen == ["boom", "shape"]
  assert out.metrics["rewards/boom/failures"] == 2.0
  assert out.metrics["rewards/shape/failures"] == 2.0
  assert out.metrics["rewards/ok/failures"] == 1.0  # the infinity costs its own sample only
  np.testing.assert_array_equal(out.valid, [[True, False]])
  rewards, failed = group.combine_with_verifier(np.array([[0.0, 1.0]]), out, mode="replace",
                                                failure_reward=-1.0)
  np.testing.assert_array_equal(rewards, [[1.0, -1.0]])
  np.testing.assert_array_equal(failed, [[False, True]])
  rewards, _ = group.combine_with_verifier(np.array([[0.0, 1.0]]), out, mode="add",
                                           verifier_weight=0.5)
  np.testing.assert_array_equal(rewards, [[1.0, 0.5]])


def _length_reward(prompts, completions, answer, **kwargs):
  """A TRL-style function: 1 when the completion is the answer, None for empty ones."""
  assert len(kwargs["verifier_reward"]) == len(completions)
  return [None if not c else float(c == a) for c, a in zip(completions, answer)]


def test_trl_adapter_and_registry():
  batch = make_batch([["4", ""], ["5", "6"]], [_Example("2+2=", "4"), _Example("2+3=", "5")])
  fn = group.build("trl", path=f"{__name__}._length_reward")
  np.testing.assert_array_equal(fn(batch), [[1.0, np.nan], [1.0, 0.0]])
  with pytest.raises(KeyError):
    group.build("no_such_function")
  assert {"ttrl", "co_reward", "verpo", "verifree", "rlpr", "logprob", "sar",
          "darl"} <= set(group.names())


# --- majority votes ---------------------------------------------------------------------------


def test_ttrl_never_reads_the_gold_and_matches_the_vote():
  completions = [["7", "7", "3", "x7"], ["1", "2", "2", "1"], ["", "", "", ""]]
  examples = [_Example(f"q{i}") for i in range(3)]  # reading .answer raises
  out = gf.ttrl(extractor="whole", label_metrics=False)(make_batch(completions, examples))
  # majority of "7,7,3,x7" is 7; "1,2,2,1" ties -> first seen (1); no answers -> no label.
  np.testing.assert_array_equal(out.rewards, [[1, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]])
  np.testing.assert_allclose(out.metrics["majority_ratio"], np.mean([0.5, 0.5, 0.0]))
  labelled = [_Example("q0", "7"), _Example("q1", "2"), _Example("q2", "0")]
  verifier = [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
  with_labels = gf.ttrl(extractor="whole")(make_batch(completions, labelled, verifier=verifier))
  np.testing.assert_array_equal(with_labels.rewards, out.rewards)
  assert with_labels.metrics["label_accuracy"] == pytest.approx(1 / 3)
  assert with_labels.metrics["reward_accuracy"] == pytest.approx(8 / 12)


def test_co_reward_labels_each_question_with_its_rephrasings_majority():
  policy = FakePolicy()  # answers "<reversed prompt>0" / "...1" alternately
  examples = [_Example("2+3=", metadata={"rephrased": "ab"}), _Example("4*5=")]
  completions = [["ba0", "ba1", "ba0", "zz"], ["=5*40", "=5*41", "x", "=5*41"]]
  out = gf.co_reward(extractor="whole", rephrase="metadata", label_metrics=False)
  with pytest.raises(ValueError, match="rephrased"):
    out(make_batch(completions, examples, policy=policy))
  examples[1] = _Example("4*5=", metadata={"rephrased": "5*4="})
  result = out(make_batch(completions, examples, policy=policy))
  assert policy.sampled == [["ab", "5*4="]]
  # twins: "ba0","ba1","ba0","ba1" -> majority "ba0"; "=4*50","=4*51",... -> "=4*50".
  np.testing.assert_array_equal(result.rewards, [[1, 0, 1, 0], [0, 0, 0, 0]])
  assert gf.swap_operands("Q: 12+3=") == "Q: 3+12="
  assert gf.swap_operands([{"role": "user", "content": "Calculate 55 * -3."}]) == [
      {"role": "user", "content": "Calculate -3 * 55."}]
  assert gf.swap_operands("Calculate 9 - 4.") is None


# --- VeRPO ------------------------------------------------------------------------------------


def test_verpo_runs_the_sandbox_and_weights_tests_by_difficulty():
  tests = [{"input": "1\n", "output": "2\n"}, {"input": "5\n", "output": "10\n"},
           {"input": "-3\n", "output": "-6\n"}]
  programs = ["print(int(input()) * 2)", "print(2 if input() == '1' else 0)",
              "print(abs(int(input())) * 2)", "no code here"]
  completions = [[f"```python\n{p}\n```" if "code" not in p else p for p in programs]]
  batch = make_batch(completions, [_Example("double", metadata={"tests": tests})])
  out = gf.verpo(lam=0.5, timeout_s=5.0, max_workers=2)(batch)
  passes = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]], float)
  rho = passes.mean(0)
  w = (1 - rho) + 1e-6
  w = w / w.sum()
  expected = passes.all(1).astype(float) + 0.5 * passes @ w
  np.testing.assert_allclose(out.rewards[0], expected, rtol=1e-5)
  assert out.metrics["pass_rate"] == pytest.approx(passes.mean())


# --- likelihood rewards -----------------------------------------------------------------------


def ref_scores(context_len, tokens):
  return np.array([FakePolicy.token_logprob(t, i, context_len) for i, t in enumerate(tokens)])


def test_splice_cuts_on_sampled_tokens_and_continues_inside_a_token():
  policy = FakePolicy()
  # Sample 0: "ab" then the one-token "<answer>" (its ">" already emitted), then "x".
  # Sample 1: character tokens "c<answer" then "y". Sample 2: no delimiter. Sample 3: truncated.
  rows = [[[97, 98, MULTI, 120, 0], [ord(c) for c in "c<answer"] + [121, 0],
           [ord(c) for c in "zz"] + [0], [ord(c) for c in "d<answer"] + [122]]]
  completions = [[policy.decode(r[:-1]) for r in row] for row in rows]
  batch = make_batch(completions, [_Example("Q", "42")], policy=policy, token_rows=rows,
                     truncated=[[0, 0, 0, 1]])
  splice = gf.splice_reference(batch, delimiter="<answer", template="> {answer} </answer>")
  np.testing.assert_array_equal(splice.valid, [[True, True, False, False]])
  np.testing.assert_array_equal(splice.cut[0, :2], [3, 8])
  assert policy.decode(splice.answers[0]) == " 42 </answer>"  # ">" came with the token
  assert policy.decode(splice.answers[1]) == "> 42 </answer>"
  assert splice.contexts[0] == [1, ord("Q"), 97, 98, MULTI]


def _likelihood_batch(policy):
  completions = [["ab|7", "c|8", "no delimiter"], ["|5", "dd|5", "e|"]]
  examples = [_Example("P1", "7"), _Example("Q22", "5")]
  truncated = [[0, 0, 0], [0, 0, 1]]
  return make_batch(completions, examples, policy=policy, truncated=truncated), completions


def _reference(batch, completions, template="{answer}"):
  """Per-sample (valid, answer log-probs, generated-answer log-probs) from the formulas."""
  out = []
  for i, row in enumerate(completions):
    prompt_len = 1 + len(batch.examples[i].prompt)
    ans = [ord(c) for c in template.replace("{answer}", batch.examples[i].answer)]
    for j, text in enumerate(row):
      cut = text.find("|")
      if cut < 0 or batch.truncated[i, j]:
        out.append((False, None, None))
        continue
      ctx_len = prompt_len + cut + 1
      gen = [ord(c) for c in text[cut + 1:]]
      out.append((True, ref_scores(ctx_len, ans), ref_scores(ctx_len, gen)))
  return out


def test_verifree_logprob_and_darl_match_their_formulas():
  policy = FakePolicy()
  batch, completions = _likelihood_batch(policy)
  ref = _reference(batch, completions)
  verifree = gf.verifree(delimiter="|", template="{answer}", answer_term=False)(batch)
  assert policy.calls == 1  # one batched scoring call per function
  want = [np.exp(lp.sum()) if ok else 0.0 for ok, lp, _ in ref]
  np.testing.assert_allclose(verifree.rewards.reshape(-1), want, rtol=1e-5)
  logprob = gf.logprob(delimiter="|")(batch)
  sums = np.array([lp.sum() if ok else np.nan for ok, lp, _ in ref]).reshape(2, 3)
  fill = np.nanmin(sums, axis=1, keepdims=True)  # invalid -> the group's lowest valid reward
  np.testing.assert_allclose(logprob.rewards, np.where(np.isnan(sums), fill, sums), rtol=1e-5)
  darl = gf.darl(delimiter="|", lam=0.5, tau=0.03)(batch)
  want = []
  for ok, lp, gen in ref:
    if not ok or len(gen) == 0:
      want.append(0.0)
      continue
    r_ref, r_gen = np.exp(lp).mean(), np.exp(gen).mean()
    want.append(r_ref + 0.5 * (max(r_ref - r_gen, 0.0) <= 0.03))
  np.testing.assert_allclose(darl.rewards.reshape(-1), want, rtol=1e-5)
  assert 0 < darl.metrics["within_range"] < 1  # the test covers both sides of the range


def test_rlpr_debiases_formats_and_filters_by_an_ema_threshold():
  policy = FakePolicy()
  batch, completions = _likelihood_batch(policy)
  ref = _reference(batch, completions)
  fn = gf.rlpr(delimiter="|", format_weight=0.1, std_threshold=0.05, momentum=0.9)
  out = fn(batch)
  base = [np.exp(ref_scores(1 + len(e.prompt), [ord(c) for c in e.answer])).mean()
          for e in batch.examples]
  want = np.array([(0.9 * np.clip(np.exp(lp).mean() - base[k // 3], 0, 1) + 0.1) if ok else 0.0
                   for k, (ok, lp, _) in enumerate(ref)]).reshape(2, 3)
  np.testing.assert_allclose(out.rewards, want, rtol=1e-5, atol=1e-7)
  std = want.std(axis=1)
  np.testing.assert_array_equal(out.drop_groups, std < 0.05)
  assert fn(batch).metrics["std_threshold"] == pytest.approx(0.9 * 0.05 + 0.1 * std.mean())


def test_sar_scores_the_response_with_and_without_the_question():
  policy = FakePolicy()
  examples = [_Example([{"role": "system", "content": "S"}, {"role": "user", "content": "UVW"}]),
              _Example("plain")]
  batch = make_batch([["ab", "c"], ["", "xyz"]], examples, policy=policy)
  out = gf.sar()(batch)
  cond_len = [len(policy.encode_prompt(e.prompt)) for e in examples]
  uncond_len = [len(policy.encode_prompt([{"role": "system", "content": "S"},
                                          {"role": "user", "content": ""}])), 1]
  want = []
  for i, row in enumerate([["ab", "c"], ["", "xyz"]]):
    for text in row:
      ids = [ord(c) for c in text] + [0]  # the stop token is part of the response
      ppl_q = np.exp(-ref_scores(cond_len[i], ids).mean())
      ppl = np.exp(-ref_scores(uncond_len[i], ids).mean())
      want.append(max((ppl - ppl_q) / (ppl + 1e-9), -1.0))
  np.testing.assert_allclose(out.rewards.reshape(-1), want, rtol=1e-4)


def test_verifree_answer_columns_splice_the_reference_into_the_sequence():
  policy = FakePolicy()
  batch, completions = _likelihood_batch(policy)
  batch = dataclasses.replace(batch, tokens=np.pad(batch.tokens, ((0, 0), (0, 0), (0, 2))),
                              mask=np.pad(batch.mask, ((0, 0), (0, 0), (0, 2))),
                              logprobs=np.pad(batch.logprobs, ((0, 0), (0, 0), (0, 2))))
  out = gf.verifree(delimiter="|", template="{answer}")(batch)
  cols = out.columns
  # Sample (0, 0) "ab|7": reasoning "ab|" (3 tokens) then the reference "7".
  np.testing.assert_array_equal(cols["tokens"][0, 0, :5], [97, 98, 124, ord("7"), 0])
  np.testing.assert_array_equal(cols["mask"][0, 0, :5], [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(cols["answer_mask"][0, 0, :5], [0, 0, 0, 1, 0])
  assert cols["lengths"][0, 0] == 4
  np.testing.assert_allclose(cols["logprobs"][0, 0, 3],
                             FakePolicy.token_logprob(ord("7"), 0, 1 + 2 + 3), rtol=1e-6)
  np.testing.assert_allclose(cols["answer_weights"], np.where(cols["answer_mask"].any(-1),
                                                              out.rewards, 0.0))
  # An invalid sample keeps its sampled sequence and has no answer term.
  np.testing.assert_array_equal(cols["tokens"][0, 2], batch.tokens[0, 2])
  assert cols["answer_mask"][0, 2].sum() == 0
