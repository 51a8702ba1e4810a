"""Mutation testing per module group, outside CI (issue #22).

mutmut reads one ``[tool.mutmut]`` and, before any mutant, runs that config's whole test
selection once to learn which tests reach which function. With every mutated module's tests
in one config that first pass alone takes minutes (Ray, PyAV), so this runner gives each group
its own scratch copy of the checkout (``deepercut/``, ``tests/``) with a config that mutates
only the group's modules and selects only its fast tests. Results stay in the scratch folder
(``<scratch>/<group>/mutants``), never in the repository.

    python benchmarks/mutation.py streams              # sync the copy, then mutmut run
    python benchmarks/mutation.py streams NAME ...     # re-run named mutants (after a new test)
    cd /tmp/deepercut-mutmut/streams && mutmut results  # mutmut show NAME, ...

Each run is niced (``nice -n 19``) and uses one child: the machine is shared.

    python benchmarks/mutation.py exact --fork --sample 100 --seed 22    # uniform sample
    python benchmarks/mutation.py exact --fork --scratch /tmp/x NAME ... --tests TEST ...

``--fork`` skips ``mutmut run``: it imports the tests once and forks one child per mutant
(see :func:`drive`); results in ``<scratch>/<group>/fork-results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Brute-force cross-checks on tiny instances (a minute in all, milliseconds per instance).
SOLVER_TESTS = [
    "tests/test_solvers.py",
    "tests/test_solvers_properties.py",
    "tests/test_solver_components.py",
]

#: group -> (modules to mutate, test files or node ids, extra pytest arguments)
GROUPS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "streams": (
        [f"deepercut/streams/{m}.py" for m in ("format", "framing", "reader", "records", "writer")],
        [
            "tests/test_sinks.py",
            "tests/test_stream_properties.py",
            "tests/test_stream_writer.py",
            "tests/test_stream_framing.py",
            "tests/test_stream_reader.py",
            "tests/test_stream_header.py",
        ],
        # Not the TCP tests (sockets, timing) nor the two that run `deepercut convert`: building
        # its parser imports torch, 3 s of CPU per mutant, for checks read_poses tests repeat.
        ["-k", "not tcp and not cli_convert and not convert_refuses"],
    ),
    "assemble": (["deepercut/solvers/assemble.py"], ["tests/test_assemble.py"], []),
    "components": (
        ["deepercut/solvers/components.py"],
        ["tests/test_solver_components.py", "tests/test_solvers.py"],
        # Not the Hypothesis properties (30 s of CPU per surviving mutant) nor the two slowest
        # solver tests: a survivor costs ~10 s; the brute-force comparisons stay.
        ["-k", "not fixed_corpus and not time_limit_is_honoured"],
    ),
    "solvers": (
        ["deepercut/solvers/instance.py", "deepercut/solvers/api.py"],
        SOLVER_TESTS,
        [],
    ),
    "incremental": (["deepercut/solvers/incremental.py"], SOLVER_TESTS, []),
    "exact": (["deepercut/solvers/exact.py"], SOLVER_TESTS, []),
    "sources": (
        ["deepercut/sources/container.py", "deepercut/sources/stats.py"],
        ["tests/test_sources.py"],
        ["-k", "not realtime and not reconnect and not disappears and not network"],
    ),
    "convert": (
        ["deepercut/model/convert.py"],
        ["tests/test_import_weights.py", "tests/test_import_dlc3.py"],
        [],
    ),
    "pool": (["deepercut/engine/pool.py"], ["tests/test_pool.py"], []),
}


#: Every mutant's pytest run: fixed order, no cache, and no pytest-timeout (on a loaded machine a
#: test's wall time can pass the suite's 300 s and fail mutmut's first pass; mutmut's own
#: CPU-time limit catches hung mutants).
PYTEST_ARGS = ["-p", "no:randomly", "-p", "no:cacheprovider", "--timeout=0"]


def _config(modules: list[str], tests: list[str], extra: list[str], debug: bool) -> str:
    """The repository's pyproject.toml with its ``[tool.mutmut]`` narrowed to one group."""
    text = (ROOT / "pyproject.toml").read_text()
    head, _, rest = text.partition("[tool.mutmut]\n")
    # Drop the repository's own table (up to the next table header) and append the group's.
    tail = rest[rest.index("\n[") + 1 :] if "\n[" in rest else ""
    lines = [
        "[tool.mutmut]",
        'source_paths = ["deepercut"]',
        f"only_mutate = {modules!r}",
        f"pytest_add_cli_args_test_selection = {tests!r}",
        f"pytest_add_cli_args = {[*PYTEST_ARGS, *extra]!r}",
        # torch and Ray are not fork-safe once imported: fork each mutant from a clean server.
        'process_isolation = "forkserver"',
        f"debug = {str(debug).lower()}",
    ]
    return head + tail + "\n" + "\n".join(lines).replace("'", '"') + "\n"


def sync(group: str, scratch: Path, debug: bool = False) -> Path:
    """Copy the checkout's package and tests into ``scratch/group`` (mutmut's working folder)."""
    modules, tests, extra = GROUPS[group]
    work = scratch / group
    work.mkdir(parents=True, exist_ok=True)
    for name in ("deepercut", "tests"):
        shutil.copytree(
            ROOT / name,
            work / name,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    (work / "pyproject.toml").write_text(_config(modules, tests, extra, debug))
    return work


def generate(work: Path) -> list[str]:
    """(Re)write mutmut's ``mutants/`` tree of ``work`` from scratch; return every mutant name."""
    shutil.rmtree(work / "mutants", ignore_errors=True)
    code = (
        "from mutmut.__main__ import copy_src_dir, copy_also_copy_files, create_mutants\n"
        "from mutmut.mutation.trampoline import set_mutant_under_test\n"
        "import os; set_mutant_under_test('mutant_generation'); os.makedirs('mutants')\n"
        "copy_src_dir(); copy_also_copy_files(); create_mutants(1)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=work, check=True, capture_output=True)
    # copy_src_dir copies only source_paths: the tests are needed beside the package.
    shutil.copytree(work / "tests", work / "mutants" / "tests", dirs_exist_ok=True)
    names: list[str] = []
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        names += json.loads(meta.read_text())["exit_code_by_key"]
    return sorted(names)


def sample(names: list[str], size: int | None, seed: int) -> list[str]:
    """A uniformly random sample of ``size`` names (all when ``size`` is None) in random order:
    a run stopped early has still checked a uniform sample."""
    return random.Random(seed).sample(names, len(names) if size is None else min(size, len(names)))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _pytest_args(group: str) -> list[str]:
    extra = GROUPS[group][2]
    return ["--rootdir=.", "-q", "-x", "-p", "no:randomly", *PYTEST_ARGS[2:], *extra]


def _fork(run: Callable[[], int], cpu_s: float | None = None) -> int:
    """Run ``run()`` in a forked child with its output discarded; return its exit status
    (a negative signal number when killed: ``-SIGXCPU`` past ``cpu_s`` seconds of CPU)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            if cpu_s is not None:
                limit = int(cpu_s) + 1
                resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 5))
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            code = run()
        except BaseException:  # any failure in the child counts as a kill
            code = 3
        os._exit(int(code))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _collect_stats(group: str, tests: list[str], out: Path) -> int:
    """mutmut's stats pass in a child: which mutated functions each test reaches, and its
    duration; written as JSON to ``out``."""
    import pytest
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.state import state

    class Collector:
        def __init__(self) -> None:
            self.hits: dict[str, list[str]] = {}
            self.seconds: dict[str, float] = {}

        def pytest_runtest_teardown(self, item: Any) -> None:
            self.hits[item.nodeid] = sorted(state()._stats)
            state()._stats.clear()

        def pytest_runtest_makereport(self, item: Any, call: Any) -> None:
            self.seconds[item.nodeid] = self.seconds.get(item.nodeid, 0.0) + call.duration

    def run() -> int:
        set_mutant_under_test("stats")
        collector = Collector()
        code = pytest.main([*_pytest_args(group), *tests], plugins=[collector])
        out.write_text(json.dumps({"hits": collector.hits, "seconds": collector.seconds}))
        return int(code)

    return _fork(run)


def drive(
    group: str, work: Path, names: list[str], explicit: bool, only: list[str] | None = None
) -> None:
    """Run each mutant in a child forked from one process that imported the tests once.

    With ``explicit`` names (a re-run after a new test) every mutant runs the group's whole
    selection; otherwise only the tests that reach its function (mutmut's stats pass, done
    here once), fastest first. A mutant is killed when pytest fails, times out when it passes
    its CPU budget (3x its tests' clean time + 20 s). Results go to
    ``work/fork-results.json``. ``only``: these tests instead of the group's selection.
    """
    import pytest
    from hypothesis import settings
    from mutmut.mutation.trampoline import set_mutant_under_test

    # Same examples for every mutant; no database replaying another mutant's failures.
    settings.register_profile("mutation", derandomize=True, database=None)
    settings.load_profile("mutation")
    os.chdir(work / "mutants")
    sys.path.insert(0, str(work / "mutants"))
    tests = only or GROUPS[group][1]
    set_mutant_under_test("")
    pytest.main(["--rootdir=.", "-qq", "--collect-only", *GROUPS[group][2], *tests])
    seconds: dict[str, float] = {}
    by_function: dict[str, list[str]] = {}
    if not explicit:
        stats_file = work / "fork-stats.json"
        if _collect_stats(group, tests, stats_file) != 0:
            sys.exit("the clean run of the selection fails: fix it first")
        stats = json.loads(stats_file.read_text())
        seconds = stats["seconds"]
        for test, functions in stats["hits"].items():
            for function in functions:
                by_function.setdefault(function, []).append(test)
    results_file = work / "fork-results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    todo = names if explicit else [n for n in names if n not in results]  # resume
    for i, name in enumerate(todo):
        chosen = tests if explicit else by_function.get(name.partition("__mutmut_")[0], [])
        chosen = sorted(chosen, key=lambda t: seconds.get(t, 0.0))
        if not chosen:
            results[name] = "no tests"
        else:
            budget = 3 * sum(seconds.get(t, 0.0) for t in chosen) + 20 if seconds else 600

            def run(name: str = name, chosen: list[str] = chosen) -> int:
                set_mutant_under_test(name)
                return int(pytest.main([*_pytest_args(group), *chosen]))

            code = _fork(run, budget)
            results[name] = {0: "survived", 1: "killed", 3: "killed", 5: "no tests"}.get(
                code, "timeout" if code == -signal.SIGXCPU else f"error {code}"
            )
        results_file.write_text(json.dumps(results, indent=1, sort_keys=True))
        print(f"[{i + 1}/{len(todo)}] {results[name]:9} {name}", flush=True)
    summarise({n: results[n] for n in names if n in results})


def summarise(results: dict[str, str]) -> None:
    """Print counts, the kill rate with its 95 % interval, and the survivors."""
    counts = Counter(results.values())
    caught = counts["killed"] + counts["timeout"]
    low, high = wilson(caught, len(results))
    print(dict(counts))
    print(
        f"{caught} of {len(results)} killed or timed out: "
        f"{100 * caught / max(len(results), 1):.1f} % (95 % CI {100 * low:.1f}-{100 * high:.1f})"
    )
    for name, status in sorted(results.items()):
        if status not in ("killed", "timeout"):
            print(f"  {status}: {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("group", choices=sorted(GROUPS))
    parser.add_argument("mutants", nargs="*", help="mutant names to (re-)run; default: all")
    parser.add_argument("--debug", action="store_true", help="show mutmut's pytest output")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/deepercut-mutmut"))
    parser.add_argument("--sample", type=int, help="run a uniform random sample of N mutants")
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed")
    parser.add_argument(
        "--fork", action="store_true", help="run mutants by forking one process, not mutmut run"
    )
    parser.add_argument("--tests", nargs="+", help="with --fork: run these tests instead")
    args = parser.parse_intermixed_args()
    work = sync(args.group, args.scratch, args.debug)
    if args.fork:
        names = generate(work)
        chosen = args.mutants or sample(names, args.sample, args.seed)
        print(f"{len(names)} mutants; running {len(chosen)}", flush=True)
        os.nice(19 - os.nice(0))
        drive(args.group, work, chosen, explicit=bool(args.mutants), only=args.tests)
        return
    if args.sample is not None and not args.mutants:
        args.mutants = sample(generate(work), args.sample, args.seed)
    cmd = ["nice", "-n", "19", sys.executable, "-m", "mutmut", "run", "--max-children", "1"]
    # No names: every mutant of the group without a result yet (an interrupted run resumes).
    sys.exit(subprocess.call([*cmd, *args.mutants], cwd=work))


if __name__ == "__main__":
    main()
