"""The shared-memory regions of tritonservers that no longer run are swept."""

from __future__ import annotations

from pathlib import Path

from tritonserve import SHM_PREFIX, host_scope, new_shm_token, shm_option, sweep_shm_regions


def process(proc: Path, pid: int, *arguments: str) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in arguments) + b"\0")


def test_only_the_regions_of_servers_no_longer_running_are_removed(tmp_path: Path) -> None:
    proc, shm = tmp_path / "proc", tmp_path / "shm"
    shm.mkdir()
    process(proc, 10, "tritonserver", "--log-info=true", shm_option("aaaa"), "--http-port=1")
    process(proc, 11, "python", "-m", "cache_proxy")
    live = shm / f"{SHM_PREFIX}aaaa-0b9e6f1c-0000-4000-8000-000000000001"
    gone = [shm / f"{SHM_PREFIX}bbbb-0b9e6f1c-0000-4000-8000-00000000000{n}" for n in (1, 2)]
    others = [shm / "triton_python_backend_shm_region_0b9e6f1c", shm / "libpod_lock"]
    for path in (live, *gone, *others):
        path.write_bytes(b"\0")

    assert sorted(sweep_shm_regions(shm, proc)) == gone
    assert sorted(shm.iterdir()) == sorted([live, *others])  # another server's, or not ours


def test_a_region_that_cannot_be_removed_is_left_without_failing(tmp_path: Path) -> None:
    proc, shm = tmp_path / "proc", tmp_path / "shm"
    proc.mkdir()
    stuck = shm / f"{SHM_PREFIX}cccc-0b9e6f1c-0000-4000-8000-000000000001"
    stuck.mkdir(parents=True)  # unlink fails (as on another user's file in the sticky /dev/shm)
    assert sweep_shm_regions(shm, proc) == [] and stuck.exists()


def test_a_scoped_sweep_leaves_other_hosts_regions_alone(tmp_path: Path) -> None:
    """The image sweeps its own host's (its pod's) regions only: a container
    sharing another's /dev/shm cannot see that one's servers on its /proc."""
    proc, shm = tmp_path / "proc", tmp_path / "shm"
    proc.mkdir()
    shm.mkdir()
    token = new_shm_token()
    assert token.startswith(host_scope()) and len(token) == 16 and "-" not in token
    mine = shm / f"{SHM_PREFIX}{token}-0b9e6f1c-0000-4000-8000-000000000001"
    other = shm / f"{SHM_PREFIX}{'f' * 16}-0b9e6f1c-0000-4000-8000-000000000002"
    for path in (mine, other):
        path.write_bytes(b"\0")
    assert sweep_shm_regions(shm, proc, scope=host_scope()) == [mine]
    assert other.exists()
