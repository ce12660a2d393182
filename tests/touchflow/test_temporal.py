"""touchflow.temporal.connect's TLS: mTLS from files or PEM text, Temporal Cloud's API key, errors that say
what to set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from touchflow.errors import ConfigurationError
from touchflow.settings import Settings
from touchflow.temporal import tls_config

CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIBkey\n-----END PRIVATE KEY-----\n"
CA = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n"


def test_plain_by_default_and_tls_with_the_system_cas_for_an_api_key(
    make_settings: Callable[..., Settings],
) -> None:
    assert tls_config(make_settings()) is False
    assert tls_config(make_settings(temporal_api_key="tcld-key")) is True


def test_mtls_from_files_or_from_pem_text(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text(CERT)
    (tmp_path / "client.key").write_text(KEY)
    from_files = tls_config(
        make_settings(
            temporal_tls_cert=str(tmp_path / "client.pem"),
            temporal_tls_key=str(tmp_path / "client.key"),
            temporal_tls_ca=CA,
        )
    )
    assert from_files == TLSConfig(
        server_root_ca_cert=CA.encode(), client_cert=CERT.encode(), client_private_key=KEY.encode()
    )
    only_ca = tls_config(make_settings(temporal_tls_ca=CA))
    assert isinstance(only_ca, TLSConfig) and only_ca.client_cert is None


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            {"temporal_tls_cert": CERT},
            "TOUCHFLOW_TEMPORAL_TLS_CERT and TOUCHFLOW_TEMPORAL_TLS_KEY go together",
        ),
        ({"temporal_tls_ca": "/no/such/ca.pem"}, "TOUCHFLOW_TEMPORAL_TLS_CA: cannot read the file it names"),
    ],
)
def test_a_half_configured_tls_names_the_setting_and_never_the_key(
    make_settings: Callable[..., Settings], values: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says) as raised:
        tls_config(make_settings(temporal_tls_key=KEY if "temporal_tls_ca" in values else "", **values))
    assert "MIIBkey" not in str(raised.value)
