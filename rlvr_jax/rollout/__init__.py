"""Rollout: pure sampling processors, the jit-compiled generate loop, teacher-forced scoring.

* `processors`: temperature, top-k, top-p, min-p, greedy and `chain` (hashable, pure).
* `generate.generate`: ``P`` left-padded prompts x ``G`` samples -> `rlvr_jax.types.Rollout`,
  one prefill and a ``lax.while_loop`` decode over a static KV cache inside one ``jax.jit``
  (the module keeps its name, so ``from rlvr_jax.rollout import generate`` is the module).
* `continuous.generate`: the same contract with continuous batching (a fixed number of decode
  slots refilled as rows stop; prompts prefilled once per group).
* `sharding`: how generation is placed on a training mesh (rows over data x fsdp, KV heads over
  tensor, parameters by the partition rules).
* `scoring.token_logprobs`: teacher-forced log-probs/entropy of given completions
  (differentiable, optionally chunked over the sequence).
* `text_sampler.TextSampler`: text in, text out (encode, stop ids, generate, decode), the one
  sampler of the trainer, the warm-up and evaluation; `multiturn`: tool-using episodes.
"""

from rlvr_jax.rollout import generate
from rlvr_jax.rollout import processors
from rlvr_jax.rollout import scoring
from rlvr_jax.rollout.generate import num_traces, pad_prompts
from rlvr_jax.rollout.scoring import token_logprobs

__all__ = ["generate", "num_traces", "pad_prompts", "processors", "scoring", "token_logprobs"]
