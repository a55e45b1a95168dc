"""The plain decode loop that `benchmarks/rollout.py --plain` times computes the engine's model:
the same tokens as `rlvr_jax.rollout.generate`, greedy and sampled, on left-padded prompts."""

import importlib.util
import pathlib

import jax
import numpy as np

from rlvr_jax.models import init_params, preset
from rlvr_jax.rollout import generate as gen
from rlvr_jax.rollout import processors as pr

_PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "plain_decode.py"
_SPEC = importlib.util.spec_from_file_location("plain_decode", _PATH)
plain_decode = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(plain_decode)


def test_plain_loop_draws_the_engines_tokens():
  # Qwen3's q/k norms and a tied head: the options the loop implements beyond plain Llama.
  config = preset("tiny", architecture="qwen3", qk_norm=True, tie_word_embeddings=True)
  params = init_params(config, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  p, g, s, n = 2, 3, 6, 8
  tokens = rng.integers(1, config.vocab_size, (p, s)).astype(np.int32)
  mask = np.ones((p, s), bool)
  mask[1, :2] = False  # left padding
  key = jax.random.PRNGKey(7)
  rows = lambda x: np.repeat(x, g, axis=0)
  for temperature, processor in [(0.0, pr.greedy()), (1.0, pr.default_chain(1.0))]:
    want = gen.generate(params, config, tokens, mask, key, num_samples=g, max_new_tokens=n,
                        processors=processor, force_full_length=True).tokens
    got = plain_decode.plain_generate(params, config, rows(tokens), rows(mask), key,
                                      max_new_tokens=n, temperature=temperature)
    np.testing.assert_array_equal(got, want)
