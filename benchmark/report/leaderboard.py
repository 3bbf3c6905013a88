"""Leaderboards: successful result rows turned into one table per (dataset, protocol, budget), as markdown or rich.

Every number shown is a mean, std or count of test accuracies in the rows; nothing is carried over
from papers or other tables.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table
from rich.text import Text
from tabulate import tabulate

from benchmark.report.page_provenance import provenance_section
from benchmark.report.plots import write_accuracy_plot
from benchmark.report.relative import FULL, RANDOM, relative_scores
from benchmark.report.reported import render_reported
from benchmark.report.sample_grids import MAX_IPC, file_name, write_sample_grids
from benchmark.report.stats import CellStats, summarize, welch_t_test
from benchmark.store.studies import Study
from benchmark.report.tuning_page import PAGE, write_tuning_page
from core.artifacts import ArtifactCache
from core.rows import ResultRow
from methods.base import GROUPS
from methods.registry import TUNED, base_of, is_ceiling, is_tuned, method_group, plugin_names, without_tuned

FULL_LABEL = f"{FULL} (reference)"
EMPTY = "—"
ALPHA = 0.05
GAIN, LOSS = "↑", "↓"


@dataclass
class Leaderboard:
    """One table: methods down, IPC (x student when several) across."""

    dataset: str
    protocol: str
    budget: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]
    notes: list[str]
    # (row index, column index) of the best non-reference cell of each column.
    bold: set[tuple[int, int]] = field(default_factory=set)
    # second table: one row per (method, IPC, arch) with relative scores and image quality
    detail_columns: list[str] = field(default_factory=list)
    details: list[list[str]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.dataset} — {self.protocol}/{self.budget}"


# A column is one (ipc, arch); ipc None only when a board holds nothing but whole-data rows.
_Column = tuple[int | None, str]


def _method_order(method: str) -> tuple[int, str, bool, str, bool, str]:
    # by the group each method declares (reference, baseline, selection, generative, ...), then
    # by the row a plug-in variant is compared with (each variant right after its base), and
    # each tuned row right after the same method at its defaults
    untuned = without_tuned(method)
    base = base_of(untuned) or untuned
    return (GROUPS.index(method_group(method)), base.lower(), untuned != base, untuned.lower(), is_tuned(method),
            method)


def _cell_text(s: CellStats) -> str:
    # One seed has no spread; printing "± 0.0" would claim a measured std of zero.
    if s.n < 2:
        return f"{s.mean:.1f} ({s.n})"
    return f"{s.mean:.1f} ± {s.std:.1f} ({s.n})"


def _column_label(col: _Column, several_archs: bool) -> str:
    ipc, arch = col
    base = "all data" if ipc is None else f"IPC {ipc}"
    return f"{base} · {arch}" if several_archs else base


def _build_board(dataset: str, protocol: str, budget: str, rows: list[ResultRow]) -> Leaderboard:
    values: dict[tuple[str, int | None, str], list[float]] = defaultdict(list)
    for r in rows:
        values[(r.method, r.ipc, r.arch)].append(float(r.test_acc))  # type: ignore[arg-type]
    archs = sorted({r.arch for r in rows})
    several = len(archs) > 1
    columns: list[_Column] = sorted({(r.ipc, r.arch) for r in rows if r.ipc is not None})
    if not columns:
        columns = [(None, a) for a in archs]
    methods = sorted({r.method for r in rows}, key=_method_order)

    def cell_values(method: str, col: _Column) -> list[float]:
        # Whole-data rows (ipc None) do not depend on IPC: the same model fills every column of its arch.
        return values.get((method, col[0], col[1])) or values.get((method, None, col[1])) or []

    stats = {
        (m, col): summarize(v) for m in methods for col in columns if (v := cell_values(m, col))
    }

    bases = {m: base_of(m) for m in methods}  # a plug-in variant's base method, as the plug-in pairs them
    table: list[tuple[str, list[str]]] = []
    bold: set[tuple[int, int]] = set()
    for i, m in enumerate(methods):
        cells = []
        for col in columns:
            s = stats.get((m, col))
            text = EMPTY if s is None else _cell_text(s)
            if s is not None and bases[m] is not None:
                text += _delta_mark(cell_values(m, col), cell_values(bases[m], col))
            cells.append(text)
        table.append((FULL_LABEL if m == FULL else m, cells))

    for j, col in enumerate(columns):
        # Compare at the shown precision so that two cells that read the same are both bold.
        shown = {i: round(stats[(m, col)].mean, 1)
                 for i, m in enumerate(methods) if m != FULL and not is_ceiling(m) and (m, col) in stats}
        if shown:
            best = max(shown.values())
            bold |= {(i, j) for i, v in shown.items() if v == best}

    recon = any(is_ceiling(m) for m in methods)
    notes = _notes(protocol, budget, rows, methods, columns, stats, several, bases)
    return Leaderboard(
        dataset=dataset, protocol=protocol, budget=budget,
        columns=[_column_label(c, several) for c in columns], rows=table, notes=notes, bold=bold,
        detail_columns=detail_columns(recon), details=_details(rows, methods, recon),
    )


DETAIL_COLUMNS = ["method", "IPC", "student", "95% CI", "gain over random", "gap to full",
                  "recognizability", "FD (teacher)", "diversity", "coverage"]
RECON_COLUMN = "gain over recon"


def detail_columns(recon: bool) -> list[str]:
    """The second table's columns; "gain over recon" only on a board with decoding-ceiling rows."""
    if not recon:
        return list(DETAIL_COLUMNS)
    at = DETAIL_COLUMNS.index("gain over random") + 1
    return [*DETAIL_COLUMNS[:at], RECON_COLUMN, *DETAIL_COLUMNS[at:]]


def _fmt(value: float | None, digits: int = 1, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return EMPTY
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _details(rows: list[ResultRow], methods: list[str], recon: bool) -> list[list[str]]:
    """Per (method, IPC, arch): the CI of the mean, relative scores and mean image-quality metrics."""
    rel = relative_scores(rows)
    groups: dict[tuple[str, int | None, str], list[ResultRow]] = defaultdict(list)
    for r in rows:
        groups[(r.method, r.ipc, r.arch)].append(r)
    order = {m: i for i, m in enumerate(methods)}
    out = []
    for (method, ipc, arch), members in sorted(groups.items(),
                                               key=lambda kv: (order[kv[0][0]], kv[0][1] or 0, kv[0][2])):
        s = summarize([float(r.test_acc) for r in members])  # type: ignore[arg-type]
        ci = EMPTY if not math.isfinite(s.ci95) else f"{s.mean - s.ci95:.1f} to {s.mean + s.ci95:.1f}"
        first = rel.get(members[0].run_hash, {})

        def mean_of(key: str) -> float | None:
            vals = [r.metrics[key] for r in members if r.metrics.get(key) is not None]
            return sum(vals) / len(vals) if vals else None

        recon_cell = [_fmt(first.get("gain_over_recon"), signed=True)] if recon else []
        out.append([FULL_LABEL if method == FULL else method, "all" if ipc is None else str(ipc), arch, ci,
                    _fmt(first.get("gain_over_random"), signed=True), *recon_cell, _fmt(first.get("gap_to_full")),
                    _fmt(mean_of("recognizability")), _fmt(mean_of("fd_teacher"), 2),
                    _fmt(mean_of("diversity"), 3), _fmt(mean_of("coverage"))])
    return out


def _delta_mark(variant: list[float], base: list[float]) -> str:
    """`` Δ +1.2 ↑``: the difference of cell means from the base method, and the Welch mark."""
    if not variant or not base:
        return ""
    delta = f" Δ {round(sum(variant) / len(variant) - sum(base) / len(base), 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"
    if len(variant) < 2 or len(base) < 2:
        return delta
    t, p = welch_t_test(variant, base)
    if math.isnan(p) or p >= ALPHA:
        return delta
    return f"{delta} {GAIN}" if t > 0 else f"{delta} {LOSS}"


def _notes(
    protocol: str, budget: str, rows: list[ResultRow], methods: list[str],
    columns: list[_Column], stats: dict[tuple[str, _Column], CellStats], several: bool,
    bases: dict[str, str | None],
) -> list[str]:
    seeds = sorted({r.seed for r in rows})
    ns = sorted({s.n for s in stats.values()})
    n_text = str(ns[0]) if len(ns) == 1 else f"{ns[0]} to {ns[-1]}"
    notes = [
        f"Protocol `{protocol}`, budget `{budget}`; numbers are comparable only within this table.",
        "Accuracy: top-1 test accuracy (%) of the student after the last training epoch; "
        "a cell is mean ± sample std (n), n = number of student seeds; a single seed shows no std.",
        f"Students: {', '.join(sorted({r.arch for r in rows}))}.",
        f"Seeds used: {', '.join(map(str, seeds))}; n per cell: {n_text}.",
        "Bold: the best method of each column (the reference row excluded).",
    ]
    notes += _budget_and_provenance(rows)
    if FULL in methods:
        notes.append(
            f"'{FULL_LABEL}' is a student trained on the whole training split; it does not depend on "
            "IPC, so its one value is repeated in every column"
            + (" of its student" if several else "") + " and is never bold."
        )
    ceilings = [m for m in methods if is_ceiling(m)]
    if ceilings:
        notes.append(
            f"{' / '.join(f'{c!r}' for c in ceilings)}: {RANDOM}'s images (the same ones, seed by seed) encoded "
            "through a generative backbone's hook and decoded: the best a method decoding that backbone's latents "
            f"can reach; never bold. Gain over recon: a row's mean minus the mean of the recon row of its "
            "backbone and plug-ins at the same IPC, i.e. what generation itself costs.")
    if any(is_tuned(m) for m in methods):
        notes.append(
            f"'[{TUNED}]': the method with the options `bench tune` chose for it on the validation split "
            f"(the test split unread; the studies, their budgets and histories are on [{PAGE}]({PAGE})); "
            "each row's config records the options. A tuned plug-in row's Δ is against its base's tuned row.")
    plugins = plugin_names([m for m in methods if bases[m] is not None])
    if plugins:
        marks = " / ".join(f"'+{p}'" for p in plugins)
        notes.append(
            f"Δ after a {marks} cell: its mean minus its base method's mean in the same column (points); "
            f"{GAIN} / {LOSS}: significantly above / below the base (two-sided Welch t-test, p < {ALPHA}); "
            "no mark: not significant or under 2 seeds."
        )
    for col in columns:
        if col[0] is None:
            continue
        label = _column_label(col, several)
        others = [(stats[(m, col)].mean, m) for m in methods
                  if m not in (FULL, RANDOM) and not is_ceiling(m) and (m, col) in stats]
        if not others:
            continue
        if (RANDOM, col) not in stats:
            notes.append(f"{label}: no '{RANDOM}' row, so no method can be judged against random.")
            continue
        rand = stats[(RANDOM, col)].mean
        best_mean, best = max(others, key=lambda x: (x[0], x[1]))
        if best_mean <= rand:
            notes.append(
                f"{label}: no method beats {RANDOM} ({rand:.1f}); the best is {best} ({best_mean:.1f})."
            )
    return notes


def _budget_and_provenance(rows: list[ResultRow]) -> list[str]:
    """What the budget trained, which teachers were used, and which code and machine ran it."""
    notes = []
    for text in sorted({r.metrics.get("budget_description", "") for r in rows} - {""}):
        notes.append(f"Budget `{rows[0].budget}`: {text}.")
    teachers = sorted({(r.method, round(r.metrics["teacher_test_acc"], 2)) for r in rows
                       if r.metrics.get("teacher_test_acc") is not None})
    for method, acc in teachers:
        notes.append(f"{method}: its rows used a teacher with {acc:.2f}% test accuracy.")
    commits = sorted({r.git_commit for r in rows if r.git_commit})
    torch_versions = sorted({r.versions.get("torch", "?") for r in rows})
    devices = sorted({str(r.metrics.get("device", "?")) for r in rows})
    shown = [c[:12] + (" (with uncommitted changes)" if c.endswith("-dirty") else "") for c in commits]
    notes.append(f"Measured by EVLF-Bench at commit {', '.join(shown) or 'unknown'}; "
                 f"torch {', '.join(torch_versions)}; device {', '.join(devices)}.")
    return notes


def build_leaderboards(rows: Iterable[ResultRow]) -> list[Leaderboard]:
    """One board per (dataset, protocol, budget) from the rows with status "ok" and an accuracy."""
    groups: dict[tuple[str, str, str], list[ResultRow]] = defaultdict(list)
    for r in rows:
        if r.status == "ok" and r.test_acc is not None and math.isfinite(r.test_acc):
            groups[(r.dataset, r.protocol, r.budget)].append(r)
    return [_build_board(*key, groups[key]) for key in sorted(groups)]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(board: Leaderboard) -> str:
    """The board as a markdown section: title, notes as a list, then a GitHub table."""
    body = []
    for i, (label, cells) in enumerate(board.rows):
        shown = [f"**{c}**" if (i, j) in board.bold else c for j, c in enumerate(cells)]
        body.append([_md_escape(label), *map(_md_escape, shown)])
    table = tabulate(body, headers=["method", *board.columns], tablefmt="github", disable_numparse=True)
    notes = "\n".join(f"- {n}" for n in board.notes)
    text = f"## {board.title}\n\n{notes}\n\n{table}\n"
    if board.details:
        details = tabulate([[_md_escape(c) for c in row] for row in board.details], headers=board.detail_columns,
                           tablefmt="github", disable_numparse=True)
        text += f"\n### Relative scores and image quality\n\n{DETAILS_NOTE}\n\n{details}\n"
    return text


DETAILS_NOTE = (
    "Gain over random and gap to full: percentage points between cell means of this protocol and budget. "
    "Image quality in the feature space of the data set's quality teacher (ConvNet-3, its test accuracy in "
    "the rows): recognizability = teacher accuracy (%) on the distilled images; FD = Frechet distance to the "
    "real test features (lower is closer; compare at equal IPC); diversity = mean within-class cosine "
    "distance; coverage = % of real test images whose nearest distilled image has their class."
)


def render_rich_details(board: Leaderboard) -> Table:
    """The second table (relative scores and image quality) for the terminal."""
    table = Table(title=Text(f"{board.title}: relative scores and image quality"), caption=Text(DETAILS_NOTE),
                  caption_justify="left")
    for i, col in enumerate(board.detail_columns):
        table.add_column(Text(col), justify="left" if i < 3 else "right", no_wrap=i == 0)
    for row in board.details:
        table.add_row(*(Text(c) for c in row))
    return table


def render_rich(board: Leaderboard) -> Table:
    """The board as a rich table, notes as its caption."""
    # Text, not str: method specs like "d4m[strength=0.5]" would otherwise be read as rich markup.
    table = Table(title=Text(board.title), caption=Text("\n".join(board.notes)), caption_justify="left")
    table.add_column("method", no_wrap=True)
    for col in board.columns:
        table.add_column(Text(col), justify="right")
    for i, (label, cells) in enumerate(board.rows):
        shown = [Text(c, style="bold") if (i, j) in board.bold else Text(c) for j, c in enumerate(cells)]
        table.add_row(Text(label, style="italic" if label == FULL_LABEL else ""), *shown)
    return table


def _grid_section(grids: dict[str, tuple[Path, int, int]], out_dir: Path) -> str:
    lines = ["", "### Sample images", "",
             "One row per class: the distilled set the rows above scored, at the largest IPC up to "
             f"{MAX_IPC} and the lowest seed.", ""]
    for method, (path, ipc, seed) in sorted(grids.items(), key=lambda kv: _method_order(kv[0])):
        rel = path.relative_to(out_dir).as_posix()
        lines.append(f"**{_md_escape(method)}** (IPC {ipc}, seed {seed})\n\n![{_md_escape(method)}]({rel})\n")
    return "\n".join(lines)


def write_leaderboards(rows: Iterable[ResultRow], out_dir: Path, cache: ArtifactCache | None = None,
                       studies: list[Study] | None = None) -> list[Path]:
    """Write one markdown file per board and an ``index.md`` linking them; returns the paths written.

    With ``cache``, each page also gets a PNG sample grid per method (under ``samples/``) from
    the distilled sets still in the cache. With tuning ``studies``, a ``tuning.md`` page too.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    written: list[Path] = []
    links: list[str] = []
    used: set[str] = set()
    for board in build_leaderboards(rows):
        stem = f"{file_name(board.dataset)}__{file_name(board.protocol)}-{file_name(board.budget)}"
        name, k = f"{stem}.md", 2
        while name in used:  # two names that sanitise alike must not overwrite each other
            name, k = f"{stem}-{k}.md", k + 1
        used.add(name)
        path = out_dir / name
        text = render_markdown(board)
        mine = [r for r in rows if (r.dataset, r.protocol, r.budget) == (board.dataset, board.protocol, board.budget)
                and r.status == "ok"]
        plot = out_dir / "plots" / f"{name[:-3]}.png"
        if write_accuracy_plot(mine, plot, board.title):
            written.append(plot)
            text += f"\n### Accuracy against IPC\n\n![accuracy against IPC]({plot.relative_to(out_dir).as_posix()})\n"
        if cache is not None:
            grids = write_sample_grids(mine, cache, out_dir / "samples", name[:-3])
            written.extend(p for p, _, _ in grids.values())
            if grids:
                text += _grid_section(grids, out_dir)
        text += provenance_section(mine)
        path.write_text(text, encoding="utf-8")
        written.append(path)
        links.append(f"- [{board.title}]({name})")
    measured: dict[str, list[str]] = defaultdict(list)
    for board in build_leaderboards(rows):
        measured[board.dataset].append(f"{board.protocol}/{board.budget}")
    budgets = "".join(f"\n\nMeasured for {dataset}: {', '.join(names)} (protocol/budget); no other budget was run."
                      for dataset, names in sorted(measured.items()))
    reported = out_dir / "reported.md"
    reported.write_text(render_reported(rows), encoding="utf-8")
    written.append(reported)
    links.append("- [Reported by the papers (not measured here)](reported.md): EVLF, Minimax, D4M on ImageWoof, "
                 "ImageNette, ImageIDC, with the `bench run` line for each column")
    tuning = write_tuning_page(studies or [], out_dir)
    if tuning:
        written.extend(tuning)
        links.append(f"- [Tuning studies]({PAGE}): what `bench tune` searched for each method, on the validation "
                     "split, and what it chose")
    index = out_dir / "index.md"
    listing = "\n".join(links) if links else "No successful runs yet."
    index.write_text(
        f"# EVLF-Bench leaderboards\n\nEvery number on the data-set pages was measured by the harness; each page "
        f"states its protocol, budget, seeds, commit and machine. The last page holds the papers' own numbers, "
        f"labelled as such. Regenerate these pages from a result store with `bench leaderboard`.\n\n"
        f"{listing}{budgets}\n",
        encoding="utf-8",
    )
    written.append(index)
    return written
