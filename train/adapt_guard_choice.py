"""Choose the adaptation guard's keep rule by measurement, on VALIDATION cases only.

For each case of ``train/adapt_cases.GUARD_CASES`` default-2d is adapted for ``--steps`` steps with the shipped
loss and learning rate and no early stop; every ``--every`` steps the true PSNR of the whole crop (through the
engine) is measured next to what the guard sees: the held-out blind-spot loss per held-out patch
(:func:`~LowLightDenoiseLib.methods.adaptation.heldout_terms`) and the residual's edge correlation. The guard is
then replayed on each trajectory for every candidate rule (early stop after ``patience`` measurements without a
new best, the best weights among those whose residual does not follow the edges more; kept when the loss fell by
``min_gain`` noise variances AND by ``confidence`` standard errors of the fall), and the report gives the PSNR
each rule would have delivered: it must never lose in distribution and should gain most out of distribution.

    python train/adapt_guard_choice.py --steps 600 --every 40 --threads 1 --out train/reports/adapt-guard-choice
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LowLightDenoiseLib.methods import get_method  # noqa: E402
from LowLightDenoiseLib.methods.adaptation import (  # noqa: E402
    AdaptSettings, _batch, _patch_shape, _picks, _sources, adapt)
from LowLightDenoiseLib.methods.adaptation_data import scan_novelty  # noqa: E402
from LowLightDenoiseLib.methods.adaptation_guard import (  # noqa: E402
    FAMILIAR_RULE, NOVEL_RULE, _fix_variance, _residual_edges, fall_error, heldout_terms, improves, worth_keeping)
from LowLightDenoiseLib.methods.learned import LearnedMethod  # noqa: E402
from LowLightDenoiseLib.methods.selfsupervised import BLIND_SPOT  # noqa: E402
from LowLightDenoiseLib.options import RunOptions  # noqa: E402
from LowLightDenoiseLib.pipeline import denoise_volume  # noqa: E402
from LowLightDenoiseLib.tables import markdown_table, write_text_atomic  # noqa: E402
from train.adapt_cases import GUARD_CASES, describe, load_case, scores  # noqa: E402

CONFIDENCES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
MIN_GAINS = (0.0, 0.002, 0.005, 0.01)
PATIENCES = (5, 10)


def run_case(case: Any, steps: int, every: int, seed: int = 0, eval_patches: int = 32,
             average: float = 0.0, loss: str = "n2s") -> Dict[str, Any]:
    """One case's trajectory (:func:`record`: every blind-spot guard) with the shipped settings but for these."""
    clean, noisy = load_case(case)
    settings = AdaptSettings(max_steps=steps, eval_every=every, eval_patches=eval_patches, average=average,
                             loss=loss)
    return dict(record(clean, noisy, settings, seed), case=case.name, kind=case.kind)


def record(clean: Any, noisy: Any, settings: AdaptSettings, seed: int = 0) -> Dict[str, Any]:
    """default-2d adapted to ``noisy`` for ``settings.max_steps`` steps with no early stop and nothing refused:
    per measurement (every ``settings.eval_every`` steps) the step, true PSNR/SSIM against ``clean``, the held-out
    loss per patch of every blind-spot guard and the residual edges, of the weights the guard judges."""
    base = get_method("default-2d", device="cpu")
    settings = dataclasses.replace(settings, patience=10 ** 6, min_gain=0.0, confidence=0.0)
    spec = base.spec
    sources = _sources(noisy, 2, 0, settings.holdout, np.random.default_rng([seed, 0]))  # as adapt() draws them
    shape = _patch_shape(sources, spec, settings)
    picks = _picks(sources, shape, settings.eval_patches, np.random.default_rng([seed, 1]))
    held = [_batch(sources, picks[i:i + settings.batch], shape, spec, True, "cpu")
            for i in range(0, len(picks), settings.batch)]
    whole = dataclasses.replace(base.settings, tile=int(shape[-1]), sw_batch_size=int(settings.batch))
    _fix_variance(LearnedMethod(spec, base.network, settings=whole), sources, held)
    rows: List[Dict[str, Any]] = []
    weights: List[float] = []

    def measure(step: int, network: Any, reported: Optional[float] = None) -> None:
        net = copy.deepcopy(network).eval()
        out = denoise_volume(noisy, LearnedMethod(spec, net, settings=base.settings), device="cpu")
        judged = LearnedMethod(spec, net, settings=whole)
        sums, w = heldout_terms(judged, sources, held, seed, settings.guard)
        value = float(sums.sum() / w.sum())
        if reported is not None and abs(value - reported) > 1e-6 * max(1.0, abs(value)):
            raise RuntimeError(f"The replayed guard ({value}) is not adapt()'s ({reported}).")
        weights[:] = [float(v) for v in w]
        row = {"step": step, "loss": value, "edges": _residual_edges(judged, sources, held),
               "sums": [float(v) for v in sums], "guards": {}}
        for other in BLIND_SPOT:  # every blind-spot guard on the same masks, to replay each on one trajectory
            terms = (sums, w) if other == settings.guard else heldout_terms(judged, sources, held, seed, other)
            row["guards"][other] = {"loss": float(terms[0].sum() / terms[1].sum()),
                                    "sums": [float(v) for v in terms[0]]}
        row.update(scores(out.volume, clean))
        rows.append(row)

    measure(0, base.network)
    t = time.perf_counter()
    adapt(noisy, base, None, RunOptions(device="cpu", seed=seed), settings=settings,
          monitor=lambda step, loss, net: measure(step, net, loss))
    return {"rows": rows, "weights": weights, "average": settings.average, "guard": settings.guard,
            "loss": settings.loss, "seconds": round(time.perf_counter() - t, 1)}


def replay(run: Dict[str, Any], confidence: float, min_gain: float, patience: int = 5,
           max_step: Optional[int] = None) -> Dict[str, Any]:
    """The guard's decision on a recorded trajectory, as ``adapt()`` makes it, and the PSNR it delivers."""
    rows, weights = run["rows"], np.asarray(run["weights"])
    first = rows[0]
    best, bad = first, 0
    for row in rows[1:]:
        if max_step is not None and row["step"] > max_step:
            break
        if improves(row["loss"], row["edges"], best["loss"], first["edges"]):
            best, bad = row, 0
        else:
            bad += 1
        if bad >= patience:
            break
    fall = first["loss"] - best["loss"]
    error = fall_error(np.asarray(first["sums"]), np.asarray(best["sums"]), weights)
    kept = best is not first and worth_keeping(fall, error, min_gain, confidence)
    return {"kept": kept, "step": best["step"] if kept else 0, "fall": fall, "error": error,
            "gain": (best["psnr"] - first["psnr"]) if kept else 0.0,
            "best_gain": max(r["psnr"] for r in rows) - first["psnr"]}


def rules_table(runs: List[Dict[str, Any]], max_step: Optional[int], patience: int = 5,
                confidences: Any = CONFIDENCES, min_gains: Any = MIN_GAINS) -> List[List[str]]:
    body = []
    for confidence in confidences:
        for min_gain in min_gains:
            gains = {r["case"]: replay(r, confidence, min_gain, patience, max_step=max_step) for r in runs}
            inside = [g["gain"] for r, g in zip(runs, gains.values()) if r["kind"] == "in distribution"]
            outside = [g["gain"] for r, g in zip(runs, gains.values()) if r["kind"] != "in distribution"]
            body.append([f"{confidence:g}", f"{min_gain:g}", f"{min(inside):+.2f}" if inside else "",
                         f"{np.mean(outside):+.2f}" if outside else "", f"{min(outside):+.2f}" if outside else "",
                         f"{sum(g['kept'] for g in gains.values())} of {len(gains)}"]
                        + [f"{g['gain']:+.2f}" for g in gains.values()])
    return body


def _variant(run: Dict[str, Any]) -> str:
    """A trajectory's adaptation settings in words (runs recorded before the options existed: the defaults)."""
    return (f"weight average {float(run.get('average', 0.0)):g}, guard {run.get('guard', 'n2s')}, "
            f"loss {run.get('loss', 'n2s')}")


def _variants(runs: List[Dict[str, Any]]) -> List[str]:
    return list(dict.fromkeys(_variant(r) for r in runs))


def as_guard(run: Dict[str, Any], guard: str) -> Dict[str, Any]:
    """The trajectory as the guard ``guard`` saw it (runs record every blind-spot guard on the same masks)."""
    rows = [dict(row, loss=row["guards"][guard]["loss"], sums=row["guards"][guard]["sums"]) for row in run["rows"]]
    return dict(run, rows=rows, guard=guard)


def expanded(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Every run once per guard it recorded (older runs: their own guard only)."""
    return [as_guard(r, g) if "guards" in r["rows"][0] else r
            for r in runs for g in (r["rows"][0].get("guards") or [r.get("guard", "n2s")])]


def _command(args: argparse.Namespace) -> str:
    extra = f" --cases {args.cases}" if args.cases else ""
    if getattr(args, "eval_patches", 32) != 32:
        extra += f" --eval-patches {args.eval_patches}"
    for key, default in (("average", "0"), ("loss", "n2s")):
        if str(getattr(args, key, default)) != default:
            extra += f" --{key} {getattr(args, key)}"
    return f"python train/adapt_guard_choice.py --steps {args.steps} --every {args.every} --threads {args.threads}{extra}"


def summary_table(runs: List[Dict[str, Any]]) -> List[List[str]]:
    """The shipped rule and its neighbours for every weight average and patience, side by side."""
    body = []
    for variant in _variants(runs):
        mine = [r for r in runs if _variant(r) == variant]
        for patience in PATIENCES:
            for cap in (None, 240):
                for row in rules_table(mine, cap, patience, (0.5, 1.0, 2.0), (0.0, 0.005, 0.01)):
                    body.append([variant, str(patience), "all" if cap is None else str(cap)] + row)
    return body


def case_novelty(case: Any, seed: int = 0) -> str:
    """Why a case's noise is new to the model, as ``adapt()`` decides it ('' when familiar)."""
    _, noisy = load_case(case)
    return scan_novelty(_sources(noisy, 2, 0, 0.2, np.random.default_rng([seed, 0])))


def by_noise_table(runs: List[Dict[str, Any]], novelty: Dict[str, str]) -> List[List[str]]:
    """The shipped rule replayed: each case with the keep rule of its noise (familiar or new), from the trajectory
    recorded with that rule's weight average."""
    body = []
    for name, new in novelty.items():
        rule = NOVEL_RULE if new else FAMILIAR_RULE
        run = next((r for r in runs if r["case"] == name and r.get("guard", "n2s") == "n2s"
                    and float(r.get("average", 0.0)) == rule.average and r.get("loss", "n2s") == "n2s"
                    and r.get("trained_for", "n2s") == "n2s"), None)
        if run is None:
            continue
        g = replay(run, rule.confidence, rule.min_gain)
        body.append([name, run["kind"], new or "familiar", f"{rule.average:g} / {rule.min_gain:g} / {rule.confidence:g}",
                     "yes" if g["kept"] else "no", f"{g['gain']:+.2f}", f"{g['best_gain']:+.2f}"])
    return body


def render(results: Dict[str, Any], args: argparse.Namespace) -> str:
    runs = expanded(results["runs"])
    variants = _variants(runs)
    lines = ["# Adaptation: the guard's keep rule (validation cases only)", "",
             f"`{_command(args)}` (default-2d, learning rate 1e-4, batch 8 x 64 px,"
             f" CPU, {args.threads} thread(s); {results.get('note', '')}). Each trajectory is recorded once; the guard "
             "is replayed on it for every rule (early stop after `patience` measurements without a new best; best "
             "weights whose residual does not follow the edges more). Gain: true PSNR of the whole crop with the kept "
             "weights minus un-adapted (0 when refused). Weight average: the decay of the running average of the "
             "weights that the guard judges and keeps (0: the training weights themselves).", ""]
    lines += ["## Cases", "", markdown_table(["case", "scan", "split", "kind", "degradation", "crop"],
                                             [[d["case"], d["scan"], d["split"], d["kind"], d["degradation"], d["crop"]]
                                              for d in results["cases"]]), ""]
    if results.get("novelty"):
        rows = by_noise_table(runs, results["novelty"])
        inside = [float(r[5]) for r in rows if r[1] == "in distribution"]
        outside = [float(r[5]) for r in rows if r[1] != "in distribution"]
        lines += ["## The shipped rule: by the scan's noise", "",
                  "Added by `--render --by-noise` (the same trajectories). Each case replayed with the keep rule "
                  "`adapt()` takes for its noise (`adaptation_guard.novelty`: "
                  "familiar -> the training weights, kept on a fall of 0.01 noise variances and 0.5 standard errors; "
                  "new -> the weight average 0.99, kept on 0.5 standard errors), patience 5. "
                  f"In distribution: worst {min(inside):+.2f} dB; out of distribution: mean {np.mean(outside):+.2f} dB."
                  if inside and outside else "", "",
                  markdown_table(["case", "kind", "noise", "average / min_gain / confidence", "kept", "gain",
                                  "best gain reached"], rows), ""]
    names = list(dict.fromkeys(r["case"] for r in runs))
    head = ["confidence (standard errors)", "min_gain", "in distribution: worst", "out: mean", "out: worst", "kept"]
    if len(variants) > 1 or PATIENCES != (5,):
        lines += ["## Side by side: adaptation settings, patience, stopping step", "",
                  markdown_table(["settings", "patience", "steps"] + head + names, summary_table(runs)), ""]
    for variant in variants:
        mine = [r for r in runs if _variant(r) == variant]
        label = f" ({variant})" if len(variants) > 1 else ""
        for cap in (None, 240):
            title = "every step recorded" if cap is None else f"stopping at step {cap} (a slower machine)"
            lines += [f"## Rules replayed{label}, patience 5, {title}", "",
                      markdown_table(head + [r["case"] for r in mine], rules_table(mine, cap)), ""]
    lines += ["## Trajectories (held-out loss, its fall's standard error against step 0, true PSNR)", ""]
    for r in runs:
        first = r["rows"][0]
        w = np.asarray(r["weights"])
        body = [[x["step"], f"{x['loss']:.5f}", f"{first['loss'] - x['loss']:+.5f}",
                 f"{fall_error(np.asarray(first['sums']), np.asarray(x['sums']), w):.5f}", f"{x['edges']:.3f}",
                 f"{x['psnr']:.2f}", f"{x['psnr'] - first['psnr']:+.2f}"] for x in r["rows"]]
        label = f", {_variant(r)}" if len(variants) > 1 else ""
        lines += [f"### {r['case']} ({r['kind']}{label}, {r['seconds']:.0f} s)", "",
                  markdown_table(["step", "held-out loss", "fall", "standard error", "residual edges", "PSNR", "gain"],
                                 body), ""]
    return "\n".join(lines)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=40)
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all guard cases)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-patches", type=int, default=32, help="held-out patches the guard measures")
    parser.add_argument("--average", default="0", help="comma-separated decays of the weight average to record "
                        "(0: none), each case once per decay")
    parser.add_argument("--loss", default="n2s", help="comma-separated training losses (of the adaptation "
                        "losses), each case once per loss")
    parser.add_argument("--note", default="", help="conditions of the run, for the report")
    parser.add_argument("--out", default="train/reports/adapt-guard-choice")
    parser.add_argument("--by-noise", action="store_true", help="with --render: also replay the shipped rule, each "
                        "case with the keep rule of its noise (needs trajectories with weight averages 0 and 0.99)")
    parser.add_argument("--render", action="store_true", help="only replay the rules on OUT.json and write the "
                        "Markdown again (the command line recorded there is kept)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        results = json.loads(out.with_suffix(".json").read_text())
        recorded = argparse.Namespace(**results["args"]) if "args" in results else args
        if args.by_noise:  # how adapt() reads each case's noise today (the trajectories are unchanged)
            results["novelty"] = {c["case"]: case_novelty(next(g for g in GUARD_CASES if g.name == c["case"]))
                                  for c in results["cases"]}
            write_text_atomic(out.with_suffix(".json"), json.dumps(results))
        write_text_atomic(out.with_suffix(".md"), render(results, recorded))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    cases = [c for c in GUARD_CASES if not args.cases or c.name in args.cases.split(",")]
    results: Dict[str, Any] = {"cases": [describe(c) for c in cases], "runs": [], "note": args.note,
                               "args": {k: getattr(args, k) for k in ("steps", "every", "cases", "threads", "eval_patches",
                                                                "average", "loss")}}
    for case, average, loss in [(c, float(a), x) for c in cases for a in args.average.split(",")
                                for x in args.loss.split(",")]:
        run = run_case(case, args.steps, args.every, eval_patches=args.eval_patches, average=average, loss=loss)
        results["runs"].append(run)
        rows = run["rows"]
        print(f"{case.name} (weight average {average:g}, loss {loss}): PSNR {rows[0]['psnr']:.2f} -> best {max(r['psnr'] for r in rows):.2f}, end "
              f"{rows[-1]['psnr']:.2f} in {run['seconds']:.0f} s", flush=True)
        write_text_atomic(out.with_suffix(".json"), json.dumps(results))
        write_text_atomic(out.with_suffix(".md"), render(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
