"""The synthetic world's extracts: shapes, formats, identifiers, dates, content and injected faults."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from pipeline.contract import (
    CRN_PATTERN,
    CRO_PATTERN,
    EXTRACTS,
    HO_CODE_PATTERN,
    LOCAL_ID_PATTERN,
    NOMIS_PATTERN,
    Kind,
)
from pipeline.identifiers import pnc_is_valid, pnc_normal_form
from synthetic import FAULT_KINDS, GeneratedData, GeneratedExtract, generate_extracts

EXTRACT_DATE = date(2026, 10, 31)
REFERENCE = Path(__file__).resolve().parents[2] / "features" / "offence_reference.csv"


def read_extract(e: GeneratedExtract) -> pl.DataFrame:
    """Read a generated file using only what GeneratedExtract says about it; canonical names, text."""
    if e.format == "parquet":
        df = pl.read_parquet(e.path)
    else:
        text = e.path.read_bytes().decode(e.encoding)  # utf-8-sig drops the BOM
        df = pl.read_csv(text.encode("utf-8"), separator=e.delimiter, infer_schema=False)
    assert set(df.columns) == set(e.column_mapping), f"{e.name}: header differs from column_mapping"
    return df.rename(e.column_mapping)


def by_name(data: GeneratedData) -> dict[str, GeneratedExtract]:
    return {e.name: e for e in data.extracts}


def parse_dates(values: pl.Series, fmt: str) -> pl.Series:
    return values.str.strptime(pl.Date, fmt, strict=False)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[GeneratedData, dict[str, pl.DataFrame]]:
    data = generate_extracts(tmp_path_factory.mktemp("clean") / "extracts", 2000, 11, EXTRACT_DATE, fault_rate=0.0)
    return data, {e.name: read_extract(e) for e in data.extracts}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> tuple[GeneratedData, dict[str, pl.DataFrame]]:
    data = generate_extracts(tmp_path_factory.mktemp("faulty") / "extracts", 1500, 5, EXTRACT_DATE, fault_rate=0.01)
    return data, {e.name: read_extract(e) for e in data.extracts}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes_and_a_new_seed_changes_them(tmp_path):
    first = generate_extracts(tmp_path / "a" / "extracts", 300, 99, EXTRACT_DATE, fault_rate=0.01)
    second = generate_extracts(tmp_path / "b" / "extracts", 300, 99, EXTRACT_DATE, fault_rate=0.01)
    other = generate_extracts(tmp_path / "c" / "extracts", 300, 100, EXTRACT_DATE, fault_rate=0.01)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) >= 10 and a == b  # extracts, truth and world description alike
    assert first.faults == second.faults and first.corruptions == second.corruptions
    changed = [name for name in a if a[name] != c[name]]
    assert "extracts/police_nominals.csv" in changed and "extracts/police_offences.csv" in changed
    assert other.seed == 100


def test_describes_five_files_it_wrote(clean):
    data, frames = clean
    assert data.people == 2000 and data.seed == 11 and data.extract_date == EXTRACT_DATE
    assert sorted(by_name(data)) == sorted(EXTRACTS)
    for e in data.extracts:
        assert e.path.is_absolute() and e.path.exists()
        assert e.rows == frames[e.name].height > 0
        assert e.date_formats, e.name
        # the mapping is onto canonical names, one file column for each
        assert len(set(e.column_mapping.values())) == len(e.column_mapping)


def test_every_contract_column_is_present_through_the_mapping(clean):
    data, frames = clean
    for e in data.extracts:
        contract = EXTRACTS[e.name]
        assert set(contract.required_columns) <= set(e.column_mapping.values())
        assert set(frames[e.name].columns) == set(contract.column_names), e.name
        for column in contract.required_columns:
            assert frames[e.name][column].null_count() == 0, (e.name, column)


def test_file_formats_differ_as_forces_do(clean):
    data, _ = clean
    e = by_name(data)
    assert e["police_nominals"].column_mapping["PNC"] == "pnc_id"
    assert all(k == v for k, v in e["police_offences"].column_mapping.items())
    assert e["probation_cases"].encoding == "cp1252" and e["probation_cases"].delimiter == ";"
    assert e["probation_events"].format == "parquet"
    assert pl.read_parquet(e["probation_events"].path).dtypes == [pl.String] * 3
    assert e["prison_custody"].path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert not e["police_nominals"].path.read_bytes().startswith(b"\xef\xbb\xbf")


def test_cp1252_file_holds_accented_names_that_utf8_cannot_read(clean):
    data, frames = clean
    raw = by_name(data)["probation_cases"].path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    names = pl.concat([frames["probation_cases"]["surname"], frames["probation_cases"]["forenames"]]).drop_nulls()
    non_ascii = names.filter(names.str.contains(r"[^\x00-\x7f]"))
    assert non_ascii.len() > 0
    assert any(ch in "".join(non_ascii.to_list()) for ch in "ëéïö’")


def test_identifiers_follow_the_contract_without_faults(clean):
    _, f = clean
    nominals, offences, cases, events, custody = (
        f["police_nominals"], f["police_offences"], f["probation_cases"], f["probation_events"], f["prison_custody"],
    )
    for frame in (nominals, cases, custody):
        pncs = frame["pnc_id"].drop_nulls().to_list()
        assert pncs and all(pnc_is_valid(v) for v in pncs)
    assert 0.65 <= nominals["pnc_id"].is_not_null().mean() <= 0.95
    assert nominals["cro_number"].drop_nulls().str.contains(CRO_PATTERN).all()
    assert nominals["police_person_id"].str.contains(LOCAL_ID_PATTERN).all()
    assert offences["offence_id"].str.contains(LOCAL_ID_PATTERN).all()
    assert offences["ho_offence_code"].str.contains(HO_CODE_PATTERN).all()
    assert cases["crn"].str.contains(CRN_PATTERN).all() and events["crn"].str.contains(CRN_PATTERN).all()
    assert custody["nomis_id"].str.contains(NOMIS_PATTERN).all()
    assert cases["nomis_id"].drop_nulls().str.contains(NOMIS_PATTERN).all()
    # keys are unique, and CRN and NOMIS numbers each belong to one person
    assert nominals["police_person_id"].is_unique().all()
    assert offences["offence_id"].is_unique().all()
    assert custody["spell_id"].is_unique().all()
    assert cases.select(pl.struct("crn", "supervision_start").is_unique().all()).item()
    assert cases.group_by("crn").agg(pl.col("date_of_birth").n_unique())["date_of_birth"].max() == 1
    assert custody.group_by("nomis_id").agg(pl.col("date_of_birth").n_unique())["date_of_birth"].max() == 1
    assert set(events["crn"].unique()) <= set(cases["crn"].unique())
    assert set(offences["police_person_id"].unique()) <= set(nominals["police_person_id"])


def test_enumerated_values_stay_in_their_lists(clean):
    data, f = clean
    for name, frame in f.items():
        for column in EXTRACTS[name].columns:
            if column.allowed:
                assert set(frame[column.name].drop_nulls().unique()) <= set(column.allowed), (name, column.name)
    assert set(f["police_nominals"]["area"].unique()) == {"Northgate", "Eastbridge", "Southmoor", "Westfield", "Central"}
    sizes = f["police_nominals"]["area"].value_counts()["count"]
    assert sizes.max() > 1.5 * sizes.min()


def test_prison_and_probation_hold_pnc_ids_in_either_form_and_not_always(clean):
    _, f = clean
    police_raw = set(f["police_nominals"]["pnc_id"].drop_nulls())
    police = {pnc_normal_form(v) for v in police_raw}
    for name in ("prison_custody", "probation_cases"):
        held = f[name]["pnc_id"].drop_nulls()
        # most held ids are the police's; some in the other (long or short) form than the police use
        assert sum(pnc_normal_form(v) in police for v in held) > 0.8 * held.len()
        assert any(v not in police_raw and pnc_normal_form(v) in police for v in held)
        assert 0.6 <= f[name]["pnc_id"].is_not_null().mean() <= 0.92


def test_no_date_after_the_extract_date_unless_it_may_be_planned(clean):
    data, f = clean
    seen_future = False
    for e in data.extracts:
        frame = f[e.name]
        contract = EXTRACTS[e.name]
        for column in contract.columns:
            if column.kind != Kind.DATE:
                continue
            values = frame[column.name].drop_nulls()
            parsed = parse_dates(values, e.date_formats[0])
            assert parsed.null_count() == 0, (e.name, column.name)
            if column.may_be_future:
                seen_future |= bool((parsed > EXTRACT_DATE).any())
            else:
                assert parsed.max() is None or parsed.max() <= EXTRACT_DATE, (e.name, column.name)
        for later, earlier in contract.ordered_dates:
            a = parse_dates(frame[later], e.date_formats[0])
            b = parse_dates(frame[earlier], e.date_formats[0])
            assert not ((a < b).fill_null(False)).any(), (e.name, later, earlier)
    assert seen_future


def test_at_least_six_years_of_history(clean):
    data, f = clean
    fmt = by_name(data)["police_offences"].date_formats[0]
    first = parse_dates(f["police_offences"]["offence_date"], fmt).min()
    assert first <= EXTRACT_DATE - timedelta(days=6 * 365)


def test_people_follow_an_age_crime_curve(clean):
    data, f = clean
    fmt = by_name(data)["police_nominals"].date_formats[0]
    dob = parse_dates(f["police_nominals"]["date_of_birth"], fmt)
    age = (pl.lit(EXTRACT_DATE) - dob).dt.total_days() / 365.25
    ages = pl.select(age.alias("age"))["age"]
    assert ages.min() >= 12 and ages.max() <= 100
    assert 20 <= ages.median() <= 32
    assert ((ages >= 16) & (ages < 46)).mean() > 0.75
    sex = f["police_nominals"]["sex"]
    assert 0.78 <= (sex == "M").mean() <= 0.92


def test_names_are_long_enough_to_find_in_logs(clean):
    _, f = clean
    surnames = f["police_nominals"]["surname"].str.replace_all(r"[^\p{L}]", "")
    assert surnames.str.len_chars().min() >= 6
    forenames = f["police_nominals"]["forenames"].str.split(" ").explode()
    assert forenames.str.len_chars().min() >= 4


def test_offending_is_heavy_tailed_with_a_super_prolific_few(clean):
    data, f = clean
    offences = f["police_offences"]
    counts = offences.group_by("police_person_id").len()["len"].sort(descending=True)
    total = counts.sum()
    assert 2.5 <= total / data.people <= 10
    top_tenth = counts.head(data.people // 10).sum()
    assert top_tenth / total > 0.35
    fmt = by_name(data)["police_offences"].date_formats[0]
    recent = offences.filter(parse_dates(offences["offence_date"], fmt) > EXTRACT_DATE - timedelta(days=365))
    prolific = recent.group_by("police_person_id").len().filter(pl.col("len") >= 10).height
    assert 4 <= prolific <= 0.05 * data.people
    quiet = data.people - offences.filter(
        parse_dates(offences["offence_date"], fmt) > EXTRACT_DATE - timedelta(days=3 * 365)
    )["police_person_id"].n_unique()
    assert quiet > 0.3 * data.people


def test_offence_mix_and_outcomes_look_like_police_data(clean):
    data, f = clean
    offences = f["police_offences"]
    reference = pl.read_csv(REFERENCE, infer_schema=False)
    joined = offences.join(reference, on="ho_offence_code", how="left")
    assert joined["offence_group"].null_count() == 0
    groups = joined["offence_group"].value_counts(sort=True)["offence_group"].head(5).to_list()
    assert "shoplifting" in groups
    assert (joined["offence_group"] == "homicide").mean() < 0.005
    assert 0.12 <= (joined["neighbourhood_crime"] == "true").mean() <= 0.4
    fmt = by_name(data)["police_offences"].date_formats[0]
    day = parse_dates(offences["offence_date"], fmt)
    pending = offences["outcome"] == "pending"
    recent = day > EXTRACT_DATE - timedelta(days=60)
    old = day < EXTRACT_DATE - timedelta(days=730)
    assert pending.filter(recent).mean() > 3 * pending.filter(old).mean()
    assert offences.filter(~pending)["outcome_date"].null_count() < 0.05 * offences.height


def test_some_people_are_in_custody_at_the_extract_date(clean):
    data, f = clean
    custody = f["prison_custody"]
    fmt = by_name(data)["prison_custody"].date_formats[0]
    open_spells = custody.filter(pl.col("release_date").is_null())
    share = open_spells["nomis_id"].n_unique() / data.people
    assert 0.004 <= share <= 0.05
    expected = parse_dates(open_spells["expected_release_date"], fmt)
    assert (expected > EXTRACT_DATE).all()
    assert (expected <= EXTRACT_DATE + timedelta(days=90)).any()
    assert set(custody["custody_type"].unique()) == {"sentenced", "remand", "recall"}
    sentenced = custody.filter(pl.col("custody_type") == "sentenced")["sentence_days"].cast(pl.Int64)
    assert 0.4 <= (sentenced < 365).mean() <= 0.85
    assert custody.filter(pl.col("custody_type") == "remand")["sentence_days"].null_count() == \
        custody.filter(pl.col("custody_type") == "remand").height


def test_probation_cases_are_consistent_with_the_person(clean):
    data, f = clean
    cases = f["probation_cases"]
    people = cases["crn"].n_unique() / data.people
    assert 0.1 <= people <= 0.35
    assert 0.05 <= cases["ogrs3_2yr"].is_null().mean() <= 0.25
    ogrs = cases["ogrs3_2yr"].drop_nulls()
    assert ogrs.str.contains(r"^\d{1,3}\.\d$").all()
    assert ogrs.cast(pl.Float64).is_between(0, 100).all()
    assert (cases["rosh"].is_in(["low", "medium"])).mean() > 0.7
    assert (cases["mappa_level"] == "0").mean() > 0.8
    assert 0.5 <= cases["pnc_id"].is_not_null().mean() <= 0.85
    fmt = by_name(data)["probation_cases"].date_formats[0]
    start = parse_dates(cases["supervision_start"], fmt)
    assessed = parse_dates(cases["assessment_date"], fmt)
    assert ((assessed - start).dt.total_days().abs() <= 31).all()
    first = parse_dates(cases["first_sanction_date"], fmt)
    assert (first.drop_nulls() <= EXTRACT_DATE).all()
    # previous sanctions come from the PNC: they include sanctions the local police extract does
    # not hold (other force areas, before its history starts), so they often exceed its count
    nominals = f["police_nominals"].select("pnc_id", "police_person_id").drop_nulls()
    sanctions = (f["police_offences"].filter(pl.col("outcome").is_in(["convicted", "cautioned"]))
                 .group_by("police_person_id").len())
    linked = (cases.with_columns(pl.col("pnc_id").map_elements(pnc_normal_form, return_dtype=pl.String))
              .join(nominals.with_columns(pl.col("pnc_id").map_elements(pnc_normal_form, return_dtype=pl.String)),
                    on="pnc_id")
              .join(sanctions, on="police_person_id", how="left"))
    assert linked.height > 0
    assert (linked["previous_sanctions"].cast(pl.Int64) > linked["len"].fill_null(0)).mean() > 0.2
    assert (first.drop_nulls() < EXTRACT_DATE - timedelta(days=10 * 366)).any()
    # young prolific people score higher than the rest
    young = linked.filter(pl.col("previous_sanctions").cast(pl.Int64) >= 5)["ogrs3_2yr"].cast(pl.Float64).mean()
    rest = linked.filter(pl.col("previous_sanctions").cast(pl.Int64) <= 1)["ogrs3_2yr"].cast(pl.Float64).mean()
    assert young > rest
    events = f["probation_events"]
    assert set(events["event_type"].unique()) <= set(EXTRACTS["probation_events"].column("event_type").allowed)
    assert events.height > 0


def test_faults_are_injected_and_counted(faulty):
    data, f = faulty
    assert set(data.faults) == set(FAULT_KINDS)
    assert all(count >= 1 for count in data.faults.values()), data.faults
    e = by_name(data)

    # duplicates: repeated key rows, exactly as many as counted
    repeats = 0
    for name in ("police_nominals", "police_offences", "prison_custody", "probation_cases"):
        key = list(EXTRACTS[name].key)
        frame = f[name].drop_nulls(key)
        repeats += frame.height - frame.unique(key).height
    assert repeats == data.faults["duplicate_id"]

    # unparseable and future dates, exactly as counted
    unparseable = future = 0
    for name, frame in f.items():
        for column in EXTRACTS[name].columns:
            if column.kind != Kind.DATE:
                continue
            values = frame[column.name].drop_nulls()
            parsed = parse_dates(values, e[name].date_formats[0])
            unparseable += parsed.null_count()
            if not column.may_be_future:
                future += int((parsed > EXTRACT_DATE).sum())
    assert unparseable == data.faults["unparseable_date"]
    assert future == data.faults["future_date"]

    # well-formed codes missing from the reference: counted, and not malformed
    known = set(pl.read_csv(REFERENCE, infer_schema=False)["ho_offence_code"])
    codes = f["police_offences"]["ho_offence_code"].drop_nulls()
    unknown = codes.filter(~codes.is_in(list(known)))
    assert unknown.len() == data.faults["unknown_offence_code"]
    assert unknown.str.contains(HO_CODE_PATTERN).all()

    # bad identifiers appear, but only as many as were injected
    bad_pnc = sum(not pnc_is_valid(v) for v in f["police_nominals"]["pnc_id"].drop_nulls())
    bad_crn = int((~f["probation_cases"]["crn"].drop_nulls().str.contains(CRN_PATTERN)).sum())
    bad_nomis = int((~f["prison_custody"]["nomis_id"].drop_nulls().str.contains(NOMIS_PATTERN)).sum())
    assert bad_pnc >= 1 and bad_crn >= 1 and bad_nomis >= 1
    assert bad_pnc + bad_crn + bad_nomis <= data.faults["malformed_identifier"]

    # enum violations and missing required values are present
    outcome = f["police_offences"]["outcome"].drop_nulls()
    assert (~outcome.is_in(list(EXTRACTS["police_offences"].column("outcome").allowed))).any()
    assert f["police_nominals"]["surname"].null_count() + f["police_nominals"]["forenames"].null_count() >= 1
    mappa = f["probation_cases"]["mappa_level"].drop_nulls().cast(pl.Int64)
    ogrs = f["probation_cases"]["ogrs3_2yr"].drop_nulls().cast(pl.Float64)
    assert (mappa > 3).any() or (ogrs > 100).any() or (ogrs < 0).any()


def test_no_faults_when_the_rate_is_zero(clean):
    data, f = clean
    assert data.faults == dict.fromkeys(FAULT_KINDS, 0)
    known = set(pl.read_csv(REFERENCE, infer_schema=False)["ho_offence_code"])
    assert f["police_offences"]["ho_offence_code"].is_in(list(known)).all()
    dob = parse_dates(f["police_nominals"]["date_of_birth"], "%d/%m/%Y")
    age = pl.select(((pl.lit(EXTRACT_DATE) - dob).dt.total_days() / 365.25).alias("a"))["a"]
    assert age.is_between(10, 100).all()


def test_progress_reports_each_stage_in_order(tmp_path):
    stages: list[str] = []
    data = generate_extracts(tmp_path, 200, 1, EXTRACT_DATE, fault_rate=0.0, progress=stages.append)
    assert stages[0] == "people" and "offences" in stages
    assert stages.index("people") < stages.index("offences")
    assert len(stages) == len(set(stages)) >= 5
    # small populations still give every extract a header and consistent rows
    for e in data.extracts:
        assert read_extract(e).height == e.rows


def test_a_leap_day_extract_date_works(tmp_path):
    data = generate_extracts(tmp_path, 300, 2, date(2024, 2, 29), fault_rate=0.0)
    first = data.extracts[1]
    offences = read_extract(first)
    day = parse_dates(offences["offence_date"], first.date_formats[0])
    assert day.max() <= date(2024, 2, 29)
    assert day.min() < date(2018, 3, 1)


def test_rejects_nonsense_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_extracts(tmp_path, 0, 1, EXTRACT_DATE)
    with pytest.raises(ValueError):
        generate_extracts(tmp_path, 10, 1, EXTRACT_DATE, fault_rate=0.9)



def test_identifiers_stay_unique_beyond_ten_million_people():
    # a national workspace: PNC serials are used twice past 10M people (even and odd years), and
    # CRN and NOMIS numbers are bijections of the person number; checked on people at both ends
    from types import SimpleNamespace

    import numpy as np

    from synthetic.generate import _ids
    from synthetic.people import make_people
    from synthetic.util import day

    ext = day(EXTRACT_DATE)
    index = np.concatenate([np.arange(0, 3000), np.arange(10_000_000, 10_003_000)])
    rng = np.random.default_rng(1)
    people = make_people(rng, index, ext)
    career = SimpleNamespace(person=np.zeros(0, dtype=np.int64), detected=np.zeros(0, dtype=bool),
                             day=np.zeros(0, dtype=np.int64), pre_sanctions=np.zeros(index.size, dtype=np.int64),
                             pre_first=np.full(index.size, -1))
    ids, pnc_true = _ids(rng, people, career, 13_000_000, ext)
    assert pnc_true.filter(pl.Series(ids.has_pnc)).is_unique().all()
    assert ids.crn.is_unique().all() and ids.nomis.is_unique().all() and ids.police_id.is_unique().all()
    assert all(pnc_is_valid(v) for v in pnc_true.head(50).to_list())
