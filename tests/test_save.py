"""Where ``Report.save`` and ``-o`` write: regular files atomically, devices and FIFOs in
place, symbolic links followed; every failure one NNVizError, no temporary file left."""

from __future__ import annotations

import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import nnviz_report
from helpers import ROOT
from nnviz_report import NNVizError
from nnviz_report.cli import main

MODELS = str(ROOT / "examples" / "models.py")


@pytest.fixture(scope="module")
def report():
    import torch

    return nnviz_report.build_report(torch.nn.Linear(3, 2), torch.randn(2, 3), graph=False)


def _device(path, major: int, minor: int, kind: int = stat.S_IFCHR):
    """A device node of our own in the test's folder (never the machine's /dev)."""
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("creating device nodes needs root")
    return path


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_character_device_is_written_into_not_replaced(tmp_path, report):
    null = _device(tmp_path / "null", 1, 3)
    assert report.save(null) == null
    assert stat.S_ISCHR(os.stat(null).st_mode), "the device node is still a device"
    full = _device(tmp_path / "full", 1, 7)
    with pytest.raises(NNVizError, match="No space left on device") as err:
        report.save(full)
    assert "\n" not in str(err.value)
    assert stat.S_ISCHR(os.stat(full).st_mode)
    assert _leftovers(tmp_path) == []


def test_a_fifo_gets_the_page_and_stays_a_fifo(tmp_path, report):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    report.save(fifo)
    reader.join(10)
    assert got == [report.html.encode("utf-8")]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_fifo_nobody_reads_is_an_error_not_a_hang(tmp_path, report, monkeypatch):
    import nnviz_report.output

    monkeypatch.setattr(nnviz_report.output, "READER_WAIT", 0.2)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(NNVizError, match="no process reads from"):
        report.save(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_sockets_and_block_devices_are_refused(tmp_path, report):
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(NNVizError, match="is a socket"):
            report.save(path)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    disk = _device(tmp_path / "disk", 7, 250, stat.S_IFBLK)
    with pytest.raises(NNVizError, match="is a block device"):
        report.save(disk)
    assert stat.S_ISBLK(os.stat(disk).st_mode)


def test_a_symlink_is_followed_and_stays_a_link(tmp_path, report):
    real = tmp_path / "runs" / "report.html"
    real.parent.mkdir()
    real.write_text("an earlier report")
    link = tmp_path / "latest.html"
    link.symlink_to(real)
    assert report.save(link) == link
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text(encoding="utf-8") == report.html
    assert _leftovers(tmp_path) == [] and _leftovers(real.parent) == []
    # A dangling link: the file it names is created.
    real.unlink()
    report.save(link)
    assert link.is_symlink() and real.read_text(encoding="utf-8") == report.html
    # A link into a folder that does not exist is the usual one-line error.
    broken = tmp_path / "broken.html"
    broken.symlink_to(tmp_path / "nowhere" / "r.html")
    with pytest.raises(NNVizError, match="does not exist"):
        report.save(broken)


@pytest.fixture
def file_size_limit():
    """Writes past 64 kB fail with EFBIG (a real OS error, as a full disk gives ENOSPC)."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_failing_write_is_one_error_and_the_old_file_survives(tmp_path, report, file_size_limit):
    target = tmp_path / "report.html"
    target.write_text("an earlier report")
    with pytest.raises(NNVizError, match=r"cannot write .*report.html: File too large") as err:
        report.save(target)
    assert "\n" not in str(err.value)
    assert target.read_text() == "an earlier report"
    assert _leftovers(tmp_path) == []


def test_cli_write_failures_are_one_line(tmp_path, capsys):
    full = _device(tmp_path / "full", 1, 7)
    code = main(["build", f"{MODELS}:TwoLayerNet", "--input-shape", "2,20", "--no-graph", "-o", str(full)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("nnviz-report: error: cannot write") and err.count("\n") == 1, err
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_cli_writes_the_page_to_stdout(tmp_path):
    """``-o /dev/fd/1`` (as ``-o /dev/stdout``; this path cannot be replaced by a broken
    build, not even as root): the page alone on stdout, the status line on stderr."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnviz_report",
            "build",
            f"{MODELS}:TwoLayerNet",
            "--input-shape",
            "2,20",
            "--no-graph",
            "-o",
            "/dev/fd/1",
        ],
        capture_output=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"<!DOCTYPE html>") and result.stdout.rstrip().endswith(b"</html>")
    assert b"wrote /dev/fd/1" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_stdout_appended_to_a_log_keeps_the_log(tmp_path):
    """``-o /dev/fd/1 >> run.log``: the page goes after what the log held, which stays."""
    log = tmp_path / "run.log"
    log.write_text("epoch 1 done\n")
    with open(log, "ab") as out:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "nnviz_report",
                "build",
                f"{MODELS}:TwoLayerNet",
                "--input-shape",
                "2,20",
                "--no-graph",
                "-o",
                "/dev/fd/1",
            ],
            stdout=out,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    text = log.read_text()
    assert text.startswith("epoch 1 done\n<!DOCTYPE html>") and text.rstrip().endswith("</html>")


INTERRUPTS = textwrap.dedent("""
    import os, signal, sys, threading, time
    from nnviz_report.report import Report

    report = Report(data={}, html="<p>" + "x" * 200_000)
    target = os.path.join(sys.argv[1], "report.html")
    stop = threading.Event()

    def interrupt():  # SIGINT at random moments, as Jupyter's interrupt button sends it
        while not stop.is_set():
            time.sleep(int.from_bytes(os.urandom(1), "big") / 255 * 0.01)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    saved = interrupted = 0
    threading.Thread(target=interrupt, daemon=True).start()
    deadline = time.monotonic() + float(sys.argv[2])
    while True:
        try:
            while time.monotonic() < deadline:
                try:
                    report.save(target)
                    saved += 1
                except KeyboardInterrupt:
                    interrupted += 1
            stop.set()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            break
        except KeyboardInterrupt:
            continue
    print(saved, interrupted)
""")


def test_an_interrupted_save_leaves_no_temporary_file(tmp_path):
    """Ctrl-C (or a notebook's interrupt) at any moment of a save: the target is the old or
    the new page, never a half-written one, and no temporary file is left."""
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTS, str(tmp_path), "3"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    saved, interrupted = map(int, result.stdout.split())
    assert _leftovers(tmp_path) == []
    assert interrupted > 50 and saved > 50, (saved, interrupted)
    assert (tmp_path / "report.html").read_text() == "<p>" + "x" * 200_000


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_a_file_under_dev_shm_is_replaced_atomically_like_any_other(report):
    """Only descriptor paths (/dev/stdout, /dev/fd/N, /proc/...) are written in place."""
    target = Path("/dev/shm") / f"nnviz-test-{os.getpid()}.html"
    target.write_text("an earlier report")
    try:
        inode = target.stat().st_ino
        report.save(target)
        assert target.stat().st_ino != inode, "a new file renamed over the old one"
        assert target.read_text(encoding="utf-8") == report.html
    finally:
        target.unlink()


def test_replacing_a_file_keeps_its_permission_bits(tmp_path, report):
    target = tmp_path / "report.html"
    target.write_text("an earlier report")
    target.chmod(0o640)
    report.save(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    fresh = tmp_path / "new.html"
    report.save(fresh)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_every_file_the_package_writes_is_written_the_same_careful_way(tmp_path):
    """The page, a snapshot file and a tracker's report.json: the umask's permissions (not
    0600), one NNVizError for a place that cannot be written."""
    import torch

    from models import TwoLayerNet
    from nnviz_report.trackers import write_files

    model = TwoLayerNet()
    report = nnviz_report.build_report(model, torch.randn(2, 20), graph=False)
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    html, data = write_files(report, tmp_path / "tracker")
    nnviz_report.snapshot(model, path=tmp_path / "before.safetensors")
    for path in (html, data, tmp_path / "before.safetensors"):
        assert stat.S_IMODE(os.stat(path).st_mode) == expected, path
    with pytest.raises(NNVizError, match="cannot"):
        nnviz_report.snapshot(model, path="/proc/nnviz-test.safetensors")
    with pytest.raises(NNVizError, match="cannot"):
        write_files(report, Path("/proc/nnviz-test"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "before.safetensors",
        "report.html",
        "report.json",
        "tracker",
    ]


def test_paths_a_path_object_would_hide_or_the_system_refuse(tmp_path, report):
    with pytest.raises(NNVizError, match="contains a NUL byte"):
        report.save(str(tmp_path / "a\0b.html"))
    with pytest.raises(NNVizError, match="ends with a slash, a folder that does not exist; give a file name"):
        report.save(f"{tmp_path}/new.html/")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(NNVizError, match="is a folder"):
        report.save(f"{tmp_path}/")
