"""The one atomic writer (sonify/atomic.py): a file appears whole or not at all, on real files in a real folder."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pack import ROOT

from sonify.atomic import PRIVATE, atomically, write_atomically
from sonify.errors import ConfigurationError

EARLIER = b"the earlier version, whole\n"


def others(folder: Path, target: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p != target)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "result.mp4"
    path.write_bytes(EARLIER)
    return path


def test_the_writer_gets_a_new_hidden_file_beside_the_target_with_its_suffix(target):
    seen = []

    def write(path: Path) -> None:
        seen.append(path)
        assert path.exists() and path.stat().st_size == 0  # created by the writer, empty
        path.write_bytes(b"new")

    write_atomically(target, write)
    (partial,) = seen
    assert partial.parent == target.parent and partial.name.startswith(".") and partial.suffix == ".mp4"
    assert target.read_bytes() == b"new" and not partial.exists()
    assert others(target.parent, target) == []


def test_a_failure_mid_write_leaves_the_target_as_it_was_and_no_partial(target):
    def write(path: Path) -> None:
        path.write_bytes(b"half of it")
        raise RuntimeError("the muxer failed")

    with pytest.raises(RuntimeError, match="the muxer failed"):
        write_atomically(target, write)
    assert target.read_bytes() == EARLIER and others(target.parent, target) == []

    with pytest.raises(KeyboardInterrupt), atomically(target) as out:  # the streaming form, and a Ctrl-C
        out.write(b"half of it")
        raise KeyboardInterrupt
    assert target.read_bytes() == EARLIER and others(target.parent, target) == []


def test_an_os_error_names_the_file(target):
    def write(path: Path) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(ConfigurationError, match=f"cannot write {target} \\(No space left on device\\)"):
        write_atomically(target, write)
    assert target.read_bytes() == EARLIER and others(target.parent, target) == []


def test_a_full_disk_for_real_leaves_the_target_as_it_was(target):
    """RLIMIT_FSIZE in a child process: a write past it fails with EFBIG, as one past the free space with ENOSPC."""
    code = ("import sys; from pathlib import Path; from sonify.atomic import write_atomically\n"
            "try:\n"
            "    write_atomically(Path(sys.argv[1]), lambda p: p.write_bytes(bytes(1 << 20)))\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))

    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True, preexec_fn=limit)
    assert done.stdout.startswith(f"ConfigurationError cannot write {target} ("), done.stdout + done.stderr
    assert target.read_bytes() == EARLIER and others(target.parent, target) == []


def test_a_private_file_is_private_from_the_moment_it_exists(target):
    with atomically(target, mode=PRIVATE) as out:
        assert stat.S_IMODE(os.stat(out.name).st_mode) == 0o600
        out.write(b"a key")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"a key"


def test_a_shared_file_has_the_mode_the_umask_gives_any_new_file(target):
    umask = os.umask(0o022)
    try:
        write_atomically(target, lambda path: path.write_bytes(b"new"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_link_at_the_target_is_replaced_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(EARLIER)
    link = tmp_path / "keys.json"
    link.symlink_to(elsewhere)
    with atomically(link, mode=PRIVATE, sync=True) as out:
        out.write(b"{}")
    assert not link.is_symlink() and link.read_bytes() == b"{}"
    assert elsewhere.read_bytes() == EARLIER


def test_concurrent_writers_of_one_target_each_leave_a_whole_file(target):
    """Every writer is half-way at once (a barrier inside the block), so all their partials exist together; the
    target is then one writer's file whole, never a mix, and no partial is left."""
    writers = 6
    half = 256 * 1024
    halfway = threading.Barrier(writers, timeout=30)
    contents = [bytes([n]) * (2 * half) for n in range(writers)]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with atomically(target) as out:
                out.write(contents[n][:half])
                halfway.wait()
                out.write(contents[n][half:])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert target.read_bytes() in contents
    assert others(target.parent, target) == []
