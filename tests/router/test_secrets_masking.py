"""No secrets in logs; a config file with credentials readable by others is warned about."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from municipality_map.sync import broker_address
from router import secrets
from router.secrets import (
    exposed_config_warning,
    holds_credentials,
    install_log_masking,
    mask_secrets,
    mask_url,
)


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql+asyncpg://nodrute:s3cr%40t@db.example:5432/nodrute",
     "postgresql+asyncpg://nodrute:***@db.example:5432/nodrute"),
    ("mqtt://node:hunter2@127.0.0.1:1883", "mqtt://node:***@127.0.0.1:1883"),
    ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
    ("postgresql+asyncpg://nodrute@db/x", "postgresql+asyncpg://nodrute@db/x"),
    ("sqlite+aiosqlite:////var/lib/nodrute/nodrute.db",
     "sqlite+aiosqlite:////var/lib/nodrute/nodrute.db"),
    ("http://127.0.0.1:9464/metrics", "http://127.0.0.1:9464/metrics"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_every_url_in_a_text_is_masked() -> None:
    text = ("url='postgresql://a:pw1@h/db' input_value='mqtt://b:pw2@h:1883' "
            "see http://docs.example/x")
    masked = mask_secrets(text)
    assert "pw1" not in masked and "pw2" not in masked
    assert "postgresql://a:***@h/db" in masked and "mqtt://b:***@h:1883" in masked
    assert "http://docs.example/x" in masked


def test_log_records_are_masked_whatever_the_handler(
        caplog: pytest.LogCaptureFixture) -> None:
    before = logging.getLogRecordFactory()
    try:
        install_log_masking()
        install_log_masking()  # idempotent
        with caplog.at_level(logging.INFO, logger="nodrute.test"):
            logging.getLogger("nodrute.test").info("store at %s failed",
                                                   "postgresql://u:topsecret@db/n")
            logging.getLogger("nodrute.test").info("broker mqtt://u:topsecret@h:1883 gone")
            logging.getLogger("nodrute.test").info("100%% fine, %d calls", 3)
        assert [r.getMessage() for r in caplog.records] == [
            "store at postgresql://u:***@db/n failed",
            "broker mqtt://u:***@h:1883 gone",
            "100% fine, 3 calls",
        ]
        assert "topsecret" not in caplog.text
    finally:
        logging.setLogRecordFactory(before)
        secrets._installed.clear()


def test_a_bad_mqtt_url_error_does_not_repeat_the_password() -> None:
    with pytest.raises(ValueError) as err:
        broker_address("http://u:topsecret@broker:1883")
    assert "topsecret" not in str(err.value)


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_credentials_readable_by_others_are_warned_about_naming_file_and_mode(
        tmp_path: Path) -> None:
    config = write(tmp_path / "nodrute.toml",
                   '[database]\nurl = "postgresql+asyncpg://nodrute:pw@db/nodrute"\n', 0o644)
    warning = exposed_config_warning(config)
    assert warning is not None
    assert str(config) in warning and "0644" in warning
    assert "pw" not in warning.replace("postgresql", "")
    config.chmod(0o640)
    assert "0640" in (exposed_config_warning(config) or "")
    config.chmod(0o600)
    assert exposed_config_warning(config) is None


def test_a_config_without_credentials_is_not_warned_about(tmp_path: Path) -> None:
    config = write(tmp_path / "nodrute.toml",
                   '[database]\nurl = "postgresql+asyncpg://nodrute@db/nodrute"\n'
                   '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n', 0o644)
    assert not holds_credentials(config)
    assert exposed_config_warning(config) is None


def test_a_password_key_counts_as_credentials(tmp_path: Path) -> None:
    config = write(tmp_path / "nodrute.toml", '[mqtt]\npassword = "x"\n', 0o604)
    assert holds_credentials(config)
    assert "0604" in (exposed_config_warning(config) or "")


def test_the_shipped_config_holds_no_credentials() -> None:
    shipped = Path(__file__).resolve().parents[2] / "configs" / "nodrute.toml"
    assert not holds_credentials(shipped)
