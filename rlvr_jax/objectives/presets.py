"""Presets: named methods as particular choices of public stages (no logic of their own).

``get(name, **overrides) -> Objective``; ``names()`` lists them; ``defaults(name)`` gives every
keyword argument of a preset with its default; ``register(name, factory)`` adds a user objective.
A preset is a function decorated with ``@preset(name)`` (``experimental=True`` marks presets that
rest on formulas or defaults that could not be confirmed against the paper's text;
``EXPERIMENTAL`` lists them). Each documents its paper (arXiv id), its defaults and where they
come from, and its equivalence to verl/TRL settings; ``docs/objectives.md`` has the full table.

**Keyword arguments are config data.** Every default is a plain ``bool``/``int``/``float``/``str``
(no ``None``, tuples or callables), so a trainer can turn a preset's signature into config fields
overridable one at a time; where an option can be off, an explicit value means off (documented,
e.g. ``dual_clip=0.0``, ``kl_coef=0.0``). The objective a preset returns carries the resolved
keyword arguments, defaults included, as ``Objective.hparams``. Names mean one thing across
presets: ``epsilon_low``/``epsilon_high`` are always PPO's clip range of the ratio,
``ρ ∈ [1 − ε_low, 1 + ε_high]`` (every PPO-clip preset takes both; ``epsilon_high``'s default
equals ``epsilon_low``'s except in DAPO, so set both for another symmetric range), and
``dual_clip`` its dual-clip bound. CISPO's importance-weight truncation is ``is_lower``/``is_upper``
and GMPO's log-space clip is ``log_clip_low``/``log_clip_high``.

Data-stage parts of a method (DAPO dynamic sampling, RiskPO bundling order, Weighted-GRPO pair
selection, LaSeR's ``z_c`` hook) live in the trainer/data pipeline, not in the objective.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

from rlvr_jax import advantages
from rlvr_jax.objectives import aggregation
from rlvr_jax.objectives import compose
from rlvr_jax.objectives import reward_transforms
from rlvr_jax.objectives import surrogates
from rlvr_jax.objectives import weighting
from rlvr_jax.objectives.compose import Objective

_PRESETS: dict[str, Callable[..., Objective]] = {}
_EXPERIMENTAL: set[str] = set()
_PLAIN = (bool, int, float, str)

# GRPO's advantage (group z-score, ddof=1, ε = 1e-6 outside the root: verl's), shared by 8 presets.
GRPO_ADVANTAGE = compose.advantage(advantages.group_zscore, ddof=1, epsilon=1e-6)


def ppo_clip_stage(epsilon_low: float, epsilon_high: float,
                   dual_clip: float = 0.0) -> compose.Stage:
  """The PPO clipped-surrogate stage (``surrogates.ppo_clip``); ``dual_clip=0.0`` is off."""
  if dual_clip and dual_clip <= 1.0:
    raise ValueError(f"dual_clip must be 0.0 (off) or > 1, got {dual_clip}")
  return compose.surrogate(surrogates.ppo_clip, epsilon_low=epsilon_low,
                           epsilon_high=epsilon_high, dual_clip=dual_clip or None)


def _kl(coef: float, estimator: str) -> tuple:
  return (compose.kl_loss(coef, estimator=estimator),) if coef else ()


def _entropy(coef: float) -> tuple:
  return (compose.entropy_bonus(coef),) if coef else ()


def _remap(pos: float, neg: float) -> compose.Stage:
  # Rewards from correctness: reads ``AdvantageInputs.extras['correct']`` [P,G] (a binary
  # verifier's reward is its correctness; a trainer passes both).
  return compose.reward_transform(reward_transforms.remap_binary, pos=pos, neg=neg)


# ---------------------------------------------------------------------------------------------
# Registration.


def _check_factory(name: str, factory: Callable) -> None:
  if not callable(factory):
    raise TypeError(f"factory must be callable, got {type(factory).__name__}")
  for param in inspect.signature(factory).parameters.values():
    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
      raise TypeError(f"{name}: a preset factory lists its keyword arguments; got {param}")
    if param.default is param.empty or type(param.default) not in _PLAIN:
      raise TypeError(f"{name}: keyword argument {param.name!r} needs a plain bool/int/float/str "
                      f"default (config data), got {param.default!r}; use an explicit value "
                      "for 'off' (0.0, 'none') rather than None")


def _recording(factory: Callable[..., Objective]) -> Callable[..., Objective]:
  """Wraps ``factory`` so that its objective's ``hparams`` are the resolved keyword arguments."""
  signature = inspect.signature(factory)

  @functools.wraps(factory)
  def build(**overrides: Any) -> Objective:
    bound = signature.bind(**overrides)  # TypeError for an unknown keyword
    bound.apply_defaults()
    objective = factory(**bound.arguments)
    if not isinstance(objective, Objective):
      raise TypeError(f"{factory.__name__} returned {type(objective).__name__}, not an Objective")
    return dataclasses.replace(objective, hparams=dict(bound.arguments))

  return build


def preset(name: str, *, experimental: bool = False):
  """Registers the decorated function as the built-in preset ``name``."""

  def register_builtin(factory: Callable[..., Objective]) -> Callable[..., Objective]:
    if name in _PRESETS:
      raise ValueError(f"preset {name!r} is defined twice")
    _check_factory(name, factory)
    build = _recording(factory)
    _PRESETS[name] = build
    if experimental:
      _EXPERIMENTAL.add(name)
    return build

  return register_builtin


# ---------------------------------------------------------------------------------------------
# The presets, in table order.


@preset("grpo")
def grpo(*, epsilon_low: float = 0.2, epsilon_high: float = 0.2, dual_clip: float = 0.0,
         kl_coef: float = 0.04, kl_estimator: str = "k3", std_epsilon: float = 1e-6) -> Objective:
  """GRPO (DeepSeekMath, arXiv 2402.03300 §4.1, eq. 3).

  group z-score (ddof=1, ε 1e-6 outside the root) → PPO clip ε=0.2 → seq-mean-token-mean, plus
  ``β·k3`` KL in the loss with β = 0.04 (paper; ``kl_coef=0.0`` drops it and the reference).
  ``epsilon_high > epsilon_low`` is DAPO's clip-higher; ``dual_clip`` > 1 enables dual-clip
  (0.0: off). == verl ``adv_estimator=grpo``, ``loss_agg_mode=seq-mean-token-mean``,
  ``use_kl_loss``, ``kl_loss_coef=0.04``, ``kl_loss_type=low_var_kl``, ``clip_ratio_low/high``
  (verl also applies dual-clip c=3: ``dual_clip=3.0``); == TRL ``loss_type='grpo', beta=0.04,
  epsilon=0.2, epsilon_high`` up to TRL's std epsilon 1e-4 (``std_epsilon``) and TRL's unclamped k3.
  """
  return compose.make_objective(
      "grpo",
      advantage=compose.advantage(advantages.group_zscore, ddof=1, epsilon=std_epsilon),
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.seq_mean_token_mean,
      regularizers=_kl(kl_coef, kl_estimator),
  )


@preset("dapo")
def dapo(*, epsilon_low: float = 0.2, epsilon_high: float = 0.28, dual_clip: float = 0.0,
         max_length: int = 20480, cache_length: int = 4096, overlong_factor: float = 1.0,
         overlong_penalty: bool = True) -> Objective:
  """DAPO (arXiv 2503.14476): clip-higher, token-level loss, ±1 reward, soft overlong punishment.

  rewards remapped to ``{+1, −1}`` from correctness (eq. 7; ``extras['correct']``), plus the
  overlong penalty of eq. 13 (L_max 20480, L_cache 4096) → group z-score → PPO
  clip (0.2, 0.28) → token-mean; no KL. == TRL ``loss_type='dapo', epsilon=0.2,
  epsilon_high=0.28``; == verl ``loss_agg_mode=token-mean, clip_ratio_low=0.2,
  clip_ratio_high=0.28`` (+ ``dual_clip=3.0`` for verl's always-on ``clip_ratio_c``) with the
  ``dapo`` reward manager's overlong buffer. Dynamic sampling (dropping zero-variance groups) is a
  data stage in the trainer.
  """
  stages = [_remap(1.0, -1.0)]
  if overlong_penalty:
    stages.append(compose.reward_transform(reward_transforms.overlong_soft_penalty,
                                           combine="add", max_length=max_length,
                                           cache_length=cache_length, factor=overlong_factor))
  return compose.make_objective(
      "dapo",
      reward_transform=compose.chain_rewards(*stages),
      advantage=GRPO_ADVANTAGE,
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.token_mean,
  )


@preset("dr_grpo")
def dr_grpo(*, epsilon_low: float = 0.2, epsilon_high: float = 0.2, dual_clip: float = 0.0,
            constant: float = 3000.0, per_sequence: bool = True,
            kl_coef: float = 0.0) -> Objective:
  """Dr. GRPO (arXiv 2503.20783): group centring, constant normaliser (C = 3000), PPO clip 0.2, β=0.

  ``(1/N_seq) Σ_i Σ_t l / C`` as oat/understand-r1-zero; == TRL ``loss_type='dr_grpo',
  scale_rewards='none', max_completion_length=C``; == verl 0.9.1
  ``norm_adv_by_std_in_grpo=False, loss_agg_mode=seq-mean-token-sum-norm, loss_scale_factor=C``.
  ``per_sequence=False`` drops the ``1/N_seq`` (``Σ_{i,t} l / C``, verl's form before 0.9).
  """
  return compose.make_objective(
      "dr_grpo",
      advantage=compose.advantage(advantages.group_center),
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=functools.partial(aggregation.sum_over_constant, constant=constant,
                                    per_sequence=per_sequence),
      regularizers=_kl(kl_coef, "k3"),
  )


@preset("gspo")
def gspo(*, epsilon_low: float = 3e-4, epsilon_high: float = 4e-4) -> Objective:
  """GSPO (arXiv 2507.18071): sequence-ratio clipping (3e-4, 4e-4), seq-mean-token-mean.

  == verl ``loss_mode=gspo`` (clip_ratio_low/high 3e-4/4e-4, log-ratio ≤ 10); == TRL
  ``importance_sampling_level='sequence', loss_type='grpo', epsilon=3e-4, epsilon_high=4e-4``.
  """
  return compose.make_objective(
      "gspo",
      advantage=GRPO_ADVANTAGE,
      surrogate=compose.surrogate(surrogates.gspo, epsilon_low=epsilon_low,
                                  epsilon_high=epsilon_high),
      aggregation=aggregation.seq_mean_token_mean,
  )


@preset("cispo")
def cispo(*, is_lower: float = 0.0, is_upper: float = 5.0) -> Objective:
  """CISPO (MiniMax-M1, arXiv 2506.13585): ``−sg(clip(ρ, is_lower, is_upper))·A·lp``, token-mean.

  The bounds truncate the detached importance weight (absolute values; the paper's
  ``1 − ε^IS_low`` and ``1 + ε^IS_high``): no lower bound (``is_lower=0.0``, the paper's "large"
  ε^IS_low) and the cap 5.0 (ScaleRL arXiv 2510.13786's value; MiniMax gives none). No KL.
  == TRL ``loss_type='cispo', epsilon_high=5.0``; == verl ``loss_mode=cispo`` with
  ``clip_ratio_high = is_upper − 1 = 4.0`` and ``clip_ratio_low = 1 − is_lower``.
  """
  return compose.make_objective(
      "cispo",
      advantage=GRPO_ADVANTAGE,
      surrogate=compose.surrogate(surrogates.cispo, is_lower=is_lower, is_upper=is_upper),
      aggregation=aggregation.token_mean,
  )


@preset("dispo", experimental=True)
def dispo(*, epsilon_low_correct: float = 0.2, epsilon_high_correct: float = 0.28,
          epsilon_low_incorrect: float = 0.2, epsilon_high_incorrect: float = 0.28,
          out_of_range: str = "mask") -> Objective:
  """DISPO (arXiv 2602.00983), EXPERIMENTAL: clipped-IS REINFORCE with four bounds by correctness.

  The weight is ``clip(ρ, 1 − ε⁻_c, 1 + ε⁺_c)`` (relative bounds, as PPO's ε) for correct and
  incorrect responses. The form of the weight and the four defaults are not confirmed (see
  ``surrogates.dispo``); the defaults are DAPO's clip range for both classes. No peer implements it.
  """
  return compose.make_objective(
      "dispo",
      advantage=GRPO_ADVANTAGE,
      surrogate=compose.surrogate(surrogates.dispo, epsilon_low_correct=epsilon_low_correct,
                                  epsilon_high_correct=epsilon_high_correct,
                                  epsilon_low_incorrect=epsilon_low_incorrect,
                                  epsilon_high_incorrect=epsilon_high_incorrect,
                                  out_of_range=out_of_range),
      aggregation=aggregation.token_mean,
  )


@preset("sapo")
def sapo(*, tau_pos: float = 1.0, tau_neg: float = 1.05) -> Objective:
  """SAPO (arXiv 2511.20347): soft sigmoid gate, τ_pos 1.0, τ_neg 1.05, seq-mean-token-mean.

  == verl ``loss_mode=sapo`` (``tau_pos/tau_neg``; verl forces seq-mean-token-mean); == TRL
  ``loss_type='sapo', sapo_temperature_pos=1.0, sapo_temperature_neg=1.05``.
  """
  return compose.make_objective(
      "sapo",
      advantage=GRPO_ADVANTAGE,
      surrogate=compose.surrogate(surrogates.sapo, tau_pos=tau_pos, tau_neg=tau_neg),
      aggregation=aggregation.seq_mean_token_mean,
  )


@preset("gmpo")
def gmpo(*, log_clip_low: float = 0.4, log_clip_high: float = 0.4) -> Objective:
  """GMPO (arXiv 2507.20673): geometric-mean ratio with log-space clip (e^{±0.4}), sequence mean.

  ``log_clip_low``/``log_clip_high`` bound the token *log*-ratio, ``d ∈ [−0.4, 0.4]`` (the
  official ``callsys/GMPO`` scripts' ``cliprange=0.4``). == verl ``loss_mode=geo_mean`` with
  ``clip_ratio_low/high=0.4`` (which ignores ``loss_agg_mode`` and averages over sequences).
  """
  return compose.make_objective(
      "gmpo",
      advantage=GRPO_ADVANTAGE,
      surrogate=compose.surrogate(surrogates.gmpo, log_clip_low=log_clip_low,
                                  log_clip_high=log_clip_high),
      aggregation=aggregation.sequence_mean,
  )


@preset("rloo")
def rloo(*, kl_coef: float = 0.05, epsilon_low: float = 0.2, epsilon_high: float = 0.2,
         dual_clip: float = 0.0) -> Objective:
  """RLOO (Ahmadian et al., arXiv 2402.14740): leave-one-out baseline, KL in the reward.

  ``R ← R − β·Σ_t k1(old, ref)`` (β = 0.05, TRL ``RLOOTrainer`` default) → leave-one-out →
  PPO clip 0.2 per token → seq-mean-token-sum. On-policy this is the original sequence-level
  REINFORCE-LOO gradient and TRL's (which clips a sequence product ratio); off-policy the token
  ratio differs from TRL's sequence ratio. verl ``adv_estimator=rloo`` + ``use_kl_in_reward``.
  ``kl_coef=0.0`` drops the reference.
  """
  stage = compose.advantage(advantages.leave_one_out)
  if kl_coef:
    stage = compose.with_kl_in_reward(stage, beta=kl_coef, estimator="k1", target="rewards")
  return compose.make_objective(
      "rloo",
      advantage=stage,
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.seq_mean_token_sum,
  )


@preset("reinforce_pp")
def reinforce_pp(*, kl_coef: float = 0.001, gamma: float = 1.0, epsilon_low: float = 0.2,
                 epsilon_high: float = 0.2, dual_clip: float = 0.0) -> Objective:
  """REINFORCE++ (arXiv 2501.03262 §3, eqs. 8–12): return-to-go of outcome + in-reward k1 KL,
  whitened over all batch tokens → PPO clip 0.2 → token-mean.

  β = 0.001 (the paper's RLVR setting; ``kl_coef=0.0`` drops it), γ = 1. == verl
  ``adv_estimator=reinforce_plus_plus``, ``use_kl_in_reward, kl_penalty=kl, kl_coef=0.001``;
  == OpenRLHF ``estimator=reinforce``.
  """
  stage = compose.token_reward_advantage(advantages.reinforce_plus_plus, gamma=gamma)
  if kl_coef:
    stage = compose.with_kl_in_reward(stage, beta=kl_coef, estimator="k1",
                                      target="token_rewards")
  return compose.make_objective(
      "reinforce_pp",
      advantage=stage,
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.token_mean,
  )


@preset("reinforce_pp_baseline")
def reinforce_pp_baseline(*, kl_coef: float = 0.001, kl_estimator: str = "k2",
                          epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                          dual_clip: float = 0.0) -> Objective:
  """REINFORCE++-baseline (arXiv 2501.03262): group centring then batch whitening, PPO clip 0.2,
  token-mean, k2 KL in the loss (β = 0.001; the paper prefers k2 to GRPO's k3).

  == verl ``adv_estimator=reinforce_plus_plus_baseline``, ``use_kl_loss, kl_loss_type=mse``;
  == OpenRLHF ``estimator=reinforce_baseline`` (ddof 0) with ``kl.use_loss, estimator=k2``.
  """
  return compose.make_objective(
      "reinforce_pp_baseline",
      advantage=compose.advantage(advantages.reinforce_plus_plus_baseline),
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.token_mean,
      regularizers=_kl(kl_coef, kl_estimator),
  )


@preset("remax")
def remax() -> Objective:
  """ReMax (arXiv 2310.10505): ``A = R − R(greedy)``, REINFORCE, sequence sum of token terms.

  Needs ``AdvantageInputs.extras['greedy_rewards']`` ``[P]`` (one greedy rollout per prompt).
  == verl ``adv_estimator=remax`` (outcome reward, so every token's return is ``R``) with a
  REINFORCE loss and ``seq-mean-token-sum``.
  """
  return compose.make_objective(
      "remax",
      advantage=compose.advantage(advantages.greedy_baseline),
      surrogate=compose.surrogate(surrogates.reinforce),
      aggregation=aggregation.seq_mean_token_sum,
  )


@preset("real")
def real(*, tau: float = 0.5, kl_coef: float = 0.0) -> Objective:
  """REAL, rewards as labels (arXiv 2602.05630): anchored logsumexp per group, τ = 0.5, group sum
  over all groups. Official code ``Red-RL/REAL`` (``compute_policy_loss_real``, scripts
  ``actor.tau=0.5``); == ms-swift ``loss_type='real'``. Advantages are unused (labels are the
  correctness); micro-batches must hold whole groups. Optional token-mean k3 KL (``kl_coef``).
  """
  return compose.make_objective(
      "real",
      advantage=compose.advantage(advantages.identity),
      surrogate=compose.surrogate(surrogates.real, tau=tau),
      aggregation=aggregation.group_sum,
      regularizers=_kl(kl_coef, "k3"),
  )


@preset("pacs")
def pacs(*, beta: float = 1.0, score: str = "sum", baseline: str = "rloo",
         class_balanced: bool = True) -> Objective:
  """PACS (arXiv 2509.02522): ``β·Σ log-ratio`` → leave-one-out → class-balanced BCE, batch mean.

  Defaults from the official code ``ritzz-ai/PACS`` (β ∈ {1, 2}, ``reward_method='1'``, RLOO,
  ``weight_mode='question'``). Advantages are unused; micro-batches must hold whole groups.
  """
  return compose.make_objective(
      "pacs",
      advantage=compose.advantage(advantages.identity),
      surrogate=compose.surrogate(surrogates.pacs, beta=beta, score=score, baseline=baseline,
                                  class_balanced=class_balanced),
      aggregation=aggregation.sequence_mean,
  )


def _binary_remap(name: str, pos: float, neg: float, entropy_coef: float, epsilon_low: float,
                  epsilon_high: float, dual_clip: float) -> Objective:
  return compose.make_objective(
      name,
      reward_transform=_remap(pos, neg),
      advantage=compose.advantage(advantages.identity),
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.token_mean,
      regularizers=_entropy(entropy_coef),
  )


@preset("psr")
def psr(*, entropy_coef: float = 0.001, epsilon_low: float = 0.2, epsilon_high: float = 0.2,
        dual_clip: float = 0.0) -> Objective:
  """PSR (arXiv 2506.01347): ``A = 1`` if correct else 0, PPO clip 0.2, token-mean, entropy 0.001
  (inherited old verl default in the official ``RLVR-Decomposed`` scripts; 0.0 disables it)."""
  return _binary_remap("psr", 1.0, 0.0, entropy_coef, epsilon_low, epsilon_high, dual_clip)


@preset("nsr")
def nsr(*, entropy_coef: float = 0.001, epsilon_low: float = 0.2, epsilon_high: float = 0.2,
        dual_clip: float = 0.0) -> Objective:
  """NSR (arXiv 2506.01347): ``A = 0`` if correct else −1; otherwise as ``psr``."""
  return _binary_remap("nsr", 0.0, -1.0, entropy_coef, epsilon_low, epsilon_high, dual_clip)


@preset("w_reinforce")
def w_reinforce(*, lam: float = 0.1, entropy_coef: float = 0.001, epsilon_low: float = 0.2,
                epsilon_high: float = 0.2, dual_clip: float = 0.0) -> Objective:
  """W-REINFORCE (arXiv 2506.01347): ``A = λ`` if correct else −1, λ = 0.1 (README); as ``psr``."""
  return _binary_remap("w_reinforce", lam, -1.0, entropy_coef, epsilon_low, epsilon_high,
                       dual_clip)


@preset("riskpo")
def riskpo(*, bundle_size: int = 5, alpha: float = 0.2, beta: float = 0.8, omega: float = 1.5,
           epsilon_low: float = 0.2, epsilon_high: float = 0.2,
           dual_clip: float = 0.0) -> Objective:
  """RiskPO (arXiv 2510.00911): Mixed-VaR bundle advantage (B=5, α=.2, β=.8, ω=1.5, sum-mean
  credit), PPO clip 0.2, token-mean; defaults from the official scripts (``RTkenny/RiskPO``).
  Consecutive prompts form bundles, so ``P`` must be a multiple of ``bundle_size``.
  """
  return compose.make_objective(
      "riskpo",
      advantage=compose.advantage(advantages.mvar_bundle, bundle_size=bundle_size, alpha=alpha,
                                  beta=beta, omega=omega),
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.token_mean,
  )


@preset("weighted_grpo", experimental=True)
def weighted_grpo(*, lambda_neg: float = 1.0, scope: str = "pair", epsilon_low: float = 0.2,
                  epsilon_high: float = 0.2, dual_clip: float = 0.0) -> Objective:
  """Weighted GRPO with positive–negative pairs (arXiv 2602.03452), EXPERIMENTAL.

  ``{1, −λ_neg}`` outcomes normalised over each pair of consecutive prompts
  (``advantages.weighted_grpo_pairs``), PPO clip 0.2, seq-mean-token-mean (GRPO's). λ_neg's value
  and the normalisation scope are not confirmed (abstract only); λ_neg = 1 is not the paper's.
  """
  return compose.make_objective(
      "weighted_grpo",
      advantage=compose.advantage(advantages.weighted_grpo_pairs, lambda_neg=lambda_neg,
                                  scope=scope),
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.seq_mean_token_mean,
  )


@preset("tempo", experimental=True)
def tempo(*, eta: float = 1.0, value_rewards: str = "normalized", epsilon_low: float = 0.2,
          epsilon_high: float = 0.2, dual_clip: float = 0.0) -> Objective:
  """TEMPO / Prefix-to-Tree (arXiv 2509.18314), EXPERIMENTAL: GRPO + η·(branch-gated tree TD).

  Token advantages from the responses' prefix tree (``advantages.tempo_tree_advantages``), PPO
  clip 0.2, seq-mean-token-mean. η and raw-vs-normalised values are not confirmed; η = 1 is not
  the paper's.
  """
  return compose.make_objective(
      "tempo",
      advantage=compose.advantage(advantages.tempo_tree_advantages, eta=eta,
                                  value_rewards=value_rewards),
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.seq_mean_token_mean,
  )


@preset("laser")
def laser(*, lam: float = 0.1, tau_f: float = 0.1, warmup_steps: int = 200,
          loss_coef: float = 0.1, beta_v: float = 0.1, c_ref: float = -23.0,
          temperature: float = 1.0, balanced: bool = True, epsilon_low: float = 0.2,
          epsilon_high: float = 0.2, dual_clip: float = 0.0) -> Objective:
  """LaSeR (arXiv 2510.14943): GRPO + last-token self-reward MSE (α = 0.1) + advantage mixing.

  After ``warmup_steps`` (200) the advantage is ``(1−λ)A + λÂ_s`` (λ = 0.1, τ_f = 0.1,
  ``advantages.mix_self_reward`` on ``extras['self_rewards']`` and ``truncated``); before it,
  GRPO's. Loss: PPO clip 0.2, token-mean, plus ``regularizers.laser_self_reward_loss``
  (α = ``loss_coef``, β_v = 0.1, c_ref = −23 as for Qwen2.5-7B; ``temperature`` must be the
  sampling temperature). Defaults from the official ``RUCBM/LaSeR`` scripts. The trainer's
  ``z_c`` hook computes the self-rewards with the same ``beta_v``, ``c_ref`` and ``temperature``
  (read from ``Objective.hparams``): see ``docs/objectives.md``.
  """
  mixed = compose.advantage(advantages.mix_self_reward, read=("truncated",), lam=lam,
                            tau_f=tau_f)
  return compose.make_objective(
      "laser",
      advantage=compose.after_warmup(mixed, GRPO_ADVANTAGE, warmup_steps),
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.token_mean,
      regularizers=(compose.laser_self_reward_loss(loss_coef, beta_v=beta_v, c_ref=c_ref,
                                                   temperature=temperature,
                                                   balanced=balanced),),
  )


@preset("thr", experimental=True)
def thr(*, p: float = 0.5, tau: float = 0.0, drop_non_dominant: bool = False,
        epsilon_low: float = 0.2, epsilon_high: float = 0.2, dual_clip: float = 0.0) -> Objective:
  """THR reweighting (arXiv 2510.03669), EXPERIMENTAL: GRPO with THR-scaled token advantages.

  ``A ← A·(1 + p·sign(THR))`` on tokens with ``|THR| > τ`` (``weighting.thr_reweight`` on
  ``extras['thr']`` ``[B,T]``, e.g. from ``weighting.token_hidden_reward``), PPO clip 0.2,
  token-mean. ``p > 0`` favours exploitation, ``p < 0`` exploration (confirmed from the abstract);
  the reweighting function and the defaults p = 0.5, τ = 0 are not the paper's.
  """
  return compose.make_objective(
      "thr",
      advantage=GRPO_ADVANTAGE,
      token_weighting=[compose.token_weighting(weighting.thr_reweight, apply_to="advantages",
                                               p=p, tau=tau,
                                               drop_non_dominant=drop_non_dominant)],
      surrogate=ppo_clip_stage(epsilon_low, epsilon_high, dual_clip),
      aggregation=aggregation.token_mean,
  )


EXPERIMENTAL = frozenset(_EXPERIMENTAL)
_BUILTIN = frozenset(_PRESETS)


# ---------------------------------------------------------------------------------------------
# The registry's API.


def register(name: str, factory: Callable[..., Objective]) -> None:
  """Makes ``get(name, **overrides)`` (hence ``config.rl.objective=name``) call ``factory``.

  ``factory(**overrides) -> Objective`` builds a user objective, usually with
  ``compose.make_objective`` (see ``docs/add_your_own_method.md``). Like a preset, it takes only
  keyword arguments with plain ``bool``/``int``/``float``/``str`` defaults (they become config
  fields; ``TypeError`` otherwise), and the objective it returns gets them as ``hparams``.
  Registering happens in the process that trains: before the trainer builds its objective, or
  inside the ``get_config()`` of a config file passed to ``experiments.train``. Built-in names
  cannot be replaced; registering a user name again replaces it (re-running a notebook cell).
  """
  if name in _BUILTIN:
    raise ValueError(f"{name!r} is a built-in preset; pick another name")
  _check_factory(name, factory)
  _PRESETS[name] = _recording(factory)


def names() -> list[str]:
  """The preset names, in table order, then registered user objectives in registration order."""
  return list(_PRESETS)


def _factory(name: str) -> Callable[..., Objective]:
  if name not in _PRESETS:
    raise KeyError(f"unknown preset {name!r}; known: {names()}")
  return _PRESETS[name]


def get(name: str, **overrides: Any) -> Objective:
  """The preset ``name`` with keyword ``overrides`` of its defaults; ``TypeError`` for a keyword
  it does not take. ``Objective.hparams`` holds every keyword argument, resolved."""
  return _factory(name)(**overrides)


def defaults(name: str) -> dict[str, Any]:
  """Every keyword argument of the preset ``name`` with its default (from its signature)."""
  return {k: p.default for k, p in inspect.signature(_factory(name)).parameters.items()}
