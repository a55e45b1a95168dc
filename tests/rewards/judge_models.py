"""Tiny judge models for the judge tests: a random one, and scripted ones that prove behaviour.

* :func:`tokenizer`: a character tokenizer over digits, both cases, punctuation and whitespace
  (other characters, e.g. CJK, map to ``<unk>``).
* :func:`random_judge`: a 1-layer Llama-shaped model with random weights.
* :func:`scripted_judge`: a model whose greedy reply to *any* prompt is ``text`` and whose verdict
  position puts almost all probability on ``text``'s first character. Every decoder layer is
  zero, so the residual stream is the current token's one-hot embedding and the LM head is a
  bigram table: whatever token ends the prompt, the next is ``text[0]``, then ``text[1]``, ...,
  then the end token. ``text`` needs distinct characters that the prompts do not end with.
  ``scripted_judge(tok, "Yes")`` is the judge that always says yes.
"""

import string

import jax
import numpy as np

from rlvr_jax.data import char_tokenizer
from rlvr_jax.models.config import preset
from rlvr_jax.models.transformer import init_params
from rlvr_jax.rewards import judge as judge_lib

ALPHABET = string.digits + string.ascii_letters + " \n.,:;!?'\"()[]{}<>/\\|*+-=#_%$&^~`@"


def tokenizer():
  """The character tokenizer of the judge tests."""
  return char_tokenizer.build(ALPHABET)


def _config(vocab: int, hidden: int):
  return preset("tiny", vocab_size=vocab, hidden_size=hidden, intermediate_size=64,
                num_layers=1, num_heads=2, num_kv_heads=2, head_dim=16,
                max_position_embeddings=4096)


def random_judge(tok, seed: int = 0) -> judge_lib.JudgeModel:
  """A random 1-layer judge (width 32)."""
  config = _config(len(tok), 32)
  return judge_lib.JudgeModel(config, init_params(config, jax.random.PRNGKey(seed)), tok,
                              f"random-{seed}")


def scripted_judge(tok, text: str) -> judge_lib.JudgeModel:
  """A judge whose greedy reply is always ``text`` (see the module docstring)."""
  ids = [tok.convert_tokens_to_ids(c) for c in text]
  if len(set(ids)) != len(ids):
    raise ValueError(f"scripted text needs distinct characters, got {text!r}")
  vocab = len(tok)
  config = _config(vocab, vocab)
  shapes = jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0)))  # no compilation
  params = jax.tree.map(lambda x: np.zeros(x.shape, np.float32), shapes)
  params["embed"]["embedding"] = np.eye(vocab, dtype=np.float32)
  params["final_norm"]["scale"] = np.ones((vocab,), np.float32)
  head = np.zeros((vocab, vocab), np.float32)
  head[:, ids[0]] = 1.0
  for a, b in zip(ids, ids[1:] + [tok.eos_token_id]):
    head[a] = 0.0
    head[a, b] = 1.0
  # RMSNorm scales a one-hot row to sqrt(vocab): logits are 0 or 20 * sqrt(vocab).
  params["lm_head"]["kernel"] = head * 20.0
  return judge_lib.JudgeModel(config, params, tok, f"scripted-{text}")
