"""``mmdaemon sweep --cluster`` end to end: the real command in a subprocess against a Dask
scheduler and two worker processes started here, on the bundled recording; its rows are
the local sweep's, byte for byte."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.dask_cluster import DaskCluster, two_worker_cluster  # noqa: F401 (fixture)
from tests.process.test_record_sim_cli import free_port
from tests.process.test_sweep import sweep


def test_a_sweep_on_a_cluster_writes_the_rows_of_the_same_sweep_run_locally(
        cluster: DaskCluster, tmp_path: Path) -> None:
    local, local_out = sweep(tmp_path, "--workers", "2", out="local")
    assert local.returncode == 0, local.stderr[-3000:]
    remote, remote_out = sweep(tmp_path, "--cluster", cluster.address, out="cluster")
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert orjson.loads(remote.stdout)["workers"] == 2  # the cluster's worker threads
    rows = (remote_out / "runs.csv").read_bytes()
    assert rows == (local_out / "runs.csv").read_bytes()
    assert rows.count(b"\n") == 1 + 4
    page = (remote_out / "sweep.html").read_text()
    assert f"<dt>executed on</dt><dd>{cluster.address}</dd>" in page


def test_an_unreachable_cluster_is_exit_2_naming_the_address_and_the_timeout(
        tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    proc, out = sweep(tmp_path, "--cluster", address)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"mmdaemon sweep: cannot reach the Dask scheduler at {address} within 10 s" in (
        proc.stderr)
    assert "Traceback" not in proc.stderr and not out.exists()  # nothing written
