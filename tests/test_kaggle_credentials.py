"""resemote_lib.kaggle.credentials: where credentials are found, and quiet calls of the API."""

from __future__ import annotations

import sys
import types

import pytest

from resemote_lib.kaggle import credentials


def test_credential_sources_names_places_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-123")
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    (tmp_path / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    found = credentials.credential_sources()
    assert found == [str(tmp_path / "kaggle.json"), "KAGGLE_API_TOKEN"]
    assert "tok-123" not in " ".join(found)


def test_configured_username(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    assert credentials.configured_username() is None  # no kaggle.json
    (tmp_path / "kaggle.json").write_text('["not", "an", "object"]')
    assert credentials.configured_username() is None
    (tmp_path / "kaggle.json").write_text('{"username": "bob", "key": "k"}')
    assert credentials.configured_username() == "bob"
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    assert credentials.configured_username() == "alice"


def test_missing_credentials_says_where_they_go():
    message = credentials.missing_credentials("nothing can be pushed")
    assert message.startswith("no Kaggle credentials found, so nothing can be pushed: put your Kaggle API token")
    for place in ("~/.kaggle/kaggle.json", "KAGGLE_CONFIG_DIR", "KAGGLE_USERNAME and KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        assert place in message


def test_call_api_wraps_systemexit_and_hides_chatter(monkeypatch, capsys):
    """kaggle prints 'Authentication required' and raises SystemExit: one KaggleError, nothing shown."""

    def refuse(**kw):
        print("Authentication required for someone / s3cr3t-key-value")
        print("s3cr3t-key-value", file=sys.stderr)
        raise SystemExit(1)

    fake = types.ModuleType("kaggle")
    fake.api = types.SimpleNamespace(refuse=refuse, answer=lambda: 42)
    monkeypatch.setitem(sys.modules, "kaggle", fake)
    with pytest.raises(credentials.KaggleError, match=r"^asking failed \(SystemExit: 1\)\. try again$") as err:
        credentials.call_api("asking", lambda api: api.refuse(), hint="try again")
    out = capsys.readouterr()
    assert "s3cr3t" not in str(err.value) and "s3cr3t" not in out.out + out.err
    assert credentials.call_api("asking", lambda api: api.answer()) == 42
    with pytest.raises(credentials.KaggleError, match=r"^asking failed \(KeyError: 'x'\)$"):
        credentials.call_api("asking", lambda api: {}["x"])
