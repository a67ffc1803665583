"""resemote_lib.kaggle.kernels: the real client through the installed kaggle package, offline."""

from __future__ import annotations

import io
import json
import sys
import types

import pytest

from resemote_lib import kaggle
from resemote_lib.kaggle import cli, kernels, push

from . import kaggle_fakes as F
from .kaggle_fakes import REAL

repo = F.repo  # fixture


@pytest.fixture
def quiet_kaggle(tmp_path, monkeypatch):
    """The installed ``kaggle`` package with fake credentials and its HTTP client replaced."""
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    sys.modules.pop("kaggle", None)
    with io.StringIO() as sink, __import__("contextlib").redirect_stdout(sink):
        import kaggle as kaggle_pkg
    requests = []

    class Kernels:
        def save_kernel(self, request):
            from kagglesdk.kernels.types.kernels_api_service import ApiSaveKernelResponse

            requests.append(request)
            resp = ApiSaveKernelResponse()
            resp.ref, resp.url, resp.version_number = "/code/alice/k", "https://www.kaggle.com/code/alice/k", 3
            return resp

        def get_kernel_session_status(self, request):
            from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusResponse
            from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

            requests.append(request)
            resp = ApiGetKernelSessionStatusResponse()
            resp.status, resp.failure_message = KernelWorkerStatus.CANCEL_ACKNOWLEDGED, "stopped by user"
            return resp

        def list_kernel_session_output(self, request):
            requests.append(request)
            return types.SimpleNamespace(files=[], next_page_token=None,
                                         log=json.dumps([{"stream_name": "stdout", "time": 1.0, "data": "a\nb\n"}]))

    class Client:
        kernels = types.SimpleNamespace(kernels_api_client=Kernels())

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(kaggle_pkg.api, "build_kaggle_client", lambda: Client())
    yield requests
    sys.modules.pop("kaggle", None)


def test_real_client_through_the_installed_kaggle_package(repo, tmp_path, quiet_kaggle, capsys):
    """Our metadata passes kaggle 2.x's own checks and becomes the request we expect."""
    out = tmp_path / "kernel"
    assert cli.main(["push", REAL, "--repo", str(repo), "--dry-run", str(out)]) == 0
    client = kernels.KaggleKernelClient()
    assert client.push(out) == {"ref": "/code/alice/k", "url": "https://www.kaggle.com/code/alice/k", "version": 3}
    req = quiet_kaggle[0]
    assert req.slug == "alice/resemote-fer2013-clean" and req.new_title == "resemote fer2013_clean"
    assert (req.language, req.kernel_type) == ("python", "script")
    assert req.enable_gpu is True and req.enable_internet is True and req.is_private is True
    assert req.machine_shape == "NvidiaTeslaT4" and list(req.dataset_data_sources) == ["msambare/fer2013"]
    assert req.text == (out / push.CODE_FILE).read_text()
    assert client.status("alice/resemote-k") == kernels.KernelStatus("cancelacknowledged", "stopped by user")
    log = client.output("alice/resemote-k", tmp_path / "dl")
    assert kernels.log_lines(log) == ["a", "b"] and list((tmp_path / "dl").iterdir()) == []
    assert "resolve" not in capsys.readouterr().out  # kaggle's "title does not resolve to the id" warning


def test_real_client_turns_every_failure_into_one_error(quiet_kaggle, monkeypatch):
    import kaggle as kaggle_pkg

    def boom(*a, **k):
        print("Authentication required: not-a-real-key")
        raise SystemExit(1)

    monkeypatch.setattr(kaggle_pkg.api, "kernels_status", boom)
    with pytest.raises(kaggle.KaggleError, match=r"reading the status of alice/resemote-k failed \(SystemExit") as e:
        kernels.KaggleKernelClient().status("alice/resemote-k")
    assert "not-a-real-key" not in str(e.value)


def test_status_values_are_normalised():
    from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

    assert kernels.normalize_state(KernelWorkerStatus.COMPLETE) == "complete"
    assert kernels.normalize_state("cancelAcknowledged") == "cancelacknowledged"
    assert kernels.normalize_state("KernelWorkerStatus.CANCEL_REQUESTED") == "cancelrequested"
    assert kernels.as_status("Running") == kernels.KernelStatus("running", "")
