"""The tuning page: every study of the store, its space, search, trials and choice, and a plot
of validation accuracy against trial. Every figure on it is a validation accuracy; the test
split was sealed while the studies ran."""
from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from benchmark.report.sample_grids import file_name
from benchmark.store.studies import COMPLETE, FAILED, Study

PAGE = "tuning.md"


def _trial_rows(study: Study) -> list[list[str]]:
    chosen = study.chosen
    rows = []
    for t in study.trials:
        step, last = t.scores[-1] if t.scores else (None, None)
        mark = " (chosen)" if chosen is not None and t.number == chosen.number else ""
        mark += " (defaults)" if study.defaults is not None and t.number == study.defaults.number else ""
        rows.append([f"{t.number}{mark}", ", ".join(f"{k}={v}" for k, v in t.options.items()),
                     t.status if t.status != FAILED else f"error: {t.error}",
                     "–" if step is None else str(step), "–" if last is None else f"{last:.2f}",
                     "–" if t.objective is None else f"{t.objective:.2f}", f"{t.seconds:.0f}"])
    return rows


def write_history_plot(study: Study, path: Path) -> None:
    """Validation accuracy of each trial (at its last scoring) against trial number, with the
    best complete trial so far as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    done = [(t.number, t.objective) for t in study.trials if t.status == COMPLETE and t.objective is not None]
    cut = [(t.number, t.scores[-1][1]) for t in study.trials if t.status != COMPLETE and t.scores]
    if done:
        ax.plot(*zip(*done), "o", color="tab:blue", label="complete")
        best, line = float("-inf"), []
        for number, value in sorted(done):
            best = max(best, value)
            line.append((number, best))
        ax.step(*zip(*line), where="post", color="tab:blue", alpha=0.5, label="best so far")
    if cut:
        ax.plot(*zip(*cut), "o", mfc="none", color="tab:orange", label="stopped early (last scoring)")
    ax.set_xlabel("trial (in the order proposed)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{study.method} on {study.dataset}, IPC {study.ipc}: search history", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_tuning_page(studies: list[Study], out_dir: Path) -> list[Path]:
    """Write ``tuning.md`` and one history plot per study; nothing when there are no studies."""
    if not studies:
        return []
    written: list[Path] = []
    parts = ["# Tuning studies\n",
             "Each study searched a method's declared space with `bench tune`: the same search (Optuna's TPE "
             "sampler through Ray Tune, ASHA stopping trials that trail at a validation scoring) and the same "
             "number of trials for every method. Every accuracy on this page is on the validation split; the "
             "test split was sealed while the studies ran (a read raises). A `name[tuned]` row on a data-set "
             "page runs the choice of the latest study of `name` on its data set.\n"]
    for study in sorted(studies, key=lambda s: (s.dataset, s.method, s.created_at)):
        space = ", ".join(f"`{k}` {v}" for k, v in study.space.items())
        search = study.search
        chosen, defaults = study.chosen, study.defaults
        verdict = "no trial completed, nothing chosen" if chosen is None else (
            f"chosen: trial {chosen.number}, validation {chosen.objective:.2f}"
            + ("" if defaults is None or defaults.objective is None
               else f" (the defaults: {defaults.objective:.2f}, {chosen.objective - defaults.objective:+.2f})"))
        stem = f"tuning__{file_name(study.dataset)}__{file_name(study.method)}__{study.key}"
        plot = out_dir / "plots" / f"{stem}.png"
        write_history_plot(study, plot)
        written.append(plot)
        table = tabulate(_trial_rows(study), headers=["trial", "options", "status", "last step", "last scoring",
                                                      "result", "seconds"], tablefmt="github")
        parts.append(
            f"\n## {study.method} on {study.dataset}\n\n"
            f"IPC {study.ipc}, student {study.arch}, `{study.protocol}/{study.budget}`, seed {study.seed}; "
            f"space: {space}; {search.get('trials')} trials, {search.get('scorings')} validation scorings each, "
            f"{search.get('concurrent')} at a time, searcher {search.get('searcher')} (starts at the defaults: "
            f"{'yes' if search.get('starts_at_defaults') else 'no'}), scheduler {search.get('scheduler')} "
            f"(grace {search.get('grace_period')}, reduction {search.get('reduction_factor')}); "
            f"study `{study.key}` at commit {study.git_commit[:12] or 'unknown'}.\n\n"
            f"{verdict}. Result: the validation accuracy of the weights the protocol reports, for complete "
            f"trials.\n\n{table}\n\n![search history](plots/{stem}.png)\n")
    page = out_dir / PAGE
    page.write_text("".join(parts), encoding="utf-8")
    written.append(page)
    return written
