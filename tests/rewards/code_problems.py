"""Small programming problems with honest solutions, for the code sandbox (issue 14).

Written for this repository (MBPP/HumanEval-like in spirit, no text copied). Each problem is
``{"name", "solution", "tests"}`` in the formats of :func:`rlvr_jax.rewards.code.run_tests`:
assert tests (plain, HumanEval ``check(candidate)`` functions, tests that rely on modules the
solution imported, ``from solution import``), stdin/stdout tests, and solutions that return every
kind of value the checker rebuilds (tuples, sets, dicts, bytes, floats, complex, huge ints,
``None``, ``Fraction``, ``Decimal``, ``deque``, ``namedtuple``, ``Counter``, generators,
closures, instances of the solution's classes) or change their arguments in place. Every honest
solution must score 1; ``WRONG`` holds deliberately wrong variants that must score 0.
"""


def _a(*lines):
  return [{"assert": line} for line in lines]


PROBLEMS = [
    {"name": "add", "solution": "def add(a, b):\n    return a + b\n",
     "tests": _a("assert add(2, 3) == 5", "assert add(-1, 1) == 0", "assert add(10**30, 1) == 10**30 + 1")},
    {"name": "reverse_string", "solution": "def reverse_string(s):\n    return s[::-1]\n",
     "tests": _a("assert reverse_string('abc') == 'cba'", "assert reverse_string('') == ''",
                 "assert reverse_string('héllo') == 'olléh'")},
    {"name": "is_prime", "solution": (
        "def is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n"
        "    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n"
        "    return True\n"),
     "tests": _a("assert is_prime(2)", "assert not is_prime(1)", "assert is_prime(97) is True",
                 "assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]")},
    {"name": "fib", "solution": (
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"),
     "tests": _a("assert fib(0) == 0", "assert fib(10) == 55", "assert fib(300) % 1000 == 600",
                 "assert fib(20000) > 10 ** 4000")},
    {"name": "min_max", "solution": "def min_max(xs):\n    return min(xs), max(xs)\n",
     "tests": _a("assert min_max([3, 1, 2]) == (1, 3)", "assert isinstance(min_max([1]), tuple)")},
    {"name": "common_elements", "solution": "def common_elements(a, b):\n    return set(a) & set(b)\n",
     "tests": _a("assert common_elements([1, 2, 3], [2, 3, 4]) == {2, 3}",
                 "assert common_elements((), (1,)) == set()",
                 "assert sorted(common_elements('abc', 'cbx')) == ['b', 'c']")},
    {"name": "char_count", "solution": (
        "def char_count(s):\n    out = {}\n    for c in s:\n        out[c] = out.get(c, 0) + 1\n"
        "    return out\n"),
     "tests": _a("assert char_count('abca') == {'a': 2, 'b': 1, 'c': 1}", "assert char_count('') == {}")},
    {"name": "word_freq_counter", "solution": (
        "from collections import Counter\n\ndef word_freq(text):\n    return Counter(text.split())\n"),
     "tests": _a("assert word_freq('a b a') == {'a': 2, 'b': 1}",
                 "assert word_freq('x y x').most_common(1) == [('x', 2)]")},
    {"name": "mean", "solution": "def mean(xs):\n    return sum(xs) / len(xs)\n",
     "tests": _a("assert abs(mean([1, 2, 3, 4]) - 2.5) < 1e-12",
                 "import math\nassert math.isclose(mean([0.1, 0.2, 0.3]), 0.2)")},
    {"name": "circle_area_uses_solution_import", "solution": (
        "import math\n\ndef circle_area(r):\n    return math.pi * r * r\n"),
     # MBPP style: the test relies on the solution having imported math.
     "tests": _a("assert math.isclose(circle_area(2), 12.566370614359172)",
                 "assert round(circle_area(1), 5) == 3.14159")},
    {"name": "gcd", "solution": (
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return abs(a)\n"),
     "tests": _a("assert gcd(12, 18) == 6", "assert gcd(17, 5) == 1", "assert gcd(0, 7) == 7")},
    {"name": "flatten", "solution": (
        "def flatten(xs):\n    out = []\n    for x in xs:\n"
        "        if isinstance(x, list):\n            out.extend(flatten(x))\n"
        "        else:\n            out.append(x)\n    return out\n"),
     "tests": _a("assert flatten([1, [2, [3, [4]]], 5]) == [1, 2, 3, 4, 5]", "assert flatten([]) == []")},
    {"name": "palindrome", "solution": (
        "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n"),
     "tests": _a("assert is_palindrome('A man, a plan, a canal: Panama')", "assert not is_palindrome('ab')")},
    {"name": "two_sum_class", "solution": (
        "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
        "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
        "                return [seen[target - x], i]\n            seen[x] = i\n        return []\n"),
     "tests": _a("assert Solution().twoSum([2, 7, 11, 15], 9) == [0, 1]",
                 "s = Solution()\nassert s.twoSum([3, 2, 4], 6) == [1, 2]\nassert s.twoSum([1], 5) == []")},
    {"name": "stack_class", "solution": (
        "class Stack:\n    def __init__(self):\n        self.items = []\n"
        "    def push(self, x):\n        self.items.append(x)\n"
        "    def pop(self):\n        return self.items.pop()\n"
        "    def __len__(self):\n        return len(self.items)\n"
        "    def __bool__(self):\n        return bool(self.items)\n"),
     "tests": _a("s = Stack()\ns.push(1)\ns.push(2)\nassert len(s) == 2\nassert s.pop() == 2\n"
                 "assert s.items == [1]\nassert s\ns.pop()\nassert not s",
                 "s = Stack()\ntry:\n    s.pop()\nexcept IndexError:\n    pass\nelse:\n    assert False")},
    {"name": "generator_squares", "solution": (
        "def squares(n):\n    for i in range(n):\n        yield i * i\n"),
     "tests": _a("assert list(squares(4)) == [0, 1, 4, 9]", "assert sum(squares(10)) == 285",
                 "g = squares(3)\nassert next(iter(g)) == 0")},
    {"name": "closure_adder", "solution": (
        "def make_adder(k):\n    def add(x):\n        return x + k\n    return add\n"),
     "tests": _a("assert make_adder(2)(3) == 5", "f = make_adder(-1)\nassert [f(i) for i in range(3)] == [-1, 0, 1]")},
    {"name": "sort_in_place", "solution": (
        "def sort_in_place(xs):\n    xs.sort()\n"),
     "tests": _a("a = [3, 1, 2]\nsort_in_place(a)\nassert a == [1, 2, 3]",
                 "a = [5, 4]\nassert sort_in_place(a) is None\nassert a == [4, 5]")},
    {"name": "dict_in_place", "solution": (
        "def add_key(d, k, v):\n    d[k] = v\n    return len(d)\n"),
     "tests": _a("d = {'a': 1}\nassert add_key(d, 'b', 2) == 2\nassert d == {'a': 1, 'b': 2}")},
    {"name": "raises_value_error", "solution": (
        "def sqrt_int(n):\n    if n < 0:\n        raise ValueError('negative')\n"
        "    r = int(n ** 0.5)\n    while r * r > n:\n        r -= 1\n"
        "    while (r + 1) * (r + 1) <= n:\n        r += 1\n    return r\n"),
     "tests": _a("assert sqrt_int(17) == 4",
                 "try:\n    sqrt_int(-1)\nexcept ValueError as e:\n    assert 'negative' in str(e)\nelse:\n    assert False")},
    {"name": "returns_none", "solution": "def nothing(x):\n    return None\n",
     "tests": _a("assert nothing(1) is None")},
    {"name": "bytes_xor", "solution": (
        "def xor_bytes(a, b):\n    return bytes(x ^ y for x, y in zip(a, b))\n"),
     "tests": _a("assert xor_bytes(b'\\x0f\\xf0', b'\\xff\\xff') == b'\\xf0\\x0f'", "assert xor_bytes(b'', b'') == b''")},
    {"name": "complex_roots", "solution": (
        "import cmath\n\ndef roots(a, b, c):\n    d = cmath.sqrt(b * b - 4 * a * c)\n"
        "    return ((-b + d) / (2 * a), (-b - d) / (2 * a))\n"),
     "tests": _a("r = roots(1, 0, 1)\nassert r == (1j, -1j)", "assert roots(1, -3, 2) == (2 + 0j, 1 + 0j)")},
    {"name": "fraction_sum", "solution": (
        "from fractions import Fraction\n\ndef harmonic(n):\n"
        "    return sum(Fraction(1, k) for k in range(1, n + 1))\n"),
     "tests": _a("assert harmonic(3) == Fraction(11, 6)", "assert harmonic(1) == 1")},
    {"name": "decimal_money", "solution": (
        "from decimal import Decimal\n\ndef total(prices):\n"
        "    return sum(Decimal(p) for p in prices)\n"),
     "tests": _a("assert total(['0.10', '0.20']) == Decimal('0.30')")},
    {"name": "deque_rotate", "solution": (
        "from collections import deque\n\ndef rotate(xs, k):\n    d = deque(xs)\n    d.rotate(k)\n"
        "    return d\n"),
     "tests": _a("assert rotate([1, 2, 3], 1) == deque([3, 1, 2])", "assert list(rotate([1, 2], 0)) == [1, 2]")},
    {"name": "namedtuple_point", "solution": (
        "from collections import namedtuple\nPoint = namedtuple('Point', 'x y')\n\n"
        "def midpoint(a, b):\n    return Point((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)\n"),
     "tests": _a("assert midpoint((0, 0), (2, 4)) == (1.0, 2.0)", "assert midpoint((0, 0), (2, 4)) == Point(1, 2)")},
    {"name": "nested_structures", "solution": (
        "def group_by_len(words):\n    out = {}\n    for w in words:\n"
        "        out.setdefault(len(w), []).append(w)\n    return out\n"),
     "tests": _a("assert group_by_len(['a', 'bb', 'c']) == {1: ['a', 'c'], 2: ['bb']}")},
    {"name": "frozenset_keys", "solution": (
        "def pair_counts(pairs):\n    out = {}\n    for a, b in pairs:\n"
        "        k = frozenset((a, b))\n        out[k] = out.get(k, 0) + 1\n    return out\n"),
     "tests": _a("assert pair_counts([(1, 2), (2, 1), (3, 3)]) == {frozenset({1, 2}): 2, frozenset({3}): 1}")},
    {"name": "float_nan_inf", "solution": (
        "def safe_div(a, b):\n    if b == 0:\n        return float('inf') if a > 0 else float('nan')\n    return a / b\n"),
     "tests": _a("assert safe_div(1, 0) == float('inf')", "import math\nassert math.isnan(safe_div(0, 0))",
                 "assert safe_div(1, 4) == 0.25")},
    {"name": "humaneval_check_style", "solution": (
        "def has_close_pair(numbers, threshold):\n"
        "    s = sorted(numbers)\n"
        "    return any(b - a < threshold for a, b in zip(s, s[1:]))\n"),
     "tests": _a("def check(candidate):\n"
                 "    assert candidate([1.0, 2.0, 3.9, 4.0], 0.3) is True\n"
                 "    assert candidate([1.0, 2.0, 3.0], 0.5) is False\n"
                 "    assert not candidate([], 1.0)\n\n"
                 "check(has_close_pair)")},
    {"name": "humaneval_metadata_style", "solution": (
        "def count_vowels(s):\n    return sum(c in 'aeiouAEIOU' for c in s)\n"),
     "tests": _a("METADATA = {'author': 'x'}\n\ndef check(candidate):\n"
                 "    for s, n in [('hello', 2), ('', 0), ('AEIOU', 5), ('xyz', 0)]:\n"
                 "        assert candidate(s) == n, s\n\ncheck(count_vowels)")},
    {"name": "from_solution_import", "solution": "def triple(x):\n    return 3 * x\n",
     "tests": _a("from solution import triple\nassert triple(3) == 9", "import solution\nassert solution.triple(1) == 3")},
    {"name": "main_guard_stdin_and_asserts", "solution": (
        "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n"
        "    a, b = map(int, input().split())\n    print(add(a, b))\n"),
     "tests": [{"input": "2 3\n", "output": "5\n"}, {"input": "-4 4\n", "output": "0"},
               {"assert": "assert add(1, 1) == 2"}]},
    {"name": "stdio_sum_lines", "solution": (
        "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n"),
     "tests": [{"input": "1 2 3\n4\n", "output": "10\n"}, {"input": "", "output": "0"}]},
    {"name": "stdio_matrix_transpose", "solution": (
        "rows = [line.split() for line in open(0).read().splitlines() if line.strip()]\n"
        "for col in zip(*rows):\n    print(' '.join(col))\n"),
     "tests": [{"input": "1 2\n3 4\n", "output": "1 3\n2 4\n"}]},
    {"name": "stdio_float_output", "solution": "n = int(input())\nprint(1 / n)\n",
     "tests": [{"input": "3\n", "output": "0.3333333333333333\n"}]},
    {"name": "recursion_deep", "solution": (
        "import sys\nsys.setrecursionlimit(10000)\n\ndef depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"),
     "tests": _a("assert depth(3000) == 3000")},
    {"name": "lru_cache", "solution": (
        "from functools import lru_cache\n\n@lru_cache(maxsize=None)\ndef paths(r, c):\n"
        "    if r == 0 or c == 0:\n        return 1\n    return paths(r - 1, c) + paths(r, c - 1)\n"),
     "tests": _a("assert paths(2, 2) == 6", "assert paths(16, 16) == 601080390")},
    {"name": "heap_k_smallest", "solution": (
        "import heapq\n\ndef k_smallest(xs, k):\n    return heapq.nsmallest(k, xs)\n"),
     "tests": _a("assert k_smallest([5, 1, 4, 2], 2) == [1, 2]", "assert k_smallest([], 3) == []")},
    {"name": "bisect_insert", "solution": (
        "import bisect\n\ndef insert_pos(xs, x):\n    return bisect.bisect_left(xs, x)\n"),
     "tests": _a("assert insert_pos([1, 3, 5], 4) == 2", "assert insert_pos([], 1) == 0")},
    {"name": "regex_emails", "solution": (
        "import re\n\ndef find_emails(text):\n    return re.findall(r'[\\w.]+@[\\w.]+\\.\\w+', text)\n"),
     "tests": _a("assert find_emails('mail a.b@x.org or c@y.io now') == ['a.b@x.org', 'c@y.io']")},
    {"name": "itertools_pairs", "solution": (
        "from itertools import combinations\n\ndef pairs(xs):\n    return list(combinations(xs, 2))\n"),
     "tests": _a("assert pairs([1, 2, 3]) == [(1, 2), (1, 3), (2, 3)]", "assert pairs([1]) == []")},
    {"name": "string_format", "solution": (
        "def fmt(name, score):\n    return f'{name}: {score:.2f}'\n"),
     "tests": _a("assert fmt('ann', 3.14159) == 'ann: 3.14'")},
    {"name": "matrix_multiply", "solution": (
        "def matmul(a, b):\n    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]\n"),
     "tests": _a("assert matmul([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]")},
    {"name": "binary_search", "solution": (
        "def bsearch(xs, x):\n    lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n"
        "        mid = (lo + hi) // 2\n        if xs[mid] == x:\n            return mid\n"
        "        if xs[mid] < x:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n"
        "    return -1\n"),
     "tests": _a("assert bsearch([1, 3, 5, 7], 5) == 2", "assert bsearch([1, 3], 4) == -1",
                 "xs = list(range(0, 1000, 3))\nfor i, x in enumerate(xs):\n    assert bsearch(xs, x) == i")},
    {"name": "roman_numerals", "solution": (
        "def to_roman(n):\n    vals = [(1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'),\n"
        "            (50, 'L'), (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')]\n"
        "    out = ''\n    for v, s in vals:\n        while n >= v:\n            out += s\n            n -= v\n"
        "    return out\n"),
     "tests": _a("assert to_roman(1994) == 'MCMXCIV'", "assert to_roman(4) == 'IV'")},
    {"name": "anagrams", "solution": (
        "def group_anagrams(words):\n    groups = {}\n    for w in words:\n"
        "        groups.setdefault(''.join(sorted(w)), []).append(w)\n"
        "    return sorted(sorted(g) for g in groups.values())\n"),
     "tests": _a("assert group_anagrams(['eat', 'tea', 'tan', 'ate', 'nat', 'bat']) == "
                 "[['ate', 'eat', 'tea'], ['bat'], ['nat', 'tan']]")},
    {"name": "run_length", "solution": (
        "from itertools import groupby\n\ndef rle(s):\n    return [(k, len(list(g))) for k, g in groupby(s)]\n"),
     "tests": _a("assert rle('aaabcc') == [('a', 3), ('b', 1), ('c', 2)]", "assert rle('') == []")},
    {"name": "unicode_and_bool", "solution": (
        "def has_emoji(s):\n    return any(ord(c) > 0xFFFF for c in s)\n"),
     "tests": _a("assert has_emoji('hi \U0001F600') is True", "assert has_emoji('plain') is False")},
    {"name": "range_return", "solution": "def evens(n):\n    return range(0, n, 2)\n",
     "tests": _a("assert list(evens(7)) == [0, 2, 4, 6]", "assert evens(4) == range(0, 4, 2)", "assert 4 in evens(6)")},
    {"name": "kwargs_defaults", "solution": (
        "def greet(name, greeting='Hello', *, punct='!'):\n    return f'{greeting}, {name}{punct}'\n"),
     "tests": _a("assert greet('Bo') == 'Hello, Bo!'", "assert greet('Bo', greeting='Hi', punct='.') == 'Hi, Bo.'")},
    {"name": "global_constant", "solution": (
        "MOD = 10 ** 9 + 7\n\ndef pow_mod(a, b):\n    return pow(a, b, MOD)\n"),
     "tests": _a("assert pow_mod(2, 10) == 1024", "assert pow_mod(2, MOD - 1) == 1", "assert MOD == 1000000007")},
    {"name": "dataclass_result", "solution": (
        "from dataclasses import dataclass\n\n@dataclass\nclass Interval:\n    lo: int\n    hi: int\n"
        "    def length(self):\n        return self.hi - self.lo\n\n"
        "def merge(a, b):\n    return Interval(min(a.lo, b.lo), max(a.hi, b.hi))\n"),
     "tests": _a("m = merge(Interval(1, 3), Interval(2, 6))\nassert (m.lo, m.hi) == (1, 6)\nassert m.length() == 5")},
    {"name": "prints_and_returns", "solution": (
        "def noisy_double(x):\n    print('doubling', x)\n    return 2 * x\n"),
     "tests": _a("assert noisy_double(21) == 42")},
    {"name": "sets_of_tuples", "solution": (
        "def edges(adj):\n    return {(a, b) for a, bs in adj.items() for b in bs if a < b}\n"),
     "tests": _a("assert edges({1: [2, 3], 2: [1], 3: [1]}) == {(1, 2), (1, 3)}")},
    {"name": "bytearray_in_place", "solution": (
        "def upper_in_place(buf):\n    for i, c in enumerate(buf):\n"
        "        if 97 <= c <= 122:\n            buf[i] = c - 32\n"),
     "tests": _a("b = bytearray(b'abC1')\nupper_in_place(b)\nassert b == bytearray(b'ABC1')")},
    {"name": "big_output_list", "solution": "def first_n(n):\n    return list(range(n))\n",
     "tests": _a("assert first_n(50000) == list(range(50000))")},
    {"name": "sum_digits_json_import", "solution": (
        "import json\n\ndef digits_json(n):\n    return json.dumps([int(c) for c in str(n)])\n"),
     "tests": _a("assert digits_json(305) == '[3, 0, 5]'")},
]

# Deliberately wrong solutions: each must score 0 (the checker is not an always-pass).
WRONG = [
    {"name": "add_minus", "solution": "def add(a, b):\n    return a - b\n",
     "tests": _a("assert add(2, 3) == 5")},
    {"name": "sort_copy_not_in_place", "solution": "def sort_in_place(xs):\n    return sorted(xs)\n",
     "tests": _a("a = [3, 1, 2]\nsort_in_place(a)\nassert a == [1, 2, 3]")},
    {"name": "list_not_tuple", "solution": "def min_max(xs):\n    return [min(xs), max(xs)]\n",
     "tests": _a("assert min_max([3, 1, 2]) == (1, 3)")},
    {"name": "generator_off_by_one", "solution": "def squares(n):\n    for i in range(n + 1):\n        yield i * i\n",
     "tests": _a("assert list(squares(4)) == [0, 1, 4, 9]")},
    {"name": "class_wrong_method", "solution": (
        "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 0]\n"),
     "tests": _a("assert Solution().twoSum([2, 7, 11, 15], 9) == [0, 1]")},
    {"name": "stdio_wrong", "solution": "print(int(input()) * 2)\n",
     "tests": [{"input": "3\n", "output": "9\n"}]},
]
