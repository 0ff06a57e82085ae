"""What a study shows while it runs: ``StudyProgress``, a line per finished trial (always, unless
turned off) and, on a terminal only, a bar of the trials done with the best value so far and the
trials running. It reads optuna's ``FrozenTrial``s through ``zoo.finetune.study.trial_rows`` and
imports no optuna itself. May import ``zoo``; never ``zoo.cli``.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from .study import StudySpec, counts, trial_rows

__all__ = ["StudyProgress"]


class StudyProgress:
    """A line per finished trial (always, unless disabled) and, on a terminal, a bar of trials done
    with the best value so far and the trials running."""

    def __init__(self, spec: StudySpec, *, enabled: bool = True, stream: IO | None = None):
        from .callbacks import progress_bar_enabled

        self.spec, self.enabled, self.stream = spec, enabled, stream or sys.stderr
        self.show_bar = enabled and progress_bar_enabled(self.stream)
        self.bar: Any = None
        self.seen: set[int] = set()

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def start(self, trials: list[Any], *, jobs: int = 1, timeout: float | None = None) -> None:
        done = [t for t in trials if t.state.is_finished()]
        self.seen = {t.number for t in done}
        if not self.enabled:
            return
        spec = self.spec
        budget = f"{spec.budget} trials" if spec.budget else "no trial limit"
        limit = f", timeout {timeout:g} s" if timeout else ""
        self._print(f"study {spec.name}: {spec.sampler} sampler (seed {spec.sampler_seed}), {spec.pruner} pruner, "
                    f"{budget}{limit}, {jobs} at a time; {spec.monitor} ({spec.direction}); "
                    f"{sum(counts(t) for t in done)} trial(s) done before")
        if self.show_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=spec.budget, initial=sum(counts(t) for t in done), unit="trial",
                            dynamic_ncols=True, file=self.stream)

    def update(self, trials: list[Any]) -> None:
        """Lines for trials finished since the last call; the bar's count, best and running trials."""
        if not self.enabled:
            return
        rows = {r["trial"]: r for r in trial_rows(trials, self.spec)}
        best, key = None, self.spec.monitor
        sign = 1 if self.spec.direction == "maximize" else -1
        for number in sorted(rows):
            row = rows[number]
            better = best is None or (row[key] is not None and sign * row[key] > sign * best[key])
            if row["state"] == "complete" and row[key] is not None and better:
                best = row
            if number in self.seen or row["state"] in ("running", "waiting"):
                continue
            self.seen.add(number)
            self._print(self._line(row, best))
        if self.bar is not None:
            self.bar.n = min(self.bar.total or 10**9, sum(counts(t) for t in trials if t.state.is_finished()))
            self.bar.set_postfix(best=f"{best[key]:.4f}" if best else "-",
                                 running=sum(r["state"] == "running" for r in rows.values()), refresh=True)

    def _line(self, row: dict[str, Any], best: dict[str, Any] | None) -> str:
        """``trial   3  complete     val_acc 0.8712  best 0.8790 (trial 1)  4.2 s  lr=0.0123 ...``; a trial
        that did not complete shows why instead of the best."""
        key = self.spec.monitor
        value = f"{key} {row[key]:.4f}" if row[key] is not None else ""
        if row["state"] == "complete":
            what = f"{value}  best {best[key]:.4f} (trial {best['trial']})" if best else value
        else:
            what = "  ".join(part for part in (row["reason"], value if row["state"] == "pruned" else "") if part)
        params = " ".join(f"{k[len('param_'):]}={_short(v)}" for k, v in row.items() if k.startswith("param_"))
        seconds = f"{row['seconds']:.1f} s" if row["seconds"] is not None else ""
        return "  ".join(part for part in (f"trial {row['trial']:>3}", f"{row['state']:<11}", what, seconds, params)
                         if part)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
