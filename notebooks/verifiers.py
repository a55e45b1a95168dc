"""Source of notebooks/verifiers.ipynb (build with `python notebooks/build.py`)."""

# %% [markdown]
# # Verifiers: rewards you can trust
#
# In RLVR the reward *is* the verifier, and the policy will find every hole in it. This notebook
# puts the math verifier (`rlvr_jax.rewards.math`) next to two naive graders on tricky cases:
#
# * **strict**: the last `\boxed{}` (else the whole text), whitespace-normalised, equals the gold
#   string; it misses equivalent answers (false negatives: lost reward signal);
# * **lenient**: the gold string appears in the completion; it accepts hedges and lucky
#   substrings (false positives: reward hacking).
#
# Then the code sandbox (`rlvr_jax.rewards.sandbox`, `rlvr_jax.rewards.code`) runs a correct
# program and a set of hostile ones. Everything runs on a CPU in well under a minute; the
# policy decisions are documented in `docs/rewards.md` and `docs/sandbox.md`.

# %%
import os
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np

from rlvr_jax.rewards import verifiers
from rlvr_jax.rewards import code
from rlvr_jax.rewards import math as math_verifier
from rlvr_jax.rewards import sandbox

TIMEOUT_S = 5.0   # per-item hard limit of the math verifier (worker process is killed past it)
NUM_WORKERS = 2   # math verifier worker processes


def strict_match(completion: str, gold: str) -> bool:
  """Naive grader 1: last box (or the whole text) equals the gold, whitespace-normalised."""
  boxed = verifiers.extract_boxed(completion)
  answer = completion if boxed is None else boxed
  return verifiers.normalize_text(answer) == verifiers.normalize_text(gold)


def lenient_match(completion: str, gold: str) -> bool:
  """Naive grader 2: the gold string occurs anywhere in the completion."""
  return gold in completion


def grade(cases):
  """Runs the three graders on [(completion, gold)]; the math verifier in worker processes."""
  start = time.time()
  verdicts = math_verifier.verify_batch([c for c, _ in cases], [g for _, g in cases],
                                        timeout_s=TIMEOUT_S, num_workers=NUM_WORKERS)
  elapsed = time.time() - start
  rows = [(c, g, strict_match(c, g), lenient_match(c, g), v)
          for (c, g), v in zip(cases, verdicts)]
  return rows, elapsed


def show(rows):
  mark = {True: "✓", False: "·"}
  print(f"{'completion':<46} {'gold':<16} strict lenient verifier")
  for c, g, s, l, v in rows:
    c = c.replace("\n", "\\n")
    c = c if len(c) <= 44 else c[:41] + "..."
    print(f"{c:<46} {g[:16]:<16} {mark[s]:^6} {mark[l]:^7} {mark[v]:^8}")

# %% [markdown]
# ## Equivalent answers: every one of these is correct
#
# Fractions vs decimals, thousands separators, `x = 3` for `3`, rationalised radicals, degrees vs
# radians, percentages, intervals vs inequalities, unordered sets, factored expressions, GSM8K's
# `####`, units, multiple-choice letters, a final answer after the reasoning block, and an exact
# answer for a decimal gold (read at the gold's stated precision: pi rounds to 3.14).

# %%
EQUIVALENT = [
    (r"So the answer is $\boxed{\frac{1}{2}}$.", "0.5"),
    (r"The total is \boxed{1,000}", "1000"),
    (r"Solving gives \boxed{x = 3}", "3"),
    (r"\boxed{\dfrac{\sqrt{2}}{2}}", r"\frac{1}{\sqrt{2}}"),
    (r"The angle is \boxed{45^\circ}", r"\frac{\pi}{4}"),
    (r"\boxed{10\%}", "0.1"),
    (r"\boxed{(-\infty, 2]}", r"x \le 2"),
    (r"\boxed{\{3, 1, 2\}}", r"\{1,2,3\}"),
    (r"\boxed{2x+2}", "2(x+1)"),
    ("She has 72 apples.\n#### 72", "72"),
    (r"\boxed{5 \text{ cm}}", "5"),
    (r"The correct option is \boxed{B}", "(B)"),
    (r"<think>maybe 4?</think> The answer is \boxed{3}", "3"),
    (r"\boxed{\pi}", "3.14"),
]
equivalent_rows, t_equivalent = grade(EQUIVALENT)
show(equivalent_rows)
print(f"\n{len(EQUIVALENT)} items in {t_equivalent:.2f}s (first call starts the workers)")

# %% [markdown]
# ## Adversarial answers: every one of these is wrong
#
# Hedging with a list or several boxes, a gold that is a substring of the answer, a macro that
# redefines what is printed, a number too large to evaluate, an answer too long to parse, a
# truncated decimal for an exact gold, a box followed by a change of mind after `</think>`, and
# text that names two options. The strict grader is safe here but was useless above; the lenient one
# is fooled; the verifier rejects all of them, each within its time limit.

# %%
ADVERSARIAL = [
    (r"\boxed{1, 2}", "1"),
    (r"It is \boxed{1} or \boxed{2}", "2"),
    (r"\boxed{15}", "5"),
    ("The answer is 5, 6, 7, 8, or 9.", "5"),
    (r"\def\x{5}\boxed{\x}", "5"),
    (r"\boxed{10^{10^{10}}}", "1"),
    (r"\boxed{9^{9^{9^{9}}}}", "1"),
    ("\\boxed{" + "9" * 2000 + "}", "9"),
    (r"\boxed{0.333}", r"\frac{1}{3}"),
    (r"\boxed{3} </think> Hmm, no: \boxed{4}", "3"),
    (r"\boxed{A and B}", "B"),
]
adversarial_rows, t_adversarial = grade(ADVERSARIAL)
show(adversarial_rows)
print(f"\n{len(ADVERSARIAL)} items in {t_adversarial:.2f}s")

# %%
def rates(rows):
  return np.array([np.mean([r[i] for r in rows]) for i in (2, 3, 4)])

graders = ["strict", "lenient", "verifier"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].bar(graders, rates(equivalent_rows), color=["0.6", "0.6", "tab:green"])
axes[0].set(title="equivalent answers accepted (higher is better)", ylim=(0, 1.05))
axes[1].bar(graders, rates(adversarial_rows), color=["0.6", "0.6", "tab:red"])
axes[1].set(title="wrong answers accepted (lower is better)", ylim=(0, 1.05))
plt.show()

# These are the verifier's documented decisions; the notebook fails in CI if they change.
assert all(r[4] for r in equivalent_rows), [r[:2] for r in equivalent_rows if not r[4]]
assert not any(r[4] for r in adversarial_rows), [r[:2] for r in adversarial_rows if r[4]]

# %% [markdown]
# The pieces are public: `extract_answer` finds the final answer and `is_equivalent` compares
# two answer strings (both pure, no time limit of their own, so call them only on trusted input;
# `verify`/`verify_batch` wrap them in killable workers).

# %%
for completion in (r"<think>2+2=5?</think> so \boxed{4}", r"It is \boxed{1} or \boxed{2}",
                   "Answer: 7", r"\def\x{5}\boxed{\x}"):
  print(f"{completion!r:45} -> {math_verifier.extract_answer(completion)!r}")
print(math_verifier.is_equivalent(r"\frac{6}{4}", "1.5"),
      math_verifier.is_equivalent("x^2 - 1", "(x-1)(x+1)"),
      math_verifier.is_equivalent("y^2 - 1", "(x-1)(x+1)"))

# %% [markdown]
# ## The code sandbox
#
# `run_python` runs a program under bubblewrap as an unprivileged uid, in its own user, mount,
# PID, network and IPC namespaces, seeing only a read-only view of the interpreter and a private
# scratch tmpfs (or, where bubblewrap cannot run, a loudly labelled weaker fallback).
# `isolation_report` says exactly what is and is not enforced here (`docs/sandbox.md`).

# %%
CONFIG = sandbox.SandboxConfig(timeout_s=2.0, memory_mb=256)
for key, value in sandbox.isolation_report(CONFIG).items():
  print(f"{key:>20}: {value}")

# %% [markdown]
# A completion with a correct program, one with a wrong one and one without code, scored against
# stdin/stdout and assert-style tests by `code.code_reward` (the program is the last fenced Python
# block). Note the wrong program's partial credit: `a * b` passes `add(2, 2) == 4`. Weak tests
# are reward holes too.

# %%
TESTS = [{"input": "2 3\n", "output": "5\n"},
         {"input": "10 -4\n", "output": "6\n"},
         {"assert": "assert add(2, 2) == 4"}]
GOOD = '''Here is my solution:
```python
def add(a, b):
  return a + b

if __name__ == "__main__":
  a, b = map(int, input().split())
  print(add(a, b))
```'''
WRONG = GOOD.replace("return a + b", "return a * b")
print(code.code_reward([GOOD, WRONG, "no code here"], [TESTS] * 3, mode="fraction",
                       config=CONFIG))

# %% [markdown]
# Now hostile programs, each in its own sandbox. Every one must come back with a non-`ok` status
# in about the time limit at most, leave no trace on the host, and score 0 as a code reward. The
# last one tries to read a host file: with the bubblewrap boundary, files outside the program's
# view do not exist for it.

# %%
scratch = tempfile.mkdtemp(prefix="verifiers_nb_")
canary = os.path.join(scratch, "canary.txt")       # a hostile program tries to create this
victim = os.path.join(scratch, "victim.txt")        # ... and to delete this
with open(victim, "w") as f:
  f.write("keep me")
readable = os.path.join(scratch, "readable.txt")
with open(readable, "w") as f:
  f.write("a host file")

HOSTILE = {
    "infinite loop": "while True:\n  pass",
    "fork bomb": "import os\nwhile True:\n  os.fork()",
    "shell command": f"import os\nos.system('touch {canary}')",
    "subprocess": f"import subprocess\nsubprocess.run(['touch', '{canary}'])",
    "memory bomb": "x = bytearray(4 * 1024 ** 3)",
    "output flood": "while True:\n  print('x' * 10000)",
    "network": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)",
    "write outside": f"open('{canary}', 'w').write('escaped')",
    "delete outside": f"import os\nos.remove('{victim}')",
    "kill the parent": "import os\nos.kill(os.getppid(), 9)",
}
print(f"{'program':<16} {'status':<14} {'wall':>6}  last line of stderr")
for name, program in HOSTILE.items():
  result = sandbox.run_python(program, config=CONFIG)
  last = result.stderr.strip().splitlines()[-1][:60] if result.stderr.strip() else ""
  print(f"{name:<16} {result.status:<14} {result.wall_s:5.2f}s  {last}")
  assert result.status != "ok", name
  assert result.wall_s < CONFIG.timeout_s + 3.0, name

read = sandbox.run_python(f"print(open('{readable}').read())", config=CONFIG)
print(f"\n{'read a file':<16} {read.status:<14} {read.wall_s:5.2f}s  stdout={read.stdout.strip()!r}")
if sandbox.isolation_report(CONFIG).get("boundary"):
  assert read.status != "ok" and "a host file" not in read.stdout

assert not os.path.exists(canary), "a hostile program wrote outside its sandbox"
assert open(victim).read() == "keep me", "a hostile program deleted a host file"
fenced = ["```python\n" + p + "\n```" for p in HOSTILE.values()]
hostile_rewards = code.code_reward(fenced, [TESTS[:1]] * len(fenced), config=CONFIG,
                                   max_workers=2)
print("code rewards of the hostile programs:", hostile_rewards)
assert not any(hostile_rewards)

# %%
math_verifier.shutdown_pools()  # stop the verifier's worker processes
