"""Tests for turning result rows into leaderboards."""
from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from benchmark.report.leaderboard import (
    FULL_LABEL, build_leaderboards, render_markdown, render_rich, write_leaderboards,
)
from benchmark.report.stats import summarize
from core.rows import ResultRow

_counter = iter(range(10**6))


def row(method: str, ipc: int | None, acc: float | None, seed: int, *, dataset: str = "fashion_mnist",
        arch: str = "convnet3", protocol: str = "dc", budget: str = "quick", status: str = "ok") -> ResultRow:
    return ResultRow(
        run_hash=f"h{next(_counter)}", status=status, method=method, dataset=dataset, ipc=ipc, arch=arch,
        protocol=protocol, budget=budget, seed=seed, test_acc=acc, config={}, metrics={},
        error=None if status == "ok" else "RuntimeError: boom",
    )


def series(method: str, ipc: int | None, accs: list[float], **kw) -> list[ResultRow]:
    return [row(method, ipc, a, seed, **kw) for seed, a in enumerate(accs)]


def fmnist_rows() -> list[ResultRow]:
    return (
        series("full", None, [90.0, 91.0, 92.0])
        + series("random", 1, [50.0, 52.0, 54.0])
        + series("random", 2, [60.0, 60.5])
        + series("random", 10, [70.0, 71.0, 72.0])
        + series("d4m", 1, [55.0, 56.0, 57.0])
        + series("d4m", 10, [68.0, 69.0, 70.0])
        + series("d4m+evlf", 1, [60.0, 61.0, 62.0])
        + series("d4m+evlf", 10, [69.0, 70.0, 71.0])
        + series("dit", 1, [44.44])
        # an error row with an absurd value must not leak into the table
        + [row("d4m", 1, 99.9, 7, status="error"), row("dit", 10, None, 0, status="error")]
    )


def board_of(rows: list[ResultRow], dataset: str = "fashion_mnist"):
    (board,) = [b for b in build_leaderboards(rows) if b.dataset == dataset]
    return board


def cell(board, method_label: str, column: str) -> str:
    cells = dict(board.rows)[method_label]
    return cells[board.columns.index(column)]


def is_bold(board, method_label: str, column: str) -> bool:
    i = [label for label, _ in board.rows].index(method_label)
    return (i, board.columns.index(column)) in board.bold


def test_columns_rows_and_cells() -> None:
    b = board_of(fmnist_rows())
    assert (b.dataset, b.protocol, b.budget) == ("fashion_mnist", "dc", "quick")
    assert b.columns == ["IPC 1", "IPC 2", "IPC 10"]
    assert [label for label, _ in b.rows] == [FULL_LABEL, "random", "d4m", "d4m+evlf", "dit"]
    assert cell(b, "random", "IPC 1") == "52.0 ± 2.0 (3)"
    assert cell(b, "random", "IPC 2") == "60.2 ± 0.4 (2)"  # mean 60.25, std 0.354
    assert cell(b, "d4m", "IPC 1") == "56.0 ± 1.0 (3)"  # the error row (99.9) is excluded
    assert cell(b, "d4m", "IPC 2") == "—"
    assert cell(b, "dit", "IPC 1") == "44.4 (1)"  # one seed: no std shown
    assert cell(b, "dit", "IPC 10") == "—"  # only an error row there


def test_full_row_repeated_and_never_bold() -> None:
    b = board_of(fmnist_rows())
    assert dict(b.rows)[FULL_LABEL] == ["91.0 ± 1.0 (3)"] * 3
    assert not any(is_bold(b, FULL_LABEL, c) for c in b.columns)
    assert any("whole training split" in n and "IPC" in n for n in b.notes)


def test_bold_marks_best_non_reference_cell() -> None:
    b = board_of(fmnist_rows())
    assert is_bold(b, "d4m+evlf", "IPC 1") and not is_bold(b, "d4m", "IPC 1")
    assert is_bold(b, "random", "IPC 2")
    assert is_bold(b, "random", "IPC 10") and not is_bold(b, "d4m+evlf", "IPC 10")
    assert len(b.bold) == 3
    md = render_markdown(b)
    assert "**61.0 ± 1.0 (3) Δ +5.0 ↑**" in md and "**71.0 ± 1.0 (3)**" in md
    assert "**91.0" not in md


def test_ties_at_shown_precision_are_both_bold() -> None:
    rows = series("random", 1, [50.0, 50.02]) + series("d4m", 1, [50.01, 50.03])
    b = board_of(rows)
    assert is_bold(b, "random", "IPC 1") and is_bold(b, "d4m", "IPC 1")


def test_evlf_marks_only_significant_differences() -> None:
    b = board_of(fmnist_rows())
    assert cell(b, "d4m+evlf", "IPC 1") == "61.0 ± 1.0 (3) Δ +5.0 ↑"  # t = 6.1, p < 0.01
    assert cell(b, "d4m+evlf", "IPC 10") == "70.0 ± 1.0 (3) Δ +1.0"  # t = 1.2, not significant
    rows = series("d4m", 1, [60.0, 61.0, 62.0]) + series("d4m+evlf", 1, [50.0, 51.0, 52.0])
    assert cell(board_of(rows), "d4m+evlf", "IPC 1") == "51.0 ± 1.0 (3) Δ -10.0 ↓"


def test_honesty_notes() -> None:
    b = board_of(fmnist_rows())
    beat = [n for n in b.notes if "beats random" in n]
    assert beat == ["IPC 10: no method beats random (71.0); the best is d4m+evlf (70.0)."]
    text = "\n".join(b.notes)
    assert "last training epoch" in text and "dc" in text and "quick" in text
    assert "convnet3" in text and "Seeds used: 0, 1, 2" in text and "n per cell: 1 to 3" in text
    no_random = board_of(series("d4m", 50, [1.0, 2.0]))
    assert any("IPC 50: no 'random' row" in n for n in no_random.notes)


def test_no_number_outside_the_rows() -> None:
    rows = fmnist_rows()
    b = board_of(rows)
    allowed = set()
    groups: dict = {}
    for r in rows:
        if r.status == "ok":
            groups.setdefault((r.method, r.ipc), []).append(r.test_acc)
    for vals in groups.values():
        s = summarize(vals)
        allowed |= {f"{s.mean:.1f}", f"{s.std:.1f}", str(s.n)}
    for (method, ipc), vals in groups.items():  # a variant's difference from its base
        if "+evlf" in method:
            base = groups[(method.replace("+evlf", ""), ipc)]
            allowed.add(f"{abs(sum(vals) / len(vals) - sum(base) / len(base)):.1f}")
    for _, cells in b.rows:
        for c in cells:
            for num in re.findall(r"\d+(?:\.\d+)?", c):
                assert num in allowed, (c, num)


def test_separate_boards_per_dataset_protocol_budget() -> None:
    rows = (fmnist_rows()
            + series("random", 1, [40.0], budget="paper")
            + series("random", 1, [41.0], protocol="dsa")
            + series("random", 1, [30.0], dataset="cifar10"))
    keys = [(b.dataset, b.protocol, b.budget) for b in build_leaderboards(rows)]
    assert keys == [("cifar10", "dc", "quick"), ("fashion_mnist", "dc", "paper"),
                    ("fashion_mnist", "dc", "quick"), ("fashion_mnist", "dsa", "quick")]
    paper = [b for b in build_leaderboards(rows) if b.budget == "paper"][0]
    assert paper.rows == [("random", ["40.0 (1)"])]


def test_several_archs_split_columns() -> None:
    rows = (series("full", None, [80.0, 82.0], dataset="cifar10")
            + series("full", None, [85.0, 87.0], dataset="cifar10", arch="resnet18")
            + series("random", 1, [20.0, 22.0], dataset="cifar10")
            + series("random", 1, [25.0, 27.0], dataset="cifar10", arch="resnet18")
            + series("random", 10, [30.0, 32.0], dataset="cifar10"))
    b = board_of(rows, "cifar10")
    assert b.columns == ["IPC 1 · convnet3", "IPC 1 · resnet18", "IPC 10 · convnet3"]
    assert dict(b.rows)[FULL_LABEL] == ["81.0 ± 1.4 (2)", "86.0 ± 1.4 (2)", "81.0 ± 1.4 (2)"]
    assert dict(b.rows)["random"] == ["21.0 ± 1.4 (2)", "26.0 ± 1.4 (2)", "31.0 ± 1.4 (2)"]


def test_only_full_rows() -> None:
    b = board_of(series("full", None, [90.0, 92.0]))
    assert b.columns == ["all data"] and b.rows == [(FULL_LABEL, ["91.0 ± 1.4 (2)"])]


def test_error_rows_only_give_no_board() -> None:
    assert build_leaderboards([row("d4m", 1, None, 0, status="error")]) == []


def test_render_markdown_layout() -> None:
    md = render_markdown(board_of(fmnist_rows()))
    lines = md.splitlines()
    assert lines[0] == "## fashion_mnist — dc/quick"
    assert any(line.startswith("- Accuracy:") for line in lines)
    header = next(line for line in lines if line.startswith("| method"))
    assert [h.strip() for h in header.strip("|").split("|")] == ["method", "IPC 1", "IPC 2", "IPC 10"]
    assert any(line.startswith("| full (reference)") for line in lines)


def test_render_rich_has_bold_cells() -> None:
    b = board_of(fmnist_rows())
    table = render_rich(b)
    assert str(table.title) == "fashion_mnist — dc/quick"
    assert [str(c.header) for c in table.columns] == ["method", "IPC 1", "IPC 2", "IPC 10"]
    cells = list(table.columns[1]._cells)  # IPC 1 column
    styles = {str(c): str(c.style) for c in cells}
    assert styles["61.0 ± 1.0 (3) Δ +5.0 ↑"] == "bold" and styles["56.0 ± 1.0 (3)"] != "bold"
    console = Console(record=True, width=200)
    console.print(table)
    out = console.export_text()
    assert "91.0 ± 1.0 (3)" in out and "full (reference)" in out


def test_write_leaderboards_files(tmp_path: Path) -> None:
    rows = (fmnist_rows() + series("random", 1, [30.0], dataset="image/woof:64", protocol="idc",
                                   budget="paper"))
    paths = [p for p in write_leaderboards(rows, tmp_path / "boards") if p.suffix == ".md"]
    names = [p.name for p in paths]
    assert names == ["fashion_mnist__dc-quick.md", "image_woof_64__idc-paper.md", "reported.md", "index.md"]
    assert all(p.parent == tmp_path / "boards" and p.exists() for p in paths)
    assert paths[0].read_text().startswith(render_markdown(board_of(fmnist_rows())))
    index = paths[-1].read_text()
    assert "(fashion_mnist__dc-quick.md)" in index and "(image_woof_64__idc-paper.md)" in index
    assert "image/woof:64 — idc/paper" in index


def test_rich_does_not_read_method_specs_as_markup() -> None:
    rows = series("random", 1, [50.0, 51.0]) + series("d4m[strength=0.5]", 1, [40.0, 41.0])
    console = Console(record=True, width=200)
    console.print(render_rich(board_of(rows)))
    out = console.export_text()
    assert "d4m[strength=0.5]" in out and "no method beats random" in out


def test_pages_link_an_accuracy_plot_that_regenerates_identically(tmp_path) -> None:
    from benchmark.report.leaderboard import write_leaderboards

    rows = fmnist_rows() + series("random", 1, [40.0], budget="paper")
    written = write_leaderboards(rows, tmp_path)
    plot = tmp_path / "plots" / "fashion_mnist__dc-quick.png"
    assert plot in written and plot.stat().st_size > 0
    assert "![accuracy against IPC](plots/fashion_mnist__dc-quick.png)" in (tmp_path / "fashion_mnist__dc-quick.md").read_text()
    assert not (tmp_path / "plots" / "fashion_mnist__dc-paper.png").exists()  # one IPC: no plot
    before = plot.read_bytes()
    write_leaderboards(rows, tmp_path)
    assert plot.read_bytes() == before


def test_provenance_counts_each_distilled_set_once_and_sums_evaluation() -> None:
    from benchmark.report.page_provenance import method_table, provenance_section

    rows = series("d4m", 10, [68.0, 69.0, 70.0]) + series("herding", 10, [77.0, 78.0])
    for r in rows:
        r.metrics.update({"train_s": 10.0, "test_s": 2.0, "bytes": 79200, "distill_s": 30.0,
                          "distill_key": f"{r.method}-{r.seed}" if r.method == "d4m" else "herding-shared"})
        r.config["method_config"] = {"method": r.method}
        r.versions["machine"] = "Test CPU; no GPU"
    rows[0].git_commit = "abc123"
    table = {line[0]: line for line in method_table(rows)}
    assert table["d4m"][2:] == ["90 s", "36 s", "IPC 10: 79,200"]  # three sets of 30 s, three evaluations
    assert table["herding"][2:] == ["30 s", "24 s", "IPC 10: 79,200"]  # one deterministic set shared by both seeds
    text = provenance_section(rows)
    assert "Commits: abc123." in text and "Machine: Test CPU; no GPU." in text and "Rows: 5." in text


def test_reported_page_is_labelled_and_its_commands_name_registered_methods(tmp_path) -> None:
    from benchmark.report.leaderboard import write_leaderboards
    from benchmark.report.reported import IMAGEWOOF, SUBSETS, SUBSET_METHODS, WOOF_METHODS, harness_spec
    from methods import resolve_method

    write_leaderboards(fmnist_rows(), tmp_path)
    page = (tmp_path / "reported.md").read_text()
    assert page.startswith("# Reported by the papers (NOT measured by this harness)")
    assert "(reported.md)" in (tmp_path / "index.md").read_text()
    assert "34.9 / 39.3 / 38.5" in page and "| imageidc | 50 | 68.1 |" in page  # methods.md, verbatim
    assert len(IMAGEWOOF[10]) == len(WOOF_METHODS) and all(len(v) == len(SUBSET_METHODS) for v in SUBSETS.values())
    for method in {*WOOF_METHODS, *SUBSET_METHODS} - {"dm"}:
        spec = harness_spec(method)
        assert spec is not None and f"--methods '{spec}'" in page
        resolve_method(spec)  # every command names a method the harness can build


def test_dit_evlf_is_compared_with_dit_adapted_as_the_variant_is() -> None:
    rows = (series("dit", 1, [50.0, 51.0, 52.0]) + series("dit[adapt_steps=600]", 1, [60.0, 61.0, 62.0])
            + series("dit+evlf", 1, [61.0, 62.0, 63.0]))
    assert cell(board_of(rows), "dit+evlf", "IPC 1") == "62.0 ± 1.0 (3) Δ +1.0"  # not +11 against plain dit
    alone = series("dit", 1, [50.0, 51.0, 52.0]) + series("dit+evlf", 1, [61.0, 62.0, 63.0])
    assert cell(board_of(alone), "dit+evlf", "IPC 1") == "62.0 ± 1.0 (3)"  # no fair base: no difference shown


def test_best_seen_accuracy_is_on_the_reported_page_labelled_and_never_on_a_measured_one(tmp_path) -> None:
    from benchmark.report.leaderboard import write_leaderboards
    from benchmark.report.relative import enriched_json

    rows = series("random", 10, [30.0, 32.0], dataset="image/woof:64", protocol="idc", budget="paper")
    for r, best in zip(rows, (35.0, 36.0)):
        r.metrics["test_acc_best_seen"] = best
    write_leaderboards(rows, tmp_path)
    page = (tmp_path / "reported.md").read_text()
    assert "| image/woof:64 | idc/paper | random | 10 | convnet3 | 2 | 31.0 | 35.5 |" in page
    assert "best test acc seen (selected on the test set, as published)" in page
    measured = (tmp_path / "image_woof_64__idc-paper.md").read_text()
    assert not any(v in measured for v in ("35.5", "35.0", "36.0", "selected on the test set"))
    listed = enriched_json(rows)[0]["test_acc_best_seen"]
    assert listed == {"value": 35.0, "selection": "selected on the test set, as published"}
    write_leaderboards(series("random", 10, [30.0]), tmp_path / "plain")  # no selection rows: no section
    assert "published procedure" not in (tmp_path / "plain" / "reported.md").read_text()


def test_a_tuned_row_follows_its_method_at_the_defaults_and_is_explained() -> None:
    rows = (series("random", 10, [70.0, 71.0]) + series("dit", 10, [66.0, 67.0])
            + series("dit[adapt_steps=600]", 10, [66.0, 67.0]) + series("dit+evlf", 10, [67.0, 68.0])
            + series("dit+evlf[tuned]", 10, [69.0, 70.0]) + series("dit[tuned]", 10, [68.0, 69.0])
            + series("dit[adapt_steps=600,tuned]", 10, [68.0, 68.5]))
    board = board_of(rows)
    assert [label for label, _ in board.rows] == ["random", "dit", "dit[tuned]", "dit[adapt_steps=600]",
                                                  "dit[adapt_steps=600,tuned]", "dit+evlf", "dit+evlf[tuned]"]
    text = render_markdown(board)
    assert "'[tuned]': the method with the options `bench tune` chose" in text
    assert "[tuning.md](tuning.md)" in text
    # the tuned variant's delta is against its base's tuned row (68.0 -> 69.5: +1.25)
    assert "Δ +1.2" in cell(board, "dit+evlf[tuned]", "IPC 10")
    assert "'[tuned]'" not in render_markdown(board_of(rows[:6]))  # no tuned row: no note


def test_the_published_pages_regenerate_from_the_committed_store(tmp_path) -> None:
    # every page and plot under leaderboards/ is what `bench leaderboard` writes from the
    # committed store; the sample grids (and their section) need the sets in the artifact
    # cache, which a fresh clone does not have, so they are left out of the comparison
    import shutil

    from benchmark.cli import main

    published = Path(__file__).resolve().parents[1] / "leaderboards"
    shutil.copytree(published / "store", tmp_path / "store")  # the leaderboard opens the store
    assert main(["leaderboard", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "cache")]) == 0

    def without_samples(text: str) -> str:
        return re.sub(r"### Sample images\n.*?(?=^### |\Z)", "", text, flags=re.S | re.M)

    pages = sorted(p.relative_to(published) for p in published.rglob("*")
                   if p.is_file() and p.parts[len(published.parts)] not in ("store", "samples"))
    assert Path("tuning.md") in pages and Path("fashion-mnist__dc-quick.md") in pages
    assert pages == sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*") if p.is_file())
    for page in pages:
        if page.suffix == ".md":
            assert without_samples((tmp_path / "out" / page).read_text()) == without_samples(
                (published / page).read_text()), page
        else:
            assert (tmp_path / "out" / page).read_bytes() == (published / page).read_bytes(), page
