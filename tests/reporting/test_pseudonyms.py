"""Keyed pseudonyms for packs sent by email (reporting.pseudonyms)."""

from __future__ import annotations

import hashlib
import hmac
import stat
from datetime import date

import polars as pl
import pytest

from pipeline.errors import ConfigError
from reporting.pseudonyms import Pseudonymiser

FRAME = pl.DataFrame({
    "person_key": ["P000000000001", "P000000000002"], "pnc_id": ["24/1191649K", None], "crn": ["L860345", "X123456"],
    "surname": ["Bromwood", "Smith"], "forenames": ["Roston", "Ann"], "date_of_birth": [date(2001, 1, 2), None],
    "score": [10, 20],
})


def test_pseudonyms_are_the_keyed_hmac_and_stable():
    a = Pseudonymiser(b"secret").frame(FRAME)
    b = Pseudonymiser(b"secret").frame(FRAME)
    assert a.equals(b)
    expected = "CRN-" + hmac.new(b"secret", b"crn:L860345", hashlib.sha256).hexdigest().upper()[:10]
    assert a["crn"][0] == expected
    assert a["pnc_id"][1] is None
    assert a["score"].to_list() == [10, 20]


def test_another_key_gives_other_pseudonyms():
    a = Pseudonymiser(b"one").frame(FRAME)
    b = Pseudonymiser(b"two").frame(FRAME)
    assert set(a["crn"]).isdisjoint(set(b["crn"]))


def test_no_real_name_identifier_or_birth_date_is_left():
    out = Pseudonymiser(b"k").frame(FRAME)
    text = " ".join(str(v) for row in out.rows() for v in row)
    for real in ("P000000000001", "24/1191649K", "L860345", "X123456", "Bromwood", "Roston", "Smith", "Ann"):
        assert real not in text
    assert "date_of_birth" not in out.columns
    assert out["surname"][0].startswith("Person ") and out["forenames"][0] == ""


def test_the_lookup_maps_back_and_is_owner_only(tmp_path):
    p = Pseudonymiser(b"k")
    out = p.frame(FRAME)
    path = p.write_lookup(tmp_path / "lookups" / "R0001.csv")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lookup = pl.read_csv(path)
    back = dict(zip(lookup["pseudonym"], lookup["value"], strict=True))
    assert back[out["crn"][1]] == "X123456"
    assert back[out["person_key"][0]] == "P000000000001"


def test_a_missing_key_is_a_config_error_naming_the_variable():
    with pytest.raises(ConfigError, match="IOM_PSEUDONYM_KEY"):
        Pseudonymiser.from_env("IOM_PSEUDONYM_KEY", environ={})
