"""Binding: a pure function, its hyperparameters, and the batch arrays it reads **by name**.

Every stage of an objective is a ``Stage``: a callable plus the set of names it reads. The names
come from the function's signature: a parameter *without* a default is an array read from the
step's namespace under its own name, a parameter *with* a default is a hyperparameter (bound
with ``bind(..., hparams)``, or left at its default). ``read`` adds or renames inputs explicitly:

* ``read=("truncated",)``: also read the defaulted parameter ``truncated`` from the namespace;
* ``read={"correct": "rewards"}``: fill the parameter ``correct`` with the namespace's
  ``rewards`` (the DAPO/PSR remaps threshold the verifier reward). Nothing is aliased implicitly:
  a name the step does not provide is a ``KeyError`` that lists what it does provide.

Namespaces (what a stage can read):

* advantage side (reward transforms and advantage estimators, once per rollout batch):
  ``rlvr_jax.types.AdvantageInputs`` fields (``rewards``, ``mask``, ``tokens``, ``lengths``,
  ``truncated``, ``token_rewards``) and its ``extras`` keys;
* loss side (token weighting, surrogate, regularizers, per micro-batch):
  ``rlvr_jax.types.LossBatch`` fields, its ``extras`` keys, ``logprobs``, ``entropy`` (when the
  trainer passes it) and ``advantages`` (after advantage-side token weights).

``Stage.reads`` is what ``make_objective`` collects into ``Objective.advantage_reads`` /
``Objective.loss_reads``, and what decides the trainer flags (``needs_reference``, ...).
Stages compare and hash by identity, so they can be closed over by ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax

from rlvr_jax.types import AdvantageInputs, LossBatch

Array = jax.Array
Read = Union[Sequence[str], Mapping[str, str]]

ADVANTAGE_FIELDS = tuple(f.name for f in dataclasses.fields(AdvantageInputs) if f.name != "extras")
LOSS_FIELDS = tuple(f.name for f in dataclasses.fields(LossBatch) if f.name != "extras")
ROLES = ("reward", "advantage", "weighting", "surrogate", "regularizer")


@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
  """One stage of an objective: a pure callable and the names of the arrays it reads.

  Attributes:
    role: where ``make_objective`` accepts it: ``'reward'`` (``(rewards [P,G], AdvantageInputs)
      -> rewards``), ``'advantage'`` (``AdvantageInputs -> [P,G] | [P,G,T]``), or a loss-side
      role, ``'weighting'``, ``'surrogate'``, ``'regularizer'`` (``namespace -> (array,
      diagnostics)``).
    apply: the computation.
    reads: the namespace names it reads.
    options: how ``make_objective`` applies it: ``combine`` (reward), ``apply_to``
      (weighting), ``coef`` and ``aggregation`` (regularizer).
  """

  role: str
  apply: Callable
  reads: frozenset
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.role not in ROLES:
      raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")

  def __call__(self, *args):
    return self.apply(*args)


def inputs_of(fn: Callable, hparams: Mapping[str, Any], read: Read = ()) -> tuple:
  """``(parameter, namespace name)`` pairs that ``fn`` reads once ``hparams`` are bound.

  Raises ``TypeError`` for a hyperparameter or ``read`` entry that ``fn`` has no parameter for
  (unless it takes ``**kwargs``), or a parameter both bound and read.
  """
  params = inspect.signature(fn).parameters
  name = getattr(fn, "__name__", repr(fn))
  renamed = dict(read) if isinstance(read, Mapping) else {n: n for n in read}
  if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
    unknown = (set(hparams) | set(renamed)) - set(params)
    if unknown:
      raise TypeError(f"{name} has no parameter(s) {sorted(unknown)}; it takes {list(params)}")
  both = set(hparams) & set(renamed)
  if both:
    raise TypeError(f"{name}: {sorted(both)} both bound as hyperparameters and read")
  required = [n for n, p in params.items()
              if p.default is p.empty and n not in hparams
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
  extra = [n for n in renamed if n not in required]
  return tuple((n, renamed.get(n, n)) for n in required + extra)


def call_by_name(fn: Callable, inputs: tuple, hparams: Mapping[str, Any],
                 namespace: Mapping[str, Any]):
  """``fn(**{param: namespace[name]}, **hparams)``; a missing name is a ``KeyError``."""
  missing = sorted({source for _, source in inputs if source not in namespace})
  if missing:
    raise KeyError(f"{getattr(fn, '__name__', fn)} needs {missing}, which this step does not "
                   f"provide; available: {sorted(namespace)}. Method-specific arrays go in "
                   "`extras`.")
  return fn(**{param: namespace[source] for param, source in inputs}, **hparams)


def bind(role: str, fn: Callable, hparams: Mapping[str, Any], *, read: Read = (),
         **options) -> Stage:
  """A ``Stage`` whose ``apply(namespace)`` calls ``fn`` with its inputs read by name."""
  inputs = inputs_of(fn, hparams, read)
  apply = functools.partial(call_by_name, fn, inputs, dict(hparams))
  return Stage(role, apply, frozenset(source for _, source in inputs), dict(options))


def reads_of(stage: Any) -> frozenset:
  """``stage.reads`` for a ``Stage``; the empty set for a plain callable (it declares nothing)."""
  return frozenset(getattr(stage, "reads", ()))


def advantage_namespace(inputs: AdvantageInputs) -> dict:
  """The names an advantage-side stage can read: ``AdvantageInputs`` fields and ``extras``."""
  namespace = {name: getattr(inputs, name) for name in ADVANTAGE_FIELDS}
  namespace.update(inputs.extras)
  return namespace


def loss_namespace(batch: LossBatch, logprobs: Array, entropy: Optional[Array]) -> dict:
  """The names a loss-side stage can read: ``LossBatch`` fields and ``extras``, ``logprobs``
  and ``entropy`` (when given). The loss adds ``advantages`` after advantage-side weights."""
  namespace = {name: getattr(batch, name) for name in LOSS_FIELDS}
  namespace.update(batch.extras)
  namespace["logprobs"] = logprobs
  if entropy is not None:
    namespace["entropy"] = entropy
  return namespace
