import pytest
from hypothesis import given
from hypothesis import strategies as st

from nvdimm.errors import InvalidArgument
from nvdimm.units import GiB, KiB, MiB, align_down, align_up, human_size, parse_size


@pytest.mark.parametrize("text,value", [
    ("512", 512), ("4K", 4 * KiB), ("4k", 4 * KiB), ("2M", 2 * MiB), ("16G", 16 * GiB),
    ("2MiB", 2 * MiB), ("1.5K", 1536), ("0x1000", 4096), (" 64T ", 64 << 40),
])
def test_parse_size_accepts_ndctl_suffixes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "12Q", "-5", "1.1", "0xZZ"])
def test_parse_size_rejects_garbage_with_a_clear_error(text):
    with pytest.raises(InvalidArgument):
        parse_size(text)


def test_human_size_matches_ndctl_output():
    assert human_size(251658240) == "240.00 MiB (251.66 MB)"
    assert human_size(65961984) == "62.91 MiB (65.96 MB)"
    assert human_size(33554432) == "32.00 MiB (33.55 MB)"


@given(st.integers(0, 1 << 50), st.sampled_from([1, 512, 4096, 1 << 21]))
def test_alignment_helpers_bracket_the_value(x, a):
    assert align_down(x, a) <= x <= align_up(x, a)
    assert align_down(x, a) % a == 0 and align_up(x, a) % a == 0
    assert align_up(x, a) - align_down(x, a) in (0, a)


def test_human_size_uses_mib_below_2gib_and_gib_above_like_ndctl():
    assert human_size(1536 * MiB) == "1536.00 MiB (1610.61 MB)"
    assert human_size(4 * GiB) == "4.00 GiB (4.29 GB)"
    assert human_size(64 << 40) == "65536.00 GiB (70368.74 GB)"
    assert human_size(4096) == "4096"  # below 5000 KiB ndctl prints the number
