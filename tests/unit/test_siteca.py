"""ais.siteca: the CA text a boot environment pins."""

from __future__ import annotations

import pytest

from ais import siteca
from ais.errors import UsageError


def test_the_ca_to_pin_is_the_sites_certificate_or_none(tmp_path):
    assert siteca.read_ca(tmp_path) is None  # a site without a CA: nothing to pin
    siteca.init(tmp_path)
    text = siteca.read_ca(tmp_path)
    assert text == siteca.ca_path(tmp_path).read_text() and text.startswith("-----BEGIN CERTIFICATE-----")


def test_a_ca_file_that_is_not_a_certificate_is_refused(tmp_path):
    siteca.ca_path(tmp_path).parent.mkdir(parents=True)
    siteca.ca_path(tmp_path).write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(UsageError, match="ca.pem: not a PEM certificate"):
        siteca.read_ca(tmp_path)
