"""Issue 21 (the loader and read inputs the issue lists without an N number): `seed=-1`, `version=-1`, `load_state_dict({})`, a
negative position, `read(columns=[])` and `read(format="pickle")` are usage errors (exit 2 from
the command line), found before anything is read; they used to be accepted (40 rows repeated)
or end in a traceback."""
import pytest

import featurekit
from featurekit.errors import ExitCode, UsageError

CHEAP = {"n": {"extractor": "text.length", "inputs": {"text": "question"}}}
ROWS = [{"id": i, "question": f"q{i}"} for i in range(40)]


@pytest.fixture
def table(proj):
    proj.write(CHEAP, ROWS)
    assert proj.apply().ok
    return proj


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": -1}, "seed must be a whole number >= 0, not -1"),
    ({"seed": 1.5}, "seed must be a whole number >= 0, not 1.5"),
    ({"epoch": -2}, "epoch must be a whole number >= 0, not -2"),
    ({"version": -1}, "version must be a table version (1 or more) or a tag name, not -1"),
    ({"version": 0}, "version must be a table version (1 or more) or a tag name, not 0"),
])
def test_loader_arguments_that_make_no_sense_are_usage_errors(table, kwargs, message):
    with pytest.raises(UsageError) as info:
        featurekit.DataLoader(table.uri, columns=["id"], pin_memory=False, **kwargs)
    assert str(info.value) == message and info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("state, message", [
    ({}, "cannot resume: the state has no epoch or position (give what state_dict() returned)"),
    ([1, 2], "cannot resume: the state must be what state_dict() returned, not list"),
    ("position", "must be what state_dict() returned, not str"),
])
def test_load_state_dict_refuses_what_state_dict_never_returns(table, state, message):
    loader = featurekit.DataLoader(table.uri, columns=["id"], batch_size=8, pin_memory=False)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loader.load_state_dict(state)
    loader.close()


def test_a_negative_or_too_large_position_is_refused_and_nothing_repeats(table):
    loader = featurekit.DataLoader(table.uri, columns=["id"], batch_size=8, seed=3, pin_memory=False)
    state = loader.state_dict()
    with pytest.raises(UsageError, match="position must be a whole number >= 0, not -40"):
        loader.load_state_dict({**state, "position": -40})
    with pytest.raises(UsageError, match="position 41 is past this rank's 40 rows"):
        loader.load_state_dict({**state, "position": 41})
    loader.load_state_dict({**state, "position": 16})
    ids = [i for batch in loader for i in batch["id"].tolist()]
    assert len(ids) == 24 and len(set(ids)) == 24
    loader.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"columns": []}, "read: name the columns to read"),
    ({"columns": ["id"], "format": "pickle"}, "read: format 'pickle' is not one of 'arrow', 'numpy', 'torch'"),
    ({"columns": ["id", ""]}, "read: columns must be column names, not ''"),
])
def test_read_refuses_no_columns_and_unknown_formats(table, kwargs, message):
    with pytest.raises(UsageError, match=message):
        featurekit.read(table.spec, **kwargs)
    assert featurekit.read(table.spec, "id", format="arrow").data.num_rows == 40
