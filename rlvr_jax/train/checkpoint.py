"""Checkpoints: orbax-checkpoint manager for the train state plus JSON extras.

A checkpoint at step ``s`` is a directory ``<dir>/<s>/`` with two items:

* ``state``: any pytree of arrays: params, optimizer state, step counter, PRNG key (typed
  ``jax.random.key`` arrays and raw ``uint32`` keys both work), written by orbax's
  ``StandardSave`` so that each host writes its own shards.
* ``extras``: a JSON object: the data-iterator position, the resolved config
  (:func:`to_jsonable` turns an ``ml_collections.ConfigDict`` into plain JSON), anything small.

**Atomicity.** Orbax writes a step into a temporary directory and renames it into place only
after every file is written (a ``commit_success`` marker on file systems without atomic rename),
so a process killed with SIGKILL mid-save leaves the previous checkpoint as the latest complete
one; :meth:`Checkpointer.latest_step` never reports a partial step. Temporary directories left by
a killed save are ignored and removed by the next save or at start-up.

**Restoring with target shardings.** :meth:`Checkpointer.restore` takes an abstract state: a
pytree of ``jax.ShapeDtypeStruct`` with the *target* shardings (:func:`abstract_state` builds one
from a live state, or use ``jax.eval_shape`` plus the model's partition rules). Arrays are read
straight into those shardings, so a run may resume on a different mesh than it saved from.

**Only finite states are saved.** :meth:`Checkpointer.save` refuses a state with NaN or
infinite values (:class:`NonFiniteStateError`), so the newest checkpoint is always one a run can
continue from. ``max_to_keep`` (``config.checkpoint.keep``): None or 0 keep all, ``k`` the newest
``k`` (:func:`resolve_keep`).

**A rejected resume writes nothing.** :func:`check_resume` compares the newest checkpoint's
stored tree, shapes and dtypes with the state a new config builds, from metadata only, so a run
can refuse to resume before it writes ``config.json`` or touches the logs.

Typical loop use::

  check_resume(workdir + "/checkpoints", jax.eval_shape(make_state), config=config)  # or raise
  ckpt = Checkpointer(workdir + "/checkpoints", max_to_keep=3)
  if ckpt.latest_step() is not None:
    state, extras = ckpt.restore(abstract_state=abstract_state(state))
  ...
  ckpt.save(step, state, {"data_position": pos, "config": to_jsonable(config)})
  ...
  ckpt.close()   # waits for an asynchronous save to finish
"""

from __future__ import annotations

import dataclasses
import enum
import numbers
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from rlvr_jax.train import guards

PyTree = Any


def abstract_state(state: PyTree, shardings: Optional[PyTree] = None) -> PyTree:
  """``state`` as ``jax.ShapeDtypeStruct`` leaves, each with its array's (or the given) sharding.

  Args:
    state: a pytree of ``jax.Array`` (or numpy arrays, which get no sharding).
    shardings: optional pytree of ``jax.sharding.Sharding`` with the structure of ``state``; when
      given, it replaces the leaves' own shardings (restore onto a different mesh).
  """
  if shardings is None:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(x, "sharding", None)),
        state)
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), state, shardings)


def to_jsonable(obj: Any) -> Any:
  """A JSON-serialisable copy of ``obj``.

  ``ml_collections.ConfigDict`` (anything with ``to_dict``), dataclasses, mappings, tuples/lists,
  numpy scalars/arrays and enums are converted; other objects become ``repr`` strings, so a
  resolved config with a callable in it still records *what* the callable was.
  """
  if hasattr(obj, "to_dict") and callable(obj.to_dict):
    return to_jsonable(obj.to_dict())
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return to_jsonable(dataclasses.asdict(obj))
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, enum.Enum):
    return obj.name
  if isinstance(obj, (np.generic, np.ndarray)):
    return obj.tolist()
  if obj is None or isinstance(obj, (bool, int, float, str)):
    return obj
  return repr(obj)


def resolve_keep(keep: Any) -> Optional[int]:
  """The number of checkpoints to keep (``config.checkpoint.keep``) as orbax's ``max_to_keep``.

  ``None`` or ``0``: keep every checkpoint (orbax would read 0 as "keep none" and delete each
  checkpoint right after writing it, so a killed run restarted from scratch); ``k >= 1``: keep
  the newest ``k``.

  Raises:
    ValueError: a negative number or anything that is not an integer (booleans included).
  """
  if keep is None:
    return None
  if isinstance(keep, bool) or not isinstance(keep, numbers.Integral) or keep < 0:
    raise ValueError(f"checkpoint.keep must be None or 0 (keep all checkpoints) or an integer "
                     f">= 1 (keep the newest k), got {keep!r}.")
  return int(keep) or None


class NonFiniteStateError(ValueError):
  """:meth:`Checkpointer.save` was given a state with NaN or infinite values."""


class IncompatibleCheckpointError(ValueError):
  """The checkpoint to resume from holds a different state than the new run builds."""


class Checkpointer:
  """Keep-last-N checkpoints of a train state and JSON extras in one directory."""

  def __init__(self, directory: str, *, max_to_keep: Optional[int] = 3,
               async_save: bool = True, save_interval_steps: int = 1):
    """Opens (creating if needed) the checkpoint directory.

    Args:
      directory: where step directories live; created if missing.
      max_to_keep: keep only the newest N checkpoints; None or 0 keeps all (see
        :func:`resolve_keep`; a negative or non-integer value raises ``ValueError`` before
        anything is created).
      async_save: write in a background thread; :meth:`save` returns once the arrays are copied
        to host memory. :meth:`wait` / :meth:`close` block until the write is committed.
      save_interval_steps: :meth:`save` skips steps that are not multiples of this (unless
        ``force``).
    """
    max_to_keep = resolve_keep(max_to_keep)
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=save_interval_steps,
        create=True,
        # A save killed mid-write leaves a temporary directory; remove it at start-up.
        cleanup_tmp_directories=True,
        enable_async_checkpointing=async_save,
    )
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "extras"))

  def latest_step(self) -> Optional[int]:
    """The newest *complete* checkpoint's step, or None when there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> List[int]:
    """Steps of all complete checkpoints, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: PyTree, extras: Optional[Mapping[str, Any]] = None, *,
           force: bool = False, check_finite: bool = True) -> bool:
    """Saves ``state`` and JSON ``extras`` as checkpoint ``step``.

    Args:
      step: the step number (the directory name); must exceed the latest saved step.
      state: pytree of arrays (params, optimizer state, PRNG key, step counter, ...).
      extras: JSON-serialisable mapping (run through :func:`to_jsonable` first if unsure).
      force: save even if ``step`` is not on ``save_interval_steps``.
      check_finite: refuse a state with NaN or infinite floating-point values (one reduction
        per leaf on the device; every process must call ``save``, as orbax requires anyway).

    Returns:
      Whether a save was started.

    Raises:
      NonFiniteStateError: ``check_finite`` and a floating-point leaf is not finite; nothing is
        written and the latest checkpoint stays the latest.
    """
    if check_finite and (force or self._manager.should_save(int(step))):
      bad = guards.nonfinite_leaves(state)
      if bad:
        latest = self.latest_step()
        kept = ("no earlier checkpoint exists" if latest is None else
                f"the checkpoint at step {latest} stays the latest")
        raise NonFiniteStateError(
            f"Refusing to save checkpoint step {step} in {self.directory}: NaN or infinity in "
            f"{len(bad)} leaves ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); "
            f"nothing was written and {kept}.")
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        extras=ocp.args.JsonSave(dict(extras or {})))
    return self._manager.save(int(step), args=args, force=force)

  def wait(self) -> None:
    """Blocks until any asynchronous save has been committed."""
    self._manager.wait_until_finished()

  def restore(self, step: Optional[int] = None,
              abstract_state: Optional[PyTree] = None) -> Tuple[PyTree, Dict[str, Any]]:
    """Restores ``(state, extras)`` of checkpoint ``step`` (default: the latest).

    Args:
      step: which checkpoint; None means :meth:`latest_step`.
      abstract_state: pytree of ``jax.ShapeDtypeStruct`` (shape, dtype, *target* sharding) with
        the saved state's structure; the restored arrays get these shardings and this tree
        structure (named tuples of optax states included). None restores with the shardings
        recorded at save time, which requires the same device topology.

    Raises:
      FileNotFoundError: there is no (such) checkpoint.
    """
    self.wait()
    if step is None:
      step = self.latest_step()
      if step is None:
        raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    elif step not in self._manager.all_steps():
      raise FileNotFoundError(f"No checkpoint for step {step} in {self.directory}; "
                              f"available: {self.all_steps()}.")
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        extras=ocp.args.JsonRestore())
    restored = self._manager.restore(int(step), args=args)
    return restored["state"], dict(restored["extras"] or {})

  def close(self) -> None:
    """Waits for pending saves and releases the manager's threads."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def restore_partial(directory: str, abstract_subset: Mapping[str, PyTree],
                    step: Optional[int] = None) -> Dict[str, PyTree]:
  """Restores only some top-level fields of a saved state, e.g. ``{"params": abstract_params}``.

  For evaluation and export, which need the params but not the optimizer state (whose abstract
  tree they cannot easily build). The top-level keys are the saved state's field or dict names
  (``TrainState`` fields: ``step``, ``params``, ``opt_state``, ``ref_params``). Opens the
  directory read-only.

  Args:
    directory: a :class:`Checkpointer` directory.
    abstract_subset: field name → abstract pytree (``jax.ShapeDtypeStruct`` with target
      shardings), a subset of the saved state.
    step: which checkpoint (default: the latest).

  Returns:
    Field name → restored pytree.

  Raises:
    FileNotFoundError: no (such) checkpoint.
  """
  manager = ocp.CheckpointManager(
      os.path.abspath(directory), options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers={"state": ocp.PyTreeCheckpointHandler()})
  try:
    steps = manager.all_steps()
    if step is None:
      step = manager.latest_step()
    if step is None or step not in steps:
      raise FileNotFoundError(f"No checkpoint {'' if step is None else step} in {directory}; "
                              f"available: {sorted(steps)}.")
    item = dict(abstract_subset)
    args = ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True))
    return dict(manager.restore(int(step), args=args)["state"])
  finally:
    manager.close()


def _path_names(path: Tuple[Any, ...]) -> Tuple[str, ...]:
  """A pytree key path as plain names, so that a dataclass field (``.params``), a named-tuple
  field and the dict key orbax's metadata uses for either compare equal."""
  names = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        names.append(str(getattr(key, attr)))
        break
    else:
      names.append(str(key))
  return tuple(names)


def _stored_leaf(leaf: Any) -> Tuple[Tuple[int, ...], str]:
  """``(shape, dtype name)`` of a state leaf as a checkpoint stores it (a typed PRNG key as its
  raw ``uint32`` key data)."""
  if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    leaf = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype))
  return tuple(leaf.shape), np.dtype(leaf.dtype).name


def _flat_config(tree: Any, prefix: str = "") -> Dict[str, Any]:
  """Nested JSON mappings as ``{"a.b.c": value}``."""
  if not isinstance(tree, Mapping):
    return {prefix: tree}
  out: Dict[str, Any] = {}
  for key, value in tree.items():
    out.update(_flat_config(value, f"{prefix}.{key}" if prefix else str(key)))
  return out


def check_resume(directory: str, abstract_state: PyTree, *, config: Any = None,
                 config_sections: Tuple[str, ...] = ("model", "tokenizer")) -> Optional[int]:
  """Checks that the newest checkpoint in ``directory`` can be restored into ``abstract_state``,
  reading only metadata and writing nothing (not even the directory).

  Call it before a resumed run writes anything (``config.json``, logs): a run whose config
  builds another model must fail *before* it overwrites the files of the run it would resume.
  The decision compares the saved state's tree (leaf paths), shapes and dtypes with
  ``abstract_state``; a config change that keeps them (attention kernel, learning rate, batch
  sizes) is accepted. ``config`` only makes the error clearer: the differences between the saved
  config's ``config_sections`` (``extras["config"]``) and the new one are listed.

  Args:
    directory: the :class:`Checkpointer` directory (e.g. ``<workdir>/checkpoints``).
    abstract_state: the new run's state as ``jax.ShapeDtypeStruct`` leaves (``jax.eval_shape``
      of the state constructor, or :func:`abstract_state`) or arrays.
    config: the new run's config (a ``ConfigDict`` or mapping), for the message.
    config_sections: top-level config sections listed in the message.

  Returns:
    The step that a resume would restore, or None when there is no complete checkpoint.

  Raises:
    IncompatibleCheckpointError: naming the directory, the step, the first differing leaves and
      the config differences.
  """
  if not os.path.isdir(directory):
    return None
  manager = ocp.CheckpointManager(
      os.path.abspath(directory), options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers={"state": ocp.StandardCheckpointHandler(),
                     "extras": ocp.JsonCheckpointHandler()})
  try:
    step = manager.latest_step()
    if step is None:
      return None
    saved_tree = manager.item_metadata(step)["state"]
    saved = {_path_names(p): (tuple(m.shape), np.dtype(m.dtype).name)
             for p, m in jax.tree_util.tree_leaves_with_path(saved_tree)}
    new = {_path_names(p): _stored_leaf(leaf)
           for p, leaf in jax.tree_util.tree_leaves_with_path(abstract_state)}
    problems = []
    # The params first: they say what changed; the optimizer moments only repeat it.
    for path in sorted(set(saved) | set(new), key=lambda p: (p[:1] != ("params",), p)):
      name = ".".join(path)
      if path not in new:
        problems.append(f"{name} is in the checkpoint but not in the new state")
      elif path not in saved:
        problems.append(f"{name} is in the new state but not in the checkpoint")
      elif saved[path] != new[path]:
        (s_shape, s_dtype), (n_shape, n_dtype) = saved[path], new[path]
        problems.append(f"{name}: saved {s_dtype}{s_shape}, new {n_dtype}{n_shape}")
    if not problems:
      return int(step)
    message = (f"Cannot resume from {directory}: the checkpoint at step {step} holds a different "
               f"state than this config builds ({len(problems)} differences: "
               f"{'; '.join(problems[:5])}{'; ...' if len(problems) > 5 else ''}).")
    if config is not None:
      extras = manager.restore(step, args=ocp.args.Composite(extras=ocp.args.JsonRestore()))
      saved_config = dict(extras["extras"] or {}).get("config") or {}
      new_config = to_jsonable(config)
      changed = []
      for section in config_sections:
        old_flat = _flat_config(saved_config.get(section, {}), section)
        new_flat = _flat_config(new_config.get(section, {}), section)
        changed += [f"{k}: {old_flat.get(k, '<unset>')} -> {new_flat.get(k, '<unset>')}"
                    for k in sorted(set(old_flat) | set(new_flat))
                    if old_flat.get(k, "<unset>") != new_flat.get(k, "<unset>")]
      if changed:
        message += f" Config changes since that run: {'; '.join(changed)}."
    message += (" Nothing was written. Use a new workdir for a different model, or restore the "
                "saved config.")
    raise IncompatibleCheckpointError(message)
  finally:
    manager.close()


def export_hf(checkpoint_dir: str, out_dir: str, *, model_config: Any, abstract_params: PyTree,
              step: Optional[int] = None, params_key: str = "params", **export_kwargs) -> str:
  """Writes the params of a checkpoint as a Hugging Face model directory.

  Restores field ``params_key`` of checkpoint ``step`` (default: latest) with
  :func:`restore_partial` and calls
  ``rlvr_jax.models.hf.export_hf(params, model_config, out_dir, **export_kwargs)`` (keywords:
  ``tokenizer_dir``, ``dtype``, ``max_shard_size``; see that function).

  Args:
    checkpoint_dir: a :class:`Checkpointer` directory.
    out_dir: the HF directory to write.
    model_config: the ``rlvr_jax.models`` config of the params.
    abstract_params: abstract tree of the params (e.g. ``jax.eval_shape`` of ``init_params``).
    step: which checkpoint.
    params_key: the state field holding the policy params.
    **export_kwargs: passed to ``rlvr_jax.models.hf.export_hf``.

  Returns:
    ``out_dir``.
  """
  # Imported here: exporting needs transformers/safetensors, which saving and restoring do not.
  from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
  params = restore_partial(checkpoint_dir, {params_key: abstract_params}, step=step)[params_key]
  hf.export_hf(params, model_config, out_dir, **export_kwargs)
  return out_dir


def save_params(path: str, params: PyTree) -> None:
  """Writes a params tree to one file (``flax.serialization`` msgpack), atomically.

  For small, reusable snapshots such as the policy after the supervised warm-up (the loop writes
  ``<workdir>/warmup_params.msgpack``; ``config.sft.init_from`` reads it back, so several RL runs
  can start from one warm-up). Call it from one process; the params are gathered to the host.

  Raises:
    NonFiniteStateError: a leaf holds NaN or infinity; nothing is written.
  """
  from flax import serialization  # pylint: disable=g-import-not-at-top
  params = jax.device_get(params)
  bad = guards.nonfinite_leaves(params)
  if bad:
    raise NonFiniteStateError(f"Refusing to write {path}: NaN or infinity in {', '.join(bad[:5])}"
                              f"{', ...' if len(bad) > 5 else ''}; nothing was written.")
  data = serialization.to_bytes(params)
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def load_params(path: str, like: PyTree) -> PyTree:
  """Reads a file written by :func:`save_params` into the structure, shapes and dtypes of ``like``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file's tree or shapes differ from ``like`` (a different model config).
  """
  from flax import serialization  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    state = serialization.msgpack_restore(f.read())
  # ``like`` may hold arrays or ``jax.ShapeDtypeStruct`` leaves (e.g. from ``jax.eval_shape``).
  spec = lambda x: (tuple(getattr(x, "shape", np.shape(x))),
                    np.dtype(getattr(x, "dtype", np.asarray(x).dtype)))
  placeholders = jax.tree_util.tree_map(lambda x: np.zeros(0, spec(x)[1]), like)
  restored = serialization.from_state_dict(placeholders, state)
  for (key, got), want in zip(jax.tree_util.tree_leaves_with_path(restored),
                              jax.tree_util.tree_leaves(like)):
    if np.shape(got) != spec(want)[0]:
      raise ValueError(f"{path}: {jax.tree_util.keystr(key)} has shape {np.shape(got)}, the "
                       f"model expects {spec(want)[0]}")
  return jax.tree_util.tree_map(lambda g, w: np.asarray(g, dtype=spec(w)[1]), restored, like)
