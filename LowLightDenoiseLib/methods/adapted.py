"""An adapted model as a method, and on disk: safetensors with the model spec and the adaptation record as
metadata, a Markdown card beside.

:class:`AdaptedMethod` is what :func:`~.adaptation.adapt` returns; :func:`save_adapted` writes it and
:func:`load_weights_file` reads any weights file that names its model (adapted weights, or an exported
model), so ``get_method("scanner-a.safetensors")`` gives the adapted method to the command line, the
Slicer module and batch runs over a folder of scans from that scanner.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from ..errors import InputError, ModelNotAvailableError
from ..options import resolve_device
from .base import Method, MethodContext
from .learned import LearnedMethod
from .wrappers import MethodWrapper, unwrap

LOSS_TITLES = {"n2s": "Noise2Self blind-spot masking", "n2v": "Noise2Void blind-spot masking (random neighbour)",
               "nb2nb": "Neighbor2Neighbor",
               "r2r": "Recorrupted-to-Recorrupted", "sure": "Monte-Carlo SURE of the full output"}
#: suffix of an adapted model's name in tables and file names
ADAPTED_SUFFIX = "-adapted"


@dataclasses.dataclass(frozen=True)
class AdaptationRecord:
    """What an adaptation did: written into the results table, the weights file and its card."""

    model: str
    version: str
    loss: str
    budget_seconds: Optional[float]
    seconds: float
    steps: int
    best_step: int
    risk_before: float  #: held-out SURE estimate of the full output's error, in noise variances, un-adapted (recorded)
    risk_after: float  #: the same for the weights used
    loss_before: float  #: held-out blind-spot loss (settings["guard"]), in noise variances, un-adapted model: the guard
    loss_after: float  #: its lowest value reached (the kept weights when ``kept``)
    edges_before: float  #: how much the output's residual follows the edges, un-adapted (``residual_edges``)
    edges_after: float  #: the same for the best weights
    kept: bool
    stopped: str  #: "budget", "steps" or "early stop"
    seed: int
    scan: str
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    loss_error: float = 0.0  #: standard error of the held-out loss's fall to ``loss_after`` (paired over patches)
    novelty: str = ""  #: why the scan's noise was new to the model ('' when familiar): it chose the keep rule

    def columns(self) -> Dict[str, Any]:
        return {"adapt_budget_s": self.budget_seconds, "adapt_seconds": self.seconds, "adapt_steps": self.steps,
                "adapt_best_step": self.best_step, "adapt_risk_before": round(self.risk_before, 5),
                "adapt_risk_after": round(self.risk_after, 5), "adapt_loss_before": round(self.loss_before, 5),
                "adapt_loss_after": round(self.loss_after, 5),
                "adapt_loss_error": round(self.loss_error, 5), "adapt_edges_before": round(self.edges_before, 4),
                "adapt_edges_after": round(self.edges_after, 4), "adapt_kept": self.kept,
                "adapt_noise": "new" if self.novelty else "familiar"}

    def sentence(self) -> str:
        """One sentence for the user: what was done and whether the adapted weights are used."""
        head = (f"Adapted {self.model} to this scan for {self.seconds:.0f} s ({self.steps} steps, "
                f"{LOSS_TITLES[self.loss]}, stopped by {self.stopped}): held-out blind-spot loss "
                f"{self.loss_before:.4f} -> {self.loss_after:.4f} noise variances (estimated error of the output "
                f"{self.risk_before:.4f} -> {self.risk_after:.4f})")
        head += (f"; the scan's noise is new to the model ({self.novelty})" if self.novelty
                 else "; the scan's noise is like the model's training noise")
        if self.kept:
            return f"{head}, so the adapted weights (step {self.best_step}) are used."
        return (f"{head}; the loss did not fall by {self.settings.get('min_gain', 0):g} noise variances and "
                f"{self.settings.get('confidence', 0):g} standard errors of its fall ({self.loss_error:.4f}), so the "
                "un-adapted model is used.")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "AdaptationRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class AdaptedMethod(MethodWrapper):
    """A learned model adapted to one scan (or the un-adapted model when the guard refused the result)."""

    def __init__(self, inner: LearnedMethod, record: AdaptationRecord,
                 weights_path: Optional[Union[str, Path]] = None) -> None:
        super().__init__(inner)
        self.record = record
        self.weights_path = Path(weights_path) if weights_path is not None else None

    @property
    def kept(self) -> bool:
        return bool(self.record.kept)

    def apply(self, block: np.ndarray, context: MethodContext) -> np.ndarray:
        return self.inner.apply(block, context)

    def describe(self) -> dict:
        return dict(self.inner.describe(), adaptation=self.record.to_dict())

    def columns(self) -> dict:
        row = dict(self.inner.columns(), **self.record.columns())
        if self.weights_path is not None:
            row["adapt_weights"] = str(self.weights_path)
        return row

    def save(self, path: Union[str, Path], card: bool = True) -> Path:
        """Write the weights (safetensors, spec and record as metadata) and, with ``card``, a card beside them."""
        return save_adapted(self, path, card=card)



# --------------------------------------------------------------------------------------------------
# weights files


def check_weights_path(path: Union[str, Path]) -> Path:
    """The path of adapted weights: a ``.safetensors`` name (its card goes beside it as ``.md``), or one sentence."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise InputError(f"Adapted weights are written as safetensors: name the file *.safetensors, not {path.name}.")
    return path


def card_path(path: Union[str, Path]) -> Path:
    """Where the card of a weights file goes: beside it, ``.md`` instead of ``.safetensors``."""
    return Path(path).with_suffix(".md")


def stage_adapted(method: AdaptedMethod, path: Union[str, Path], staging: Any, *, replace: bool = True,
                  card: bool = True) -> Path:
    """Write ``method``'s weights (safetensors, model spec and adaptation record as metadata) and, with
    ``card``, its card to temporaries that ``staging`` (a :class:`~..files.Staging`) publishes."""
    import os

    from safetensors.torch import save_file

    from ..tables import stage_text

    if not isinstance(method, AdaptedMethod):
        raise InputError(f"Only an adapted model can be saved this way, not {type(method).__name__}.")
    path = check_weights_path(path)
    if not path.parent.is_dir():
        raise InputError(f"The folder {path.parent} of {path} does not exist.")
    learned = unwrap(method)
    state = {k: t.detach().cpu().contiguous().clone() for k, t in learned.network.state_dict().items()}
    metadata = {"spec": json.dumps(learned.spec.to_dict()), "adaptation": json.dumps(method.record.to_dict())}
    fd, tmp = staging.temp_file(path)
    os.close(fd)
    save_file(state, str(tmp), metadata=metadata)
    staging.add(tmp, path, replace)
    if card:
        stage_text(card_path(path), adaptation_card(method.record, path.name), staging, replace=replace)
    return path


def save_adapted(method: AdaptedMethod, path: Union[str, Path], card: bool = True) -> Path:
    """Write ``method``'s weights as safetensors (model spec and adaptation record as metadata) and, with
    ``card``, a Markdown card beside them (same name, ``.md``), both or neither. Returns the weights path.

    When the guard refused the adaptation the file holds the un-adapted weights, and says so.
    """
    from ..files import Staging

    with Staging() as staging:
        stage_adapted(method, path, staging, card=card)
        staging.commit()
    return Path(path)


def adaptation_card(record: AdaptationRecord, file_name: str) -> str:
    """The Markdown card of an adapted weights file: what scan, loss and budget produced it."""
    budget = f"{record.budget_seconds:g} s" if record.budget_seconds is not None else "none (steps only)"
    kept = ("yes: this file holds the adapted weights" if record.kept else
            "no: adaptation did not lower the held-out loss enough, so this file holds the un-adapted weights")
    rows = [("base model", f"{record.model} {record.version}"), ("scan", record.scan),
            ("loss", f"{LOSS_TITLES[record.loss]} (`{record.loss}`), in the network's own input domain"),
            ("budget", f"{budget}; {record.seconds:g} s used, {record.steps} steps, stopped by {record.stopped}"),
            ("held-out blind-spot loss (the guard; noise variances)",
             f"{record.loss_before:.5f} before, {record.loss_after:.5f} after (best step {record.best_step})"),
            ("held-out estimated error of the output (Monte-Carlo SURE; noise variances)",
             f"{record.risk_before:.5f} before, {record.risk_after:.5f} after"),
            ("the scan's noise (chose the keep rule)", f"new to the model: {record.novelty}" if record.novelty
             else "like the model's training noise"),
            ("kept", kept), ("seed", str(record.seed)), ("settings", f"`{json.dumps(record.settings)}`")]
    lines = [f"# Adapted weights: {file_name}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "Made by `lowlightdenoise adapt` (or `denoise --adapt`) from the scan above, without a clean "
              "reference (docs/adaptation.md). Meant for scans from the same scanner and protocol:",
              "", "```", f"lowlightdenoise denoise IN OUT --method {file_name}", "```", ""]
    return "\n".join(lines)


#: a safetensors header larger than this is not one this library wrote (its headers are a few kB)
_MAX_HEADER_BYTES = 16 << 20


def weights_file_metadata(path: Union[str, Path]) -> Dict[str, str]:
    """The metadata of a safetensors weights file that names its model (``spec``, and ``adaptation`` for adapted
    weights), read from the file's header without torch; one sentence when the file cannot be used by path."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailableError(f"The weights file {path} does not exist.")
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= _MAX_HEADER_BYTES:
                raise ValueError("header size")
            header = json.loads(fh.read(size).decode("utf-8"))
        metadata = header.get("__metadata__") or {}
        if not isinstance(metadata, dict):
            raise ValueError("metadata")
    except (OSError, ValueError, AttributeError) as error:
        raise ModelNotAvailableError(f"The weights file {path} cannot be read ({type(error).__name__}); it is "
                                     "damaged or not a safetensors file.") from error
    if "spec" not in metadata:
        raise ModelNotAvailableError(f"The weights file {path} does not say which model it holds (no spec in its "
                                     "metadata); only files written by 'lowlightdenoise adapt' or train/export.py "
                                     "can be loaded by path.")
    try:
        spec = json.loads(str(metadata["spec"]))
    except ValueError:
        spec = None
    if not isinstance(spec, dict):
        raise ModelNotAvailableError(f"The weights file {path} names its model in a spec that cannot be read (not a "
                                     "JSON object); it is damaged or was not written by this library.")
    return {str(k): str(v) for k, v in metadata.items()}


def load_weights_file(path: Union[str, Path], device: str = "cpu", **settings: Any) -> Method:
    """The method in a weights file that names its model (spec metadata): an :class:`AdaptedMethod` for
    adapted weights, else a :class:`LearnedMethod`. ``settings`` are inference settings (``tile``...)."""
    from ..models.inference import InferenceSettings
    from ..models.spec import ModelSpec

    path = Path(path)
    metadata = weights_file_metadata(path)
    try:
        spec = ModelSpec.from_dict(json.loads(metadata["spec"]))
        inference = InferenceSettings(**settings)
    except (TypeError, ValueError) as error:
        raise InputError(f"The weights file {path} cannot be used: {error}") from error
    learned = LearnedMethod.from_weights(spec, path, device=resolve_device(device), settings=inference)
    if "adaptation" not in metadata:
        return learned
    record = AdaptationRecord.from_dict(json.loads(metadata["adaptation"]))
    return AdaptedMethod(learned, record, weights_path=path)
