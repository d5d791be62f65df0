"""Who may use a recorder: both RPCs need its token; the gateway, the CLI and recorder.connect() find it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from proto import pb, pb_grpc
from proto._access import bearer, local_token_file
from recorder import RecordingError, connect
from tests.recorder.test_e2e_recording import calls_made, recording_config, sent
from tests.support.gateway import RunningGateway
from tests.support.procs import Proc, free_port, port_open, wait_until
from tests.support.recorder import RunningRecorder

pytestmark = pytest.mark.e2e


def test_both_rpcs_refuse_a_caller_without_the_token(tmp_path: Path) -> None:
    rec = RunningRecorder(tmp_path / "traces.duckdb", tmp_path)
    try:
        token = local_token_file(rec.target).read_text().strip()  # made by the recorder on its first start
        assert oct(local_token_file(rec.target).stat().st_mode & 0o777) == "0o600"
        with grpc.insecure_channel(rec.target) as channel:
            stub = pb_grpc.RecorderStub(channel)
            for metadata in ((), bearer("not-the-token")):
                with pytest.raises(grpc.RpcError) as refused:
                    list(stub.Query(pb.QueryRequest(sql="SELECT count(*) FROM spans"), metadata=metadata, timeout=10))
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                batch = pb.SpanBatch(spans=[pb.Span(span_id=b"\x01" * 8, trace_id=b"\x02" * 16, name="forged")])
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Record(iter([batch]), metadata=metadata, timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with connect(rec.target, token="not-the-token") as wrong:
            with pytest.raises(RecordingError, match="needs its token"):
                wrong.rows("SELECT 1")
        with connect(rec.target, token=token) as right:
            assert right.rows("SELECT count(*) AS n FROM spans WHERE name = 'forged'") == [{"n": 0}]
        with connect(rec.target) as local:  # the token file of this machine's recorder, found by address
            assert local.rows("SELECT 1 AS one") == [{"one": 1}]
    finally:
        rec.stop()


def test_a_gateway_and_a_recorder_sharing_a_token_file(backends: dict[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "recorder.token"
    token_file.write_text("a-shared-token-0123456789\n")
    port = free_port()
    target = f"127.0.0.1:{port}"
    db = tmp_path / "traces.duckdb"
    args = [
        sys.executable,
        "-m",
        "proxy",
        "recorder",
        "--db",
        str(db),
        "--listen",
        target,
        "--token-file",
        str(token_file),
    ]
    recorder = Proc(args, tmp_path / "recorder.log")
    try:
        wait_until(port_open(port), 30, what="recorder")
        assert not local_token_file(target).exists()  # an explicit token is not written elsewhere
        config = recording_config(backends, target, tmp_path / "spool")
        config["recorder"]["token_file"] = str(token_file)
        gw = RunningGateway(config, tmp_path)
        try:
            calls_made(gw, 3, 0)
            wait_until(lambda: sent(gw)["sent"] >= sent(gw)["emitted"] > 0, 20, what="spans sent")
        finally:
            gw.stop()
        cli = subprocess.run(
            [sys.executable, "-m", "proxy", "traces", "--from", target, "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cli.returncode == 1 and "needs its token" in cli.stderr  # no local token file for it
        with connect(target, token="a-shared-token-0123456789") as rec:
            assert rec.rows("SELECT count(*) AS n FROM traces WHERE tool_name = 'echo'") == [{"n": 3}]
    finally:
        recorder.stop()
