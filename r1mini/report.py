"""The speedrun's report: every checkpoint's evaluation in one table, R1-Zero's training curves, the wall
time of each stage, and which of the paper's findings came out. Reads what the stages left in OUT
(eval.json per checkpoint, zero/log.jsonl, times.tsv); writes OUT/report.md, OUT/report.json and, when
matplotlib is installed, OUT/zero_curves.png.

    python -m r1mini.report out
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from r1mini.checkpoint import atomic_write_json
from r1mini.evaluate import markdown_table

# (row name, checkpoint directory under OUT)
ROWS = [("base", "base"), ("R1-Zero", "zero"), ("R1 cold start", "r1/cold_start"),
        ("R1 reasoning RL", "r1/reasoning_rl"), ("R1 rejection SFT", "r1/rejection_sft"),
        ("R1 final RL", "r1/final_rl"), ("student distilled", "student"), ("student RL-only", "student_zero")]
CURVES = ("reward", "accuracy", "length", "reflection")


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.exists() else []


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def summary_row(results: dict, k: int) -> dict:
    """The report's columns for one checkpoint: per benchmark pass@1 and cons@k; format, language
    consistency on Chinese prompts and length averaged over benchmarks."""
    row = {}
    for bench, r in results.items():
        row[f"{bench} pass@1"] = r["pass@1"]
        row[f"{bench} cons@{k}"] = r[f"cons@{k}"]
    row["format"] = mean(r["format"] for r in results.values())
    zh = [r["by_lang"]["zh"]["lang_consistency"] for r in results.values() if "zh" in r.get("by_lang", {})]
    row["lang zh"] = mean(zh)
    row["length"] = mean(r["length"] for r in results.values())
    row["pass@1"] = mean(r["pass@1"] for r in results.values())
    row[f"cons@{k}"] = mean(r[f"cons@{k}"] for r in results.values())
    return row


def curve(rows: list[dict], key: str, window: int = 10) -> tuple[float, float]:
    """Mean of `key` over the first and the last `window` logged steps."""
    values = [r[key] for r in rows if key in r and "step" in r and r["step"] > 0]
    return mean(values[:window]), mean(values[-window:])


def findings(table: dict[str, dict], zero_log: list[dict], k: int) -> list[dict]:
    """The paper's expected signatures, each measured: claim, the numbers, and whether it held here."""
    out = []

    def add(claim: str, held: bool, detail: str):
        out.append({"claim": claim, "held": bool(held), "detail": detail})
    get = lambda name, col: table.get(name, {}).get(col, float("nan"))  # noqa: E731
    if "base" in table and "R1-Zero" in table:
        b, z = get("base", "pass@1"), get("R1-Zero", "pass@1")
        add("R1-Zero raises pass@1 over the base model", z > b + 0.05, f"{b:.3f} -> {z:.3f}")
    if zero_log:
        first, last = curve(zero_log, "length")
        add("R1-Zero's responses grow longer during RL", last > first, f"{first:.1f} -> {last:.1f} tokens")
        first, last = curve(zero_log, "reflection")
        add("reflection words increase during RL", last > first, f"{first:.3f} -> {last:.3f} per response")
    if "R1-Zero" in table and "R1 final RL" in table:
        z, r = get("R1-Zero", "lang zh"), get("R1 final RL", "lang zh")
        add("R1 fixes language mixing (consistency on Chinese prompts)", r > z + 0.1 and r > 0.9, f"{z:.3f} -> {r:.3f}")
        z, r = get("R1-Zero", "pass@1"), get("R1 final RL", "pass@1")
        add("R1 keeps or beats R1-Zero's accuracy", r >= z - 0.02, f"{z:.3f} -> {r:.3f}")
    # majority voting can only help a model that is sometimes right: checkpoints at pass@1 0 are left out
    names = [n for n in table if n != "base" and get(n, "pass@1") > 0]
    wins = [n for n in names if get(n, f"cons@{k}") > get(n, "pass@1")]
    zero = [n for n in table if n not in names and n != "base"]
    add(f"cons@{k} beats pass@1", bool(names) and len(wins) == len(names),
        f"{len(wins)} of the {len(names)} trained checkpoints with pass@1 > 0"
        + (f"; not: {', '.join(n for n in names if n not in wins)}" if len(wins) < len(names) else "")
        + (f"; at pass@1 0: {', '.join(zero)}" if zero else ""))
    if "student distilled" in table and "student RL-only" in table:
        d, r = get("student distilled", "pass@1"), get("student RL-only", "pass@1")
        add("distillation beats RL alone on the student", d > r, f"distilled {d:.3f} vs RL-only {r:.3f}")
    return out


def plot(zero_log: list[dict], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in zero_log if "reward" in r]
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, key in zip(axes, CURVES):
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], lw=0.8, alpha=0.5, label="training rollouts")
        if key == "accuracy":
            evals = [r for r in zero_log if "eval_pass@1" in r]
            ax.plot([r["step"] for r in evals], [r["eval_pass@1"] for r in evals], "o-", label="dev pass@1")
            ax.legend(fontsize=7)
        titles = {"length": "response length (tokens)", "reflection": "reflection words per response"}
        ax.set_title(titles.get(key, key))
        ax.set_xlabel("R1-Zero step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


TOY_CAVEAT = ("**The toy preset is a smoke test.** It checks that every stage runs and hands its checkpoint to "
              "the next, not the science: models of tens of thousands of parameters trained for seconds learn next to "
              "nothing, so most findings below read NO. For results, run `bash speedrun.sh cpu` (the README gives "
              "its time and what it measured).")


def load_meta(checkpoint: Path) -> dict:
    f = checkpoint / "meta.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}


def report(out: str | Path) -> dict:
    out = Path(out)
    table, k, params, hardware = {}, None, {}, ""
    for name, sub in ROWS:
        f = out / sub / "eval.json"
        if not f.exists():
            continue
        record = json.loads(f.read_text(encoding="utf-8"))
        k = record["config"]["k"]
        table[name] = summary_row(record["results"], k)
        model_cfg = json.loads((out / sub / "model.json").read_text()) if (out / sub / "model.json").exists() else {}
        params[name] = f"{model_cfg.get('n_layer', '?')}L/{model_cfg.get('n_embd', '?')}"
    if not table:
        raise SystemExit(f"no eval.json under {out}: run eval.py on the checkpoints first (speedrun.sh does)")
    times = [line.split("\t") for line in (out / "times.tsv").read_text().splitlines()] \
        if (out / "times.tsv").exists() else []
    if (out / "hardware.txt").exists():
        hardware = (out / "hardware.txt").read_text().strip()
    zero_log = load_jsonl(out / "zero" / "log.jsonl")
    found = findings(table, zero_log, k)

    benches = [c for c in next(iter(table.values())) if c.endswith(" pass@1") or c.endswith(f" cons@{k}")]
    header = ["model", "size"] + benches + ["format", "lang zh", "length"]
    rows = [[name, params[name]] + [row.get(c, float("nan")) for c in header[2:-1]] + [f"{row['length']:.1f}"]
            for name, row in table.items()]
    md = ["# r1mini speedrun report", ""]
    if hardware:
        md += [f"Hardware: {hardware}", ""]
    preset = load_meta(out / "base").get("preset")
    if preset == "toy":
        md += [TOY_CAVEAT, ""]
    md += [f"Held-out problems, zero-shot; pass@1 is the mean over k = {k} samples at temperature 0.6, top-p 0.95; "
           f"cons@{k} the majority vote; format the share of well-formed replies; lang zh the language "
           f"consistency of the reasoning on Chinese prompts; length the mean response length in tokens.", "",
           markdown_table(header, rows), "", "## The paper's findings, measured", ""]
    md += [f"- {'yes' if f['held'] else 'NO'}: {f['claim']} ({f['detail']})" for f in found]
    if zero_log:
        md += ["", "## R1-Zero training (rollouts at temperature 1; dev-split pass@1 at 0.6)", ""]
        steps = [r for r in zero_log if "reward" in r]
        every = max(1, len(steps) // 10)
        picked = steps[every - 1::every]
        evals = {r["step"]: r["eval_pass@1"] for r in zero_log if "eval_pass@1" in r}
        md.append(markdown_table(["step"] + list(CURVES) + ["dev pass@1"],
                                 [[r["step"]] + [r[c] for c in CURVES] + [evals.get(r["step"], "")] for r in picked]))
        if plot(zero_log, out / "zero_curves.png"):
            md += ["", "![R1-Zero curves](zero_curves.png)"]
    if times:
        total = sum(float(t[1]) for t in times)
        md += ["", "## Wall time per stage", "",
               markdown_table(["stage", "seconds"], [[t[0], t[1]] for t in times] + [["total", f"{total:.0f}"]])]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    result = {"k": k, "preset": preset, "hardware": hardware, "table": table, "findings": found,
              "times": {t[0]: float(t[1]) for t in times}}
    atomic_write_json(result, out / "report.json")
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m r1mini.report OUT_DIR")
    report(sys.argv[1])
    print((Path(sys.argv[1]) / "report.md").read_text(encoding="utf-8"))
