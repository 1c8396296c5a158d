"""`make mutation`'s report: mutmut's verdicts per module, its score, and the
mutants that survived (the code changes no test noticed), from `mutmut
results --all true`. Written to .artifacts/mutation.md and printed."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from tests.browser import ARTIFACTS

VERDICT = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}


def module_of(mutant: str) -> str:
    """`cache_proxy.admission.xǁAdmissionǁfits__mutmut_3` -> `cache_proxy.admission`."""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def score(counts: Counter[str]) -> float:
    """Mutants caught per mutant tested (mutmut's own score), in percent."""
    tested = sum(counts.values()) - counts["skipped"]
    return 100 * sum(counts[s] for s in CAUGHT) / tested if tested else 0.0


def report(lines: list[str]) -> str:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        match = VERDICT.match(line)
        if match is None:
            continue
        module, status = module_of(match["name"]), match["status"]
        counts[module][status] += 1
        if status not in CAUGHT:
            survivors[module].append(f"{match['name']} ({status})")
    out = [
        "| module | mutants | caught | survived | no tests | timeout | score |",
        "|---|---|---|---|---|---|---|",
    ]
    for module, c in sorted(counts.items()):
        caught = sum(c[s] for s in CAUGHT)
        out.append(
            f"| {module} | {sum(c.values())} | {caught} | {c['survived']} | "
            f"{c['no tests']} | {c['timeout']} | {score(c):.1f}% |"
        )
    total = sum(counts.values(), Counter())
    out.append(
        f"| all | {sum(total.values())} | {sum(total[s] for s in CAUGHT)} | "
        f"{total['survived']} | {total['no tests']} | {total['timeout']} | {score(total):.1f}% |"
    )
    for module, names in sorted(survivors.items()):
        out += ["", f"## {module}: not caught ({len(names)})", "", *(f"- {n}" for n in names)]
    return "\n".join(out) + "\n"


def main() -> int:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = report(done.stdout.splitlines())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "mutation.md").write_text(text)
    print(text)
    print(f"(also in {ARTIFACTS / 'mutation.md'}; `mutmut show NAME` prints a mutant's diff)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
