"""``Report.log_to(target)``: the page and its data (``report.json``) sent to an experiment
tracker. Trackers are recognised by their type's module and name, so none of them is
imported unless the target comes from it.

- MLflow (a run id, an ``mlflow`` Run/ActiveRun, Lightning's ``MLFlowLogger``): both files
  as artifacts under ``nnviz-report/``; MLflow's UI previews the HTML in a sandboxed frame.
- W&B (a Run, Lightning's ``WandbLogger``): the page as ``wandb.Html(..., inject=False)``
  (without it W&B adds a stylesheet from its own host and ``<base target="_blank">``) under
  the key ``nnviz-report``, and both files as an artifact of type ``nnviz-report``.
- TensorBoard (a ``SummaryWriter``, Lightning's ``TensorBoardLogger``): TensorBoard shows no
  HTML: the files go to the writer's log dir and a text summary names the findings and the
  file's path.
- dvclive (a ``Live``, ``DVCLiveLogger``) and Lightning's ``CSVLogger``: the files in its
  folder (``<dir>/nnviz-report/``), kept with the experiment.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._text import first_line
from .errors import NNVizError

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

ARTIFACT_DIR = "nnviz-report"
KEY = "nnviz-report"

_LIGHTNING = ("lightning.pytorch.loggers", "pytorch_lightning.loggers", "lightning.fabric.loggers")


@dataclass(frozen=True)
class Target:
    kind: str  # "mlflow", "wandb", "tensorboard", "folder"
    obj: Any  # MlflowClient, wandb Run, SummaryWriter, or the folder (Path)
    run_id: str | None = None


def _module(obj: Any) -> str:
    return type(obj).__module__ or ""


def resolve(target: Any) -> Target:
    """What ``target`` is and where its files go."""
    mod, cls = _module(target), type(target).__name__
    if isinstance(target, str):
        return _mlflow_run(target)
    if mod.startswith(_LIGHTNING):
        if cls == "MLFlowLogger":
            return Target("mlflow", target.experiment, target.run_id)
        if cls == "WandbLogger":
            return resolve(target.experiment)
        if cls == "TensorBoardLogger":
            return resolve(target.experiment)
        if cls == "CSVLogger":
            return Target("folder", Path(target.log_dir) / ARTIFACT_DIR)
        raise NNVizError(
            f"{cls} is not a logger nnviz-report can log to; it logs to MLFlowLogger, WandbLogger, "
            "TensorBoardLogger, CSVLogger and dvclive's DVCLiveLogger"
        )
    if mod.startswith("mlflow"):
        info = getattr(target, "info", None)
        if info is not None and getattr(info, "run_id", None):
            return _mlflow_run(info.run_id)
    if mod.startswith("wandb") and hasattr(target, "log") and hasattr(target, "log_artifact"):
        if getattr(target, "disabled", False) or type(target).__name__ == "RunDisabled":
            raise NNVizError("the W&B run is disabled (WANDB_MODE=disabled); nothing to log to")
        return Target("wandb", target)
    if hasattr(target, "add_text") and hasattr(target, "get_logdir"):  # torch's or tensorboardX's SummaryWriter
        return Target("tensorboard", target)
    if mod.startswith("dvclive"):
        live = target.experiment if cls == "DVCLiveLogger" else target
        return Target("folder", Path(live.dir) / ARTIFACT_DIR)
    if target is None:
        raise NNVizError(
            "log_to(None): pass an MLflow run (or its id), a W&B run, a SummaryWriter, "
            "a dvclive Live or a Lightning logger (mlflow.active_run() and wandb.run are None outside a run)"
        )
    raise NNVizError(
        f"cannot log to a {cls} ({mod}); pass an MLflow run or run id, a W&B run, a SummaryWriter, "
        "a dvclive Live or a Lightning logger"
    )


def _mlflow_run(run_id: str) -> Target:
    """The MLflow run ``run_id`` in the current tracking store, or an NNVizError."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise NNVizError(
            f"no MLflow run with id {run_id!r} at {mlflow.get_tracking_uri()}; pass a run id "
            "(run.info.run_id) and set the tracking URI the run was made with"
        ) from None
    return Target("mlflow", client, run_id)


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise NNVizError("mlflow is not installed; install it with: pip install 'nnviz-report[mlflow]'") from None
    return mlflow


def write_files(report: Report, folder: Path, stem: str = "report") -> tuple[Path, Path]:
    """``<stem>.html`` (the page) and ``<stem>.json`` (``Report.data``) in ``folder``, each
    written atomically."""
    from .output import replace_file
    from .render import _dumps_bytes

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NNVizError(f"cannot create {folder}: {exc.strerror or exc}; choose another folder") from None
    html = report.save(folder / f"{stem}.html")
    data = folder / f"{stem}.json"
    payload = _dumps_bytes(report.data)
    replace_file(data, lambda f: f.write(payload))
    return html, data


def findings_markdown(report: Report, html: Path | None) -> str:
    """The findings as Markdown (TensorBoard's text tab), with where the page is."""
    title = report.data.get("title", "report")
    lines = [f"**nnviz-report: {_md(title)}**", ""]
    if html is not None:
        lines += [f"The report: `{html.resolve()}` (open it in a browser).", ""]
    findings = report.data.get("findings") or []
    if findings:
        lines += [f"- **{f['level']}** ({f['section'].replace('_', ' ')}): {_md(f['text'])}" for f in findings]
    else:
        lines.append("Nothing stood out.")
    return "\n".join(lines)


def _md(text: str) -> str:
    """``text`` as literal Markdown on one line: a newline would start a heading or a list."""
    text = " ".join(text.split())
    for ch in "\\`*_[]<>|#":
        text = text.replace(ch, "\\" + ch)
    return text


def log_files(target: Any, html: Path, data: Path, report: Report, step: int | None = None) -> str:
    """Send files already written (``html`` beside ``data``) to ``target``; where they went."""
    t = target if isinstance(target, Target) else resolve(target)
    if t.kind == "mlflow":
        for path in (html, data):
            t.obj.log_artifact(t.run_id, str(path), ARTIFACT_DIR)
        return f"runs:/{t.run_id}/{ARTIFACT_DIR}/{html.name}"
    if t.kind == "wandb":
        import wandb

        run = t.obj
        try:
            # The page's text, not its path: given a path, W&B may link its media file to
            # ours (allow_media_symlink), and log_to's copy is temporary.
            run.log({KEY: wandb.Html(html.read_text(encoding="utf-8"), inject=False)})
            artifact = wandb.Artifact(f"{KEY}-{run.id}", type=KEY, description=report.data.get("title"))
            artifact.add_file(str(html), name=html.name)
            artifact.add_file(str(data), name=data.name)
            run.log_artifact(artifact)
        except wandb.errors.Error as exc:
            finished = getattr(run, "_is_finished", False) or "is finished" in str(exc)
            fix = (
                "log the report before run.finish() (inside the `with wandb.init()` block)"
                if finished
                else "the page and report.json are in the report's files; log them again when W&B works"
            )
            raise NNVizError(f"cannot log to the W&B run {run.id}: {first_line(exc)[:200]}; {fix}") from None
        return f"{artifact.name} (W&B artifact) and the media panel '{KEY}'"
    if t.kind == "tensorboard":
        t.obj.add_text(KEY, findings_markdown(report, html), global_step=step)
        t.obj.flush()
        return str(html)
    if t.kind == "folder":
        folder: Path = t.obj
        folder.mkdir(parents=True, exist_ok=True)
        for path in (html, data):
            if path.resolve().parent != folder.resolve():
                shutil.copyfile(path, folder / path.name)
        return str(folder / html.name)
    raise AssertionError(t.kind)  # pragma: no cover


def log_to(report: Report, target: Any, step: int | None = None) -> str:
    """Write ``report.html`` and ``report.json`` where ``target`` keeps files and log them
    there; returns where they went."""
    t = resolve(target)
    if t.kind == "tensorboard":
        html, data = write_files(report, Path(t.obj.get_logdir()) / ARTIFACT_DIR)
        return log_files(t, html, data, report, step)
    if t.kind == "folder":
        html, data = write_files(report, t.obj)
        return log_files(t, html, data, report, step)
    with tempfile.TemporaryDirectory(prefix="nnviz-report-") as tmp:
        folder = Path(tmp) / ARTIFACT_DIR
        html, data = write_files(report, folder)
        return log_files(t, html, data, report, step)
