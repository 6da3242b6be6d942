from featurekit.testing import check_extractor

import featurekit_acme
from featurekit_acme import Number, VowelCount


def test_contract():
    out = check_extractor(VowelCount, batch={"text": ["banana", "", None]})
    assert out["value"].to_pylist() == [3, 0, 0]


def test_rows_that_fail_are_reported():
    out = check_extractor(Number, batch={"text": ["12", "twelve", None]})
    assert out["value"].to_pylist() == [12, None, None]


def test_end_to_end(featurekit_project):
    featurekit_project.plugins = [featurekit_acme]
    featurekit_project.write({"vowels": {"extractor": "acme.vowels", "inputs": {"text": "q"}}},
                             rows=[{"id": 1, "q": "banana"}, {"id": 2, "q": "sky"}])
    assert featurekit_project.apply().ok
    assert featurekit_project.table().column("vowels").to_pylist() == [3, 0]
