"""The derivation corpus (tests/ledger_helpers/corpus.py) against noisy sketches of its registered tables.

Careless derivations (routine preprocessing) must all be linked to their source; controls (other people)
must not; each deliberate derivation must do what docs/ledger.md says it does ("What detection cannot
see"). The figures are measured by benchmarks/identity_corpus.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from ledger_helpers.corpus import BASES, DERIVATIONS, ID_COLUMNS

from privtrain.ledger import overlap as ov

KEY = bytes(range(7, 39))
# What docs/ledger.md states for each deliberate derivation: True = still linked, False = evades.
DELIBERATE = {
    "noise of 5% of the std on every number": False,
    "noise of 5% of the std, rounded back to each column's resolution": True,
    "generalised: 10-year age bands, BMI to integers, measurements dropped": False,
    "digits with noise of 0.5 on every pixel": False,
}
# a derivation's declared id column, when it keeps one under another name
DECLARED = {"survey: half, items recoded 0-4, id renamed (declared id column)": "RespondentID"}


@pytest.fixture(scope="module")
def bases():
    return {name: make() for name, make in BASES.items()}


@pytest.fixture(scope="module")
def stored(bases):
    return {
        name: ov.register(ov.read(frame, KEY, ID_COLUMNS.get(name)), KEY, rng=np.random.default_rng(1))
        for name, frame in bases.items()
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus")


def test_the_corpus_is_large_and_marked():
    kinds = [kind for _, kind, _, _ in DERIVATIONS]
    assert len(DERIVATIONS) >= 25 and kinds.count("careless") >= 25
    assert {"careless", "deliberate", "control"} == set(kinds)
    assert set(DELIBERATE) == {name for name, kind, _, _ in DERIVATIONS if kind == "deliberate"}
    assert len(BASES["patients"]()) >= 3000


@pytest.mark.parametrize("name,kind,base,make", DERIVATIONS, ids=[d[0] for d in DERIVATIONS])
def test_derivation(name, kind, base, make, bases, stored, workdir):
    frame = make(bases[base], workdir)
    o = ov.compare(ov.read(frame, KEY, DECLARED.get(name)), stored[base], KEY, source=base)
    linked = o is not None and o.linked
    if kind == "careless":
        assert linked, f"{name}: {o}"
        assert o.fraction_of_new >= 0.3 and f"belong to source `{base}`" in o.reason
    elif kind == "control":
        assert not linked, f"{name}: {o}"
    else:
        assert linked == DELIBERATE[name], f"{name}: {o}"
