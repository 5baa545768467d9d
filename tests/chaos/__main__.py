"""`python -m tests.chaos [-s SCENARIO ...] [--all] [--jobs N]`: runs the scenarios, prints their figures.

Without `-s` it runs every scenario but the long ones (soak); `--all` runs those too.

Exits 1 when a scenario lost a job, completed one twice, let two workers run one at once,
answered a client a 5xx other than 503, or failed a check of its own (webhook-blackhole: the
healthy receiver's p99, deliveries neither delivered nor dead; soak: a role's RSS grew 10 % or
more after the warm-up, or the queue's backlog was unbounded).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.chaos.harness import Options, run_scenario
from tests.chaos.report import Outcome, line, table
from tests.chaos.scenarios import SCENARIOS


def parse(argv: list[str] | None) -> tuple[list[str], Options]:
    """The scenarios to run and their options."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-s", "--scenario", action="append", choices=sorted(SCENARIOS), help="repeatable; default all but soak"
    )
    parser.add_argument("--all", action="store_true", help="every scenario, soak included (make chaos-all)")
    parser.add_argument(
        "--soak-minutes", type=float, default=Options.soak_minutes, help="soak: minutes of load (default %(default)s)"
    )
    parser.add_argument(
        "--soak-rate", type=float, default=Options.soak_rate, help="soak: jobs created per second (default %(default)s)"
    )
    parser.add_argument("--jobs", type=int, default=Options.jobs, help="jobs per scenario (default %(default)s)")
    parser.add_argument("--rate", type=float, default=Options.rate, help="jobs created per second")
    parser.add_argument(
        "--settle",
        type=float,
        default=Options.settle,
        help="seconds after the fault (or the last create) before an unfinished job counts as lost",
    )
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--replicas", default="", help="RUN_REPLICAS for every scenario, e.g. jobs=2,worker=2")
    parser.add_argument("--logs", type=Path, help="write each scenario's `make run` output to DIR/<scenario>.log")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=setting,
        metavar="NAME=VALUE",
        help="a setting of `make run` (repeatable), e.g. JOB_LEASE_SECONDS=3600",
    )
    args = parser.parse_args(argv)
    options = Options(
        jobs=args.jobs,
        rate=args.rate,
        settle=args.settle,
        seed=args.seed,
        logs=args.logs,
        settings=tuple(args.set),
        replicas=args.replicas,
        soak_minutes=args.soak_minutes,
        soak_rate=args.soak_rate,
    )
    default = [name for name, scenario in SCENARIOS.items() if args.all or not scenario.long]
    return args.scenario or default, options


def setting(text: str) -> tuple[str, str]:
    """NAME=VALUE as a pair."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def say(text: str) -> None:
    """Writes a line for the person who ran the suite."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM ends the run like Ctrl-C: every scenario cleans up on its way out.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Runs the chosen scenarios one after the other."""
    names, options = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        for name in names:
            own = SCENARIOS[name].options_for(options)
            say(f"== {name}: {own.jobs} jobs at {own.rate:g}/s ...")
            outcome = run_scenario(name, SCENARIOS[name], own)
            outcomes.append(outcome)
            say(f"   fault: {outcome.fault}")
            for note in outcome.notes:
                say(f"   {note}")
            say(line(outcome))
    except KeyboardInterrupt:
        say("interrupted: the scenario's processes, servers and files are gone")
        raise SystemExit(130) from None
    say("\n" + table(outcomes))
    failed = [o.scenario for o in outcomes if o.failed]
    say(f"\n{len(outcomes)} scenarios in {time.monotonic() - began:.0f}s; failed: {', '.join(failed) or 'none'}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
