"""The command line: real reports, and one clear line plus exit 1 for every bad input."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

from helpers import ROOT, page_json
from models import TwoLayerNet
from nnviz_report.cli import main

MODELS = str(ROOT / "examples" / "models.py")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo(tmp_path, capsys):
    out = tmp_path / "demo.html"
    code, stdout, err = run(capsys, "demo", "-o", str(out), "--steps", "3")
    assert code == 0, err
    assert f"wrote {out}" in stdout
    data = page_json(out.read_text(encoding="utf-8"), "nnviz-data")
    assert data["graph"]["residual_connections"] == 1 and data["parameters"][0]["before"]


def test_build_with_checkpoints(tmp_path, capsys):
    model = TwoLayerNet()
    torch.save(model.state_dict(), tmp_path / "epoch0.pt")
    with torch.no_grad():
        model.fc1.bias.add_(1.0)
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, tmp_path / "epoch9.pt")
    out = tmp_path / "r.html"
    code, _, err = run(
        capsys,
        "build",
        f"{MODELS}:TwoLayerNet",
        "--input-shape",
        "4,20",
        "--before",
        str(tmp_path / "epoch0.pt"),
        "--after",
        str(tmp_path / "epoch9.pt"),
        "--title",
        "run 42",
        "-o",
        str(out),
    )
    assert code == 0, err
    data = page_json(out.read_text(encoding="utf-8"), "nnviz-data")
    assert data["title"] == "run 42"
    fc1 = next(p for p in data["parameters"] if p["name"] == "fc1.bias")
    assert [a - b for a, b in zip(fc1["bias_after"], fc1["bias_before"])] == pytest.approx([1.0] * 32, abs=1e-6)


def test_build_an_importable_module_with_kwargs_and_options(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT / "examples")
    out = tmp_path / "r.html"
    code, _, err = run(
        capsys,
        "build",
        "models:SmallCNN",
        "--model-kwargs",
        '{"num_classes": 3}',
        "--input-shape",
        "2x1x28x28",
        "--layer-types",
        "Conv2d",
        "--max-channels",
        "4",
        "--example",
        "1",
        "--no-graph",
        "-o",
        str(out),
    )
    assert code == 0, err
    data = page_json(out.read_text(encoding="utf-8"), "nnviz-data")
    assert [e["name"] for e in data["feature_maps"]] == ["conv1", "conv2"]
    assert data["model"]["num_parameters"] == sum(p.numel() for p in __import__("models").SmallCNN(3).parameters())


def test_integer_and_file_inputs(tmp_path, capsys):
    out = tmp_path / "r.html"
    code, _, err = run(
        capsys,
        "build",
        f"{MODELS}:LSTMTagger",
        "--input-shape",
        "2,7",
        "--input-dtype",
        "long",
        "--input-high",
        "500",
        "-o",
        str(out),
    )
    assert code == 0, err
    torch.save({"ids": torch.randint(0, 500, (3, 5))}, tmp_path / "x.pt")
    code, _, err = run(capsys, "build", f"{MODELS}:LSTMTagger", "--input", str(tmp_path / "x.pt"), "-o", str(out))
    assert code == 0, err
    assert page_json(out.read_text(encoding="utf-8"), "nnviz-data")["model"]["input_shape"] == [3, 5]


@pytest.fixture
def broken(tmp_path):
    (tmp_path / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    (tmp_path / "notmodule.py").write_text("def make():\n    return 3\n")
    (tmp_path / "needs.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self, width):\n        super().__init__()\n"
    )
    torch.save(TwoLayerNet().state_dict(), tmp_path / "good.pt")
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "other.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00\x01 not a checkpoint")

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    torch.save({"fc1.weight": Payload()}, tmp_path / "evil.pt")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(torch.empty(2, 20, device="meta"), tmp_path / "meta_input.pt")
    return tmp_path


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["build", "nope.py:Net", "--input-shape", "1"], "model file not found: nope.py"),
        (["build", "no_such_module_xyz:Net", "--input-shape", "1"], "cannot import no_such_module_xyz"),
        (["build", "{MODELS}:Nope", "--input-shape", "1"], "has no attribute 'Nope' (it defines"),
        (["build", "{MODELS}", "--input-shape", "1"], "is not MODULE:CALLABLE"),
        (
            ["build", "{T}/raises.py:Net", "--input-shape", "1"],
            "importing {T}/raises.py failed: RuntimeError: boom at import",
        ),
        (["build", "{T}/syntax.py:Net", "--input-shape", "1"], "SyntaxError"),
        (["build", "{T}/notmodule.py:make", "--input-shape", "1"], "returned 'int', not a torch.nn.Module"),
        (["build", "{T}/needs.py:Net", "--input-shape", "1"], "pass its arguments with --model-kwargs"),
        (["build", "{MODELS}:TwoLayerNet", "--input-shape", "4,7"], "the forward pass failed in fc1 (Linear)"),
        (["build", "{MODELS}:TwoLayerNet", "--input-shape", "four"], "is not a shape; write it like 1,3,224,224"),
        (["build", "{MODELS}:TwoLayerNet"], "needs an example input"),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--model-kwargs", "{bad"],
            "--model-kwargs is not valid JSON",
        ),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--before", "{T}/missing.pt"],
            "checkpoint not found",
        ),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--before", "{T}/corrupt.pt"],
            "is not a PyTorch checkpoint or is corrupt",
        ),
        (["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--after", "{T}/evil.pt"], "would run code"),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--after", "{T}/other.pt"],
            "does not fit TwoLayerNet: missing 4",
        ),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--before", "{T}/other.pt"],
            "shares no parameter with TwoLayerNet",
        ),
        (["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "-o", "{T}/no/such/dir/r.html"], "does not exist"),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--device", "gpu0"],
            "--device 'gpu0' is not a device",
        ),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--device", "meta"],
            "--device meta holds no values",
        ),
        (["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--device", "cuda:99"], "--device cuda:99"),
        (["build", "{T}/exits.py:Net", "--input-shape", "1"], "importing {T}/exits.py failed: SystemExit: 3"),
        (["build", "{MODELS}:TwoLayerNet", "--input", "{T}/empty.pt"], "is not a torch.save file or is corrupt"),
        (["build", "{MODELS}:TwoLayerNet", "--input", "{T}/meta_input.pt"], "input is on the meta device"),
        (["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,x"], "--input-shape '2,x' is not a shape"),
        (["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,x,20"], "--input-shape '2,x,20' is not a shape"),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "100000,100000,100000"],
            "cannot be made (not enough memory); give a smaller shape",
        ),
        (
            ["build", "{MODELS}:TwoLayerNet", "--input-shape", "2,20", "-o", "{T}/new.html/"],
            "ends with a slash, a folder that does not exist",
        ),
    ],
)
def test_bad_input_is_one_line_exit_1_and_no_output(broken, capsys, argv, expected):
    target = broken / "report.html"
    target.write_text("an earlier report")
    argv = [a.replace("{MODELS}", MODELS).replace("{T}", str(broken)) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(target)]
    code, _out, err = run(capsys, *argv)
    expected = expected.replace("{T}", str(broken))
    assert code == 1
    assert err.startswith("nnviz-report: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert target.read_text() == "an earlier report"
    assert sorted(p.name for p in broken.iterdir() if p.suffix == ".html" or p.name.endswith(".tmp")) == ["report.html"]
    assert not (broken / "PWNED").exists()


def test_usage_errors_exit_2(capsys):
    assert main(["build"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--version"]) == 0
    assert "nnviz-report 0.1.0" in capsys.readouterr().out


def test_missing_dot_is_a_warning_not_a_failure(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "r.html"
    code, _, err = run(capsys, "build", f"{MODELS}:TwoLayerNet", "--input-shape", "2,20", "-o", str(out))
    assert code == 0
    assert "nnviz-report: warning: Graphviz's `dot` program was not found" in err
    assert "apt-get install graphviz" in out.read_text(encoding="utf-8")


def test_checkpoints_out_of_numeric_order_are_warned_about(tmp_path, capsys):
    for n in (2, 10):
        torch.save(TwoLayerNet().state_dict(), tmp_path / f"epoch{n}.pt")
    code, _, err = run(
        capsys,
        "build",
        f"{MODELS}:TwoLayerNet",
        "--input-shape",
        "2,20",
        "--no-graph",
        "--before",
        str(tmp_path / "epoch10.pt"),
        str(tmp_path / "epoch2.pt"),
        "-o",
        str(tmp_path / "r.html"),
    )
    assert code == 0 and "not their numeric order" in err


def test_python_dash_m(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnviz_report",
            "build",
            f"{MODELS}:TwoLayerNet",
            "--input-shape",
            "2,20",
            "-o",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "nnviz_report", "build", "x.py:Y", "--input-shape", "1"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stderr.strip() == "nnviz-report: error: model file not found: x.py"


def test_the_unpickler_payload_helper_really_would_run(tmp_path):
    """Guard the guard: the evil checkpoint used above does run code when loaded unsafely."""

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    pickle.loads(pickle.dumps(Payload()))
    assert (tmp_path / "ran").exists()


def test_help_and_usage_errors_do_not_import_torch():
    code = (
        "import sys; from nnviz_report.cli import main; code = main(['build']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "the following arguments are required" in result.stderr


def test_an_interrupt_is_one_line_and_exit_130(tmp_path, capsys):
    (tmp_path / "slow.py").write_text("def make():\n    raise KeyboardInterrupt\n")
    target = tmp_path / "report.html"
    target.write_text("an earlier report")
    code, out, err = run(capsys, "build", f"{tmp_path}/slow.py:make", "--input-shape", "1", "-o", str(target))
    assert code == 130 and out == ""
    assert err == "nnviz-report: interrupted; the output file was not touched\n"
    assert target.read_text() == "an earlier report"


def test_a_partial_checkpoint_is_a_warning_and_one_that_fits_nowhere_an_error(tmp_path, capsys):
    state = TwoLayerNet().state_dict()
    partial = {k: v for k, v in state.items() if k.startswith("fc1.")} | {"old.weight": torch.zeros(2)}
    torch.save(partial, tmp_path / "partial.pt")
    out = tmp_path / "r.html"
    code, _, err = run(
        capsys,
        "build",
        f"{MODELS}:TwoLayerNet",
        "--input-shape",
        "2,20",
        "--no-graph",
        "--before",
        str(tmp_path / "partial.pt"),
        "-o",
        str(out),
    )
    assert code == 0 and out.exists()
    assert (
        f"nnviz-report: warning: {tmp_path / 'partial.pt'} (partial) holds 2 of the model's 4 "
        "parameters under the same name and shape"
    ) in err
    assert "missing 2 (fc2.weight, fc2.bias); unexpected 1 (old.weight)" in err
    reshaped = {k: torch.zeros(*(s + 1 for s in v.shape)) for k, v in state.items()}
    torch.save(reshaped, tmp_path / "reshaped.pt")
    code, _, err = run(
        capsys,
        "build",
        f"{MODELS}:TwoLayerNet",
        "--input-shape",
        "2,20",
        "--no-graph",
        "--before",
        str(tmp_path / "reshaped.pt"),
        "-o",
        str(tmp_path / "r2.html"),
    )
    assert code == 1 and err.count("\n") == 1 and not (tmp_path / "r2.html").exists()
    assert "shares no parameter with TwoLayerNet" in err and "fc1.weight: file (33, 21) vs model (32, 20)" in err


def test_distributed_checkpoint_folder_only_with_the_trust_flag(tmp_path, capsys):
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(TwoLayerNet().state_dict(), checkpoint_id=str(tmp_path / "step0"), no_dist=True)
    argv = [
        "build",
        f"{MODELS}:TwoLayerNet",
        "--input-shape",
        "2,20",
        "--no-graph",
        "--before",
        str(tmp_path / "step0"),
        "-o",
        str(tmp_path / "r.html"),
    ]
    code, _, err = run(capsys, *argv)
    assert code == 1 and "--trust-checkpoint-metadata" in err and err.count("\n") == 1
    code, out, err = run(capsys, *argv, "--trust-checkpoint-metadata")
    assert code == 0 and "wrote" in out and not err
