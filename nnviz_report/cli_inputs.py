"""What the command line builds before the report: the device, the example input (random,
or from a file) and the model (``MODULE:CALLABLE``)."""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from ._text import first_line
from .errors import NNVizError


def parse_device(text: str) -> Any:
    """``--device``: a device this torch can allocate on, checked before anything is loaded."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise NNVizError(f"--device {text!r} is not a device; write it like cpu, cuda or cuda:1") from None
    if device.type == "meta":
        raise NNVizError("--device meta holds no values to draw; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NNVizError(
            f"--device {text}: this torch build ({torch.__version__}) sees no CUDA GPU; drop --device to run on the CPU"
        )
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        reason = first_line(exc).split(". ")[0][:120]
        raise NNVizError(f"--device {text} cannot be used here ({reason}); drop --device to run on the CPU") from None
    return device


def parse_shape(text: str) -> tuple[int, ...]:
    """Whole numbers separated by commas, ``x``, ``×`` or spaces, in brackets or not
    (``1,3,224,224``, ``1x3x224x224``, ``(1, 3, 224, 224)``); anything else (``1,x``: a
    typo) is an error, not a shorter shape."""
    body = text.strip().strip("()[]").strip()
    if not re.fullmatch(r"\d+(?:\s*[,x×]\s*\d+|\s+\d+)*\s*,?", body):
        raise NNVizError(f"--input-shape {text!r} is not a shape; write it like 1,3,224,224")
    return tuple(int(p) for p in re.findall(r"\d+", body))


def random_inputs(shapes: list[str], dtype_name: str, high: int, seed: int) -> Any:
    """Random example inputs of the given shapes (``--input-shape``): normal floats, or
    integers in ``[0, high)``, from a generator seeded with ``seed``."""
    import torch

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(seed)
    tensors = []
    if high < 1 and not dtype.is_floating_point and dtype != torch.bool:
        raise NNVizError("--input-high must be at least 1")
    for text in shapes:
        shape = parse_shape(text)
        try:
            if dtype.is_floating_point:
                tensors.append(torch.randn(shape, generator=gen).to(dtype))
            elif dtype == torch.bool:
                tensors.append(torch.randint(0, 2, shape, generator=gen).bool())
            else:
                tensors.append(torch.randint(0, high, shape, generator=gen, dtype=dtype))
        except (RuntimeError, MemoryError) as exc:  # "can't allocate memory"
            why = "not enough memory" if "alloc" in str(exc) or isinstance(exc, MemoryError) else first_line(exc)[:120]
            raise NNVizError(
                f"--input-shape {text}: a random input of {math.prod(shape):,} values cannot be made ({why}); "
                "give a smaller shape"
            ) from None
    return tensors[0] if len(tensors) == 1 else tuple(tensors)


def load_input(path: Path) -> Any:
    import pickle

    import torch

    if not path.is_file():
        raise NNVizError(f"--input file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise NNVizError(
            f"refused to load {path}: it needs code to unpickle; save plain tensors with torch.save"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise NNVizError(f"{path} is not a torch.save file or is corrupt ({first_line(exc)[:160]})") from exc
    if isinstance(obj, (torch.Tensor, tuple, list, dict)):
        return obj
    raise NNVizError(f"{path} holds a {type(obj).__name__}; expected a tensor, a tuple/list or a dict of tensors")


def load_model(spec: str, kwargs: dict[str, Any]) -> Any:
    """Import ``MODULE:CALLABLE`` and call it; the result must be an ``nn.Module``."""
    from torch import nn

    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise NNVizError(
            f"{spec!r} is not MODULE:CALLABLE; write it like examples/models.py:ResNet18 or mypkg.models:Net"
        )
    module = _import(module_part)
    if not hasattr(module, attr):
        classes = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, nn.Module) and getattr(v, "__module__", None) == module.__name__
        )
        hint = f" (it defines {', '.join(classes)})" if classes else ""
        raise NNVizError(f"{module_part} has no attribute {attr!r}{hint}")
    factory = getattr(module, attr)
    if not callable(factory):
        raise NNVizError(f"{spec} is a {type(factory).__name__}, not a class or function")
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise NNVizError(
            f"calling {spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
            "pass its arguments with --model-kwargs"
        ) from exc
    if not isinstance(model, nn.Module):
        raise NNVizError(f"{spec} returned {type(model).__name__!r}, not a torch.nn.Module")
    return model


def _import(module_part: str) -> Any:
    is_file = module_part.endswith(".py") or os.sep in module_part or "/" in module_part
    try:
        if is_file:
            path = Path(module_part)
            if not path.is_file():
                raise NNVizError(f"model file not found: {module_part}")
            name = "nnviz_user_" + re.sub(r"\W", "_", path.stem)
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise NNVizError(f"cannot import {module_part}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.resolve().parent))
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_part)
    except NNVizError:
        raise
    except ModuleNotFoundError as exc:
        raise NNVizError(
            f"cannot import {module_part}: {exc}; run from the folder that contains it, "
            "or give the path to the .py file"
        ) from exc
    except (Exception, SystemExit) as exc:  # a module that calls sys.exit() on import too
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise NNVizError(
            f"importing {module_part} failed: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}{where}"
        ) from exc
