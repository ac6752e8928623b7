"""Simulation scenarios: N engines on a simulated NBMA network (see nhrpsim.py)."""

from __future__ import annotations

import pytest
from nhrpsim import Net

from dmvpn_runtime.nhrp.wire import codec


@pytest.fixture
def net() -> Net:
    return Net(seed=7)


@pytest.fixture(autouse=True)
def decoded_values_stay_as_decoded():
    """The decoder shares what it decoded between every packet with the same octets, so
    no engine may change a value it was given (wire.model: values are not frozen, for
    speed). After each scenario, every value the decoders remember still equals a fresh
    decode of its octets, and keeps exactly those octets."""
    codec.clear_memos()
    yield
    for key, dec in list(codec._DECODERS.items()):
        fresh = codec._Decoder(dec.afn, dec.proto, dec.src_proto_len)
        for raw, cies in dec.cies_seen.items():
            assert cies == fresh.cie_list(raw, 0, len(raw)), f"CIEs changed after decode {key}"
            assert b"".join(cie._wire or b"" for cie in cies) == raw
        for raw, exts in dec.extensions_seen.items():
            assert exts == fresh.decode_extensions(raw, 0, len(raw)), f"extensions changed {key}"
            assert b"".join(ext._wire or b"" for ext in exts) == raw
