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
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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
        ["tests/test_solvers.py", "tests/test_solvers_properties.py"],
        [],
    ),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("group", choices=sorted(GROUPS))
    parser.add_argument("mutants", nargs="*", help="mutant names to (re-)run; default: all")
    parser.add_argument("--debug", action="store_true", help="show mutmut's pytest output")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/deepercut-mutmut"))
    args = parser.parse_args()
    work = sync(args.group, args.scratch, args.debug)
    cmd = ["nice", "-n", "19", sys.executable, "-m", "mutmut", "run", "--max-children", "1"]
    # No names: every mutant of the group without a result yet (an interrupted run resumes).
    sys.exit(subprocess.call([*cmd, *args.mutants], cwd=work))


if __name__ == "__main__":
    main()
