"""The README's figures cannot drift from what they come from: the results from the reports of the runs they
describe (and the measurements next to them in docs/runs), the vocabulary from the cpu preset."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = [ROOT / "docs" / "speedrun_cpu_report.md", ROOT / "docs" / "speedrun_cpu_seed1_report.md"]
FIGURE = re.compile(r"(?<![\d.])\d\.\d{3}\b")


def results_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("## Results"):readme.index("**The same command on another machine")]


def test_readme_table_is_seed_0s_report():
    """Seed 0's table, row for row, is its report's."""
    def table(text):
        return [line for line in text.splitlines() if line.startswith("| ") and "|---" not in line]
    results, report = results_section(), REPORTS[0].read_text(encoding="utf-8")
    seed0 = results[results.index("Seed 0:"):]
    seed0 = seed0[:seed0.index("\n\n", seed0.index("| model"))]
    assert table(seed0) == table(report)[:10] and len(table(seed0)) == 10  # the header and 9 checkpoints


def test_readme_figures_come_from_the_runs():
    """Every three-decimal figure of the results is in one of the two reports or in a measurement of
    docs/runs; every stage time is its report's."""
    results = results_section()
    sources = "".join(p.read_text(encoding="utf-8") for p in REPORTS + sorted((ROOT / "docs" / "runs").glob("*.md")))
    figures = set(FIGURE.findall(results))
    assert len(figures) >= 30 and figures <= set(FIGURE.findall(sources)), figures - set(FIGURE.findall(sources))
    words = {"pretraining": "pretrain", "the student's base": "pretrain_student", "R1-Zero": "r1_zero",
             "the four R1 stages": "r1", "distillation": "distill", "the RL-only student": "student_rl_only",
             "evaluation of 9 checkpoints": "eval"}
    for seed, report in enumerate(REPORTS):
        times = dict(re.findall(r"\| (\w+) \| (\d+) \|", report.read_text(encoding="utf-8")))
        line = re.search(rf"Wall time per stage, seed {seed}: (.*?)\.(?:\s|$)", results, re.S).group(1)
        said = dict(re.findall(r"([\w\-' 19]+?) (\d+) s(?:,|$)", line.replace("\n", " ")))
        assert {words[k.strip()]: v for k, v in said.items()} == {v: times[v] for v in words.values()}


def test_readme_vocabulary_is_the_cpu_presets():
    """768 BPE ranks (pretrain.py's cpu preset) plus the chat special tokens."""
    from pretrain import PRESETS, PretrainConfig
    from r1mini.tokenizer import SPECIAL_TOKENS
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ranks = PRESETS["cpu"].get("vocab_size", PretrainConfig.vocab_size)
    assert f"vocabulary {ranks + len(SPECIAL_TOKENS)})" in readme


def test_readme_quotes_the_speedrun_estimate():
    """The gpu estimate's range in the README is what benchmarks/estimate_speedrun.py computes now."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from estimate_speedrun import RANGE, speedrun
    low, high = sorted(round(speedrun(a, "gpu")[0].total() / 60) for a in RANGE)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"**The gpu speedrun, estimated: {low}-{high} min on one H100**" in readme
    assert f"**{low}-{high} min**" in (ROOT / "benchmarks" / "estimate_speedrun_gpu.txt").read_text(encoding="utf-8")
