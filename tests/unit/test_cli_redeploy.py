"""`scctl redeploy` as a user runs it, without a cluster: arguments, help, errors (the API-server side is
tests/integration/operator/test_redeploy.py)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sc_operator import cli
from sc_operator.cli_redeploy import fresh_token


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(argv)
    from sc_operator import cli_redeploy

    code = cli_redeploy.run(args, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("target", ["web", "/web", "shop/", "a/b/c"])
def test_target_must_be_namespace_slash_service(target: str) -> None:
    code, _, err = run(["redeploy", target])
    assert code == 2
    assert "expected NAMESPACE/SERVICE" in err


def test_no_cluster_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, out, err = run(["redeploy", "shop/web"])
    assert code == 1
    assert out == ""
    assert err.startswith("scctl redeploy: cannot reach the cluster")


def test_tokens_are_fresh_utc_timestamps() -> None:
    assert fresh_token(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    assert fresh_token() != fresh_token(datetime(2000, 1, 1, tzinfo=UTC))


def test_help_says_what_it_maps_to(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["redeploy", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "force-new-deployment" in text
    assert "kubectl rollout restart" in text
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "redeploy" in capsys.readouterr().out
