"""LLM judges: a local checkpoint, a prompt template and a parser that turns its output into a score.

A judge grades a batch of :class:`JudgeItem` (question, response, reference answer, and for rubric
methods a criterion, a list of criteria or a second response). It is

* a **model** (:class:`JudgeModel`): an HF directory or a GGUF file loaded with
  :func:`rlvr_jax.models.hf.load_hf` (:func:`load_judge_model`), or the policy itself with shared
  weights (:func:`policy_judge_model`: no parameters of its own; every call takes the policy's),
* a **template** (:class:`JudgeTemplate`): system and user messages rendered with the judge
  tokenizer's chat template, plus an optional answer prefix after the generation prompt,
* a **parser** (``parser=``):

  ===============  ======================================================================
  ``"yes_no"``     ``P(yes) / (P(yes) + P(no))`` at the verdict position, one teacher-forced
                   forward pass, no sampling (:func:`~.judge_parsers.yes_probability`)
  ``"soft"``       Su et al.'s soft reward from the same pass (:func:`~.judge_parsers.soft_verdict`)
  ``"verdict"``    a YES/NO verdict read from a greedy reply
  ``"number"``     a score in ``number_range`` read from a greedy reply, rescaled to [0, 1]
  ``"criteria"``   one yes/no per criterion of ``item.criteria`` from one greedy reply
  ``"labels"``     Search-Gen-V's support / partial / not-support label per criterion
  ``"pairwise"``   OpenRS-style winner (A/B/tie) and score, signed towards the response
  ===============  ======================================================================

Execution. Prompts are tokenised, grouped by the smallest of ``prompt_buckets`` that fits, and run
in fixed-size chunks of ``batch_size`` rows (the last chunk padded by repeating a row), so one
step's whole batch goes through a few compiled shapes: the forward pass is one jit per (chunk,
bucket), and the prompt prefix all items share (system prompt, rules, few-shot examples) is read
once per chunk into a KV cache that each item's own tokens continue (``prefix_cache``); greedy
replies use the project's rollout engine
(:func:`rlvr_jax.rollout.generate.generate` with ``temperature=0``, decoded by
:mod:`rlvr_jax.rollout.text_sampler`). A prompt longer than the largest bucket has its response
cut from the front (the final answer is at the end); if it still does not fit, the item is a
parse failure.

Errors never stop a run: an unreadable verdict scores 0 (``0`` per criterion for vector parsers)
and is counted in ``judge/parse_failures``.

Cache. Results are kept in an LRU cache of ``cache_size`` entries keyed by a SHA-256 of (judge
name, parameter version, parser settings, template, defences that change the prompt, the item's
fields), so a repeated (prompt, completion) costs nothing. A policy used as its own judge changes
every step: pass its step as ``version`` so old verdicts are not reused.

Metrics (:meth:`Judge.pop_metrics`, since the previous pop): ``judge/items`` (items asked),
``judge/cache_hits``, ``judge/parse_failures``, ``judge/seconds`` (wall time inside
:meth:`Judge.score`, compilation included) and ``judge/tokens_per_s`` (prompt tokens read plus
tokens generated, per second of model time). A trainer stage divides ``judge/seconds`` by its
step time for the judge's share.

This is the one ``rewards`` module that imports the model and the rollout engine (a judge is a
model); parsers and defences (:mod:`.judge_parsers`, :mod:`.judge_defenses`) do not.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.data import templates as templates_lib
from rlvr_jax.models import hf
from rlvr_jax.models import transformer as transformer_lib
from rlvr_jax.rewards import judge_defenses as defenses_lib
from rlvr_jax.rewards import judge_parsers as parsers
from rlvr_jax.rollout import generate as generate_lib
from rlvr_jax.rollout import text_sampler

PARSERS = ("yes_no", "soft", "verdict", "number", "criteria", "labels", "pairwise")
_FORWARD_PARSERS = ("yes_no", "soft")
_VECTOR_PARSERS = ("criteria", "labels")
DELIMITERS = ("<response>", "</response>")


@dataclasses.dataclass
class JudgeModel:
  """A judge checkpoint.

  Attributes:
    config: its :class:`~rlvr_jax.models.config.ModelConfig`.
    params: its parameters; None for the policy as its own judge (each call passes them).
    tokenizer: a Hugging Face-style tokenizer with a chat template.
    name: the judge's id in cache keys (a path, ``"policy"``, ...).
    add_bos: prepend the BOS token to every prompt.
  """

  config: Any
  params: Any
  tokenizer: Any
  name: str
  add_bos: bool = False


def load_judge_model(path: str, *, name: str = "", dtype: str = "float32",
                     add_bos: bool = False) -> JudgeModel:
  """Loads an HF directory or a ``.gguf`` file (dequantised to ``dtype``) as a judge."""
  config, params = hf.load_hf(path, dtype=dtype, param_dtype=dtype)
  return JudgeModel(config, params, hf.load_tokenizer(path), name or path, add_bos)


def policy_judge_model(config: Any, tokenizer: Any, *, name: str = "policy",
                       add_bos: bool = False) -> JudgeModel:
  """The policy as its own judge: shares the policy's weights, which every call passes."""
  return JudgeModel(config, None, tokenizer, name, add_bos)


@dataclasses.dataclass(frozen=True)
class JudgeTemplate:
  """A judge prompt: ``system`` and ``user`` are ``str.format`` templates over the fields
  ``question``, ``reference``, ``response``, ``criterion``, ``criteria`` (numbered, one per line),
  ``num_criteria`` and ``other`` (the second response of a comparison).

  Attributes:
    name: its id (cache keys, configs).
    system: the system message.
    user: the user message.
    answer_prefix: text after the generation prompt; the verdict position follows it.
    few_shot: the template is the binary reference-based one that few-shot negatives extend.
  """

  name: str
  system: str
  user: str
  answer_prefix: str = ""
  few_shot: bool = False


TEMPLATES: Dict[str, JudgeTemplate] = {t.name: t for t in (
    JudgeTemplate(
        "correctness",
        "You grade answers to problems. Compare the final answer of a student's response with "
        "the reference answer and reply with one word: Yes if they match, No otherwise.",
        "Problem: {question}\nReference answer: {reference}\nStudent response: {response}\n"
        "Does the response's final answer match the reference answer? Reply Yes or No.",
        few_shot=True),
    JudgeTemplate(
        "soft_binary",
        "You verify answers. Given a question, a reference answer and a response, output 1 if "
        "the response's final answer is consistent with the reference answer and 0 otherwise. "
        "Output only the digit.",
        "Question: {question}\nReference answer: {reference}\nResponse: {response}\n"
        "Output 1 or 0."),
    JudgeTemplate(
        "principle",
        "You check whether a response satisfies a principle. Reply with one word: Yes or No.",
        "Prompt: {question}\nResponse: {response}\nPrinciple: {criterion}\n"
        "Does the response satisfy the principle? Reply Yes or No."),
    JudgeTemplate(
        "rubric_score",
        "You score a response on one rubric criterion. Reply with one line: Score: <integer "
        "from 0 to 10>.",
        "Prompt: {question}\nReference: {reference}\nResponse: {response}\n"
        "Criterion: {criterion}\nScore the response on this criterion."),
    JudgeTemplate(
        "criteria",
        "You check a response against a list of criteria. For each criterion, in order, write "
        "one line with its number and yes or no.",
        "Prompt: {question}\nResponse: {response}\nCriteria ({num_criteria}):\n{criteria}\n"
        "Verdicts:"),
    JudgeTemplate(
        "checklist",
        "You check one step of an assistant's work against one checklist criterion. Reply with "
        "one word: Yes if the criterion is satisfied, No otherwise.",
        "Task: {question}\nCriterion: {criterion}\nReference evidence: {reference}\n"
        "Step to check: {response}\nIs the criterion satisfied? Reply Yes or No."),
    JudgeTemplate(
        "style",
        "You check whether a response follows a style requirement. Reply with one word: Yes or "
        "No.",
        "Prompt: {question}\nResponse: {response}\nStyle requirement: {criterion}\n"
        "Does the response follow it? Reply Yes or No."),
    JudgeTemplate(
        "nuggets",
        "You are NuggetMatchJudge. Given a search query, a passage and numbered nuggets, label "
        "each nugget support (the passage states it), partial_support (the passage states part "
        "of it) or not_support (absent or contradicted), using the passage only. Reply with one "
        "label per line, in order.",
        "Search query: {question}\nPassage: {response}\nNuggets ({num_criteria}):\n{criteria}\n"
        "Labels:"),
    JudgeTemplate(
        "pairwise",
        "You compare two responses on one criterion. Reply with two lines: 'Winner: A', "
        "'Winner: B' or 'Winner: tie', then 'Score: n' with n from 1 (slightly better) to 5 "
        "(much better).",
        "Prompt: {question}\nCriterion: {criterion}\nResponse A: {response}\n"
        "Response B: {other}\nWhich response satisfies the criterion better?"),
)}


@dataclasses.dataclass(frozen=True)
class JudgeItem:
  """One question to a judge.

  Attributes:
    question: the task's question (plain text).
    response: the completion being judged.
    reference: the gold answer or reference evidence (``""`` when none).
    criterion: one principle / criterion (per-criterion parsers and templates).
    criteria: every criterion, for ``"criteria"`` and ``"labels"`` (one reply for all).
    other: the second response of a ``"pairwise"`` comparison.
  """

  question: str
  response: str
  reference: str = ""
  criterion: str = ""
  criteria: Tuple[str, ...] = ()
  other: str = ""


@functools.partial(jax.jit, static_argnames=("config",))
def _verdict_logprobs(params, tokens, mask, verdict_ids, *, config):
  """Log-probs of ``verdict_ids`` and the greedy token at the last position of left-padded
  prompts: one forward pass that projects only the last hidden state onto the vocabulary."""
  positions = jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)
  hidden, _ = transformer_lib.Transformer(config).apply(
      {"params": params}, tokens, positions, mask, return_hidden=True)
  logits = transformer_lib.unembed(params, config, hidden[:, -1]).astype(jnp.float32)
  logprobs = jax.nn.log_softmax(logits, axis=-1)
  return logprobs[:, verdict_ids], jnp.argmax(logits, axis=-1)


@functools.partial(jax.jit, static_argnames=("config",))
def _verdict_logprobs_prefixed(params, prefix, tokens, mask, verdict_ids, *, config):
  """:func:`_verdict_logprobs` of rows ``prefix + suffix``: the shared ``prefix [1, Lp]`` (no
  padding) is read once into a KV cache that every left-padded suffix ``[B, S]`` continues."""
  model = transformer_lib.Transformer(config)
  lp, (b, s) = prefix.shape[1], tokens.shape
  cache = transformer_lib.init_cache(config, 1, lp + s)
  # Suffix slots are marked valid in advance; a prefix query only sees slots before its own.
  _, cache = model.apply({"params": params}, prefix, jnp.arange(lp)[None],
                         jnp.ones((1, lp + s), bool), cache=cache, cache_index=jnp.int32(0),
                         return_hidden=True)
  cache = jax.tree.map(lambda x: jnp.broadcast_to(x, (x.shape[0], b) + x.shape[2:]), cache)
  positions = lp + jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)
  slots = jnp.concatenate([jnp.ones((b, lp), bool), mask], axis=1)
  hidden, _ = model.apply({"params": params}, tokens, positions, slots, cache=cache,
                          cache_index=jnp.int32(lp), return_hidden=True)
  logits = transformer_lib.unembed(params, config, hidden[:, -1]).astype(jnp.float32)
  logprobs = jax.nn.log_softmax(logits, axis=-1)
  return logprobs[:, verdict_ids], jnp.argmax(logits, axis=-1)


def shared_prefix_length(rows: Sequence[Sequence[int]], multiple: int) -> int:
  """The longest common token prefix of ``rows``, rounded down to a multiple of ``multiple`` and
  leaving every row at least one token of its own (0 when that is shorter than ``multiple``)."""
  if not rows:
    return 0
  first, n = rows[0], min(len(r) for r in rows) - 1
  length = 0
  while length < n and all(r[length] == first[length] for r in rows):
    length += 1
  return (length // multiple) * multiple


class Judge:
  """A judge: model + template + parser, batched, cached and metered (module docstring).

  Args:
    model: the :class:`JudgeModel`.
    template: a :class:`JudgeTemplate` or the name of one in :data:`TEMPLATES`.
    parser: one of :data:`PARSERS`.
    hardened: quote the response between :data:`DELIMITERS`, remove delimiters, the tokenizer's
      special tokens and chat role markers from every untrusted field, and add
      :data:`~.judge_defenses.HARDENING_RULES` to the system message.
    few_shot_negatives: worked NO examples (and one YES) before the item; the template must have
      ``few_shot=True``.
    yes_words, no_words: the verdict words whose first tokens the forward parsers read.
    min_verdict_mass: ``"yes_no"`` rows with ``P(yes) + P(no)`` below it are unreadable.
    number_range: ``(low, high)`` of the ``"number"`` parser.
    batch_size: rows per compiled chunk.
    prompt_buckets: prompt lengths (tokens) to pad to.
    max_new_tokens: reply budget of the generating parsers.
    cache_size: LRU entries (0: no cache).
    prefix_cache: forward parsers read the prompt prefix shared by a call's items once (a KV
      cache continued by each item's own tokens) instead of once per item.
  """

  def __init__(self, model: JudgeModel, *, template: Any = "correctness", parser: str = "yes_no",
               hardened: bool = False, few_shot_negatives: int = 0,
               yes_words: Sequence[str] = parsers.YES_WORDS,
               no_words: Sequence[str] = parsers.NO_WORDS, min_verdict_mass: float = 1e-3,
               number_range: Tuple[float, float] = (0.0, 10.0), batch_size: int = 16,
               prompt_buckets: Sequence[int] = (256, 512, 1024), max_new_tokens: int = 32,
               cache_size: int = 4096, prefix_cache: bool = True):
    if parser not in PARSERS:
      raise ValueError(f"parser must be one of {PARSERS}, got {parser!r}")
    self.template = TEMPLATES[template] if isinstance(template, str) else template
    if few_shot_negatives and not self.template.few_shot:
      raise ValueError(f"template {self.template.name!r} does not take few-shot examples")
    self.model = model
    self.parser = parser
    self.hardened = bool(hardened)
    self.few_shot = defenses_lib.few_shot_examples(int(few_shot_negatives))
    self.min_verdict_mass = float(min_verdict_mass)
    self.number_range = (float(number_range[0]), float(number_range[1]))
    self.batch_size = int(batch_size)
    self.prompt_buckets = tuple(sorted(int(b) for b in prompt_buckets))
    self.max_new_tokens = int(max_new_tokens)
    self.cache_size = int(cache_size)
    self.prefix_cache = bool(prefix_cache)
    tok = model.tokenizer
    self.yes_ids = parsers.verdict_token_ids(tok, yes_words)
    self.no_ids = parsers.verdict_token_ids(tok, no_words)
    parsers.check_disjoint(self.yes_ids, self.no_ids)
    self._verdict_ids = np.asarray(self.yes_ids + self.no_ids, np.int32)
    special = list(getattr(tok, "all_special_tokens", []) or [])
    special += [str(t) for t in (getattr(tok, "added_tokens_decoder", {}) or {}).values()]
    self._forbidden = tuple(set(special) | set(DELIMITERS) | {
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>",
        "<|end_header_id|>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"})
    self._settings = json.dumps(dict(
        parser=parser, template=dataclasses.asdict(self.template), hardened=self.hardened,
        few_shot=self.few_shot, yes=self.yes_ids, no=self.no_ids, mass=self.min_verdict_mass,
        range=self.number_range, new=self.max_new_tokens), sort_keys=True)
    self._cache: "collections.OrderedDict[str, np.ndarray]" = collections.OrderedDict()
    self._reset_metrics()

  # -- prompts ---------------------------------------------------------------------------------

  def _clean(self, text: str) -> str:
    return defenses_lib.sanitize(text, self._forbidden) if self.hardened else text

  def _fields(self, item: JudgeItem, response: str) -> Dict[str, Any]:
    clean = self._clean
    quote = ((lambda r: f"{DELIMITERS[0]}\n{clean(r)}\n{DELIMITERS[1]}") if self.hardened
             else (lambda r: r))
    criteria = "\n".join(f"{i + 1}. {clean(c)}" for i, c in enumerate(item.criteria))
    return dict(question=clean(item.question), reference=clean(item.reference),
                response=quote(response), criterion=clean(item.criterion), criteria=criteria,
                num_criteria=len(item.criteria), other=quote(item.other))

  def render(self, item: JudgeItem, response: Optional[str] = None) -> str:
    """The judge's prompt text for ``item`` (chat template applied, answer prefix appended);
    ``response`` replaces ``item.response`` (the long-prompt fallback cuts it)."""
    response = item.response if response is None else response
    system = self.template.system
    if self.hardened:
      system = f"{system}\n\n{defenses_lib.HARDENING_RULES}"
    user = self.template.user.format(**self._fields(item, response))
    if self.few_shot:
      shots = []
      for question, reference, answer, verdict in self.few_shot:
        example = JudgeItem(question=question, response=answer, reference=reference)
        shots.append(self.template.user.format(**self._fields(example, answer)) +
                     f"\n{verdict.capitalize()}")
      user = ("Examples of graded responses:\n\n" + "\n\n".join(shots) +
              "\n\nNow grade this response.\n\n" + user)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return templates_lib.render(messages, self.model.tokenizer) + self.template.answer_prefix

  def _token_ids(self, item: JudgeItem) -> Optional[List[int]]:
    """Prompt ids within the largest bucket (response cut from the front if needed), or None."""
    limit = self.prompt_buckets[-1]
    max_pos = getattr(self.model.config, "max_position_embeddings", None)
    if max_pos and self.parser not in _FORWARD_PARSERS:
      limit = min(limit, max_pos - self.max_new_tokens)
    response = item.response
    for _ in range(4):
      ids = text_sampler.prompt_token_ids(self.model.tokenizer, self.render(item, response),
                                          add_bos=self.model.add_bos)
      if len(ids) <= limit:
        return ids
      excess = len(ids) - limit
      response_ids = self.model.tokenizer(response, add_special_tokens=False)["input_ids"]
      if excess >= len(response_ids):
        return None
      response = self.model.tokenizer.decode(response_ids[excess + 8:])
    return None

  # -- model -----------------------------------------------------------------------------------

  def _chunks(self, rows: List[List[int]]):
    """``(indices, tokens, mask)`` per chunk of ``batch_size`` rows of one bucket."""
    pad = text_sampler.pad_token_id(self.model.tokenizer)
    by_bucket: Dict[int, List[int]] = collections.defaultdict(list)
    for i, ids in enumerate(rows):
      by_bucket[next(b for b in self.prompt_buckets if b >= len(ids))].append(i)
    for bucket, members in sorted(by_bucket.items()):
      for start in range(0, len(members), self.batch_size):
        chunk, real = text_sampler.pad_by_repetition(members[start:start + self.batch_size],
                                                     self.batch_size)
        tokens, mask = generate_lib.pad_prompts([rows[i] for i in chunk], (bucket,), pad)
        yield chunk[:real], tokens, mask

  def _forward(self, params, rows: List[List[int]]) -> Tuple[np.ndarray, np.ndarray]:
    """``(verdict log-probs [N, Ky + Kn], greedy ids [N])`` by one forward pass per chunk.

    With ``prefix_cache``, the tokens every prompt of the call shares (system prompt, rules,
    few-shot examples; rounded down to a multiple of 64) are read once per chunk into a KV cache
    and only the rest of each prompt is bucketed and run.
    """
    n_ids = len(self._verdict_ids)
    lps, greedy = np.zeros((len(rows), n_ids)), np.zeros((len(rows),), np.int64)
    lp = shared_prefix_length(rows, 64) if self.prefix_cache else 0
    prefix = jnp.asarray([rows[0][:lp]], jnp.int32)
    for idx, tokens, mask in self._chunks([r[lp:] for r in rows]):
      if lp:
        out = _verdict_logprobs_prefixed(params, prefix, jnp.asarray(tokens), jnp.asarray(mask),
                                         jnp.asarray(self._verdict_ids),
                                         config=self.model.config)
      else:
        out = _verdict_logprobs(params, jnp.asarray(tokens), jnp.asarray(mask),
                                jnp.asarray(self._verdict_ids), config=self.model.config)
      lps[idx] = np.asarray(out[0])[:len(idx)]
      greedy[idx] = np.asarray(out[1])[:len(idx)]
      self._tokens += int(mask[:len(idx)].sum()) + lp * len(idx)
    return lps, greedy

  def _generate(self, params, rows: List[List[int]]) -> List[str]:
    """Greedy replies from the rollout engine (:func:`rlvr_jax.rollout.generate.generate`,
    ``temperature=0``), one compiled shape per (chunk, bucket)."""
    tok = self.model.tokenizer
    out = [""] * len(rows)
    for idx, tokens, mask in self._chunks(rows):
      rollout = generate_lib.generate(
          params, self.model.config, tokens, mask, jax.random.PRNGKey(0), num_samples=1,
          max_new_tokens=self.max_new_tokens, temperature=0.0,
          stop_token_ids=text_sampler.stop_token_ids(tok),
          pad_token_id=text_sampler.pad_token_id(tok))
      lengths = np.asarray(rollout.lengths)[:len(idx)]
      replies = text_sampler.decode_completions(tok, np.asarray(rollout.tokens)[:len(idx)],
                                                lengths)
      for i, reply in zip(idx, replies):
        out[i] = reply
      self._tokens += int(mask[:len(idx)].sum()) + int(lengths.sum())
    return out

  def _parse(self, item: JudgeItem, reply: str) -> Optional[np.ndarray]:
    if self.parser == "verdict":
      v = parsers.parse_yes_no(reply)
    elif self.parser == "number":
      v = parsers.parse_number(reply, *self.number_range)
    elif self.parser == "pairwise":
      v = parsers.parse_pairwise(reply)
    elif self.parser == "criteria":
      return parsers.parse_criteria(reply, len(item.criteria))
    else:
      return parsers.parse_labels(reply, len(item.criteria))
    return None if v is None else np.array([v])

  def _failure(self, item: JudgeItem) -> np.ndarray:
    self._failures += 1
    return np.zeros((max(len(item.criteria), 1) if self.parser in _VECTOR_PARSERS else 1,))

  # -- public ----------------------------------------------------------------------------------

  def cache_key(self, item: JudgeItem, version: str = "") -> str:
    """SHA-256 of (judge, version, parser settings, template, the item's fields)."""
    blob = json.dumps([self.model.name, str(version), self._settings,
                       dataclasses.asdict(item)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()

  def evaluate(self, items: Sequence[JudgeItem], *, params: Any = None,
               version: str = "") -> List[np.ndarray]:
    """One result per item: ``[1]`` for scalar parsers, ``[len(criteria)]`` for ``"criteria"``
    and ``"labels"``; unreadable verdicts give zeros (counted as parse failures)."""
    start = time.perf_counter()
    params = self.model.params if params is None else params
    if params is None:
      raise ValueError(f"judge {self.model.name!r} has no parameters of its own; pass params")
    for item in items:
      if self.parser in _VECTOR_PARSERS and not item.criteria:
        raise ValueError(f"parser {self.parser!r} needs items with criteria")
    results: List[Optional[np.ndarray]] = [None] * len(items)
    todo: Dict[str, List[int]] = collections.OrderedDict()
    for i, item in enumerate(items):
      key = self.cache_key(item, version)
      if key in self._cache:
        self._cache.move_to_end(key)
        results[i] = self._cache[key]
        self._hits += 1
      else:
        todo.setdefault(key, []).append(i)
    keys = list(todo)
    rows, runnable = [], []
    for k, key in enumerate(keys):
      ids = self._token_ids(items[todo[key][0]])
      if ids is None:
        for i in todo[key]:
          results[i] = self._failure(items[i])
      else:
        rows.append(ids)
        runnable.append(k)
    model_start = time.perf_counter()
    computed: Dict[str, np.ndarray] = {}
    if rows:
      firsts = [items[todo[keys[k]][0]] for k in runnable]
      if self.parser in _FORWARD_PARSERS:
        lps, greedy = self._forward(params, rows)
        ny = len(self.yes_ids)
        if self.parser == "yes_no":
          scores, bad = parsers.yes_probability(lps[:, :ny], lps[:, ny:],
                                                min_mass=self.min_verdict_mass)
        else:
          scores, bad = parsers.soft_verdict(lps[:, :ny], lps[:, ny:], greedy, self.yes_ids,
                                             self.no_ids)
        for k, item, s, b in zip(runnable, firsts, scores, bad):
          computed[keys[k]] = self._failure(item) if b else np.array([s])
      else:
        replies = self._generate(params, rows)
        for k, item, reply in zip(runnable, firsts, replies):
          parsed = self._parse(item, reply)
          computed[keys[k]] = self._failure(item) if parsed is None else parsed
    self._model_seconds += time.perf_counter() - model_start
    for key, value in computed.items():
      for i in todo[key]:
        results[i] = value
      if self.cache_size > 0:
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
          self._cache.popitem(last=False)
    self._items += len(items)
    self._seconds += time.perf_counter() - start
    return results

  def score(self, items: Sequence[JudgeItem], *, params: Any = None,
            version: str = "") -> np.ndarray:
    """``[N]`` float64 scores of a scalar parser (:meth:`evaluate`'s single values)."""
    if self.parser in _VECTOR_PARSERS:
      raise ValueError(f"parser {self.parser!r} gives one score per criterion: use evaluate")
    results = self.evaluate(items, params=params, version=version)
    return np.array([r[0] for r in results], np.float64).reshape(len(items))

  def _reset_metrics(self) -> None:
    self._items = self._hits = self._failures = self._tokens = 0
    self._seconds = self._model_seconds = 0.0

  def pop_metrics(self) -> Dict[str, float]:
    """The ``judge/*`` metrics since the last call (module docstring), then resets them."""
    out = {"judge/items": float(self._items), "judge/cache_hits": float(self._hits),
           "judge/parse_failures": float(self._failures), "judge/seconds": self._seconds,
           "judge/tokens_per_s": (self._tokens / self._model_seconds
                                  if self._model_seconds > 0 else 0.0)}
    self._reset_metrics()
    return out
