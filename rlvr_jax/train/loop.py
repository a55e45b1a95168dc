"""The RL loop: collect → stages → score → advantages → update epochs → log, eval, checkpoint.

One step of :func:`train` (config fields under ``config.rl`` unless named):

1. **collect** (:mod:`rlvr_jax.train.stages.dynamic_sampling`): take ``num_prompts`` ``P``
   examples from the task's training stream (its position is checkpointed), sample
   ``num_samples`` ``G`` completions each and score them on the host (worker processes, a
   per-completion timeout: a failing verifier costs one reward); with ``dynamic_sampling``,
   repeat until ``P`` groups with reward variance survive; with ``multiturn.enabled``, each sample
   is an episode of a tool-using environment (:mod:`rlvr_jax.train.stages.multiturn`: loss mask
   with holes on observations, evaluation by episodes too);
   with ``stages.group_rewards``, group-level reward functions rescore each round right after
   the verifier, before dynamic sampling's filter (:mod:`rlvr_jax.train.stages.group_rewards`);
2. **stages** (:mod:`rlvr_jax.train.stages`): the data-stage methods switched on in
   ``stages`` (DARS, Scaf-GRPO, ViSurf, overlong filtering, your own), then the input providers
   the objective reads (ReMax's greedy rewards, LaSeR's self-rewards);
3. **score**: behaviour log-probs from the sampler, the update's own (detached), or recomputed
   (``recompute_old_logprobs``, :func:`rlvr_jax.train.batch.old_logprobs_source`); reference
   log-probs when the objective needs them; with ``trim_padding`` the padding no pass reads is
   cut first (:func:`rlvr_jax.train.batch.trim_padding`);
4. **advantages** (:mod:`rlvr_jax.train.batch`): the objective's reward transform and estimator,
   jit'd, on ``[P, W]`` groups;
5. **update epochs**: ``num_iterations`` passes over ``num_mini_batches`` shuffled mini-batches of
   whole groups, one optimizer step each (:mod:`rlvr_jax.train.step`; a non-finite update is
   skipped on the device, ``max_skipped_updates`` in a row stop the run);
6. **log, evaluate, checkpoint**: metrics (``docs/metrics.md``), held-out evaluation every
   ``config.eval.every`` steps, checkpoints every ``config.checkpoint.every`` steps.

With ``config.lora.rank > 0`` the policy after the warm-up becomes a frozen base: the optimizer
trains LoRA adapters only, sampling and scoring attach them without merging, the KL reference is
the base with the adapters off, and checkpoints hold the adapters (``docs/config.md``).

Static shapes: every update sees ``P·W`` rows of ``T`` tokens, where the stages fix ``W`` (``G``;
``n_max`` with DARS, ``G + 1`` with ViSurf) and ``T`` (``max_new_tokens``, + 1 for LaSeR's
``z_c``; with ``trim_padding``, except under LaSeR and VeriFree, the smallest of 32, 64, ... and ``T``
that holds the step's longest completion, and prompts at the smallest bucket holding them: one
compilation per width). Random draws follow :mod:`rlvr_jax.train.prng`. Held-out evaluation
(:func:`rlvr_jax.eval.driver.evaluate_policy`) uses ``config.eval.num_prompts`` distinct test
prompts: ``pass@1`` from ``config.eval.num_samples`` samples at the training temperature, and
``greedy_accuracy``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvr_jax.data import task as task_lib
from rlvr_jax.eval import driver
from rlvr_jax.models import partition
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import batch as batch_lib
from rlvr_jax.train import builders
from rlvr_jax.train import checkpoint as checkpoint_lib
from rlvr_jax.train import config_lib
from rlvr_jax.train import guards
from rlvr_jax.train import mesh as mesh_lib
from rlvr_jax.train import metrics_writer
from rlvr_jax.train import prng
from rlvr_jax.train import sft
from rlvr_jax.train import stages as stages_lib
from rlvr_jax.train import state as state_lib
from rlvr_jax.train import step as step_lib
from rlvr_jax.train import step_metrics
from rlvr_jax.train.stages import base as stage_base
from rlvr_jax.train.stages import dynamic_sampling
from rlvr_jax.train.stages import multiturn


def _print(message: str) -> None:
  """Console output of process 0 (absl logging stays free for libraries' diagnostics)."""
  if jax.process_index() == 0:
    print(message, flush=True)


def _fmt(metrics: Dict[str, float]) -> str:
  return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def _logprobs_fn(model_config, rl: ml_collections.ConfigDict) -> Callable[..., np.ndarray]:
  """``(params, rows, all_positions) -> [rows, T]`` teacher-forced log-probs, jit'd once."""
  fn = step_lib.model_logprob_fn(model_config, temperature=rl.temperature,
                                 chunk_size=rl.chunk_size, return_entropy=False)
  scorers = {False: jax.jit(step_lib.make_score_fn(fn, rl.num_micro_batches)),
             True: jax.jit(step_lib.make_score_fn(step_lib.score_all_positions(fn),
                                                  rl.num_micro_batches))}

  def logprobs(params, rows, all_positions):
    out = scorers[all_positions](params, rows["prompt_tokens"], rows["prompt_mask"],
                                 rows["tokens"], rows["mask"])[0]
    return text_sampler.fetch_global(out)

  return logprobs


def _initial_policy(config, params, *, sampler, source, logprob_fn, evaluate, workdir):
  """The policy RL starts from (``sft.init_from``, or after the warm-up) and its held-out
  metrics (``before``; ``sft_steps`` where the warm-up stopped)."""
  extra = {}
  if config.sft.init_from:
    params = checkpoint_lib.load_params(config.sft.init_from, params)
    _print(f"initial policy read from {config.sft.init_from}")
  elif config.sft.num_steps > 0:
    probe_fn = None
    if config.sft.target_pass_at_1:
      probe = task_lib.distinct_examples(source, "train", config.sft.probe_prompts,
                                         config.sft.probe_seed)
      probe_fn = lambda s, p: evaluate(p, probe, prng.probe_key(evaluate.key, s),
                                       greedy=False)["pass@1"]
    params, extra["sft_steps"] = sft.warm_up(
        params, config.sft, sampler=sampler,
        stream=task_lib.training_stream(source, config.sft.seed), logprob_fn=logprob_fn,
        probe_fn=probe_fn, log_fn=_print)
    if jax.process_index() == 0:
      checkpoint_lib.save_params(os.path.join(workdir, builders.WARMUP_PARAMS_FILE), params)
  before = dict(evaluate(params, evaluate.heldout, evaluate.key)) if evaluate.heldout else {}
  if before:
    _print(f"held-out before RL: {_fmt(before)}")
  return params, {**before, **extra}


def _update_epochs(state, batch, update, *, rl, seed: int, step: int, width: int, mesh):
  """``num_iterations`` passes over shuffled mini-batches of whole groups: ``(state, metrics
  of each update)``. Every process holds the whole batch and feeds its block of rows."""
  order_rng = prng.minibatch_order(seed, step)
  per_update = []
  for _ in range(rl.num_iterations):
    order = order_rng.permutation(rl.num_prompts)
    for i in range(rl.num_mini_batches):
      mini = batch_lib.take_rows(batch, batch_lib.minibatch_rows(order, i, rl.num_mini_batches,
                                                                 width))
      state, metrics = update(state, mesh_lib.host_local_to_global(mesh_lib.process_rows(mini),
                                                                   mesh))
      per_update.append(metrics)
  return state, jax.device_get(per_update)


# A LoRA run's base: the fingerprint of the frozen weights its adapters are trained on.
LORA_BASE_FILE = "lora_base.json"


def _lora_base_on_resume(config, params, workdir: str):
  """The frozen base a resumed LoRA run continues on (the first start's policy after the
  warm-up: ``sft.init_from``, or the workdir's ``warmup_params.msgpack``, or the initial
  params); checked against the first start's fingerprint before anything is written."""
  warmup = os.path.join(workdir, builders.WARMUP_PARAMS_FILE)
  path = config.sft.init_from or (warmup if os.path.exists(warmup) else "")
  if path:
    params = checkpoint_lib.load_params(path, params)
  with open(os.path.join(workdir, LORA_BASE_FILE)) as f:
    saved = json.load(f)["fingerprint"]
  config_lib.check_lora_base(saved, builders.fingerprint(params))
  return params


def _resume_step(config, workdir, params, tx, with_reference, model_config, lora_config,
                 lora_key):
  """``(step to resume or None, params)``: checks an existing checkpoint against the state this
  config builds (and a LoRA run's base against the first start's) before anything is written."""
  trainable = jax.eval_shape(lambda p: builders.split_trainable(
      p, model_config, lora_config, lora_key)[0], params)
  abstract = jax.eval_shape(lambda p: state_lib.create(
      p, tx, ref_params=p if with_reference else None), trainable)
  step = checkpoint_lib.check_resume(os.path.join(workdir, "checkpoints"), abstract,
                                     config=config)
  if jax.process_count() > 1:
    # Every process looks before any process writes (process 0 creating the checkpoint
    # directory while another still checks would send the processes down different paths).
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("rlvr_jax.train.loop:resume_checked")
  if step is not None and lora_config is not None:
    params = _lora_base_on_resume(config, params, workdir)
  return step, params


def _init_state(params, extras, tx, mesh, ckpt, resume_step, *, with_reference, model_config,
                lora_config, lora_key, workdir):
  """``(state, shardings, extras)`` on the mesh: from ``params`` (with LoRA, fresh adapters on
  ``params`` as the frozen base), or restored from the checkpoint of ``resume_step``
  (checkpoints hold no frozen base: it is rebuilt, and was checked by :func:`_resume_step`)."""
  if lora_config is not None and resume_step is None and jax.process_index() == 0:
    with open(os.path.join(workdir, LORA_BASE_FILE), "w") as f:
      json.dump({"fingerprint": builders.fingerprint(params)}, f)
  params, frozen = builders.split_trainable(params, model_config, lora_config, lora_key)
  state, shardings = state_lib.init_sharded(
      params, tx, partition.param_partition_specs(params, mesh), mesh, with_reference, frozen,
      None if frozen is None else partition.param_partition_specs(frozen, mesh))
  if resume_step is not None:
    restored, extras = ckpt.restore(resume_step, abstract_state=checkpoint_lib.abstract_state(
        state.replace(frozen=None), shardings.replace(frozen=None)))
    state = restored.replace(frozen=state.frozen)
    _print(f"resumed from step {resume_step}")
  return state, shardings, extras


def _make_update(objective, tx, schedule, model_config, rl, shardings, mesh, *,
                 all_positions: bool, group_size: Optional[int], policy_fn,
                 old_from_policy: bool):
  """The jit'd update step over the mesh (its log-prob function scores every completion
  position when a stage's loss term reads one outside the mask, e.g. LaSeR's ``z_c``)."""
  logprob_fn = step_lib.model_logprob_fn(model_config, temperature=rl.temperature,
                                         chunk_size=rl.chunk_size, return_entropy=True)
  if all_positions:
    logprob_fn = step_lib.score_all_positions(logprob_fn)
  return step_lib.jit_update(
      step_lib.make_update_fn(objective, tx, logprob_fn, num_micro_batches=rl.num_micro_batches,
                              group_size=group_size, schedule=schedule, policy_fn=policy_fn,
                              old_logprobs_from_policy=old_from_policy),
      shardings, mesh_lib.batch_sharding(mesh))


def _rescore(round_stages, context, group, examples):
  """The collector's ``rescore`` hook: the round stages (group rewards) on one generated round,
  with a step context whose examples are those drawn so far."""
  ctx, metrics = context(examples), {}
  for stage in round_stages:
    group, stage_metrics = stage(ctx, group)
    metrics.update(stage_metrics)
  return group, metrics


class _Evaluator:
  """``evaluate(params, examples, key, greedy=...)`` with the run's settings (a callable with
  its held-out set and key attached, so helpers take one argument)."""

  def __init__(self, config, sampler, scorer, heldout, key):
    self.config, self.sampler, self.scorer = config.eval, sampler, scorer
    self.heldout, self.key = heldout, key

  def __call__(self, params, examples, key, greedy: Optional[bool] = None) -> Dict[str, float]:
    return driver.evaluate_policy(
        self.sampler, params, examples, key, num_samples=self.config.num_samples,
        batch_size=self.config.batch_size, score_fn=lambda t, e: self.scorer(t, e).rewards,
        greedy=self.config.greedy if greedy is None else greedy)


def train(config: ml_collections.ConfigDict, workdir: str, *,
          batch_callback: Optional[Callable[[int, Dict[str, Any]], None]] = None
          ) -> Dict[str, Any]:
  """Runs (or resumes) the experiment described by ``config`` in ``workdir``.

  Writes ``config.json``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/`` and, after a
  supervised warm-up, ``warmup_params.msgpack`` (see ``config.sft.init_from``). Returns the
  summary: held-out metrics before and after RL (``before/...``, ``after/...``), steps, runtime.

  Args:
    config: the experiment config (``experiments/configs/base.py`` lists every field).
    workdir: output directory; an existing checkpoint there is resumed.
    batch_callback: optional ``fn(step, info)`` called with each step's ``group`` (the group
      batch after the stages), ``batch`` (the update's :class:`~rlvr_jax.train.step.TrainBatch`),
      ``advantage_inputs``, ``examples`` (indexed by ``group['example_id']``) and ``params``
      (those that sampled the step; the update donates their buffers, so use them inside the call).
  """
  start_time = time.time()
  rl = config.rl
  init_key, sample_key, eval_key = prng.split_seed(config.seed)
  tokenizer = builders.build_tokenizer(config)
  model_config, params = builders.build_model(config, tokenizer, init_key)
  source = builders.build_task(config)
  objective = config_lib.build_objective(rl.objective)
  mesh = mesh_lib.from_config(config.mesh)
  sampler = builders.build_sampler(config, model_config, tokenizer, mesh)
  episodes, source = multiturn.from_config(config, model_config, tokenizer, source)
  run = stage_base.RunInfo(rl.num_samples, rl.num_prompts, rl.temperature, objective, sampler,
                           max(config.data.prompt_buckets), episodes)
  stages = stages_lib.from_config(rl.stages, run, dynamic_sampling=rl.dynamic_sampling.enabled)
  multiturn.check_stages(stages if episodes else ())
  round_stages = [s for s in stages if s.scores_rounds]  # the group-reward hook, in collection
  collect = multiturn.collect if episodes else dynamic_sampling.collect
  batch_lib.check_objective_inputs(objective, stages_lib.provided_inputs())
  width = functools.reduce(lambda w, s: s.width(w), stages, rl.num_samples)
  old_source = batch_lib.old_logprobs_source(config, objective)
  # Columns read outside the mask (LaSeR's z_c, VeriFree's spliced answer) must not be cut.
  trim_completions = not any(s.extra_columns or s.scores_all_positions for s in stages)
  config_lib.validate(config, batch_divisor=mesh_lib.batch_divisor(mesh), group_width=width,
                      max_positions=getattr(model_config, "max_position_embeddings", None))
  tx, schedule = state_lib.make_optimizer(
      config.optimizer, num_updates=rl.num_steps * rl.num_iterations * rl.num_mini_batches)
  lora_config = builders.build_lora_config(config)
  lora_key, dropout_key = prng.lora_keys(init_key)
  with_reference = objective.needs_reference and lora_config is None  # LoRA: the base is it
  resume_step, params = _resume_step(config, workdir, params, tx, with_reference, model_config,
                                     lora_config, lora_key)  # before anything is written
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    metrics_writer.MetricsWriter(workdir, jsonl=False, tensorboard=False).write_config(config)
  scorer = stage_base.TimedScorer(builders.build_scorer(config))
  heldout = task_lib.distinct_examples(source, "test", config.eval.num_prompts, config.eval.seed)
  evaluate = (multiturn.Evaluator(config.eval, episodes, heldout, eval_key) if episodes
              else _Evaluator(config, sampler, scorer, heldout, eval_key))
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     max_to_keep=config.checkpoint.keep)
  sft_logprob_fn = step_lib.model_logprob_fn(model_config, temperature=1.0,
                                             chunk_size=rl.chunk_size, return_entropy=False)
  extras = {"data_position": 0}
  if resume_step is None:
    params, extras["before"] = _initial_policy(config, params, sampler=sampler, source=source,
                                               logprob_fn=sft_logprob_fn, evaluate=evaluate,
                                               workdir=workdir)
  state, shardings, extras = _init_state(
      params, extras, tx, mesh, ckpt, resume_step, with_reference=with_reference,
      model_config=model_config, lora_config=lora_config, lora_key=lora_key, workdir=workdir)
  start_step, position = int(resume_step or 0), int(extras["data_position"])
  for stage in stages:
    stage.load_state_dict(dict(extras.get("stages", {})).get(stage.name, {}))
  runtime_before = float(extras.get("runtime_s", 0.0))

  update = _make_update(objective, tx, schedule, model_config, rl, shardings, mesh,
                        all_positions=any(s.scores_all_positions for s in stages),
                        group_size=width if objective.whole_groups else None,
                        policy_fn=builders.lora_policy_fn(lora_config, dropout_key),
                        old_from_policy=old_source == "policy")
  logprobs_fn = _logprobs_fn(model_config, rl)
  advantage_fn = batch_lib.make_advantage_fn(objective)
  stacks = rl.dynamic_sampling.enabled or any(s.stacks_generations for s in stages)
  prompt_width = run.max_prompt_length if stacks else None
  stream = task_lib.training_stream(source, config.seed, position)
  guard = guards.SkipGuard(rl.max_skipped_updates)
  writer = metrics_writer.MetricsWriter(workdir, enabled=jax.process_index() == 0)
  writer.truncate_after(start_step)
  progress = metrics_writer.ProgressBar(rl.num_steps, initial=start_step,
                                        keys=("reward", "loss"), every=config.log_every)
  if start_step == 0 and metrics_writer.zero_learning_rate_warning(schedule):
    _print(metrics_writer.zero_learning_rate_warning(schedule))

  try:  # an error (a stopped run too) still completes pending checkpoint writes and closes
    for step in range(start_step, rl.num_steps):
      t0 = time.time()
      scorer.reset()
      policy = builders.policy_params(state.params, state.frozen, lora_config)
      context = functools.partial(stage_base.StepContext, step, policy, run=run, scorer=scorer,
                                  sample_key=sample_key, prompt_width=prompt_width,
                                  logprobs_fn=logprobs_fn)
      collected = collect(
          stream, position, step=step, params=policy, run=run, scorer=scorer,
          sample_key=sample_key, prompt_width=prompt_width,
          dynamic_sampling=rl.dynamic_sampling,
          rescore=functools.partial(_rescore, round_stages, context) if round_stages else None)
      ctx = context(collected.examples)
      group, metrics, position = collected.group, dict(collected.metrics), collected.position
      for stage in (s for s in stages if not s.scores_rounds):
        group, stage_metrics = stage(ctx, group)
        metrics.update(stage_metrics)
      t1 = time.time()

      if rl.trim_padding:
        group = batch_lib.trim_padding(group, config.data.prompt_buckets,
                                       completions=trim_completions)
      old_logprobs = (ctx.group_logprobs(group) if old_source == "recompute"
                      else group["logprobs"])
      reference = state.ref_params if lora_config is None else state.frozen
      ref_logprobs = (ctx.group_logprobs(group, params=reference)
                      if objective.needs_reference else np.zeros_like(group["mask"]))
      inputs = batch_lib.advantage_inputs(group, old_logprobs, ref_logprobs, step,
                                          objective.advantage_reads)
      rewards, advantages = batch_lib.group_advantages(advantage_fn, inputs, group["valid"])
      batch = batch_lib.train_batch(group, rewards, advantages, old_logprobs, ref_logprobs,
                                    objective.loss_reads)
      if batch_callback is not None:
        batch_callback(step, dict(group=group, batch=batch, advantage_inputs=inputs,
                                  examples=collected.examples, params=policy))
      t2 = time.time()

      state, per_update = _update_epochs(state, batch, update, rl=rl, seed=config.seed, step=step,
                                         width=width, mesh=mesh)
      guard.update(step + 1, [m.get(guards.SKIPPED, 0.0) for m in per_update],
                   last_checkpoint=ckpt.latest_step())
      if rl.ref_refresh_steps and (step + 1) % rl.ref_refresh_steps == 0:
        state = state.replace(ref_params=jax.tree.map(jnp.copy, state.params))
      t3 = time.time()

      metrics.update(guards.mean_over_updates(per_update))
      metrics.update(step_metrics.generation_metrics(collected.rounds))
      metrics.update(step_metrics.advantage_metrics(rewards, advantages, inputs.mask))
      metrics.update(step_metrics.timing_metrics(
          rollout_s=t1 - t0 - scorer.seconds, reward_s=scorer.seconds, advantage_s=t2 - t1,
          update_s=t3 - t2, generated_tokens=metrics["num_tokens"],
          trained_tokens=rl.num_iterations * float(batch.loss.mask.sum())))
      metrics["data_position"] = float(position)
      if config.eval.every and (step + 1) % config.eval.every == 0 and step + 1 < rl.num_steps:
        metrics.update({f"eval/{k}": v for k, v in evaluate(
            builders.policy_params(state.params, state.frozen, lora_config), heldout,
            eval_key).items()})
      writer.write(step + 1, metrics)
      if config.log_completions_every and (step + 1) % config.log_completions_every == 0:
        writer.write_completions(step + 1, metrics_writer.completion_records(
            group, collected.examples, tokenizer, num=config.log_completions_num))
      if jax.process_index() == 0:
        progress.update(step + 1, metrics)
      if config.checkpoint.every and ((step + 1) % config.checkpoint.every == 0
                                      or step + 1 == rl.num_steps):
        ckpt.save(step + 1, state.replace(frozen=None), {
            "data_position": position, "before": extras.get("before", {}),
            "runtime_s": runtime_before + time.time() - start_time,
            "stages": {s.name: kept for s in stages if (kept := s.state_dict())},
            "config": checkpoint_lib.to_jsonable(config)})

    policy = builders.policy_params(state.params, state.frozen, lora_config)
    after = evaluate(policy, heldout, eval_key) if heldout else {}
  finally:
    ckpt.close()
    scorer.close()
    writer.close()
  summary = {"steps": int(rl.num_steps), "runtime_s": runtime_before + time.time() - start_time,
             **{f"before/{k}": v for k, v in extras.get("before", {}).items()},
             **{f"after/{k}": v for k, v in after.items()}}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2, sort_keys=True)
  return summary


def format_summary(summary: Dict[str, Any]) -> str:
  """Human-readable before/after lines of a :func:`train` summary."""
  lines = [f"RL steps: {summary['steps']}, runtime {summary['runtime_s']:.0f}s"]
  if "before/sft_steps" in summary:
    lines.append(f"supervised warm-up: {summary['before/sft_steps']} steps")
  for key in ("pass@1", "greedy_accuracy", "tool_call_rate", "greedy_tool_call_rate"):
    if f"before/{key}" in summary and f"after/{key}" in summary:
      before, after = summary[f"before/{key}"], summary[f"after/{key}"]
      lines.append(f"held-out {key}: before RL {100 * before:.1f}%  after RL {100 * after:.1f}%  "
                   f"({100 * (after - before):+.1f} points)")
  return "\n".join(lines)
