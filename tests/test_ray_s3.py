"""A Ray build across two nodes that share nothing but an S3 URL.

Two Ray nodes run on this machine (``ray.cluster_utils.Cluster``, loopback only), each with its own
temporary folder (``TMPDIR``): the workers' shard files, pool parts and pool caches are there, and
the only thing the nodes and the driver share is the bucket on the test's SeaweedFS server. The
build must give the local bytes, and a node killed mid-build must not change them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .s3server import BUCKET

pytest.importorskip("ray")

# The driver: a two-node cluster, a build into the URL, optionally node 2 killed once the first shard
# is committed. Prints the nodes that fetched the pool (each into its own TMPDIR) as JSON.
DRIVER = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    import ray
    from ray.cluster_utils import Cluster
    from s2pdata import storage
    from s2pdata.build import run_build
    from s2pdata.synth import SynthConfig

    url, options, staging, tmp_a, tmp_b, kill = sys.argv[1], json.loads(sys.argv[2]), *sys.argv[3:6], sys.argv[6] == "1"
    head = {"num_cpus": 1, "include_dashboard": False, "env_vars": {"TMPDIR": tmp_a}}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    node_b = cluster.add_node(num_cpus=1, env_vars={"TMPDIR": tmp_b})
    killed = []

    def killer():
        while not storage.exists(url + "/shard-000000.stats.json", options):
            time.sleep(0.05)
        cluster.remove_node(node_b, allow_graceful=False)
        killed.append(len(storage.glob(url + "/shard-*.stats.json", options)))  # shards committed by then

    if kill:
        threading.Thread(target=killer, daemon=True).start()
    try:
        manifest = run_build(
            src="demo:12", out=url, cfg=SynthConfig(size=64), seed=3, shard_size=2, workers=2,
            progress=False, distributor="ray", ray_address=cluster.address, storage_options=options,
            staging=staging,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    pools = [t for t in (tmp_a, tmp_b) if any(Path(t).glob("s2pdata-pool-*"))]
    at_kill = killed[0] if killed else None
    print(json.dumps({"samples": manifest["totals"]["samples"], "pools": pools, "committed_at_kill": at_kill}))
    """
)


def _drive(url: str, options: dict, tmp_path: Path, *, kill: bool) -> dict:
    nodes = [tmp_path / "node-a", tmp_path / "node-b"]
    for n in nodes:
        n.mkdir()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray on 127.0.0.1, never the host's address
    cmd = [sys.executable, "-c", DRIVER, url, json.dumps(options), str(tmp_path / "staging"), *map(str, nodes)]
    run = subprocess.run([*cmd, "1" if kill else "0"], capture_output=True, text=True, timeout=420, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return {**json.loads(run.stdout.strip().splitlines()[-1]), "nodes": nodes}


def _digests(fs, prefix: str) -> dict[str, str]:
    fs.invalidate_cache()
    return {
        Path(p).name: hashlib.sha256(fs.cat_file(p)).hexdigest()
        for p in sorted(fs.find(prefix))
        if Path(p).name.startswith("shard-") and p.endswith(".tar")
    }


@pytest.fixture(scope="module")
def local_digests(tmp_path_factory):
    from s2pdata.build import run_build
    from s2pdata.synth import SynthConfig

    out = tmp_path_factory.mktemp("ray-ref") / "run"
    run_build(src="demo:12", out=out, cfg=SynthConfig(size=64), seed=3, shard_size=2, workers=1, progress=False)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}


@pytest.mark.slow
def test_two_nodes_sharing_only_the_bucket_build_the_local_bytes(s3_server, local_digests, tmp_path):
    url = f"s3://{BUCKET}/ray/two-nodes"
    result = _drive(url, s3_server.options, tmp_path, kill=False)
    assert result["samples"] == 12
    assert _digests(s3_server.fs(), url.removeprefix("s3://")) == local_digests and len(local_digests) == 6
    # the nodes that built shards fetched the pool from the bucket into their own folders (Ray decides
    # which nodes run tasks; both do on a quiet machine): no file passed between nodes or from the driver
    assert result["pools"] and set(result["pools"]) <= {str(n) for n in result["nodes"]}


@pytest.mark.slow
def test_a_node_killed_mid_build_changes_no_byte(s3_server, local_digests, tmp_path):
    url = f"s3://{BUCKET}/ray/killed"
    result = _drive(url, s3_server.options, tmp_path, kill=True)
    assert result["committed_at_kill"] is not None and result["committed_at_kill"] < 6  # killed mid-build
    assert result["samples"] == 12
    assert _digests(s3_server.fs(), url.removeprefix("s3://")) == local_digests
