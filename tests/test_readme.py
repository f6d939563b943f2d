"""The results' figures cannot drift from what they come from: docs/results.md's from the reports of the runs
they describe (and the measurements next to them in docs/runs), the README's summary from the same sources,
the vocabulary from the cpu preset; and the README's first screen says what the project is, how to run it,
how to test it and what a run shows."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {"1337": "speedrun_cpu_report.md", "1": "speedrun_cpu_seed1_report.md", "2": "speedrun_cpu_seed2_report.md"}
REPORTS = [ROOT / "docs" / name for name in SEEDS.values()]
FIGURE = re.compile(r"(?<![\d.])\d\.\d{3}\b")


def results_section() -> str:
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    return results[results.index("## Results"):results.index("**The same command on another machine")]


def sources() -> str:
    """The two runs' reports and every measurement of docs/runs."""
    return "".join(p.read_text(encoding="utf-8") for p in REPORTS + sorted((ROOT / "docs" / "runs").glob("*.md")))


def test_results_table_is_seed_0s_report():
    """The default seed's table, row for row, is its report's."""
    def table(text):
        return [line for line in text.splitlines() if line.startswith("| ") and "|---" not in line]
    results, report = results_section(), REPORTS[0].read_text(encoding="utf-8")
    seed0 = results[results.index("Seed 1337:"):]
    seed0 = seed0[:seed0.index("\n\n", seed0.index("| model"))]
    assert table(seed0) == table(report)[:10] and len(table(seed0)) == 10  # the header and 9 checkpoints


def test_results_figures_come_from_the_runs():
    """Every three-decimal figure of the results is in one of the runs' reports or in a measurement of
    docs/runs; every stage time is its report's."""
    results = results_section()
    figures, known = set(FIGURE.findall(results)), set(FIGURE.findall(sources()))
    assert len(figures) >= 30 and figures <= known, figures - known
    words = {"pretraining": "pretrain", "the student's base": "pretrain_student", "R1-Zero": "r1_zero",
             "the four R1 stages": "r1", "distillation": "distill", "the RL-only student": "student_rl_only",
             "evaluation of the teacher's 6 checkpoints": "eval_teacher",
             "evaluation of the student's 3": "eval_student"}
    for seed, report in zip(SEEDS, REPORTS):
        times = dict(re.findall(r"\| (\w+) \| (\d+) \|", report.read_text(encoding="utf-8")))
        line = re.search(rf"Wall time per stage, seed {seed}: (.*?)\.(?:\s|$)", results, re.S).group(1)
        said = dict(re.findall(r"([\w\-' 19]+?) (\d+) s(?:,|$)", line.replace("\n", " ")))
        assert {words[k.strip()]: v for k, v in said.items()} == {v: times[v] for v in words.values()}


def first_screen() -> str:
    """The README up to its first page of further reading: what a newcomer sees before scrolling."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme[:readme.index("## Read on")]


def test_readme_summary_figures_come_from_the_runs():
    """The README's summary quotes the runs: each of its figures is in a report or a measurement."""
    figures = set(FIGURE.findall(first_screen()))
    assert len(figures) >= 8 and figures <= set(FIGURE.findall(sources())), figures - set(FIGURE.findall(sources()))


def test_readme_first_screen_is_what_it_is_how_to_run_and_test_and_what_it_shows():
    screen = first_screen()
    assert len(screen.splitlines()) <= 50
    assert "DeepSeek-R1 recipe" in screen.split("\n\n")[1]  # the first paragraph says what the project is
    commands = re.search(r"```bash\n(.*?)```", screen, re.S).group(1)
    assert "bash speedrun.sh" in commands and "python -m pytest -q" in commands
    assert "## What the speedrun shows" in screen and "docs/results.md" in screen


def test_results_vocabulary_is_the_cpu_presets():
    """768 BPE ranks (pretrain.py's cpu preset) plus the chat special tokens."""
    from pretrain import PRESETS, PretrainConfig
    from r1mini.tokenizer import SPECIAL_TOKENS
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    ranks = PRESETS["cpu"].get("vocab_size", PretrainConfig.vocab_size)
    assert f"vocabulary {ranks + len(SPECIAL_TOKENS)})" in results


def test_gpu_page_quotes_the_speedrun_estimate():
    """The gpu estimate's range in docs/gpu.md is what benchmarks/estimate_speedrun.py computes now."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from estimate_speedrun import RANGE, speedrun
    low, high = sorted(round(speedrun(a, "gpu")[0].total() / 60) for a in RANGE)
    gpu = (ROOT / "docs" / "gpu.md").read_text(encoding="utf-8")
    assert f"**The gpu speedrun, estimated: {low}-{high} min on one H100**" in gpu
    assert f"**{low}-{high} min**" in (ROOT / "benchmarks" / "estimate_speedrun_gpu.txt").read_text(encoding="utf-8")
