"""The speedrun's report: every checkpoint's evaluation in one table, R1-Zero's training curves, the wall
time of each stage, and which of the paper's findings came out. Reads what the stages left in OUT
(eval.json per checkpoint, zero/log.jsonl, times.tsv); writes OUT/report.md, OUT/report.json and, when
matplotlib is installed, OUT/zero_curves.png.

    python -m r1mini.report out
    python -m r1mini.report out_s0 out_s1 out_s2     # several seeds' findings side by side
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from r1mini.config import UserError
from r1mini.evaluate import bootstrap_ci
from r1mini.files import atomic_write_json
from r1mini.jsonl import read_jsonl
from r1mini.rewards import arithmetic_facts, check_comparisons, reasoning_text

# (row name, checkpoint directory under OUT)
ROWS = [("base", "base"), ("R1-Zero", "zero"), ("R1 cold start", "r1/cold_start"),
        ("R1 reasoning RL", "r1/reasoning_rl"), ("R1 rejection SFT", "r1/rejection_sft"),
        ("R1 final RL", "r1/final_rl"), ("student base", "student_base"), ("student distilled", "student"),
        ("student RL-only", "student_zero")]
CURVES = ("reward", "accuracy", "length", "reflection")


def interval(ci: list[float]) -> str:
    """[lo, hi] with two decimals, as the tables print a 95% interval."""
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats with three decimals."""
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def load_jsonl(path: Path) -> list[dict]:
    """The rows of a training log, or none if the stage wrote none."""
    return read_jsonl(path) if path.exists() else []


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
    row["reflect share"] = mean(r.get("reflect_share", float("nan")) for r in results.values())
    row["pass@1"] = mean(r["pass@1"] for r in results.values())
    row[f"cons@{k}"] = mean(r[f"cons@{k}"] for r in results.values())
    return row


def per_problem(results: dict, k: int) -> dict[str, list]:
    """One checkpoint's per-problem values over every benchmark (each has as many problems, so their mean is
    the mean over benchmarks), and which problems they are: what a paired interval needs. Per benchmark too."""
    out = {key: [] for key in ("problems", "pass@1", "cons", "lang zh", "reflect_acc", "plain_acc", "reflection")}
    for bench, r in results.items():
        values = r.get("per_problem", {})
        out["problems"] += [f"{bench}:{key}" for key in r.get("problems", [])]
        out["pass@1"] += values.get("pass@1", [])
        out["cons"] += values.get(f"cons@{k}", [])
        for split in ("reflect_acc", "plain_acc", "reflection"):
            out[split] += values.get(split, [])
        out[f"{bench} pass@1"] = values.get("pass@1", [])
        out["lang zh"] += r.get("by_lang", {}).get("zh", {}).get("per_problem", {}).get("lang_consistency", [])
    return out


def curve(rows: list[dict], key: str, window: int = 10) -> tuple[list[float], list[float]]:
    """The values of `key` over the first and the last `window` logged steps."""
    values = [r[key] for r in rows if r.get(key) is not None and "step" in r and r["step"] > 0]
    return values[:window], values[-window:]


def verdict(ci: list[float], margin: float = 0.0) -> str:
    """A claim that A > B - margin, decided on the 95% interval of A - B: "reproduced" when the whole interval
    is above -margin, "reversed" (margin 0) or "not reproduced" when it is all below, else "within noise"."""
    lo, hi = ci
    if lo != lo or hi != hi:  # NaN: nothing to decide on
        return "not measured"
    if lo > -margin:
        return "reproduced"
    if hi < -margin:
        return "reversed" if margin == 0 else "not reproduced"
    return "within noise"


def hardest(row: dict) -> str:
    """The column of a checkpoint's table row with its lowest pass@1 on one benchmark ("linear-eq pass@1")."""
    return min((c for c in row if c.endswith(" pass@1") and c != "pass@1"), key=lambda c: row[c])


def findings(table: dict[str, dict], per: dict[str, dict], zero_log: list[dict], k: int) -> list[dict]:
    """The paper's expected signatures, each measured and decided on a 95% bootstrap interval of the
    difference: between two checkpoints, paired over the same held-out problems; between the first and last
    ten R1-Zero steps, unpaired."""
    out = []

    def add(claim: str, a: list, b: list, detail: str, margin: float = 0.0, paired: bool = True, need=True):
        ci = bootstrap_ci(a, minus=b, paired=paired)
        v = verdict(ci, margin) if need else "not reproduced"
        out.append({"claim": claim, "verdict": v, "held": v == "reproduced", "detail": detail,
                    "difference": mean(a) - mean(b), "interval": ci})

    def compare(claim: str, a: str, b: str, col: str = "pass@1", margin: float = 0.0, need=True):
        if a in per and b in per and per[a]["problems"] == per[b]["problems"]:
            add(claim, per[a][col], per[b][col], f"{b} {mean(per[b][col]):.3f} -> {a} {mean(per[a][col]):.3f}",
                margin, need=need)
    compare("R1-Zero raises pass@1 over the base model", "R1-Zero", "base")
    if "base" in table:  # and on the benchmark the base finds hardest
        hard = hardest(table["base"])
        compare(f"R1-Zero raises {hard} over the base model", "R1-Zero", "base", hard)
    if zero_log:
        first, last = curve(zero_log, "length")
        add("R1-Zero's responses grow longer during RL", last, first,
            f"{mean(first):.1f} -> {mean(last):.1f} tokens, first and last 10 steps", paired=False)
        first, last = curve(zero_log, "reflection")
        add("reflection words increase during RL (training rollouts)", last, first,
            f"{mean(first):.3f} -> {mean(last):.3f} per response, first and last 10 steps", paired=False)
    compare("R1-Zero reflects more than the base model (reflection words per reply, test split)", "R1-Zero", "base",
            "reflection")
    if "R1-Zero" in per:  # on the same problems: reflection may happen more on harder ones
        both = [(r, p) for r, p in zip(per["R1-Zero"]["reflect_acc"], per["R1-Zero"]["plain_acc"])
                if r is not None and p is not None]
        share = table["R1-Zero"].get("reflect share", float("nan"))
        add("R1-Zero's replies that reflect are at least as accurate as those that do not (within 0.02)",
            [r for r, _ in both], [p for _, p in both],
            f"{share:.2f} of the test replies reflect; on the {len(both)} problems with replies of both kinds, "
            f"accuracy {mean(p for _, p in both):.3f} without reflection -> {mean(r for r, _ in both):.3f} with",
            margin=0.02)
    final_lang = table.get("R1 final RL", {}).get("lang zh", float("nan"))
    compare("R1 fixes language mixing (consistency on Chinese prompts, to above 0.9)", "R1 final RL", "R1-Zero",
            "lang zh", need=final_lang > 0.9)
    compare("R1 keeps or beats R1-Zero's accuracy (within 0.02)", "R1 final RL", "R1-Zero", margin=0.02)
    if "R1 final RL" in table:  # the R1 RL stages, on the benchmark R1 finds hardest
        hard = hardest(table["R1 final RL"])
        compare(f"R1's reasoning RL raises {hard} over the cold start", "R1 reasoning RL", "R1 cold start", hard)
        compare(f"R1's final RL raises {hard} over rejection SFT", "R1 final RL", "R1 rejection SFT", hard)
    # majority voting can only help a model that is sometimes right: checkpoints at pass@1 0 are left out
    names = [n for n in per if n not in ("base", "student base") and table[n]["pass@1"] > 0]
    if names:
        verdicts = {n: verdict(bootstrap_ci(per[n]["cons"], minus=per[n]["pass@1"])) for n in names}
        counts = {v: sum(x == v for x in verdicts.values()) for v in sorted(set(verdicts.values()))}
        v = ("reproduced" if counts.get("reproduced") == len(names) else "reversed" if counts.get("reversed")
             else "within noise")
        out.append({"claim": f"cons@{k} beats pass@1", "verdict": v, "held": v == "reproduced",
                    "detail": "; ".join(f"{c} of {len(names)} checkpoints: {v}" for v, c in counts.items()),
                    "by_checkpoint": verdicts})
    compare("distillation beats RL alone on the student", "student distilled", "student RL-only")
    compare("RL alone improves the student over its base", "student RL-only", "student base")
    return out


def catches_its_slip(completion: str) -> bool:
    """Does the reply show a check at work, with arithmetic a reader can follow: a first pass with exactly one
    wrong fact (rewards.arithmetic_facts), then a check whose facts are all right, whose every comparison sets
    side by side its own result and the claim's digit and says rightly whether they agree
    (rewards.check_comparisons), and which disagrees ("wait"), then a second pass whose facts are all right?"""
    think = reasoning_text(completion)
    check, wait = re.search(r"Check|检查", think), re.search(r"Wait|等等", think)
    if not check or not wait or wait.start() < check.start():
        return False
    parts = think[:check.start()], think[check.start():wait.start()], think[wait.start():]
    wrong = [sum(not ok for _, ok in arithmetic_facts(part)) for part in parts]
    compared = check_comparisons(parts[1]) or []
    honest = bool(compared) and all(c["copied"] and c["said same"] == c["equal"] for c in compared)
    disagrees = not all(c["equal"] for c in compared)
    return wrong == [1, 0, 0] and bool(arithmetic_facts(parts[2])) and honest and disagrees


def aha_sample(zero_dir: Path) -> dict | None:
    """The aha moment of the paper's Table 3, picked by code, not by hand, from the R1-Zero training replies
    that reflect and are right (train_zero.py logs them in aha.jsonl): the latest that catches its own slip with
    every other fact right (catches_its_slip, "clean"), else the latest that corrects itself, else the latest."""
    rows = load_jsonl(zero_dir / "aha.jsonl")
    for r in rows:
        r["clean"] = catches_its_slip(r["completion"])
    clean = [r for r in rows if r["clean"]]
    corrected = [r for r in rows if r.get("corrects")]
    return (clean or corrected or rows or [None])[-1]


def aha_markdown(aha: dict | None) -> list[str]:
    """The report's lines for the aha sample: where it comes from, whether its arithmetic was checked clean, the
    reply itself."""
    if not aha:
        return ["No training reply reflected and was right."]
    how = ("its first pass has exactly one wrong fact, which its check catches; every other fact is right, "
           "and every comparison of the check sets the right digits side by side"
           if aha["clean"] else "no reply caught its own slip with every other fact right: this one's "
           "arithmetic is not checked clean")
    return [f"Step {aha['step']}. Question: {aha['question']} (answer {aha['answer']}); {how}.", "", "```",
            aha["completion"], "```"]


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
              "nothing, so most findings below are within noise or not reproduced. For results, run `bash "
              "speedrun.sh cpu` (the README gives "
              "its time and what it measured).")


def load_meta(checkpoint: Path) -> dict:
    f = checkpoint / "meta.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}


def report(out: str | Path) -> dict:
    out = Path(out)
    table, per, cis, k, params, hardware = {}, {}, {}, None, {}, ""
    for name, sub in ROWS:
        f = out / sub / "eval.json"
        if not f.exists():
            continue
        record = json.loads(f.read_text(encoding="utf-8"))
        k = record["config"]["k"]
        table[name] = summary_row(record["results"], k)
        per[name] = per_problem(record["results"], k)
        cis[name] = {f"{bench} {m}": r.get(f"{m}_ci") for bench, r in record["results"].items()
                     for m in ("pass@1", f"cons@{k}")}
        model_cfg = json.loads((out / sub / "model.json").read_text()) if (out / sub / "model.json").exists() else {}
        params[name] = f"{model_cfg.get('n_layer', '?')}L/{model_cfg.get('n_embd', '?')}"
    if not table:
        raise UserError(f"no eval.json under {out}: run eval.py on the checkpoints first (speedrun.sh does)")
    times = [line.split("\t") for line in (out / "times.tsv").read_text().splitlines()] \
        if (out / "times.tsv").exists() else []
    if (out / "hardware.txt").exists():
        hardware = (out / "hardware.txt").read_text().strip()
    zero_log = load_jsonl(out / "zero" / "log.jsonl")
    found = findings(table, per, zero_log, k)

    def cell(name: str, col: str) -> str:  # a value with its 95% interval, when the evaluation has one
        ci = cis[name].get(col)
        return f"{table[name][col]:.3f}" + (f" {interval(ci)}" if ci else "")
    benches = [c for c in next(iter(table.values())) if c.endswith(" pass@1") or c.endswith(f" cons@{k}")]
    header = ["model", "size"] + benches + ["format", "lang zh", "length"]
    rows = [[name, params[name]] + [cell(name, c) for c in benches] + [row["format"], row["lang zh"],
                                                                       f"{row['length']:.1f}"]
            for name, row in table.items()]
    md = ["# r1mini speedrun report", ""]
    if hardware:
        md += [f"Hardware: {hardware}", ""]
    preset = load_meta(out / "base").get("preset")
    if preset == "toy":
        md += [TOY_CAVEAT, ""]
    md += [f"Held-out test problems, zero-shot; pass@1 is the mean over k = {k} samples at temperature 0.6, top-p "
           f"0.95; cons@{k} the majority vote over normalised answers; in brackets the 95% bootstrap interval over "
           f"problems; format the share of well-formed replies; lang zh the language consistency of the reasoning "
           f"on Chinese prompts; length the mean response length in tokens.", "",
           markdown_table(header, rows), "", "## The paper's findings, measured", "",
           "Each decided on the 95% bootstrap interval of the difference (paired over the same problems between "
           "checkpoints): reproduced when the whole interval agrees with the claim, within noise when it holds "
           "zero, reversed when it disagrees.", ""]
    md += [f"- {f['verdict']}: {f['claim']} ({f['detail']}"
           + (f"; difference {f['difference']:+.3f}, interval {interval(f['interval'])}" if "interval" in f else "")
           + ")" for f in found]
    aha = aha_sample(out / "zero")
    md += ["", "## The aha moment (an R1-Zero training reply that reflects and is right, picked by code)", ""]
    md += aha_markdown(aha)
    if zero_log:
        md += ["", "## R1-Zero training (rollouts at temperature 1; dev-split pass@1 at 0.6)", ""]
        steps = [r for r in zero_log if "reward" in r]
        every = max(1, len(steps) // 10)
        picked = steps[every - 1::every]
        evals = {r["step"]: r["eval_pass@1"] for r in zero_log if "eval_pass@1" in r}
        cols = list(CURVES) + ["reflect_acc", "plain_acc"]
        md.append(markdown_table(["step"] + cols + ["dev pass@1"],
                                 [[r["step"]] + [r.get(c, "") if r.get(c) is not None else "" for c in cols]
                                  + [evals.get(r["step"], "")] for r in picked]))
        if plot(zero_log, out / "zero_curves.png"):
            md += ["", "![R1-Zero curves](zero_curves.png)"]
    if times:  # stages side by side overlap: the whole run's wall time is its own row when speedrun.sh wrote one
        stages = [t for t in times if t[0] != "wall"]
        total = next((t[1] for t in times if t[0] == "wall"), f"{sum(float(t[1]) for t in stages):.0f}")
        md += ["", "## Wall time per stage", "",
               markdown_table(["stage", "seconds"], [[t[0], t[1]] for t in stages] + [["total (wall)", total]])]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    result = {"k": k, "preset": preset, "hardware": hardware, "table": table, "intervals": cis, "findings": found,
              "aha": aha, "times": {t[0]: float(t[1]) for t in times}}
    atomic_write_json(result, out / "report.json")
    return result


def across_runs(outs: list[str | Path]) -> str:
    """Several runs of one recipe (seeds) side by side: each finding's verdict, difference and interval in every
    run, a count of the runs that reproduced it, and each run's wall time. Reads each run's report.json."""
    reports = [json.loads((Path(o) / "report.json").read_text(encoding="utf-8")) for o in outs]
    claims = list(dict.fromkeys(f["claim"] for r in reports for f in r["findings"]))
    rows = []
    for claim in claims:
        found = [next((f for f in r["findings"] if f["claim"] == claim), None) for r in reports]
        cells = ["not measured" if f is None else f"{f['verdict']}: " + (
            f"{f['difference']:+.3f} {interval(f['interval'])}" if f.get("difference") is not None else f["detail"])
            for f in found]
        rows.append([claim, *cells, f"{sum(bool(f) and f['verdict'] == 'reproduced' for f in found)} of {len(outs)}"])
    rows.append(["wall time (s)", *[f"{r['times'].get('wall', sum(r['times'].values())):.0f}" for r in reports], ""])
    return markdown_table(["finding", *[Path(o).name for o in outs], "reproduced in"], rows)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m r1mini.report OUT_DIR (one run's report)\n"
                         "       python -m r1mini.report OUT_DIR OUT_DIR... (their findings side by side)")
    try:
        if len(sys.argv) > 2:
            print(across_runs(sys.argv[1:]))
        else:
            report(sys.argv[1])
            print((Path(sys.argv[1]) / "report.md").read_text(encoding="utf-8"))
    except (UserError, FileNotFoundError) as e:
        raise SystemExit(str(e)) from None
