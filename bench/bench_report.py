"""Text of bench/attacks.py's results: the summary table, per-model lines, a markdown file.

.venv/bin/python bench/bench_report.py reports/bench_attacks.json   # rewrite its .md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

REF_LABELS = {"torchattacks": "torchattacks AA", "original": "original AA",
              "original_rand": "original AA rand"}  # fmt: skip
COLUMNS = ("model", "n", "clean", "advrun fast", "advrun", "TA AA", "orig AA", "orig rand", "all",
           "only adv/TA", "only adv/orig", "only adv/rand", "maj. only adv/orig",
           "maj. only adv/rand", "fast s", "adv s", "TA s", "orig s", "rand s", "advrun escalated",
           "escalated (bench probes)")  # fmt: skip


def _acc(r: dict, key: str) -> str:
    return f"{r[key]['robust_accuracy']:.4f}" if key in r else "-"


def _only(r: dict, key: str) -> str:
    return f"{r[key]['only_advrun']}/{r[key]['only_ref']}" if key in r else "-"


def _only_majority(r: dict, key: str) -> str:
    """The only-by counts under the majority verdict (randomized models; '-' elsewhere)."""
    m = r.get(key, {}).get("majority")
    return f"{m['only_advrun']}/{m['only_ref']}" if m else "-"


def _secs(r: dict, key: str) -> str:
    return f"{r[key]['seconds']:.1f}" if key in r else "-"


def escalated_words(a: dict) -> str:
    """What advrun's own escalation ran (rung: broke), or why nothing ran."""
    if "phase_seconds" not in a:
        return "-"  # a run before advrun escalated (bench probes only)
    e = a.get("escalation")
    if not e:
        return "none (no signal)"
    rungs = " ".join(f"{g['attack']}:{g['broken']}" for g in e["rungs"])
    return f"{rungs} ({'settled' if e['settled'] else 'NOT settled'})"


def row(which: str, r: dict) -> list[str]:
    a = r["advrun"]
    esc = r.get("escalated_robust_accuracy")
    new = "phase_seconds" in a  # advrun's suite includes the checklist and its escalation
    fast = a.get("fast_robust_accuracy", a["robust_accuracy"])
    full = f"{a['seconds'][0]:.1f}" if new else "-"
    fast_s = a["seconds"][1] if new else sum(a["seconds"]) / 2
    return [which, str(r["n"]), f"{r['clean_accuracy']:.4f}", f"{fast:.4f}",
            f"{a['robust_accuracy']:.4f}" if new else "-",
            _acc(r, "torchattacks"), _acc(r, "original"), _acc(r, "original_rand"),
            f"{r['all_methods_robust_accuracy']:.4f}", _only(r, "torchattacks"),
            _only(r, "original"), _only(r, "original_rand"), _only_majority(r, "original"),
            _only_majority(r, "original_rand"), f"{fast_s:.1f}", full,
            _secs(r, "torchattacks"), _secs(r, "original"), _secs(r, "original_rand"),
            escalated_words(a), "-" if esc is None else f"{esc:.4f}"]  # fmt: skip


def table_lines(models: dict[str, dict]) -> list[str]:
    """A fixed-width table: robust accuracy of each method, only-by counts, seconds."""
    rows = [list(COLUMNS)] + [row(k, r) for k, r in models.items()]
    widths = [max(len(x[i]) for x in rows) for i in range(len(COLUMNS))]
    return ["  ".join(c.rjust(w) for c, w in zip(x, widths, strict=True)) for x in rows]


def _distinct(messages: list[str]) -> dict[str, int]:
    """Warnings by text, numbers masked (the original warns once per batch and target)."""
    out: dict[str, int] = {}
    for m in messages:
        key = re.sub(r"\d+(\.\d+)?", "N", m) if "zero gradient" in m else m
        out[key] = out.get(key, 0) + 1
    return out


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def _majority_lines(r: dict) -> list[str]:
    """A randomized model's final inputs judged by many seeded draws (the same for every method):
    expected and majority accuracy, and the only-by counts under the majority verdict."""
    judged = {k: r[k]["rejudged"] for k in ("advrun", *REF_LABELS) if k in r}
    k = next(iter(judged.values()))["draws"]
    out = [f"final inputs judged over {k} draws (expected / majority): " + ", ".join(
        f"{name} {v['expected']:.4f} / {v['majority']:.4f}" for name, v in judged.items())]  # fmt: skip
    for key, label in REF_LABELS.items():
        m = r.get(key, {}).get("majority")
        if m:
            out.append(f"  by majority verdict vs {label}: broken only by advrun "
                       f"{m['only_advrun']}, only by it {m['only_ref']}; expected accuracy "
                       f"advrun - it {100 * m['expected_difference']:+.2f} pts "
                       f"(paired SE {100 * m['expected_difference_se']:.2f})")  # fmt: skip
    return out


def model_lines(which: str, r: dict) -> list[str]:
    """What happened on one model, in a few lines."""
    a = r["advrun"]
    cascade = ", ".join(f"{k} {v['broken']}" for k, v in a["per_attack"].items())
    if "phase_seconds" in a:
        ph = ", ".join(f"{k} {v:.1f}s" for k, v in a["phase_seconds"].items())
        out = [f"advrun {a['robust_accuracy']:.4f} (fast suite {a['fast_robust_accuracy']:.4f}) "
               f"in {a['seconds'][0]:.1f}s ({ph}); the fast suite alone again "
               f"{a['seconds'][1]:.1f}s ({a['robust_accuracy_rerun']:.4f}); stages broke: "
               f"{cascade}", f"advrun's escalation: {escalated_words(a)}"]  # fmt: skip
        e = a.get("escalation")
        if e:
            out.append(f"  signals: {'; '.join(e['signals'])}")
    else:
        out = [f"advrun {a['robust_accuracy']:.4f} in {a['seconds'][0]:.1f}s / "
               f"{a['seconds'][1]:.1f}s (rerun {a['robust_accuracy_rerun']:.4f}); cascade broke: "
               f"{cascade}"]  # fmt: skip
    if "clean_draws" in r:
        d = r["clean_draws"]
        out.append(f"randomized: clean accuracy over {d['draws']} draws {d['mean']:.4f} "
                   f"(sd {d['sd']:.4f}), wrong in at least one draw {d['ever_wrong']:.4f}")  # fmt: skip
        out += _majority_lines(r)
    for key, label in REF_LABELS.items():
        if key not in r:
            continue
        x = r[key]
        out.append(f"{label} {x['robust_accuracy']:.4f} in {x['seconds']:.1f}s; broken only by "
                   f"advrun {x['only_advrun']} ({_counts(x['only_advrun_by_stage'])}), only by it "
                   f"{x['only_ref']} ({_counts(x['only_ref_by_stage'])})")  # fmt: skip
        if key != "torchattacks":
            secs = ", ".join(f"{k} {v:.1f}s" for k, v in x["stage_seconds"].items())
            out.append(f"  its stages broke: {_counts(x['stage_broken'])}; took: {secs}")
        for w, k in _distinct(x["warnings"]).items():
            out.append(f"  it warned{f' ({k}x)' if k > 1 else ''}: {w}")
    s = r.get("signals")
    if s:
        ck = ", ".join(f"{k} {v['status']}" for k, v in s["checklist"].items())
        out.append(f"checklist ({s['checklist_seconds']:.1f}s): {ck}")
        ms, bb = s["checklist"]["more_steps"], s["checklist"]["black_box_vs_white_box"]
        out.append(f"  more_steps change {100 * ms['change']:.1f} pts; Square-500 "
                   f"{bb['square']:.4f} vs white-box {bb['white_box']:.4f}; "
                   f"broken by black box only (each attack alone): "
                   f"{_counts(s['broken_by_black_box_only'])}")  # fmt: skip
        esc = ", ".join(f"{k} {v['broken']} ({v['seconds']:.1f}s)"
                        for k, v in s["escalations"].items())  # fmt: skip
        out.append(f"escalations on advrun's survivors broke: {esc}; all together -> "
                   f"{r['escalated_robust_accuracy']:.4f}")  # fmt: skip
        left = {k: r[k]["only_ref_after_escalation"] for k in REF_LABELS if k in r}
        out.append(f"  still broken only by a reference after them: {_counts(left)}")
    return out


SIGNAL_COLUMNS = ("model", "advrun - orig (pts / ex.)", "only orig by stage", "cascade Square broke",
                  "black-box only", "more_steps", "Square-500 vs white", "zero grad",
                  "deterministic", "escalations broke", "escalated - orig (pts)")  # fmt: skip
ESC_SHORT = {"square_1000": "sq1k", "square_5000": "sq5k", "square_10000": "sq10k",
             "apgd_ce_5r": "ce5r", "apgd_dlr": "dlr", "apgd_t_100": "t100", "fab_t": "fab"}  # fmt: skip


def signal_row(which: str, r: dict) -> list[str]:
    """The signals advrun had on one model beside what the original AutoAttack found."""
    o, s, a = r.get("original"), r.get("signals"), r["advrun"]
    if o is None or s is None:
        return [which] + ["-"] * (len(SIGNAL_COLUMNS) - 1)
    gap = 100 * (a["robust_accuracy"] - o["robust_accuracy"])
    ex = round(gap * r["n"] / 100)
    ck = s["checklist"]
    esc = " ".join(f"{ESC_SHORT.get(k, k)} {v['broken']}" for k, v in s["escalations"].items())
    egap = 100 * (r["escalated_robust_accuracy"] - o["robust_accuracy"])
    square = sum(v["broken"] for k, v in a["per_attack"].items() if k.startswith("square"))
    return [which, f"{gap:+.2f} / {ex:+d}", _counts(o["only_ref_by_stage"]), str(square),
            _counts(s["broken_by_black_box_only"]),
            f"{ck['more_steps']['status']} {100 * ck['more_steps']['change']:.1f}",
            f"{ck['black_box_vs_white_box']['status']} {ck['black_box_vs_white_box']['square']:.3f}"
            f" / {ck['black_box_vs_white_box']['white_box']:.3f}",
            f"{ck['gradients']['status']} {ck['gradients']['zero_fraction']:.2f}",
            ck["deterministic"]["status"], esc or "none (no survivors)", f"{egap:+.2f}"]  # fmt: skip


def signal_table(models: dict[str, dict]) -> list[str]:
    rows = [signal_row(k, r) for k, r in models.items()]
    return ["| " + " | ".join(SIGNAL_COLUMNS) + " |", "|" + "---|" * len(SIGNAL_COLUMNS)] + [
        "| " + " | ".join(x) + " |" for x in rows
    ]


def document(out: dict[str, Any]) -> str:
    """The markdown file: the table, then each model's lines."""
    rows = [row(k, r) for k, r in out["models"].items()]
    md = ["# bench/attacks.py", "",
          f"torch threads {out['torch_threads']}; suite: the at-threat attacks of `{out['spec']}`. "
          "Robust accuracy of each method; 'advrun fast': the suite without escalation; "
          "'advrun': with the checklist and the escalation its evidence asked for (runs before "
          "advrun escalated: '-'); 'only adv/X': examples broken only by advrun (escalated "
          "where it ran) / only by X; 'fast s': the fast suite alone; 'adv s': suite + checklist "
          "+ escalation; 'maj. only adv/X' (randomized models): the same counts when an example "
          "counts as broken if its final input is misclassified in most of 101 seeded draws; "
          "seconds wall clock; 'escalated (bench probes)': advrun's worst case "
          "after every bench-side escalation probe on its survivors.", "",
          "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]  # fmt: skip
    md += ["| " + " | ".join(x) + " |" for x in rows]
    md += ["", "## Signals", "", "What advrun's suite and checklist showed beside what the "
           "original AutoAttack found (pts: accuracy points; 'escalations broke': each larger "
           "budget alone on advrun's survivors).", ""] + signal_table(out["models"])  # fmt: skip
    for which, r in out["models"].items():
        md += ["", f"## {which}", "", f"eps {r['eps']:.4g}; masking: {r['masking']}", ""]
        md += [f"- {line}" for line in model_lines(which, r)]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    src = Path(sys.argv[1])
    data = json.loads(src.read_text())
    src.with_suffix(".md").write_text(document(data))
    print("\n".join(table_lines(data["models"])))
